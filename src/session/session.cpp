#include "session/session.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
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
#include <boost/url/parse.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>
#include <charconv>

#include "protocol/audio.hpp"
#include "protocol/credential.hpp"
#include "protocol/endpoint.hpp"
#include "protocol/errors.hpp"
#include "protocol/message.hpp"
#include "session/write_gate.hpp"

namespace sluice::session {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
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
  if (ec) return "unknown";
  return ep.address().is_v6() ? "[" + ep.address().to_string() + "]:" + std::to_string(ep.port())
                              : ep.address().to_string() + ":" + std::to_string(ep.port());
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

// The relay of one admitted stream: two pumps and a control task on the
// session's strand. Invariant: each leg has exactly one reader (its pump) and
// writes go through that leg's WriteGate, so the control task may inject a
// close message or a close without racing a pump.
template <class ClientWs, class UpstreamWs>
class Relay {
 public:
  Relay(ClientWs& client, UpstreamWs& upstream, registry::SessionEntry& entry,
        const config::RelayConfig& cfg)
      : client_(client),
        upstream_(upstream),
        entry_(entry),
        counters_(entry.counters()),
        cfg_(cfg),
        client_gate_(client.get_executor()),
        upstream_gate_(client.get_executor()),
        control_(std::make_shared<Control>(client.get_executor())) {}

  asio::awaitable<void> run() {
    auto weak = std::weak_ptr<Control>(control_);
    auto executor = client_.get_executor();
    entry_.set_end_handler([weak, executor] {
      asio::post(executor, [weak] {
        if (auto c = weak.lock()) {
          c->end_requested = true;
          c->timer.cancel();
        }
      });
    });
    co_await (client_to_upstream() && upstream_to_client() && control());
    entry_.set_end_handler(nullptr);
  }

  // How the stream ended, for the summary line.
  std::string closed_by = "unknown";
  int close_code = 0;
  std::string close_reason;

 private:
  struct Control {
    explicit Control(asio::any_io_executor ex) : timer(ex) {}
    asio::steady_timer timer;
    bool end_requested = false;
  };

  struct ReadOutcome {
    boost::system::error_code ec;
    bool too_big = false;
  };

  // Reads one whole message into `buf`, refusing to hold more than the limit.
  template <class Ws>
  asio::awaitable<ReadOutcome> read_message(Ws& ws, beast::flat_buffer& buf) {
    buf.clear();
    if (buf.capacity() > kShrinkAbove) buf.shrink_to_fit();
    for (;;) {
      auto [ec, n] = co_await ws.async_read_some(buf, kReadChunk, use_tuple);
      (void)n;
      if (ec) co_return ReadOutcome{ec, false};
      if (buf.size() > cfg_.max_message_bytes) co_return ReadOutcome{{}, true};
      if (ws.is_message_done()) co_return ReadOutcome{};
    }
  }

  void note_close(std::string side, const websocket::close_reason& cr) {
    if (closed_by != "unknown") return;
    closed_by = std::move(side);
    close_code = cr.code;
    close_reason = std::string(cr.reason.data(), cr.reason.size());
  }

  // Sends a close frame on a leg once; the leg's reader sees the peer's answer.
  template <class Ws>
  asio::awaitable<void> close_leg(Ws& ws, WriteGate& gate, bool& sent, websocket::close_reason cr) {
    if (sent || !ws.is_open()) co_return;
    sent = true;
    co_await gate.acquire();
    if (ws.is_open()) co_await ws.async_close(cr, use_tuple);
    gate.release();
  }

  asio::awaitable<void> close_client(websocket::close_reason cr) {
    co_await close_leg(client_, client_gate_, client_close_sent_, std::move(cr));
  }
  asio::awaitable<void> close_upstream(websocket::close_reason cr) {
    co_await close_leg(upstream_, upstream_gate_, upstream_close_sent_, std::move(cr));
  }

