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
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <limits>
#include <random>
#include <sys/socket.h>

#include "cluster/agent.hpp"
#include "cluster/wake.hpp"
#include "history/recorder.hpp"
#include "net/listener.hpp"
#include "protocol/credential.hpp"
#include "protocol/endpoint.hpp"
#include "protocol/errors.hpp"
#include "protocol/message.hpp"
#include "session/relay.hpp"
#include "session/stream_state.hpp"
#include "session/upgrade.hpp"
#include "util/log.hpp"
#include "util/time_json.hpp"

namespace sluice::session {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

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

template <class Stream>
asio::awaitable<void> send_refusal(Stream& stream, const HttpRefusal& r, std::uint64_t session_id) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), 11};
  res.set(http::field::server, "sluice");
  res.set(http::field::content_type, r.content_type.empty() ? "application/json" : r.content_type);
  if (!r.request_id.empty()) res.set("dg-request-id", r.request_id);
  if (!r.dg_error.empty()) res.set("dg-error", r.dg_error);
  if (!r.retry_after.empty()) res.set(http::field::retry_after, r.retry_after);
  if (session_id) res.set("x-sluice-session-id", std::to_string(session_id));
  for (const auto& [name, value] : r.headers) res.set(name, value);
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
  std::unique_ptr<StreamState> state;  // the entry, the lease, the leg, the history row
  std::shared_ptr<const SessionPolicy> policy;  // the version this stream keeps
  config::PoolConfig pool;
  std::optional<ResumeSetup> resume;  // a resumable stream (docs/resume.md)
};

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
  detail["release_delay_seconds"] = std::round(r.release_delay_seconds * 1000) / 1000;
  if (r.refusal == Refusal::upstream_429)
    detail["upstream_request_id"] =
        r.upstream_request_id.empty() ? boost::json::value(nullptr) : boost::json::value(r.upstream_request_id);
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
    case Refusal::cluster_unavailable:
      status = 503;
      message = fmt::format("sluice: the fleet's shared state (Redis) cannot be reached, and pool '{}' admits no more "
                            "streams on this instance alone",
                            r.pool);
      break;
    case Refusal::tenant_quota:
      message = fmt::format("sluice: tenant '{}' is at its quota of {} concurrent streams in pool '{}'; waited {:.1f} s",
                            tenant, r.tenant_max, r.pool, r.waited_seconds);
      break;
    case Refusal::queue_full:
      message = fmt::format("sluice: pool '{}' is full (limit {}, {} in use) and its queue is full ({} waiting)", r.pool,
                            r.effective_limit, r.in_use, r.queued);
      break;
    case Refusal::upstream_429:
      message = fmt::format("sluice: the upstream refused pool '{}' with 429 until the retry deadline (limit {}, {} in "
                            "use); waited {:.1f} s",
                            r.pool, r.effective_limit, r.in_use, r.waited_seconds);
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
  // Retry-After: the pool's release delay in whole seconds, rounded up, at least 1.
  if (status != 403) out.retry_after = std::to_string(std::max(1, static_cast<int>(std::ceil(r.release_delay_seconds))));
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

// Records an upstream-429 event. In cluster mode the vendor counts the
// fleet's streams, so the event also names every instance's holders of the
// pool (`fleet_holders`), read on the cluster worker thread and recorded
// from there: the stream never waits for Redis.
void record_429(SessionServices& services, const std::string& pool, boost::json::object ev) {
  if (!services.cluster) {
    services.events->record("upstream_429", std::move(ev));
    return;
  }
  services.cluster->run([events = services.events, pool, ev = std::move(ev)](cluster::LeaseStore* store) mutable {
    boost::json::value holders = nullptr;
    if (store) {
      try {
        boost::json::array list;
        for (const auto& h : store->holders(pool)) {
          boost::json::object o;
          o["instance"] = h.instance;
          o["session"] = h.session;
          o["tenant"] = h.tenant;
          o["request_id"] = h.request_id.empty() ? boost::json::value(nullptr) : boost::json::value(h.request_id);
          o["opened_at"] = util::time_json(h.opened_ms * 1'000'000);
          list.push_back(std::move(o));
        }
        holders = std::move(list);
      } catch (const cluster::RedisError& e) {
        ev["fleet_error"] = e.what();
      }
    } else {
      ev["fleet_error"] = "the cluster link is stopping";
    }
    ev["fleet_holders"] = std::move(holders);
    events->record("upstream_429", std::move(ev));
  });
}

