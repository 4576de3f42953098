#pragma once
// A programmable WebSocket upstream for relay tests: it echoes every message
// unchanged and records what it received; text commands make it close with a
// chosen code, close with no status, or flood binary data. `?refuse=STATUS`
// on the upgrade makes it refuse with that status, a Deepgram-shaped body,
// dg-request-id and dg-error.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/url/parse.hpp>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "net/listener.hpp"
#include "protocol/errors.hpp"

namespace sluice::testing {

struct Received {
  bool text;
  std::string data;
};

class TestUpstream {
 public:
  explicit TestUpstream(boost::asio::io_context& ioc)
      : listener_(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0},
                  [this](boost::asio::ip::tcp::socket s) { return serve(std::move(s)); }, "test-upstream") {
    listener_.start();
  }

  unsigned short port() const { return listener_.local_endpoint().port(); }
  void stop() { listener_.stop(); }

  std::vector<Received> received() {
    std::lock_guard l(m_);
    return received_;
  }
  int close_code() { std::lock_guard l(m_); return close_code_; }
  std::string close_reason() { std::lock_guard l(m_); return close_reason_; }
  std::string last_authorization() { std::lock_guard l(m_); return authorization_; }
  std::string last_target() { std::lock_guard l(m_); return target_; }
  std::atomic<long long> handshakes{0};
  std::atomic<long long> open{0};
  std::atomic<long long> flood_sent{0};
  std::atomic<int> upgrades{0};  // upgrade requests received
  // Refuses every upgrade after the first `n` with `status` (0: none).
  void refuse_after(int n, int status) {
    refuse_after_ = n;
    refuse_status_ = status;
  }

 private:
  boost::asio::awaitable<void> serve(boost::asio::ip::tcp::socket socket) {
    namespace beast = boost::beast;
    namespace http = beast::http;
    namespace websocket = beast::websocket;
    auto tuple = boost::asio::as_tuple(boost::asio::use_awaitable);
    beast::flat_buffer buf;
    http::request<http::empty_body> req;
    beast::tcp_stream stream(std::move(socket));
    auto [ec, n] = co_await http::async_read(stream, buf, req, tuple);
    if (ec) co_return;
    ++handshakes;
    {
      std::lock_guard l(m_);
      authorization_ = std::string(req[http::field::authorization]);
      target_ = std::string(req.target());
    }
    auto url = boost::urls::parse_origin_form(req.target());
    std::string refuse;
    for (auto p : url->params())
      if (p.key == "refuse") refuse = p.value;
    int nth = ++upgrades;
    if (refuse.empty() && refuse_status_ && nth > refuse_after_) refuse = std::to_string(refuse_status_.load());
    if (!refuse.empty()) {
      http::response<http::string_body> res{static_cast<http::status>(std::stoi(refuse)), 11};
      res.set("dg-request-id", "refused-" + refuse);
      res.set("dg-error", "refused with " + refuse);
      res.set(http::field::content_type, "application/json");
      res.body() = protocol::error_body("TEST_REFUSAL", "refused with " + refuse, "refused-" + refuse);
      res.prepare_payload();
      co_await http::async_write(stream, res, tuple);
      co_return;
    }
    bool late_close = false;
    for (auto p : url->params()) late_close = late_close || p.key == "late_close";
    websocket::stream<beast::tcp_stream> ws(std::move(stream));
    ws.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set("dg-request-id", "test-upstream-request"); }));
    auto [aec] = co_await ws.async_accept(req, tuple);
    if (aec) co_return;
    ++open;
    if (late_close) {
      co_await answer_close_late(ws.next_layer());
      --open;
      co_return;
    }
    beast::flat_buffer msg;
    for (;;) {
      msg.clear();
      auto [rec, rn] = co_await ws.async_read(msg, tuple);
      if (rec) {
        if (rec == websocket::error::closed) {
          std::lock_guard l(m_);
          close_code_ = ws.reason().code;
          close_reason_ = std::string(ws.reason().reason.c_str());
        }
        break;
      }
      std::string data = beast::buffers_to_string(msg.data());
      bool text = ws.got_text();
      {
        std::lock_guard l(m_);
        received_.push_back({text, data});
      }
      if (text && data.starts_with("close:")) {  // close:CODE:REASON
        auto rest = data.substr(6);
        auto colon = rest.find(':');
        auto code = static_cast<websocket::close_code>(std::stoi(rest.substr(0, colon)));
        std::string reason = colon == std::string::npos ? "" : rest.substr(colon + 1);
        websocket::close_reason cr(code, reason);
        co_await ws.async_close(cr, tuple);
        continue;
      }
      if (text && data == "close-no-status") {
        co_await ws.async_close(websocket::close_reason{}, tuple);
        continue;
      }
      if (text && data.starts_with("flood:")) {  // flood:BYTES in 64 KiB messages
        long long total = std::stoll(data.substr(6));
        std::string chunk(64 * 1024, 'x');
        ws.binary(true);
        bool failed = false;
        for (long long sent = 0; sent < total && !failed; sent += static_cast<long long>(chunk.size())) {
          auto [wec, wn] = co_await ws.async_write(boost::asio::buffer(chunk), tuple);
          failed = static_cast<bool>(wec);
          if (!failed) flood_sent += static_cast<long long>(wn);
        }
        if (failed) break;
        continue;
      }
      ws.text(text);
      auto [wec, wn] = co_await ws.async_write(msg.data(), tuple);
      if (wec) break;
    }
    --open;
  }

  // `?late_close`: when the client's close frame arrives (it must send
  // nothing else), a text message "final words" is sent before the close
  // answer (1000 "vendor answer"), as a vendor sends its last results; then
  // the TCP connection ends.
  static boost::asio::awaitable<void> answer_close_late(boost::beast::tcp_stream& stream) {
    auto tuple = boost::asio::as_tuple(boost::asio::use_awaitable);
    std::string got;
    char buf[256];
    while (got.size() < 2 || got.size() < 6u + (static_cast<unsigned char>(got[1]) & 0x7f)) {
      auto [ec, n] = co_await stream.socket().async_read_some(boost::asio::buffer(buf), tuple);
      if (ec) co_return;
      got.append(buf, n);
    }
    if ((static_cast<unsigned char>(got[0]) & 0x0f) != 0x8) co_return;
    std::string out = "\x81\x0b" "final words";
    out += std::string("\x88\x0f\x03\xe8", 4) + "vendor answer";
    co_await boost::asio::async_write(stream.socket(), boost::asio::buffer(out), tuple);
    boost::system::error_code ignored;
    stream.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_send, ignored);
    while (true) {
      auto [ec, n] = co_await stream.socket().async_read_some(boost::asio::buffer(buf), tuple);
      if (ec) break;
    }
  }

  std::atomic<int> refuse_after_{0}, refuse_status_{0};
  net::Listener listener_;
  std::mutex m_;
  std::vector<Received> received_;
  int close_code_ = -1;
  std::string close_reason_;
  std::string authorization_;
  std::string target_;
};

}  // namespace sluice::testing
