// The Deepgram-facing side of a connection, from the HTTP upgrade request to
// the endpoint's stream: route, authenticate, validate, admit (in that
// order, as the vendor does), then accept the WebSocket.
// g++ 12 takes Asio's coroutine frame allocator (awaitable_frame_base's
// operator new/delete) for a mismatched pair in some coroutines: a false
// positive that would fail -Werror builds.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/url/parse.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <random>

#include "protocol/credential.hpp"
#include "protocol/errors.hpp"
#include "sim/sim_core.hpp"
#include "sim/stream_params.hpp"
#include "sim/streams.hpp"

namespace sluice::sim {

namespace http = beast::http;
using tcp = asio::ip::tcp;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

namespace {

constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

// What stop() does to this connection depends on how far it has got: close
// the socket while HTTP is spoken, ask the stream to close once it is one.
struct ConnectionControl {
  bool stop_requested = false;
  std::function<void()> on_stop;
};

Response error_response(const Request& req, http::status status, std::string body,
                        std::string_view request_id, std::string_view dg_error) {
  Response res{status, req.version()};
  res.set(http::field::server, "sluice-sim");
  res.set(http::field::content_type, "application/json");
  res.set("dg-request-id", request_id);
  if (!dg_error.empty()) res.set("dg-error", dg_error);
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

// Writes a refusal and ends the connection, as the vendor does.
asio::awaitable<void> refuse(beast::tcp_stream& stream, Response res) {
  res.keep_alive(false);
  stream.expires_after(std::chrono::seconds(10));
  // A client that is gone by now needs nothing more.
  co_await http::async_write(stream, res, use_nothrow);
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

// A plain HTTP request (not an upgrade) on the streaming listener.
Response plain_reply(const Request& req) {
  auto request_id = protocol::make_uuid();
  auto url = boost::urls::parse_origin_form(req.target());
  if (url && protocol::endpoint_from_path(url->path())) {
    auto res = error_response(
        req, http::status::upgrade_required,
        protocol::error_body("UPGRADE_REQUIRED", "This endpoint only accepts WebSocket connections.", request_id),
        request_id, "This endpoint only accepts WebSocket connections.");
    res.set(http::field::upgrade, "websocket");
    res.keep_alive(req.keep_alive());
    return res;
  }
  auto res = error_response(req, http::status::not_found,
                            protocol::error_body("NOT_FOUND", "Not found.", request_id), request_id,
                            "Not found.");
  res.keep_alive(req.keep_alive());
  return res;
}

asio::awaitable<void> upgrade(SimCore& core, beast::tcp_stream& stream, Request req,
                              ConnectionControl& control, const std::string& prefix) {
  const auto& config = core.config;
  auto& accounting = *core.accounting;
  accounting.note_handshake();
  auto request_id = protocol::make_uuid();
  auto created = std::chrono::system_clock::now();

  if (config.faults.handshake_delay.count() > 0) {
    asio::steady_timer delay(stream.get_executor(), config.faults.handshake_delay);
    control.on_stop = [&delay] { delay.cancel(); };
    co_await delay.async_wait(use_nothrow);
    control.on_stop = [&stream] {
      boost::system::error_code ec;
      stream.socket().close(ec);
    };
    if (control.stop_requested) co_return;
  }

  // Route.
  auto url = boost::urls::parse_origin_form(req.target());
  auto endpoint = url ? protocol::endpoint_from_path(url->path()) : std::nullopt;
  if (!endpoint) {
    spdlog::info("{} upgrade to unknown path {}", prefix, std::string_view(req.target()));
    co_await refuse(stream, error_response(req, http::status::not_found,
                                           protocol::error_body("NOT_FOUND", "Not found.", request_id),
                                           request_id, "Not found."));
    co_return;
  }
  auto family = protocol::endpoint_family(*endpoint);
  auto name = protocol::endpoint_name(*endpoint);

  // Authenticate.
  auto credential = protocol::parse_credential(req[http::field::authorization],
                                               req[http::field::sec_websocket_protocol]);
  auto project = credential ? accounting.project_for(credential->secret) : std::nullopt;
  if (!project) {
    accounting.note_unauthorized();
    spdlog::info("{} {} refused 401: {}", prefix, name,
                 credential ? "unknown key " + protocol::fingerprint(credential->secret)
                            : std::string("no credential"));
    co_await refuse(stream, error_response(req, http::status::unauthorized,
                                           protocol::error_body("INVALID_AUTH", "Invalid credentials.", request_id),
                                           request_id, "Invalid credentials."));
    co_return;
  }

  // Validate.
  auto params = parse_stream_params(*endpoint, url->params());
  if (!params) {
    const auto& e = params.error();
    spdlog::info("{} {} refused 400: {}", prefix, name, e.err_msg);
    co_await refuse(stream, error_response(req, http::status::bad_request,
                                           protocol::error_body(e.err_code, e.err_msg, request_id),
                                           request_id, e.err_msg));
    co_return;
  }

  // Admit.
  auto lease = accounting.try_acquire(*project, family);
  if (!lease) {
    spdlog::info("{} {} refused 429: project {} is at its {} limit", prefix, name, *project,
                 protocol::family_name(family));
    constexpr std::string_view message = "Too many requests. Please try again later";
    // The TTS service spells its 429 differently (Deepgram's error catalogue).
    auto body = family == protocol::Family::tts
                    ? protocol::error_body("Too Many Requests", "Please try again later.", request_id)
                    : protocol::error_body("TOO_MANY_REQUESTS", message, request_id);
    co_await refuse(stream, error_response(req, http::status::too_many_requests, std::move(body),
                                           request_id, message));
    co_return;
  }

  // Accept. The lease is held from here until the stream ends: the first
  // close frame either way, or the socket gone. A vendor that still counted
  // the stream through its closing handshake would refuse the next one
  // before the gateway could know the slot was free; a vendor that does is
  // the stale-accounting fault.
  std::string subprotocol;
  if (credential->via_subprotocol) subprotocol = protocol::scheme_word(credential->scheme);
  WsStream ws(std::move(stream));
  ws.control_callback([&lease](websocket::frame_type kind, beast::string_view) {
    if (kind == websocket::frame_type::close) lease.reset();
  });
  // A stop during the accept only sets the flag: the client may already hold
  // our 101, so it is owed a close frame (below), not a cut connection. The
  // accept itself ends within the handshake timeout.
  control.on_stop = [] {};
  beast::get_lowest_layer(ws).expires_never();
  ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
  ws.set_option(websocket::stream_base::decorator([request_id, subprotocol](websocket::response_type& res) {
    res.set(http::field::server, "sluice-sim");
    res.set("dg-request-id", request_id);
    // The browser form: echo the scheme word, never the secret.
    if (!subprotocol.empty()) res.set(http::field::sec_websocket_protocol, subprotocol);
  }));
  auto [ec] = co_await ws.async_accept(req, use_nothrow);
  if (ec) {
    spdlog::debug("{} {} accept failed: {}", prefix, name, ec.message());
    co_return;
  }
  control.on_stop = [&ws] {
    boost::system::error_code ec;
    beast::get_lowest_layer(ws).socket().close(ec);
  };
  if (control.stop_requested) {
    // Stopped while accepting: close as a stop closes an open stream.
    co_await ws.async_close(websocket::close_reason(websocket::close_code::going_away, "simulator stopping"),
                            use_nothrow);
    co_return;
  }
  const auto stream_number = ++core.streams;
  spdlog::debug("{} {} open: stream {}, project {}, request {}", prefix, name, stream_number, *project, request_id);

  StreamContext ctx{request_id, core.seed, created, prefix};
  if (config.bench && *endpoint == protocol::Endpoint::listen_v1) {
    co_await serve_bench(ws, ctx);
  } else {
    StreamIo::Options options;
    options.inactivity_timeout = config.inactivity_timeout;
    options.read_delay = config.faults.read_delay;
    options.drop_probability = config.faults.drop_probability;
    options.seed = core.seed ^ std::hash<std::string>{}(request_id);
    options.log_prefix = prefix;
    options.on_closing = [&lease] { lease.reset(); };
    options.drops = core.drops;
    options.stream = stream_number;
    options.request_id = request_id;
    options.family = family;
    options.bytes_per_second = params->bytes_per_second;
    StreamIo io(ws, options);
    control.on_stop = [&io] { io.request_stop(); };
    if (control.stop_requested) io.request_stop();
    switch (*endpoint) {
      case protocol::Endpoint::listen_v1: co_await io.run(serve_listen(io, *params, ctx)); break;
      case protocol::Endpoint::listen_v2: co_await io.run(serve_flux(io, *params, ctx)); break;
      case protocol::Endpoint::speak_v1: co_await io.run(serve_speak(io, *params, ctx)); break;
      case protocol::Endpoint::agent: co_await io.run(serve_agent(io, *params, ctx)); break;
    }
    control.on_stop = [&ws] {
      boost::system::error_code ec;
      beast::get_lowest_layer(ws).socket().close(ec);
    };
  }
  spdlog::debug("{} {} closed: request {}", prefix, name, request_id);
}

}  // namespace

SimCore::SimCore(asio::io_context& ioc, SimConfig cfg)
    : config(std::move(cfg)),
      seed(config.seed ? config.seed : std::random_device{}()),
      accounting(std::make_shared<Accounting>(ioc, config)),
      connections(std::make_shared<ConnectionSet>()),
      drops(std::make_shared<Drops>(config.faults.drops)) {}

asio::awaitable<void> serve_stream_connection(std::shared_ptr<SimCore> core, tcp::socket socket) {
  auto prefix = fmt::format("[sim C{}]", core->next_connection++);
  ConnectionControl control;
  ConnectionSet::StopFn stop = [&control] {
    control.stop_requested = true;
    if (control.on_stop) control.on_stop();
  };
  auto registration = core->connections->add(socket.get_executor(), &stop);
  if (!registration) co_return;  // the simulator is stopping
  beast::tcp_stream stream(std::move(socket));
  control.on_stop = [&stream] {
    boost::system::error_code ec;
    stream.socket().close(ec);
  };
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(16 * 1024);
    parser.body_limit(64 * 1024);
    stream.expires_after(std::chrono::seconds(30));
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_nothrow);
    if (ec) co_return;  // closed, timed out or malformed: nothing to answer
    Request req = parser.release();
    if (websocket::is_upgrade(req)) {
      co_await upgrade(*core, stream, std::move(req), control, prefix);
      co_return;
    }
    auto res = plain_reply(req);
    bool keep_alive = res.keep_alive();
    auto [wec, wn] = co_await http::async_write(stream, res, use_nothrow);
    if (wec || !keep_alive) break;
  }
  boost::system::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

}  // namespace sluice::sim