// What a stage hands back when the stream cannot go on: the answer for the
// client (none when the client is gone), the ending for the history (a
// registered stream's only row), and the log line.
struct Refused {
  std::optional<HttpRefusal> answer;
  std::optional<history::Ending> ending;
  std::string log;
  spdlog::level::level_enum level = spdlog::level::info;
  // Why, for sluice_refusals_total; empty when admission counted it already
  // or when nothing was refused (the client left).
  std::string_view reason;
};

Refused refused(HttpRefusal answer, std::string log = {}, std::string_view reason = {}) {
  Refused r;
  r.answer = std::move(answer);
  r.log = std::move(log);
  r.reason = reason;
  return r;
}

history::Ending ending(history::Outcome outcome, std::string reason, std::string closed_by) {
  history::Ending how;
  how.outcome = outcome;
  how.outcome_reason = std::move(reason);
  how.closed_by = std::move(closed_by);
  return how;
}

// A stage's result: its value, or a refusal.
template <class T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}
  Result(Refused r) : refused_(std::move(r)) {}
  explicit operator bool() const { return value_.has_value(); }
  T& operator*() { return *value_; }
  T* operator->() { return &*value_; }
  Refused& refusal() { return refused_; }

 private:
  std::optional<T> value_;
  Refused refused_;
};

std::chrono::steady_clock::duration handshake_deadline(const config::Config& cfg) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(cfg.client.handshake_timeout);
}

// The one way a stream that cannot go on ends: its history row (when it is
// registered), one log line, and the answer to the client (when it is still
// there), under the handshake deadline.
// The part of a refusal that needs no client: the row and the log line.
void record_refusal(const Refused& r, StreamState* state) {
  if (state && r.ending) state->not_opened(*r.ending, r.log, r.level);  // its ending line
  else if (!r.log.empty()) spdlog::log(r.level, "{}", r.log);
}

template <class ClientStream>
asio::awaitable<void> refuse(ClientStream& stream, Refused r, StreamState* state, const config::Config& cfg,
                             admission::Controller& admission) {
  if (!r.reason.empty()) admission.count_refusal(state ? state->entry().info().pool : std::string(), r.reason);
  record_refusal(r, state);
  if (!r.answer) co_return;
  beast::get_lowest_layer(stream).expires_after(handshake_deadline(cfg));
  co_await send_refusal(stream, *r.answer, state ? state->id() : 0);
}

// 1. The upgrade request, within the client handshake deadline. Bytes read
// past it stay in `buffer`.
template <class ClientStream>
asio::awaitable<Result<http::request<http::empty_body>>> read_request(ClientStream& stream, beast::flat_buffer& buffer,
                                                                      const config::Config& cfg, const std::string& peer) {
  http::request_parser<http::empty_body> parser;
  parser.header_limit(cfg.client.header_limit);
  parser.body_limit(0);
  auto& tcp_layer = beast::get_lowest_layer(stream);
  tcp_layer.expires_after(handshake_deadline(cfg));
  auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_tuple);
  (void)n;
  if (ec) {
    Refused r;
    r.level = spdlog::level::debug;
    if (ec == beast::error::timeout) {
      r.log = fmt::format("client {}: no complete upgrade request within the deadline", peer);
      r.reason = "handshake_timeout";
    } else if (!expected_ending(ec)) {
      r.answer = sluice_error(400, "Bad Request", "sluice: malformed HTTP request");
      r.log = fmt::format("client {}: malformed HTTP request: {}", peer, ec.message());
      r.reason = "bad_request";
    }
    co_return r;
  }
  // From here the waits are the gateway's own, each bounded (queue, connect).
  tcp_layer.expires_never();
  co_return parser.release();
}

// 2. Route: the path names the endpoint, the request must be a complete
// WebSocket upgrade (session/upgrade.hpp); the query goes upstream untouched.
Result<Route> route(const http::request<http::empty_body>& req, const std::string& peer) {
  auto r = read_route(req);
  if (r.route) return std::move(*r.route);
  std::string log;
  if (r.logged) log = fmt::format("client {}: refused {} ({}): {}", peer, r.path, r.refusal->status, r.refusal->dg_error);
  auto status = r.refusal->status;
  auto out = refused(std::move(*r.refusal), std::move(log));
  out.reason = status == 404   ? "not_found"
               : status == 405 ? "method_not_allowed"
               : status == 426 ? "upgrade_required"
                               : "bad_request";
  return out;
}