  websocket::close_reason too_big_reason() const {
    return websocket::close_reason(websocket::close_code::too_big,
                                   fmt::format("sluice: message larger than {} bytes", cfg_.max_message_bytes));
  }

  asio::awaitable<void> client_to_upstream() {
    beast::flat_buffer buf;
    for (;;) {
      auto r = co_await read_message(client_, buf);
      if (r.too_big) {
        note_close("gateway", too_big_reason());
        co_await close_client(too_big_reason());
        co_await close_upstream(websocket::close_reason(websocket::close_code::going_away, "client message too big"));
        break;
      }
      if (r.ec == websocket::error::closed) {
        // The client closed; Beast has answered it. Pass its code on exactly.
        note_close("client", client_.reason());
        co_await close_upstream(client_.reason());
        break;
      }
      if (r.ec) {
        if (closed_by == "unknown") {
          closed_by = "client";
          close_reason = "connection lost: " + r.ec.message();
        }
        co_await close_upstream(websocket::close_reason(websocket::close_code::going_away, "client connection lost"));
        break;
      }
      auto now = registry::now_ns();
      auto size = buf.size();
      bool text = client_.got_text();
      counters_.client_messages.fetch_add(1, std::memory_order_relaxed);
      counters_.client_bytes.fetch_add(size, std::memory_order_relaxed);
      if (!text) {
        counters_.audio_messages.fetch_add(1, std::memory_order_relaxed);
        counters_.audio_bytes.fetch_add(size, std::memory_order_relaxed);
        counters_.last_audio_ns.store(now, std::memory_order_relaxed);
      } else {
        counters_.last_text_ns.store(now, std::memory_order_relaxed);
        auto data = static_cast<const char*>(buf.data().data());
        switch (protocol::classify(protocol::sniff_type({data, size}))) {
          case protocol::MessageType::keep_alive:
            counters_.keep_alive.fetch_add(1, std::memory_order_relaxed);
            break;
          case protocol::MessageType::finalize:
            counters_.finalize.fetch_add(1, std::memory_order_relaxed);
            break;
          case protocol::MessageType::close_stream:
            counters_.close_stream.fetch_add(1, std::memory_order_relaxed);
            entry_.set_state(registry::SessionState::closing);
            break;
          default:
            break;
        }
      }
      co_await upstream_gate_.acquire();
      boost::system::error_code wec;
      if (!upstream_close_sent_) {
        upstream_.text(text);
        auto [ec, n] = co_await upstream_.async_write(buf.data(), use_tuple);
        (void)n;
        wec = ec;
      }
      upstream_gate_.release();
      if (wec) break;  // the upstream leg failed; its reader reports why
    }
    pump_done();
  }

