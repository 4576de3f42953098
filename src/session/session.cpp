#include "session/session.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <random>
#include <sys/socket.h>

#include "history/recorder.hpp"
#include "net/listener.hpp"
#include "protocol/audio.hpp"
#include "protocol/credential.hpp"
#include "protocol/endpoint.hpp"
#include "protocol/errors.hpp"
#include "protocol/message.hpp"
#include "session/relay.hpp"

namespace sluice::session {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// Query parameters recorded with a session: they classify a stream (model,
// format, features) and never carry secrets or URLs.
constexpr std::array kClassifyingParams{
    "model",          "encoding",      "sample_rate",       "channels",     "multichannel",
    "language",       "version",       "tier",              "diarize",      "interim_results",
    "punctuate",      "smart_format",  "endpointing",       "utterance_end_ms", "vad_events",
    "redact",         "numerals",      "profanity_filter",  "eot_threshold", "eager_eot_threshold",
    "eot_timeout_ms", "speed",         "mip_opt_out",       "detect_entities", "keyterm",
    "language_hint",  "filler_words",  "dictation",         "measurements", "paragraphs"};

bool is_classifying(std::string_view key) {
  for (auto k : kClassifyingParams)
    if (key == k) return true;
  return false;
}

int to_int(std::string_view s, int fallback) {
  int v = fallback;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return (ec == std::errc() && p == s.data() + s.size()) ? v : fallback;
}

std::string client_address(const tcp::socket& s) {
  boost::system::error_code ec;
  auto ep = s.remote_endpoint(ec);
  return ec ? std::string("unknown") : net::to_string(ep);
}

// Errors that end a leg in the ordinary way (peer gone, timed out), logged at debug.
bool expected_ending(const boost::system::error_code& ec) {
  return ec == websocket::error::closed || ec == beast::error::timeout || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::error::operation_aborted || ec == asio::ssl::error::stream_truncated ||
         ec == http::error::end_of_stream;
}

// An HTTP answer in place of an upgrade: Deepgram-shaped JSON.
struct HttpRefusal {
  unsigned status = 400;
  std::string body;
  std::string content_type = "application/json";
  std::string request_id;  // dg-request-id (only when the vendor gave one)
  std::string dg_error;
  std::string retry_after;
};

template <class Stream>
asio::awaitable<void> send_refusal(Stream& stream, const HttpRefusal& r, std::uint64_t session_id) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), 11};
  res.set(http::field::server, "sluice");
  res.set(http::field::content_type, r.content_type.empty() ? "application/json" : r.content_type);
  if (!r.request_id.empty()) res.set("dg-request-id", r.request_id);
  if (!r.dg_error.empty()) res.set("dg-error", r.dg_error);
  if (!r.retry_after.empty()) res.set(http::field::retry_after, r.retry_after);
  if (session_id) res.set("x-sluice-session-id", std::to_string(session_id));
  res.keep_alive(false);
  res.body() = r.body;
  res.prepare_payload();
  auto [ec, n] = co_await http::async_write(stream, res, use_tuple);
  (void)n;
  if (!ec) {
    boost::system::error_code ignored;
    beast::get_lowest_layer(stream).socket().shutdown(tcp::socket::shutdown_send, ignored);
  }
}

HttpRefusal sluice_error(unsigned status, std::string_view code, std::string_view message) {
  HttpRefusal r;
  r.status = status;
  r.body = protocol::error_body(code, message, protocol::make_uuid());
  r.dg_error = std::string(message);
  return r;
}

// The fields read from the upgrade request that decide what happens next.
struct Route {
  protocol::Endpoint endpoint;
  std::string target;  // path + original query, untouched
  std::string model;
  std::vector<std::pair<std::string, std::string>> params;
  double audio_bytes_per_second = 0;
};

// The bare stream under an accepted client WebSocket: the relay reads and
// writes frames on it directly.
inline tcp::socket release_stream(websocket::stream<beast::tcp_stream>& ws) {
  return ws.next_layer().release_socket();
}
inline beast::ssl_stream<beast::tcp_stream> release_stream(websocket::stream<beast::ssl_stream<beast::tcp_stream>>& ws) {
  return std::move(ws.next_layer());
}