// Who the client is and what the vendor is shown.
struct Identity {
  std::string tenant;
  std::string upstream_auth;  // the vendor's Authorization value: a secret, never logged
  bool via_subprotocol = false;
  std::string subprotocol;  // the one to select: the scheme word as the client offered it
  protocol::AuthScheme scheme = protocol::AuthScheme::token;
};

// 3. Authenticate: a sluice key (virtual-key mode) or the client's own
// Deepgram key (pass-through mode). No upstream connection without one.
Result<Identity> authenticate(const http::request<http::empty_body>& req, const SessionPolicy& policy,
                              const std::string& peer, const Route& route) {
  auto credential =
      protocol::parse_credential(req[http::field::authorization], req[http::field::sec_websocket_protocol]);
  if (!credential)
    return refused(sluice_error(401, "INVALID_AUTH",
                                "sluice: no API key; send Authorization: Token <key> or "
                                "Sec-WebSocket-Protocol: token, <key>"),
                   fmt::format("client {}: refused {} without a key (401)", peer,
                               route.target.substr(0, route.target.find('?'))),
                   "unauthorized");
  Identity id;
  id.via_subprotocol = credential->via_subprotocol;
  id.subprotocol = credential->subprotocol;
  id.scheme = credential->scheme;
  if (policy.config.pass_through()) {
    id.tenant = "fp:" + protocol::fingerprint(credential->secret);
    id.upstream_auth = (credential->scheme == protocol::AuthScheme::bearer ? "Bearer " : "Token ") + credential->secret;
    return id;
  }
  auto t = policy.keys.tenant_for(credential->secret);
  if (!t)
    return refused(sluice_error(401, "INVALID_AUTH", "Invalid credentials."),
                   fmt::format("client {}: refused an unknown key (fingerprint {}) (401)", peer,
                               protocol::fingerprint(credential->secret)),
                   "unauthorized");
  id.tenant = std::move(*t);
  id.upstream_auth = "Token " + policy.upstream_key;
  return id;
}

// 4. Classify into a pool and register: from here on the stream is in the
// live table (state `queued`) until its StreamState is gone.
std::unique_ptr<StreamState> register_stream(SessionServices& services, const SessionPolicy& policy, const Route& route,
                                             const Identity& identity, const http::request<http::empty_body>& req,
                                             const std::string& peer) {
  auto pool = policy.classifier.classify(protocol::endpoint_path(route.endpoint), route.all_params);
  registry::SessionInfo info;
  info.id = services.registry->next_id();
  info.tenant = identity.tenant;
  info.pool = pool.value_or("");
  info.endpoint = route.endpoint;
  info.model = route.model;
  info.params = route.params;
  info.client_address = peer;
  info.user_agent = std::string(req[http::field::user_agent]);
  info.accepted = registry::wall_now();
  info.accepted_mono = registry::mono_ns();
  info.audio_bytes_per_second = route.audio_bytes_per_second;
  return std::make_unique<StreamState>(services.recorder, services.registry->add(std::move(info)));
}

// 5b. Cluster mode: the fleet's lease comes first, then the instance's. A
// stream takes its place on the fleet's wait list as it arrives, whichever
// instance it reached: were the instance's own queue first, an instance with
// more arrivals than its pool's limit would hold its surplus back from the
// fleet's list while other instances' later arrivals passed them. Waits,
// woken by releases anywhere in the fleet and in the fleet's order, until
// Redis grants it, the pool's queue deadline passes or the client leaves.
struct FleetWait {
  cluster::FleetLease lease;  // when granted (or adopted: Redis away, local_share)
  admission::Refusal refusal = admission::Refusal::none;
  int in_use = 0, tenant_in_use = 0;  // the fleet's, when refused for room
  double waited_seconds = 0;
};

