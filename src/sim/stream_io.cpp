#include "sim/stream_io.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "sim/drops.hpp"

namespace sluice::sim {
namespace {
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
// A few events in flight between reader and processor: enough to keep the
// reader busy, small enough that a stalled client holds little memory.
constexpr std::size_t kEventQueue = 8;
// How long a stop request waits for a graceful close before cutting the socket.
constexpr auto kStopGrace = std::chrono::seconds(3);
}  // namespace

StreamIo::StreamIo(WsStream& ws, Options options)
    : ws_(ws),
      options_(std::move(options)),
      events_(ws.get_executor(), kEventQueue),
      watch_timer_(ws.get_executor()),
      read_timer_(ws.get_executor()),
      last_activity_(Clock::now()),
      opened_(Clock::now()),
      rng_(options_.seed) {}

std::optional<StreamEvent> StreamIo::due_drop(Clock::time_point now) {
  if (drop_due_ || !options_.drops || !options_.drops->any()) return std::nullopt;
  auto cue = options_.drops->due(options_.stream, audio_seconds(), now - opened_);
  if (!cue) return std::nullopt;
  drop_due_ = true;
  StreamEvent e;
  e.kind = StreamEvent::Kind::drop;
  e.how = cue->how;
  return e;
}

asio::awaitable<void> StreamIo::run(asio::awaitable<void> processor) {
  using namespace asio::experimental::awaitable_operators;
  last_activity_ = opened_ = Clock::now();
  co_await (read_loop() && watch_loop() && drive(std::move(processor)));
}

asio::awaitable<void> StreamIo::drive(asio::awaitable<void> processor) {
  try {
    co_await std::move(processor);
  } catch (const std::exception& e) {
    spdlog::error("{} stream processor failed: {}", options_.log_prefix, e.what());
  }
  // Wind the other two down: the watchdog and a delayed reader wake up and
  // see done_, a reader blocked on the channel is released, and a pending
  // read fails once the socket is closed (after a graceful close Beast has
  // closed it already).
  done_ = true;
  watch_timer_.cancel();
  read_timer_.cancel();
  events_.cancel();
  events_.close();
  boost::system::error_code ec;
  beast::get_lowest_layer(ws_).socket().close(ec);
}

asio::awaitable<void> StreamIo::read_loop() {
  beast::flat_buffer buffer;
  for (;;) {
    if (options_.read_delay.count() > 0) {
      read_timer_.expires_after(options_.read_delay);
      co_await read_timer_.async_wait(use_nothrow);
    }
    if (done_) co_return;
    auto [ec, n] = co_await ws_.async_read(buffer, use_nothrow);
    StreamEvent event;
    if (ec) {
      event.error = ec;
    } else {
      last_activity_ = Clock::now();
      event.kind = ws_.got_text() ? StreamEvent::Kind::text : StreamEvent::Kind::binary;
      event.data = beast::buffers_to_string(buffer.data());
      buffer.consume(n);
      if (event.kind == StreamEvent::Kind::binary) audio_bytes_ += event.data.size();
    }
    // Waits while the processor is busy: the backpressure point.
    auto [send_ec] = co_await events_.async_send(boost::system::error_code{}, std::move(event),
                                                 use_nothrow);
    if (send_ec || ec) co_return;
    // An audio cue: after the frame that reached it.
    if (auto drop = due_drop(Clock::now())) {
      auto [drop_ec] = co_await events_.async_send(boost::system::error_code{}, std::move(*drop), use_nothrow);
      if (drop_ec) co_return;
    }
  }
}

asio::awaitable<void> StreamIo::watch_loop() {
  using namespace std::chrono_literals;
  std::bernoulli_distribution drop(std::clamp(options_.drop_probability, 0.0, 1.0));
  auto next_roll = Clock::now() + 1s;
  std::optional<StreamEvent> pending;        // decided but not yet queued
  bool delivered = false;                    // an ending event is with the processor
  std::optional<Clock::time_point> cut_at;   // after a stop request
  while (!done_) {
    auto now = Clock::now();
    if (stop_requested_ && !cut_at) {
      pending = StreamEvent{StreamEvent::Kind::stop, {}, {}};
      cut_at = now + kStopGrace;
    }
    if (!pending && !delivered && !drop_due_) {
      if (options_.inactivity_timeout.count() > 0 &&
          now >= last_activity_ + options_.inactivity_timeout) {
        pending = StreamEvent{StreamEvent::Kind::inactivity, {}, {}};
      } else if (auto cue = due_drop(now)) {
        pending = std::move(cue);  // a time cue
      } else if (options_.drop_probability > 0 && now >= next_roll) {
        next_roll += 1s;
        if (drop(rng_)) {
          pending = StreamEvent{StreamEvent::Kind::drop, {}, {}};
          pending->random = true;
        }
      }
    }
    // Never blocks: a full queue means the processor is busy; retry shortly.
    if (pending && events_.try_send(boost::system::error_code{}, *pending)) {
      pending.reset();
      delivered = true;
    }
    if (cut_at && now >= *cut_at) {
      spdlog::info("{} did not close within {}s of stop; cutting the connection",
                   options_.log_prefix, kStopGrace.count());
      boost::system::error_code ec;
      beast::get_lowest_layer(ws_).socket().close(ec);
      co_return;
    }
    auto wake = Clock::time_point::max();
    if (pending) {
      wake = now + 20ms;
    } else if (!delivered) {
      if (options_.inactivity_timeout.count() > 0)
        wake = std::min(wake, last_activity_ + options_.inactivity_timeout);
      if (options_.drop_probability > 0) wake = std::min(wake, next_roll);
      // Cues may be armed at any time: look again soon while any exists.
      if (options_.drops && options_.drops->any() && !drop_due_) wake = std::min(wake, now + 50ms);
    }
    if (cut_at) wake = std::min(wake, *cut_at);
    watch_timer_.expires_at(wake);
    co_await watch_timer_.async_wait(use_nothrow);
  }
}

void StreamIo::request_stop() {
  stop_requested_ = true;
  watch_timer_.cancel();
}

asio::awaitable<StreamEvent> StreamIo::next() {
  auto [ec, event] = co_await events_.async_receive(use_nothrow);
  if (ec) co_return StreamEvent{StreamEvent::Kind::client_gone, {}, ec};
  co_return std::move(event);
}

asio::awaitable<bool> StreamIo::send_text(std::string_view text) {
  if (broken_ || !ws_.is_open()) co_return false;
  ws_.text(true);
  auto [ec, n] = co_await ws_.async_write(asio::buffer(text.data(), text.size()), use_nothrow);
  if (ec) broken_ = true;
  co_return !ec;
}

asio::awaitable<bool> StreamIo::send_binary(const void* data, std::size_t size) {
  if (broken_ || !ws_.is_open()) co_return false;
  ws_.binary(true);
  auto [ec, n] = co_await ws_.async_write(asio::buffer(data, size), use_nothrow);
  if (ec) broken_ = true;
  co_return !ec;
}

asio::awaitable<void> StreamIo::close(const websocket::close_reason& reason) {
  if (broken_ || !ws_.is_open()) co_return;
  if (options_.on_closing) std::exchange(options_.on_closing, nullptr)();
  auto [ec] = co_await ws_.async_close(reason, use_nothrow);
  if (ec) spdlog::debug("{} close failed: {}", options_.log_prefix, ec.message());
}

asio::awaitable<void> StreamIo::end(const StreamEvent& event) {
  switch (event.kind) {
    case StreamEvent::Kind::inactivity:
      co_await close(websocket::close_reason(websocket::close_code::internal_error,
                                             std::string(kNet0001Reason)));
      break;
    case StreamEvent::Kind::drop: {
      spdlog::info("{} dropping the stream ({}, after {:.3f} s of audio; fault injection)", options_.log_prefix,
                   drop_how_name(event.how), audio_seconds());
      if (options_.drops) {
        SimDrop d;
        d.stream = options_.stream;
        d.request_id = options_.request_id;
        d.family = options_.family;
        d.audio_seconds = audio_seconds();
        d.after_seconds = std::chrono::duration<double>(Clock::now() - opened_).count();
        d.how = event.how;
        d.random = event.random;
        options_.drops->record(std::move(d));
      }
      switch (event.how) {
        case DropCue::How::internal_error:
          co_await close(websocket::close_reason(websocket::close_code::internal_error, std::string(kNet0000Reason)));
          break;
        case DropCue::How::service_restart:
          co_await close(websocket::close_reason(websocket::close_code::service_restart, "service restart"));
          break;
        case DropCue::How::try_again_later:
          co_await close(websocket::close_reason(websocket::close_code::try_again_later, "try again later"));
          break;
        case DropCue::How::cut:
        case DropCue::How::reset: {
          // No close frame: the connection just ends, with a FIN or an RST.
          if (options_.on_closing) std::exchange(options_.on_closing, nullptr)();
          auto& sock = beast::get_lowest_layer(ws_).socket();
          boost::system::error_code ec;
          if (event.how == DropCue::How::reset)
            sock.set_option(asio::socket_base::linger(true, 0), ec);
          else
            sock.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
          sock.close(ec);
          broken_ = true;
          break;
        }
      }
      break;
    }
    case StreamEvent::Kind::stop:
      co_await close(websocket::close_reason(websocket::close_code::going_away, "simulator stopping"));
      break;
    default: break;
  }
}

}  // namespace sluice::sim
