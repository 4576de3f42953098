// Bench mode: the cheapest answer a frame can get.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <cstring>

#include "protocol/message.hpp"
#include "sim/streams.hpp"

namespace sluice::sim {

std::size_t format_echo(const unsigned char* frame, std::size_t size, char (&out)[40]) {
  static constexpr char prefix[] = R"({"type":"Echo","t":")";
  static constexpr char digits[] = "0123456789abcdef";
  std::size_t n = sizeof prefix - 1;
  std::memcpy(out, prefix, n);
  for (std::size_t i = 0; i < 8; ++i) {
    unsigned char b = i < size ? frame[i] : 0;
    out[n++] = digits[b >> 4];
    out[n++] = digits[b & 0xf];
  }
  out[n++] = '"';
  out[n++] = '}';
  return n;
}

asio::awaitable<void> serve_bench(WsStream& ws, const StreamContext&) {
  constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
  beast::flat_buffer buffer;
  char echo[40];
  for (;;) {
    buffer.clear();
    auto [ec, n] = co_await ws.async_read(buffer, use_nothrow);
    if (ec) co_return;
    auto data = buffer.cdata();
    bool close = !ws.got_text() && data.size() == 0;  // an empty frame closes, as CloseStream does
    if (ws.got_text()) {
      std::string_view text(static_cast<const char*>(data.data()), data.size());
      close = protocol::classify(protocol::sniff_type(text)) == protocol::MessageType::close_stream;
      if (!close) continue;
    }
    if (close) {
      co_await ws.async_close(websocket::close_code::normal, use_nothrow);
      co_return;
    }
    auto len = format_echo(static_cast<const unsigned char*>(data.data()), data.size(), echo);
    ws.text(true);
    auto [wec, wn] = co_await ws.async_write(asio::buffer(echo, len), use_nothrow);
    if (wec) co_return;
  }
}

}  // namespace sluice::sim