template <class ClientStream>
asio::awaitable<FleetWait> wait_in_fleet(ClientStream& stream, SessionServices& services, StreamState& state) {
  using admission::Refusal;
  auto& agent = *services.cluster;
  auto& wake = *services.fleet_wake;
  const auto& info = state.entry().info();
  const auto& pool = info.pool;
  auto& sock = beast::get_lowest_layer(stream).socket();
  const auto arrived = std::chrono::steady_clock::now();
  auto terms = services.admission->fleet_terms(pool, info.tenant);
  const auto deadline = arrived + std::chrono::duration_cast<std::chrono::steady_clock::duration>(terms.queue_timeout);
  const bool may_wait = terms.queue_timeout > config::Seconds(0) && wake.waiting(pool) < terms.max_queue;

  cluster::AcquireRequest q;
  q.lease.id = fmt::format("{}/{}/{}", agent.instance(), util::log::run_id(), state.id());
  q.lease.instance = agent.instance();
  q.lease.session = std::to_string(state.id());
  q.lease.tenant = info.tenant;
  q.lease.pool = pool;
  q.lease.opened_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  q.wait = may_wait;

  FleetWait w;
  auto timer = std::make_shared<asio::steady_timer>(sock.get_executor());
  auto registration = wake.add(pool, timer);
  auto abandoned = std::make_shared<bool>(false);
  auto watching = std::make_shared<bool>(true);
  bool listed = false;
  for (bool first = true;; first = false) {
    terms = services.admission->fleet_terms(pool, info.tenant);
    if (terms.closed) {
      w.refusal = Refusal::shutting_down;
      break;
    }
    q.limit = terms.effective_limit;
    q.tenant_max = terms.tenant_max;
    q.release_delay = terms.release_delay;
    q.priority = terms.priority;
    q.reservations = terms.reservations;
    const auto generation = wake.generation();
    auto out = co_await agent.acquire(q);
    if (out.lease) {
      w.lease = std::move(out.lease);
      break;
    }
    if (!out.ok) {
      // Redis cannot be reached: the configured choice.
      const auto& cl = services.policy.load()->config.cluster;
      auto st = services.admission->status(pool);
      const int share = std::max(1, terms.effective_limit / std::max(1, cl.expected_instances));
      if (cl.on_redis_loss == "local_share" && st && st->in_use < share) {
        // Counted in the fleet as soon as Redis answers again.
        q.wait = false;
        w.lease = agent.adopt(q);
        ++services.cluster_degraded_admissions;
        spdlog::warn("[S{}] admitted on this instance's share of pool '{}' ({} of {}): {}", state.id(), pool,
                     st->in_use + 1, share, out.error);
      } else {
        spdlog::warn("[S{}] not admitted: {}", state.id(), out.error);
        w.refusal = Refusal::cluster_unavailable;
      }
      break;
    }
    listed = out.result.outcome == cluster::AcquireResult::Outcome::pool_full && may_wait;
    w.in_use = out.result.in_use;
    w.tenant_in_use = out.result.tenant_in_use;
    if (!may_wait) {
      // No queue (queue_timeout 0), or this instance's share of the fleet's
      // list (max_queue) is taken.
      w.refusal = out.result.outcome == cluster::AcquireResult::Outcome::tenant_full ? Refusal::tenant_quota
                                                                                      : Refusal::queue_full;
      break;
    }
    if (*abandoned) {
      w.refusal = Refusal::abandoned;
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      w.refusal = out.result.outcome == cluster::AcquireResult::Outcome::tenant_full ? Refusal::tenant_quota
                                                                                      : Refusal::queue_timeout;
      break;
    }
    if (first) {
      // The client may leave while it waits for the fleet.
      sock.async_wait(tcp::socket::wait_read, [&sock, timer, abandoned, watching](boost::system::error_code ec) {
        if (ec || !*watching) return;
        char byte;
        auto n = ::recv(sock.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
          *abandoned = true;
          timer->cancel();
        }
      });
    }
    if (wake.generation() != generation) continue;  // a release was heard while Redis answered
    // Woken by a release anywhere, or when the soonest lease lapses (a
    // crashed instance's capacity returns unannounced), or at the deadline.
    auto until = deadline;
    if (out.result.next_expiry)
      until = std::min(until, std::chrono::steady_clock::now() + *out.result.next_expiry + std::chrono::milliseconds(5));
    timer->expires_at(until);
    co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
  }
  *watching = false;
  boost::system::error_code ignored;
  sock.cancel(ignored);
  if (w.refusal != Refusal::none && listed) agent.leave(pool, q.lease.id);
  w.waited_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - arrived).count();
  co_return w;
}