template <class ClientStream>
using BareStream = decltype(release_stream(std::declval<websocket::stream<ClientStream>&>()));

// What an opened stream holds while it is relayed. serve() builds it and
// returns, so that the handshake's many locals (a coroutine frame of several
// KiB) are gone before the relay starts; relay_session() owns it after.
template <class Bare>
struct OpenSession {
  Bare client;
  std::string client_pending;  // bytes the client sent after its upgrade request
  upstream::UpstreamStream upstream;
  std::string upstream_pending;  // bytes read after the upstream's 101
  registry::Registration registration;
  admission::Lease lease;
  admission::LegToken leg;
  std::shared_ptr<const SessionPolicy> policy;  // the version this stream keeps
  config::PoolConfig pool;
};

std::string format_seconds(double s) { return fmt::format("{:.1f}s", s); }

void log_summary(const registry::SessionEntry& e, std::string_view closed_by, int code, std::string_view reason) {
  const auto& c = e.counters();
  auto age = e.info().age_seconds(registry::mono_ns());
  spdlog::info(
      "[S{}] closed by {} ({} \"{}\") after {}: tenant={} path={} model={} request_id={} "
      "client->upstream {} msgs {} B (audio {} msgs, {} s, keepalive {}, finalize {}, closestream {}), "
      "upstream->client {} msgs {} B",
      e.info().id, closed_by, code, reason, format_seconds(age), e.info().tenant,
      protocol::endpoint_path(e.info().endpoint), e.info().model.empty() ? "-" : e.info().model,
      e.request_id().empty() ? "-" : e.request_id(), c.client_messages.load(), c.client_bytes.load(),
      c.audio_messages.load(), fmt::format("{:.2f}", e.audio_seconds()), c.keep_alive.load(),
      c.finalize.load(), c.close_stream.load(), c.upstream_messages.load(), c.upstream_bytes.load());
}

// Waits for admission while watching the client: one that hangs up leaves the
// queue at once.
template <class ClientStream>
asio::awaitable<admission::AdmitResult> admit(ClientStream& stream, SessionServices& services,
                                              const std::string& pool, const std::string& tenant) {
  auto& sock = beast::get_lowest_layer(stream).socket();
  auto ticket = services.admission->enqueue(pool, tenant, sock.get_executor());
  if (ticket.decided()) co_return ticket.take_result();
  auto watching = std::make_shared<bool>(true);
  sock.async_wait(tcp::socket::wait_read, [&ticket, &sock, watching](boost::system::error_code ec) {
    if (ec || !*watching) return;
    // Readable before the 101: either the client hung up or it sent early
    // bytes; only the former ends the wait.
    char byte;
    auto n = ::recv(sock.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) ticket.abandon();
  });
  auto result = co_await ticket.wait();
  *watching = false;
  boost::system::error_code ignored;
  sock.cancel(ignored);
  co_return result;
}

HttpRefusal admission_refusal(const admission::AdmitResult& r, const std::string& tenant) {
  using admission::Refusal;
  boost::json::object detail;
  detail["reason"] = admission::refusal_name(r.refusal);
  detail["pool"] = r.pool;
  detail["limit"] = r.limit;
  detail["effective_limit"] = r.effective_limit;
  detail["in_use"] = r.in_use;
  detail["queued"] = r.queued;
  detail["waited_seconds"] = std::round(r.waited_seconds * 1000) / 1000;
  if (r.refusal == Refusal::tenant_quota) {
    detail["tenant"] = tenant;
    detail["tenant_in_use"] = r.tenant_in_use;
    detail["tenant_max"] = r.tenant_max;
  }
  std::string message;
  unsigned status = 429;
  switch (r.refusal) {
    case Refusal::no_pool:
      status = 403;
      message = "sluice: no pool admits this stream (check the pools' match rules)";
      break;
    case Refusal::shutting_down:
      status = 503;
      message = "sluice: the gateway is shutting down; retry on another instance";
      break;
    case Refusal::tenant_quota:
      message = fmt::format("sluice: tenant '{}' is at its quota of {} concurrent streams in pool '{}'; waited {:.1f} s",
                            tenant, r.tenant_max, r.pool, r.waited_seconds);
      break;
    case Refusal::queue_full:
      message = fmt::format("sluice: pool '{}' is full (limit {}, {} in use) and its queue is full ({} waiting)", r.pool,
                            r.effective_limit, r.in_use, r.queued);
      break;
    default:
      message = fmt::format("sluice: pool '{}' is full (limit {}, {} in use, {} waiting); waited {:.1f} s", r.pool,
                            r.effective_limit, r.in_use, r.queued, r.waited_seconds);
      break;
  }
  boost::json::object extra;
  extra["sluice"] = std::move(detail);
  HttpRefusal out;
  out.status = status;
  out.body = protocol::error_body(status == 429 ? "TOO_MANY_REQUESTS" : (status == 503 ? "SERVICE_UNAVAILABLE" : "FORBIDDEN"),
                                  message, protocol::make_uuid(), boost::json::serialize(extra));
  out.dg_error = message;
  if (status != 403) out.retry_after = "1";
  return out;
}