  asio::awaitable<void> upstream_to_client() {
    beast::flat_buffer buf;
    for (;;) {
      auto r = co_await read_message(upstream_, buf);
      if (r.too_big) {
        note_close("gateway", too_big_reason());
        co_await close_upstream(too_big_reason());
        co_await close_client(too_big_reason());
        break;
      }
      if (r.ec == websocket::error::closed) {
        // Includes a close without a status (Flux after CloseStream): the
        // reason's code is then "none" and the client gets the same.
        note_close("upstream", upstream_.reason());
        co_await close_client(upstream_.reason());
        break;
      }
      if (r.ec) {
        if (closed_by == "unknown") {
          closed_by = "upstream";
          close_code = websocket::close_code::internal_error;
          close_reason = "connection lost: " + r.ec.message();
        }
        co_await close_client(websocket::close_reason(websocket::close_code::internal_error,
                                                      "sluice: upstream connection lost"));
        break;
      }
      auto now = registry::now_ns();
      auto size = buf.size();
      bool text = upstream_.got_text();
      counters_.upstream_messages.fetch_add(1, std::memory_order_relaxed);
      counters_.upstream_bytes.fetch_add(size, std::memory_order_relaxed);
      counters_.last_upstream_ns.store(now, std::memory_order_relaxed);
      if (text) {
        std::string_view msg(static_cast<const char*>(buf.data().data()), size);
        auto type = protocol::classify(protocol::sniff_type(msg));
        if (type == protocol::MessageType::metadata || type == protocol::MessageType::connected) {
          if (auto s = protocol::read_summary(msg)) {
            if (!s->request_id.empty() && entry_.request_id().empty()) entry_.set_request_id(s->request_id);
            if (type == protocol::MessageType::metadata) entry_.set_upstream_summary(s->duration, s->channels);
          }
        }
      }
      co_await client_gate_.acquire();
      boost::system::error_code wec;
      if (!client_close_sent_) {
        client_.text(text);
        auto [ec, n] = co_await client_.async_write(buf.data(), use_tuple);
        (void)n;
        wec = ec;
      }
      client_gate_.release();
      if (wec) {
        if (closed_by == "unknown") {
          closed_by = "client";
          close_reason = "connection lost: " + wec.message();
        }
        co_await close_upstream(websocket::close_reason(websocket::close_code::going_away, "client connection lost"));
        break;
      }
    }
    pump_done();
  }

  void pump_done() {
    if (++pumps_done_ == 2) control_->timer.cancel();
  }

  // Waits for an operator's request to end the stream: sends the endpoint's
  // close message upstream so the final results reach the client, then, if the
  // stream is still open after the grace period, closes both legs.
  asio::awaitable<void> control() {
    bool ending = false;
    while (pumps_done_ < 2) {
      if (ending) control_->timer.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(cfg_.close_grace));
      else control_->timer.expires_at(asio::steady_timer::time_point::max());
      auto [ec] = co_await control_->timer.async_wait(use_tuple);
      if (pumps_done_ == 2) break;
      if (control_->end_requested && !ending) {
        ending = true;
        entry_.set_state(registry::SessionState::closing);
        auto msg = protocol::close_message(entry_.info().endpoint);
        if (!msg.empty() && !upstream_close_sent_) {
          co_await upstream_gate_.acquire();
          if (!upstream_close_sent_ && upstream_.is_open()) {
            upstream_.text(true);
            co_await upstream_.async_write(asio::buffer(msg.data(), msg.size()), use_tuple);
          }
          upstream_gate_.release();
        }
        if (msg.empty()) control_->timer.expires_after(std::chrono::seconds(0));
        continue;
      }
      if (ending && !ec) {
        // Grace is over: close both legs. A leg whose writer is stuck behind a
        // reader that stopped reading is cut at the socket.
        websocket::close_reason cr(websocket::close_code::normal, "sluice: session ended by operator");
        note_close("gateway", cr);
        if (client_gate_.busy()) beast::get_lowest_layer(client_).close();
        else co_await close_client(cr);
        if (upstream_gate_.busy()) beast::get_lowest_layer(upstream_).close();
        else co_await close_upstream(cr);
        ending = false;  // wait for the pumps to finish
        control_->end_requested = false;
      }
    }
  }

  static constexpr std::size_t kReadChunk = 64 * 1024;
  static constexpr std::size_t kShrinkAbove = 256 * 1024;

  ClientWs& client_;
  UpstreamWs& upstream_;
  registry::SessionEntry& entry_;
  registry::SessionCounters& counters_;
  const config::RelayConfig& cfg_;
  WriteGate client_gate_;
  WriteGate upstream_gate_;
  std::shared_ptr<Control> control_;
  bool client_close_sent_ = false;
  bool upstream_close_sent_ = false;
  int pumps_done_ = 0;
};