// 5 in cluster mode: the fleet's lease, then the instance's (at once, but for
// a local cooldown or limit change meanwhile), which carries it from then on.
template <class ClientStream>
asio::awaitable<admission::AdmitResult> admit_clustered(ClientStream& stream, SessionServices& services,
                                                         StreamState& state) {
  const auto& info = state.entry().info();
  auto terms = services.admission->fleet_terms(info.pool, info.tenant);
  // No such pool, or shutting down: the instance's own refusal.
  if (!terms.found || terms.closed) co_return co_await admit(stream, services, info.pool, info.tenant);
  auto fleet = co_await wait_in_fleet(stream, services, state);
  if (fleet.refusal != admission::Refusal::none) {
    auto r = services.admission->refuse(info.pool, info.tenant, fleet.refusal);
    r.waited_seconds = fleet.waited_seconds;
    if (fleet.refusal != admission::Refusal::shutting_down && fleet.refusal != admission::Refusal::cluster_unavailable) {
      r.in_use = fleet.in_use;  // the fleet's, which refused
      r.tenant_in_use = fleet.tenant_in_use;
    }
    co_return r;
  }
  auto admitted = co_await admit(stream, services, info.pool, info.tenant);
  admitted.waited_seconds += fleet.waited_seconds;
  if (admitted.lease) admitted.lease.attach(std::move(fleet.lease));
  co_return admitted;  // refused locally: the fleet's lease goes back as `fleet` ends
}

// 5. Admission: a lease on the pool, now or after a wait in its queue.
template <class ClientStream>
asio::awaitable<std::optional<Refused>> admit_stream(ClientStream& stream, SessionServices& services, StreamState& state,
                                                     const Route& route) {
  auto& entry = state.entry();
  const auto& tenant = entry.info().tenant;
  admission::AdmitResult admitted;
  if (services.cluster)
    admitted = co_await admit_clustered(stream, services, state);
  else
    admitted = co_await admit(stream, services, entry.info().pool, tenant);
  if (admitted.lease) {
    state.admitted(std::move(admitted.lease));
    co_return std::nullopt;
  }
  using admission::Refusal;
  const auto id = state.id();
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
  std::string_view type = admitted.refusal == Refusal::queue_timeout ||
                                  (admitted.refusal == Refusal::tenant_quota && admitted.waited_seconds > 0)
                              ? "queue_timeout"
                              : "refusal";
  if (admitted.refusal == Refusal::abandoned) type = "queue_abandoned";
  services.events->record(std::string(type), std::move(ev));
  Refused r;
  auto outcome = type == "queue_abandoned" ? history::Outcome::abandoned
                 : type == "queue_timeout" ? history::Outcome::queue_timeout
                                           : history::Outcome::refused;
  r.ending = ending(outcome, std::string(admission::refusal_name(admitted.refusal)), "gateway");
  r.log = fmt::format("[S{}] not admitted to pool '{}': {} (in use {}/{}, {} waiting, waited {:.2f} s)", id,
                      admitted.pool, admission::refusal_name(admitted.refusal), admitted.in_use,
                      admitted.effective_limit, admitted.queued, admitted.waited_seconds);
  if (admitted.refusal != Refusal::abandoned) r.answer = admission_refusal(admitted, tenant);
  co_return r;
}

// The vendor-side request: the stream's path, query and credential.
upstream::ConnectRequest connect_request(const SessionPolicy& policy, const Route& route, const Identity& identity,
                                         const registry::SessionEntry& entry,
                                         const http::request<http::empty_body>& req) {
  upstream::ConnectRequest creq;
  creq.base = route.endpoint == protocol::Endpoint::agent ? policy.agent_base : policy.base;
  creq.target = creq.base.path_prefix + route.target;
  creq.authorization = identity.upstream_auth;
  creq.user_agent = entry.info().user_agent;
  creq.session_header = std::string(req["x-deepgram-session-id"]);
  creq.timeout = policy.config.upstream.connect_timeout;
  return creq;
}

// A stream is resumable when its pool says so, it is /v1/listen or
// /v2/listen, and its audio format is declared raw (the replay buffer and
// the timeline count seconds of audio from it).
std::optional<ResumeSetup> resume_setup(SessionServices& services, const SessionPolicy& policy,
                                        const config::PoolConfig& pool, const Route& route, const Identity& identity,
                                        const registry::SessionEntry& entry,
                                        const http::request<http::empty_body>& req, asio::any_io_executor executor) {
  if (!pool.resume.enabled) return std::nullopt;
  if (route.endpoint != protocol::Endpoint::listen_v1 && route.endpoint != protocol::Endpoint::listen_v2)
    return std::nullopt;
  if (route.audio_bytes_per_second <= 0 || route.audio_block_bytes == 0) {
    spdlog::debug("[S{}] not resumable: the audio format is not declared raw (encoding and sample_rate)",
                  entry.info().id);
    return std::nullopt;
  }
  ResumeSetup setup;
  setup.cfg = pool.resume;
  setup.flux = route.endpoint == protocol::Endpoint::listen_v2;
  setup.bytes_per_second = route.audio_bytes_per_second;
  setup.block = route.audio_block_bytes;
  auto creq = connect_request(policy, route, identity, entry, req);
  // The gateway's services outlive every session (see SessionServices).
  setup.reconnect = [&services, creq = std::move(creq), executor]() -> asio::awaitable<upstream::ConnectResult> {
    co_return co_await upstream::connect(executor, *services.upstream_tls, creq);
  };
  return setup;
}