// A snapshot of every stream holding a pool, for upstream-429 forensics.
boost::json::array pool_snapshot(const registry::Registry& registry, const std::string& pool) {
  boost::json::array out;
  auto now = registry::mono_ns();
  for (const auto& e : registry.list({.pool = pool})) {
    if (e->state() == registry::SessionState::queued) continue;
    const auto& c = e->counters();
    boost::json::object o;
    o["id"] = e->info().id;
    auto rid = e->request_id();
    o["request_id"] = rid.empty() ? boost::json::value(nullptr) : boost::json::value(rid);
    o["tenant"] = e->info().tenant;
    o["state"] = registry.display_state(*e, now);
    o["age_seconds"] = e->info().age_seconds(now);
    auto last_audio = c.last_audio_ns.load();
    o["seconds_since_audio"] = last_audio ? boost::json::value(static_cast<double>(now - last_audio) / 1e9)
                                          : boost::json::value(nullptr);
    o["keep_alive_only"] = registry.keep_alive_only(*e, now);
    o["audio_messages"] = c.audio_messages.load();
    o["keep_alive"] = c.keep_alive.load();
    out.push_back(std::move(o));
  }
  return out;
}

int open_in_pool(const registry::Registry& registry, const std::string& pool, registry::SessionId except) {
  int n = 0;
  for (const auto& e : registry.list({.pool = pool})) {
    auto st = e->state();
    if (e->info().id != except && (st == registry::SessionState::open || st == registry::SessionState::closing)) ++n;
  }
  return n;
}