template <class Ws>
void set_relay_timeouts(Ws& ws, const config::RelayConfig& cfg) {
  websocket::stream_base::timeout t;
  t.handshake_timeout = std::chrono::duration_cast<std::chrono::steady_clock::duration>(cfg.close_timeout);
  t.idle_timeout = std::chrono::duration_cast<std::chrono::steady_clock::duration>(cfg.ping_interval * 2);
  t.keep_alive_pings = true;
  ws.set_option(t);
  ws.read_message_max(cfg.max_message_bytes + 2 * 64 * 1024);
  ws.auto_fragment(false);
}

std::string format_seconds(double s) { return fmt::format("{:.1f}s", s); }

void log_summary(const registry::SessionEntry& e, std::string_view closed_by, int code, std::string_view reason) {
  const auto& c = e.counters();
  auto age = static_cast<double>(registry::now_ns() -
                                 std::chrono::duration_cast<std::chrono::nanoseconds>(e.info().accepted.time_since_epoch()).count()) /
             1e9;
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

template <class ClientStream>
asio::awaitable<void> serve(ClientStream stream, std::string peer, SessionServices& services) {
  auto policy = services.policy.load();
  const auto& cfg = policy->config;
  auto& tcp_layer = beast::get_lowest_layer(stream);

  // 1. The upgrade request, within the client handshake deadline.
  beast::flat_buffer buffer;
  http::request_parser<http::empty_body> parser;
  parser.header_limit(cfg.client.header_limit);
  parser.body_limit(0);
  tcp_layer.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(cfg.client.handshake_timeout));
  auto [rec, rn] = co_await http::async_read(stream, buffer, parser, use_tuple);
  (void)rn;
  if (rec) {
    if (rec == beast::error::timeout)
      spdlog::debug("client {}: no complete upgrade request within the deadline", peer);
    else if (!expected_ending(rec))
      co_await send_refusal(stream, sluice_error(400, "Bad Request", "sluice: malformed HTTP request"), 0);
    co_return;
  }
  auto req = parser.release();

  // 2. Route: the path names the endpoint; the query goes upstream untouched.
  auto url = boost::urls::parse_origin_form(req.target());
  if (!url) {
    co_await send_refusal(stream, sluice_error(400, "Bad Request", "sluice: malformed request target"), 0);
    co_return;
  }
  auto endpoint = protocol::endpoint_from_path(url->encoded_path());
  if (!endpoint) {
    co_await send_refusal(stream,
                          sluice_error(404, "NOT_FOUND",
                                       fmt::format("sluice: no streaming endpoint at {}; expected /v1/listen, "
                                                   "/v2/listen, /v1/speak or /v1/agent/converse",
                                                   std::string(url->encoded_path()))),
                          0);
    co_return;
  }
  if (!websocket::is_upgrade(req)) {
    auto r = sluice_error(426, "UPGRADE_REQUIRED",
                          "sluice: this endpoint streams over WebSocket; send a WebSocket upgrade request");
    co_await send_refusal(stream, r, 0);
    co_return;
  }
  Route route{*endpoint, std::string(req.target()), {}, {}, 0};
  std::string encoding;
  int sample_rate = 0, channels = 1;
  for (auto p : url->params()) {
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
    co_return;
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
      co_return;
    }
    tenant = std::move(*t);
    upstream_auth = "Token " + policy->upstream_key;
  }

  // 4. Register: from here on the stream is in the live table until it is gone.
  registry::SessionInfo info;
  info.id = services.registry.next_id();
  info.tenant = tenant;
  info.endpoint = route.endpoint;
  info.model = route.model;
  info.params = route.params;
  info.client_address = peer;
  info.user_agent = std::string(req[http::field::user_agent]);
  info.accepted = registry::Clock::now();
  info.audio_bytes_per_second = route.audio_bytes_per_second;
  auto registration = services.registry.add(std::move(info));
  auto& entry = registration.entry();
  const auto id = entry.info().id;

  // 5. Upstream first: the client is accepted only once the vendor said 101.
  upstream::ConnectRequest creq;
  creq.base = route.endpoint == protocol::Endpoint::agent ? policy->agent_base : policy->base;
  creq.target = creq.base.path_prefix + route.target;
  creq.authorization = std::move(upstream_auth);
  creq.user_agent = entry.info().user_agent;
  creq.session_header = std::string(req["x-deepgram-session-id"]);
  creq.timeout = cfg.upstream.connect_timeout;
  // The client's deadline stays armed while the upstream connects, so the
  // whole handshake is bounded; it is lifted once the client is accepted.
  auto conn = co_await upstream::connect(tcp_layer.get_executor(), services.upstream_tls, std::move(creq));
  if (!conn.ok()) {
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
    co_await send_refusal(stream, r, id);
    co_return;
  }
  entry.set_request_id(conn.request_id);

  // 6. Accept the client, showing the vendor's request id and, for the
  // browser form, the scheme word as the selected subprotocol.
  websocket::stream<ClientStream> client(std::move(stream));
  std::string selected = credential->via_subprotocol ? std::string(protocol::scheme_word(credential->scheme)) : "";
  client.set_option(websocket::stream_base::decorator(
      [&conn, &selected, id](websocket::response_type& res) {
        res.set(http::field::server, "sluice");
        if (!conn.request_id.empty()) res.set("dg-request-id", conn.request_id);
        res.set("x-sluice-session-id", std::to_string(id));
        if (!selected.empty()) res.set(http::field::sec_websocket_protocol, selected);
      }));
  auto [aec] = co_await client.async_accept(req, use_tuple);
  if (aec) {
    spdlog::debug("[S{}] client went away during the upgrade: {}", id, aec.message());
    std::visit([](auto& ws) {
      boost::system::error_code ignored;
      beast::get_lowest_layer(*ws).socket().close(ignored);
    }, conn.ws);
    co_return;
  }
  beast::get_lowest_layer(client).expires_never();
  entry.counters().upstream_open_ns.store(registry::now_ns(), std::memory_order_relaxed);
  entry.set_state(registry::SessionState::open);
  spdlog::debug("[S{}] open: tenant={} {} request_id={} client={}", id, tenant, route.target.substr(0, route.target.find('?')),
                conn.request_id, peer);

  // 7. Relay until both legs are closed.
  set_relay_timeouts(client, cfg.relay);
  co_await std::visit(
      [&](auto& upstream_ws) -> asio::awaitable<void> {
        set_relay_timeouts(*upstream_ws, cfg.relay);
        Relay relay(client, *upstream_ws, entry, cfg.relay);
        co_await relay.run();
        log_summary(entry, relay.closed_by, relay.close_code, relay.close_reason);
      },
      conn.ws);
}

}  // namespace

SessionPolicy::SessionPolicy(config::Config c)
    : config(std::move(c)), keys(config.tenants), upstream_key(config.upstream.api_key) {
  auto b = upstream::parse_upstream_base(config.upstream.effective_url());
  auto a = upstream::parse_upstream_base(config.upstream.effective_agent_url());
  if (!b) throw config::ConfigError("upstream.url", "not a ws:// or wss:// URL");
  if (!a) throw config::ConfigError("upstream.agent_url", "not a ws:// or wss:// URL");
  base = *b;
  agent_base = *a;
}

asio::awaitable<void> run_connection(tcp::socket socket, SessionServices& services) {
  auto peer = client_address(socket);
  if (!services.client_tls) {
    co_await serve(beast::tcp_stream(std::move(socket)), std::move(peer), services);
    co_return;
  }
  beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *services.client_tls);
  auto policy = services.policy.load();
  beast::get_lowest_layer(stream).expires_after(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(policy->config.client.handshake_timeout));
  auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, use_tuple);
  if (ec) {
    spdlog::debug("client {}: TLS handshake failed: {}", peer, ec.message());
    co_return;
  }
  co_await serve(std::move(stream), std::move(peer), services);
}

}  // namespace sluice::session