// 6. Upstream first: the client is accepted only once the vendor said 101.
// A 429 although the pool had room is recorded with a snapshot of who held
// the pool, then retried when the controller says so; in the end the client
// gets the gateway's own 429, never the vendor's.
asio::awaitable<Result<upstream::ConnectResult>> connect_upstream(SessionServices& services, const SessionPolicy& policy,
                                                                  StreamState& state, const Route& route,
                                                                  Identity& identity,
                                                                  const http::request<http::empty_body>& req,
                                                                  asio::any_io_executor executor) {
  auto& entry = state.entry();
  const auto id = state.id();
  const auto& pool = entry.info().pool;
  const auto& tenant = entry.info().tenant;
  auto creq = connect_request(policy, route, identity, entry, req);
  state.connecting();
  upstream::ConnectResult conn;
  admission::Upstream429Decision gave_up;  // the last refusal's decision, when it ended the retries
  for (int attempt = 0;; ++attempt) {
    conn = co_await upstream::connect(executor, *services.upstream_tls, creq);
    const bool in_fleet = services.cluster && state.lease().in_fleet();
    if (conn.ok()) {
      services.admission->on_upstream_accepted(state.lease());
      if (in_fleet) {
        auto terms = services.admission->fleet_terms(pool, tenant);
        services.cluster->accepted(pool, state.lease().fleet_id(), terms.limit, terms.release_delay);
      }
    }
    if (conn.ok() || !conn.refusal || conn.refusal->status != 429) break;
    // The controller learns from the refusal and decides (in cluster mode on
    // the fleet's verdict: it counts the fleet's streams); retries run while
    // the lease is younger than upstream.retry_429.deadline.
    std::optional<cluster::RefusalVerdict> verdict;
    if (in_fleet) {
      auto terms = services.admission->fleet_terms(pool, tenant);
      verdict = co_await services.cluster->refused(pool, state.lease().fleet_id(), terms.limit, terms.release_delay);
    }
    auto d = services.admission->on_upstream_429(state.lease(), attempt, verdict ? &*verdict : nullptr);
    boost::json::object ev;
    ev["session_id"] = id;
    ev["pool"] = pool;
    ev["tenant"] = tenant;
    ev["attempt"] = attempt + 1;
    ev["upstream_request_id"] = conn.refusal->request_id;
    ev["gateway_in_use"] = d.gateway_in_use;
    ev["upstream_open"] = d.upstream_open;
    ev["limit"] = d.limit;
    ev["effective_limit"] = d.effective_limit;
    ev["cooling"] = d.cooling;
    ev["release_delay_seconds"] = std::round(d.release_delay_seconds * 1000) / 1000;
    ev["explained_by_releases"] = d.explained;
    ev["retry_in_ms"] = d.retry ? boost::json::value(std::chrono::duration_cast<std::chrono::milliseconds>(d.wait).count())
                                : boost::json::value(nullptr);
    ev["sessions"] = pool_snapshot(*services.registry, pool);
    if (verdict) {
      // The fleet's view: its leases (this one included) and its limit.
      ev["fleet_in_use"] = verdict->in_use;
      ev["fleet_effective_limit"] = verdict->effective_limit;
    } else if (in_fleet) {
      ev["fleet_error"] = "the fleet's Redis could not be asked; nothing was learned";
    }
    record_429(services, pool, std::move(ev));
    spdlog::warn("[S{}] upstream answered 429 with pool '{}' at {} of {} (vendor holds {} open, {} cooling, release "
                 "delay {:.2f} s); {}",
                 id, pool, d.gateway_in_use, d.limit, d.upstream_open, d.cooling, d.release_delay_seconds,
                 d.retry ? fmt::format("retrying in {} ms", std::chrono::duration_cast<std::chrono::milliseconds>(d.wait).count())
                         : std::string("answering 429"));
    if (!d.retry) {
      gave_up = std::move(d);
      gave_up.refusal.upstream_request_id = conn.refusal->request_id;
      break;
    }
    asio::steady_timer pause(executor);
    pause.expires_after(d.wait);
    co_await pause.async_wait(use_tuple);
  }
  if (conn.ok()) co_return std::move(conn);
  Refused r;
  if (conn.refusal && conn.refusal->status == 429) {
    // Never the vendor's bare 429: the gateway's own, with what it knows.
    gave_up.refusal.waited_seconds = state.seconds_since_arrival();
    r.answer = admission_refusal(gave_up.refusal, tenant);
    r.log = fmt::format("[S{}] upstream refused {} with 429 until the retry deadline (request_id={}); answering the "
                        "gateway's 429",
                        id, protocol::endpoint_path(route.endpoint),
                        conn.refusal->request_id.empty() ? "-" : conn.refusal->request_id);
    r.ending = ending(history::Outcome::upstream_refused, "upstream answered 429", "upstream");
  } else if (conn.refusal) {
    HttpRefusal a;
    a.status = conn.refusal->status;
    a.body = conn.refusal->body;
    a.content_type = conn.refusal->content_type;
    a.request_id = conn.refusal->request_id;
    a.dg_error = conn.refusal->dg_error;
    a.retry_after = conn.refusal->retry_after;
    r.log = fmt::format("[S{}] upstream refused {} with {} (request_id={}, dg-error=\"{}\")", id,
                        protocol::endpoint_path(route.endpoint), a.status, a.request_id.empty() ? "-" : a.request_id,
                        a.dg_error);
    r.ending = ending(history::Outcome::upstream_refused, fmt::format("upstream answered {}", a.status), "upstream");
    r.reason = "upstream_error";
    r.answer = std::move(a);
  } else if (conn.timed_out) {
    r.answer = sluice_error(504, "UPSTREAM_TIMEOUT", "sluice: the upstream did not complete the handshake in time");
    r.log = fmt::format("[S{}] upstream handshake timed out", id);
    r.level = spdlog::level::warn;
    r.ending = ending(history::Outcome::upstream_refused, "upstream handshake timed out", "upstream");
    r.reason = "upstream_timeout";
  } else {
    r.answer = sluice_error(502, "UPSTREAM_UNAVAILABLE", "sluice: cannot reach the upstream: " + conn.error.message());
    r.log = fmt::format("[S{}] upstream unreachable: {}", id, conn.error.message());
    r.level = spdlog::level::warn;
    r.ending = ending(history::Outcome::upstream_refused, "upstream unreachable: " + conn.error.message(), "upstream");
    r.reason = "upstream_unreachable";
  }
  co_return r;
}