template <class ClientStream>
asio::awaitable<std::unique_ptr<OpenSession<BareStream<ClientStream>>>> serve(ClientStream stream, std::string peer, std::shared_ptr<SessionServices> services_ptr) {
  auto& services = *services_ptr;
  auto policy = services.policy.load();
  const auto& cfg = policy->config;
  auto& tcp_layer = beast::get_lowest_layer(stream);
  const auto handshake_deadline =
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(cfg.client.handshake_timeout);

  // 1. The upgrade request, within the client handshake deadline.
  beast::flat_buffer buffer;
  http::request_parser<http::empty_body> parser;
  parser.header_limit(cfg.client.header_limit);
  parser.body_limit(0);
  tcp_layer.expires_after(handshake_deadline);
  auto [rec, rn] = co_await http::async_read(stream, buffer, parser, use_tuple);
  (void)rn;
  if (rec) {
    if (rec == beast::error::timeout)
      spdlog::debug("client {}: no complete upgrade request within the deadline", peer);
    else if (!expected_ending(rec))
      co_await send_refusal(stream, sluice_error(400, "Bad Request", "sluice: malformed HTTP request"), 0);
    co_return nullptr;
  }
  auto req = parser.release();
  // From here the waits are the gateway's own, each bounded (queue, connect).
  tcp_layer.expires_never();

  // 2. Route: the path names the endpoint; the query goes upstream untouched.
  auto url = boost::urls::parse_origin_form(req.target());
  if (!url) {
    co_await send_refusal(stream, sluice_error(400, "Bad Request", "sluice: malformed request target"), 0);
    co_return nullptr;
  }
  auto endpoint = protocol::endpoint_from_path(url->encoded_path());
  if (!endpoint) {
    co_await send_refusal(stream,
                          sluice_error(404, "NOT_FOUND",
                                       fmt::format("sluice: no streaming endpoint at {}; expected /v1/listen, "
                                                   "/v2/listen, /v1/speak or /v1/agent/converse",
                                                   std::string(url->encoded_path()))),
                          0);
    co_return nullptr;
  }
  if (!websocket::is_upgrade(req)) {
    auto r = sluice_error(426, "UPGRADE_REQUIRED",
                          "sluice: this endpoint streams over WebSocket; send a WebSocket upgrade request");
    co_await send_refusal(stream, r, 0);
    co_return nullptr;
  }
  Route route{*endpoint, std::string(req.target()), {}, {}, 0};
  std::string encoding;
  int sample_rate = 0, channels = 1;
  std::vector<std::pair<std::string, std::string>> all_params;
  for (auto p : url->params()) {
    all_params.emplace_back(p.key, p.value);
    if (!is_classifying(p.key)) continue;
    if (p.key == "model") route.model = p.value;
    if (p.key == "encoding") encoding = p.value;
    if (p.key == "sample_rate") sample_rate = to_int(p.value, 0);
    if (p.key == "channels") channels = to_int(p.value, 1);
    route.params.emplace_back(p.key, p.value);
  }
  route.audio_bytes_per_second = protocol::bytes_per_second(encoding, sample_rate, channels);

  // 3. Authenticate: a sluice key (virtual-key mode) or the client's own
  // Deepgram key (pass-through mode). No upstream connection without one.
  auto credential = protocol::parse_credential(req[http::field::authorization],
                                               req[http::field::sec_websocket_protocol]);
  std::string tenant, upstream_auth;
  if (!credential) {
    auto r = sluice_error(401, "INVALID_AUTH",
                          "sluice: no API key; send Authorization: Token <key> or "
                          "Sec-WebSocket-Protocol: token, <key>");
    co_await send_refusal(stream, r, 0);
    spdlog::info("client {}: refused {} without a key (401)", peer, route.target.substr(0, route.target.find('?')));
    co_return nullptr;
  }
  if (policy->config.pass_through()) {
    tenant = "fp:" + protocol::fingerprint(credential->secret);
    upstream_auth = (credential->scheme == protocol::AuthScheme::bearer ? "Bearer " : "Token ") + credential->secret;
  } else {
    auto t = policy->keys.tenant_for(credential->secret);
    if (!t) {
      co_await send_refusal(stream, sluice_error(401, "INVALID_AUTH", "Invalid credentials."), 0);
      spdlog::info("client {}: refused an unknown key (fingerprint {}) (401)", peer,
                   protocol::fingerprint(credential->secret));
      co_return nullptr;
    }
    tenant = std::move(*t);
    upstream_auth = "Token " + policy->upstream_key;
  }

  // 4. Classify into a pool and register: from here on the stream is in the
  // live table until it is gone.
  auto pool = policy->classifier.classify(protocol::endpoint_path(route.endpoint), all_params);
  registry::SessionInfo info;
  info.id = services.registry->next_id();
  info.tenant = tenant;
  info.pool = pool.value_or("");
  info.endpoint = route.endpoint;
  info.model = route.model;
  info.params = route.params;
  info.client_address = peer;
  info.user_agent = std::string(req[http::field::user_agent]);
  info.accepted = registry::wall_now();
  info.accepted_mono = registry::mono_ns();
  info.audio_bytes_per_second = route.audio_bytes_per_second;
  auto registration = services.registry->add(std::move(info));
  auto& entry = registration.entry();
  const auto id = entry.info().id;
  const auto arrived = std::chrono::steady_clock::now();

  // 5. Admission: a lease on the pool, now or after a wait in its queue.
  auto admitted = co_await admit(stream, services, pool.value_or(""), tenant);
  if (!admitted.lease) {
    using admission::Refusal;
    boost::json::object ev;
    ev["session_id"] = id;
    ev["tenant"] = tenant;
    ev["pool"] = admitted.pool;
    ev["path"] = protocol::endpoint_path(route.endpoint);
    ev["reason"] = admission::refusal_name(admitted.refusal);
    ev["limit"] = admitted.limit;
    ev["effective_limit"] = admitted.effective_limit;
    ev["in_use"] = admitted.in_use;
    ev["queued"] = admitted.queued;
    ev["waited_seconds"] = admitted.waited_seconds;
    auto type = admitted.refusal == Refusal::queue_timeout || admitted.refusal == Refusal::abandoned ||
                        (admitted.refusal == Refusal::tenant_quota && admitted.waited_seconds > 0)
                    ? "queue_timeout"
                    : "refusal";
    if (admitted.refusal == Refusal::abandoned) type = "queue_abandoned";
    services.events->record(type, std::move(ev));
    if (services.recorder) {
      history::Ending how;
      how.outcome = history::Outcome::refused;
      if (admitted.refusal == Refusal::abandoned) how.outcome = history::Outcome::abandoned;
      if (std::string_view(type) == "queue_timeout") how.outcome = history::Outcome::queue_timeout;
      how.outcome_reason = admission::refusal_name(admitted.refusal);
      how.closed_by = "gateway";
      services.recorder->not_opened(entry, how);
    }
    spdlog::info("[S{}] not admitted to pool '{}': {} (in use {}/{}, {} waiting, waited {:.2f} s)", id, admitted.pool,
                 admission::refusal_name(admitted.refusal), admitted.in_use, admitted.effective_limit,
                 admitted.queued, admitted.waited_seconds);
    if (admitted.refusal != Refusal::abandoned) {
      tcp_layer.expires_after(handshake_deadline);
      co_await send_refusal(stream, admission_refusal(admitted, tenant), id);
    }
    co_return nullptr;
  }
  auto lease = std::move(admitted.lease);
  auto pool_cfg = services.admission->pool_config(*pool).value_or(config::PoolConfig{});
  entry.set_state(registry::SessionState::connecting);
  entry.counters().admitted_ns.store(registry::mono_ns(), std::memory_order_relaxed);
  if (services.recorder) services.recorder->admitted(registration.shared());

  // 6. Upstream first: the client is accepted only once the vendor said 101.
  // A 429 although the pool had room is recorded with a snapshot of who held
  // the pool, then retried with jittered backoff while the deadline allows.
  upstream::ConnectRequest creq;
  creq.base = route.endpoint == protocol::Endpoint::agent ? policy->agent_base : policy->base;
  creq.target = creq.base.path_prefix + route.target;
  creq.authorization = std::move(upstream_auth);
  creq.user_agent = entry.info().user_agent;
  creq.session_header = std::string(req["x-deepgram-session-id"]);
  creq.timeout = cfg.upstream.connect_timeout;
  const auto& retry = cfg.upstream.retry_429;
  const auto retry_deadline = arrived + std::chrono::duration_cast<std::chrono::steady_clock::duration>(retry.deadline);
  auto leg = lease.open_leg();
  upstream::ConnectResult conn;
  std::minstd_rand rng(static_cast<unsigned>(id));  // small: it lives in every session's frame
  for (int attempt = 0;; ++attempt) {
    conn = co_await upstream::connect(tcp_layer.get_executor(), *services.upstream_tls, creq);
    if (conn.ok() || !conn.refusal || conn.refusal->status != 429) break;
    int accepted = open_in_pool(*services.registry, *pool, id);
    services.admission->on_upstream_429(*pool, accepted);
    auto status = services.admission->status(*pool);
    boost::json::object ev;
    ev["session_id"] = id;
    ev["pool"] = *pool;
    ev["tenant"] = tenant;
    ev["attempt"] = attempt + 1;
    ev["upstream_request_id"] = conn.refusal->request_id;
    ev["gateway_in_use"] = status ? status->in_use : 0;
    ev["upstream_open"] = accepted;
    ev["limit"] = status ? status->limit : 0;
    ev["effective_limit"] = status ? status->effective_limit : 0;
    ev["sessions"] = pool_snapshot(*services.registry, *pool);
    services.events->record("upstream_429", std::move(ev));
    double backoff = std::min(retry.max_backoff.count(), retry.initial_backoff.count() * std::pow(2.0, attempt));
    backoff *= std::uniform_real_distribution<double>(0.5, 1.5)(rng);
    auto wake = std::chrono::steady_clock::now() +
                std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(backoff));
    spdlog::warn("[S{}] upstream answered 429 with pool '{}' at {} of {} (vendor holds {} open); {}", id, *pool,
                 status ? status->in_use : 0, status ? status->limit : 0, accepted,
                 wake < retry_deadline ? fmt::format("retrying in {:.0f} ms", backoff * 1000) : std::string("passing it on"));
    if (wake >= retry_deadline) break;
    asio::steady_timer pause(tcp_layer.get_executor());
    pause.expires_at(wake);
    co_await pause.async_wait(use_tuple);
  }
  if (!conn.ok()) {
    leg.reset();
    lease.release();  // a failed handshake returns its lease at once
    HttpRefusal r;
    if (conn.refusal) {
      r.status = conn.refusal->status;
      r.body = conn.refusal->body;
      r.content_type = conn.refusal->content_type;
      r.request_id = conn.refusal->request_id;
      r.dg_error = conn.refusal->dg_error;
      r.retry_after = conn.refusal->retry_after;
      spdlog::info("[S{}] upstream refused {} with {} (request_id={}, dg-error=\"{}\")", id,
                   protocol::endpoint_path(route.endpoint), r.status, r.request_id.empty() ? "-" : r.request_id,
                   r.dg_error);
    } else if (conn.timed_out) {
      r = sluice_error(504, "UPSTREAM_TIMEOUT", "sluice: the upstream did not complete the handshake in time");
      spdlog::warn("[S{}] upstream handshake timed out", id);
    } else {
      r = sluice_error(502, "UPSTREAM_UNAVAILABLE", "sluice: cannot reach the upstream: " + conn.error.message());
      spdlog::warn("[S{}] upstream unreachable: {}", id, conn.error.message());
    }
    if (services.recorder) {
      history::Ending how;
      how.outcome = history::Outcome::upstream_refused;
      if (conn.refusal)
        how.outcome_reason = fmt::format("upstream answered {}", conn.refusal->status);
      else if (conn.timed_out)
        how.outcome_reason = "upstream handshake timed out";
      else
        how.outcome_reason = "upstream unreachable: " + conn.error.message();
      how.closed_by = "upstream";
      services.recorder->not_opened(entry, how);
    }
    tcp_layer.expires_after(handshake_deadline);
    co_await send_refusal(stream, r, id);
    co_return nullptr;
  }
  entry.set_request_id(conn.request_id);

  // 7. Accept the client, showing the vendor's request id and, for the
  // browser form, the scheme word as the selected subprotocol.
  // Bytes the client sent after its upgrade request belong to the relay.
  std::string client_pending(static_cast<const char*>(buffer.data().data()), buffer.size());
  buffer.clear();
  buffer.shrink_to_fit();
  std::optional<websocket::stream<ClientStream>> client_ws;
  client_ws.emplace(std::move(stream));
  auto& client = *client_ws;
  std::string selected = credential->via_subprotocol ? std::string(protocol::scheme_word(credential->scheme)) : "";
  client.set_option(websocket::stream_base::decorator(
      [&conn, &selected, id](websocket::response_type& res) {
        res.set(http::field::server, "sluice");
        if (!conn.request_id.empty()) res.set("dg-request-id", conn.request_id);
        res.set("x-sluice-session-id", std::to_string(id));
        if (!selected.empty()) res.set(http::field::sec_websocket_protocol, selected);
      }));
  beast::get_lowest_layer(client).expires_after(handshake_deadline);
  auto [aec] = co_await client.async_accept(req, use_tuple);
  if (aec) {
    spdlog::debug("[S{}] client went away during the upgrade: {}", id, aec.message());
    if (services.recorder) {
      history::Ending how;
      how.outcome = history::Outcome::abandoned;
      how.outcome_reason = "client left during the upgrade: " + aec.message();
      how.closed_by = "client";
      services.recorder->not_opened(entry, how);
    }
    std::visit([](auto& up) {
      boost::system::error_code ignored;
      relay_detail::socket_of(*up).close(ignored);
    }, conn.stream);
    co_return nullptr;
  }
  beast::get_lowest_layer(client).expires_never();
  entry.counters().upstream_open_ns.store(registry::mono_ns(), std::memory_order_relaxed);
  entry.set_state(registry::SessionState::open);
  if (services.recorder) services.recorder->opened(entry);
  spdlog::debug("[S{}] open: tenant={} pool={} {} request_id={} client={}", id, tenant, *pool,
                route.target.substr(0, route.target.find('?')), conn.request_id, peer);

  // 8. Relay until both legs are closed, on the bare streams: the WebSocket
  // objects of the handshakes (and their buffers) go now. The lease goes back
  // as soon as the upstream leg is gone.
  auto client_stream = release_stream(client);
  client_ws.reset();
  req = {};
  using Open = OpenSession<BareStream<ClientStream>>;
  co_return std::unique_ptr<Open>(new Open{std::move(client_stream), std::move(client_pending), std::move(conn.stream),
                                           std::move(conn.pending), std::move(registration), std::move(lease),
                                           std::move(leg), std::move(policy), std::move(pool_cfg)});
}