// 7. Accept the client, showing the vendor's request id and, for the
// browser form, the scheme word as the selected subprotocol. Returns the
// bare stream under the accepted WebSocket: the WebSocket object (and its
// buffers) goes now.
template <class ClientStream>
asio::awaitable<Result<BareStream<ClientStream>>> accept_client(ClientStream stream,
                                                                 http::request<http::empty_body>& req,
                                                                 const upstream::ConnectResult& conn,
                                                                 const Identity& identity, StreamState& state,
                                                                 const config::Config& cfg) {
  std::optional<websocket::stream<ClientStream>> ws;
  ws.emplace(std::move(stream));
  const auto id = state.id();
  const std::string& selected = identity.subprotocol;
  ws->set_option(websocket::stream_base::decorator([&conn, &selected, id](websocket::response_type& res) {
    res.set(http::field::server, "sluice");
    if (!conn.request_id.empty()) res.set("dg-request-id", conn.request_id);
    res.set("x-sluice-session-id", std::to_string(id));
    if (!selected.empty()) res.set(http::field::sec_websocket_protocol, selected);
  }));
  beast::get_lowest_layer(*ws).expires_after(handshake_deadline(cfg));
  auto [ec] = co_await ws->async_accept(req, use_tuple);
  if (ec) {
    Refused r;
    r.log = fmt::format("[S{}] client went away during the upgrade: {}", id, ec.message());
    r.level = spdlog::level::debug;
    r.ending = ending(history::Outcome::abandoned, "client left during the upgrade: " + ec.message(), "client");
    co_return r;
  }
  beast::get_lowest_layer(*ws).expires_never();
  co_return release_stream(*ws);
}

// A stream from its upgrade request to the relay: each stage returns its
// result or a refusal, and every refusal takes the one path (refuse()).
// serve() hands what the relay needs to relay_session() and returns first,
// so that the handshake's locals (a coroutine frame of several KiB) are gone
// before a long-lived stream starts.
template <class ClientStream>
asio::awaitable<std::unique_ptr<OpenSession<BareStream<ClientStream>>>> serve(ClientStream stream, std::string peer,
                                                                              std::shared_ptr<SessionServices> services_ptr) {
  auto& services = *services_ptr;
  auto policy = services.policy.load();
  const auto& cfg = policy->config;

  beast::flat_buffer buffer;
  auto req = co_await read_request(stream, buffer, cfg, peer);
  if (!req) {
    co_await refuse(stream, std::move(req.refusal()), nullptr, cfg, *services.admission);
    co_return nullptr;
  }
  auto route = sluice::session::route(*req, peer);
  if (!route) {
    co_await refuse(stream, std::move(route.refusal()), nullptr, cfg, *services.admission);
    co_return nullptr;
  }
  auto identity = authenticate(*req, *policy, peer, *route);
  if (!identity) {
    co_await refuse(stream, std::move(identity.refusal()), nullptr, cfg, *services.admission);
    co_return nullptr;
  }
  auto state = register_stream(services, *policy, *route, *identity, *req, peer);
  if (auto no = co_await admit_stream(stream, services, *state, *route)) {
    co_await refuse(stream, std::move(*no), state.get(), cfg, *services.admission);
    co_return nullptr;
  }
  auto pool_cfg = services.admission->pool_config(state->entry().info().pool).value_or(config::PoolConfig{});
  auto resume = resume_setup(services, *policy, pool_cfg, *route, *identity, state->entry(), *req,
                             beast::get_lowest_layer(stream).get_executor());
  auto conn = co_await connect_upstream(services, *policy, *state, *route, *identity, *req,
                                        beast::get_lowest_layer(stream).get_executor());
  if (!conn) {
    co_await refuse(stream, std::move(conn.refusal()), state.get(), cfg, *services.admission);
    co_return nullptr;
  }
  state->entry().set_request_id(conn->request_id);
  // Bytes the client sent after its upgrade request belong to the relay.
  std::string client_pending(static_cast<const char*>(buffer.data().data()), buffer.size());
  buffer = {};
  auto client = co_await accept_client(std::move(stream), *req, *conn, *identity, *state, cfg);
  if (!client) {
    std::visit([](auto& up) {
      boost::system::error_code ignored;
      relay_detail::socket_of(*up).close(ignored);
    }, conn->stream);
    record_refusal(client.refusal(), state.get());  // the client is gone: nothing to answer
    co_return nullptr;
  }
  state->opened();
  using Open = OpenSession<BareStream<ClientStream>>;
  co_return std::unique_ptr<Open>(new Open{std::move(*client), std::move(client_pending), std::move(conn->stream),
                                           std::move(conn->pending), std::move(state), std::move(policy),
                                           std::move(pool_cfg), std::move(resume)});
}

// Relays an opened stream until both legs are closed; the lease goes back as
// soon as the upstream leg is gone.
template <class Bare>
asio::awaitable<void> relay_session(std::unique_ptr<OpenSession<Bare>> s, SessionServices& services) {
  auto& state = *s->state;
  auto& entry = state.entry();
  const auto& cfg = s->policy->config;
  co_await std::visit(
      [&](auto& upstream_stream) -> asio::awaitable<void> {
        Relay relay(s->client, *upstream_stream, std::move(s->client_pending), std::move(s->upstream_pending), entry,
                    cfg.relay, s->pool, *services.events, *services.registry, cfg.relay.ping_interval * 2,
                    *services.ticker);
        relay.on_upstream_gone([&] { state.upstream_gone(); });
        if (s->resume) relay.enable_resume(std::move(*s->resume));
        co_await relay.run();
        auto how = ending(relay.reap_reason().empty() ? history::Outcome::completed : history::Outcome::reaped,
                          relay.reap_reason(), relay.closed_by);
        if (relay.close_code) how.close_code = relay.close_code;
        how.close_reason = relay.close_reason;
        state.finished(how, fmt::format("[S{}] closed by {} ({} \"{}\") after {:.1f}s", entry.info().id,
                                        relay.closed_by, relay.close_code, relay.close_reason,
                                        entry.info().age_seconds(registry::mono_ns())));
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