// Relays an opened stream until both legs are closed; the lease goes back as
// soon as the upstream leg is gone.
template <class Bare>
asio::awaitable<void> relay_session(std::unique_ptr<OpenSession<Bare>> s, SessionServices& services) {
  auto& entry = s->registration.entry();
  const auto& cfg = s->policy->config;
  co_await std::visit(
      [&](auto& upstream_stream) -> asio::awaitable<void> {
        Relay relay(s->client, *upstream_stream, std::move(s->client_pending), std::move(s->upstream_pending), entry,
                    cfg.relay, s->pool, *services.events, *services.registry, cfg.relay.ping_interval * 2,
                    *services.ticker);
        relay.on_upstream_gone([&] {
          entry.counters().closed_ns.store(registry::mono_ns(), std::memory_order_relaxed);
          if (services.recorder) services.recorder->upstream_closed(entry);
          s->leg.reset();
          s->lease.release();
        });
        co_await relay.run();
        log_summary(entry, relay.closed_by, relay.close_code, relay.close_reason);
        if (services.recorder) {
          history::Ending how;
          how.outcome = relay.reap_reason().empty() ? history::Outcome::completed : history::Outcome::reaped;
          how.outcome_reason = relay.reap_reason();
          how.closed_by = relay.closed_by;
          if (relay.close_code) how.close_code = relay.close_code;
          how.close_reason = relay.close_reason;
          services.recorder->finished(entry, how);
        }
      },
      s->upstream);
}

}  // namespace

SessionPolicy::SessionPolicy(config::Config c)
    : config(std::move(c)),
      keys(config.tenants),
      upstream_key(config.upstream.api_key),
      classifier(config.pools.empty() ? config::default_pools() : config.pools) {
  auto b = upstream::parse_upstream_base(config.upstream.effective_url());
  auto a = upstream::parse_upstream_base(config.upstream.effective_agent_url());
  if (!b) throw config::ConfigError("upstream.url", "not a ws:// or wss:// URL");
  if (!a) throw config::ConfigError("upstream.agent_url", "not a ws:// or wss:// URL");
  base = *b;
  agent_base = *a;
}

asio::awaitable<void> run_connection(tcp::socket socket, std::shared_ptr<SessionServices> services) {
  auto peer = client_address(socket);
  if (!services->client_tls) {
    auto open = co_await serve(beast::tcp_stream(std::move(socket)), std::move(peer), services);
    if (open) co_await relay_session(std::move(open), *services);
    co_return;
  }
  beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *services->client_tls);
  auto policy = services->policy.load();
  beast::get_lowest_layer(stream).expires_after(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(policy->config.client.handshake_timeout));
  auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, use_tuple);
  if (ec) {
    spdlog::debug("client {}: TLS handshake failed: {}", peer, ec.message());
    co_return;
  }
  auto open = co_await serve(std::move(stream), std::move(peer), services);
  if (open) co_await relay_session(std::move(open), *services);
}

}  // namespace sluice::session
