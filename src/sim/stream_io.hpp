#pragma once
// The I/O of one simulated WebSocket stream, shared by the three coroutines
// that serve it, all on the connection's strand:
//  - a reader, the only reader: client messages in, one at a time;
//  - a watchdog: inactivity (NET-0001), injected drops, stop requests;
//  - the endpoint's processor, the only writer, which consumes both through
//    next() and answers.
// The reader hands messages over through a small channel, so when the
// processor is blocked writing to a client that does not read, the reader
// stops reading too and generation pauses: memory stays bounded.
// Thread safety: none; everything runs on the stream's strand.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/channel.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "sim/simulator.hpp"

namespace sluice::sim {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;

using WsStream = websocket::stream<beast::tcp_stream>;

// The close reason Deepgram sends with 1011 when a client went quiet.
inline constexpr std::string_view kNet0001Reason =
    "Deepgram did not receive audio data or a text message within the timeout window. See "
    "https://dpgr.am/net0001";
inline constexpr std::string_view kNet0000Reason = "NET-0000 simulated internal error";

struct StreamEvent {
  enum class Kind {
    text,         // a text message from the client (data)
    binary,       // a binary message from the client (data)
    client_gone,  // the client closed, or the connection failed (error)
    inactivity,   // nothing from the client within the inactivity timeout
    drop,         // fault injection: fail the stream now
    stop,         // the simulator is stopping
  };
  Kind kind = Kind::client_gone;
  std::string data;
  boost::system::error_code error;
  DropCue::How how = DropCue::How::internal_error;  // drop: how the stream ends
  bool random = false;                               // drop: drop_probability, not a cue
};

class Drops;

class StreamIo {
 public:
  struct Options {
    std::chrono::milliseconds inactivity_timeout{10000};  // 0: never
    std::chrono::milliseconds read_delay{0};              // before each read (a slow reader)
    double drop_probability = 0;                          // per second of stream
    std::uint64_t seed = 0;                               // for drop rolls
    std::string log_prefix;                               // "[sim C12]"
    std::function<void()> on_closing;                     // before our close frame goes out
    // Drop cues (drops.hpp): this stream's number, what it is, and its audio
    // rate (binary frames are audio); drops are recorded there too.
    std::shared_ptr<Drops> drops;
    std::uint64_t stream = 0;
    std::string request_id;
    protocol::Family family{};
    double bytes_per_second = 32000;
  };

  StreamIo(WsStream& ws, Options options);

  // Serves the stream until `processor` returns, then closes the socket and
  // waits for the reader and watchdog to finish.
  asio::awaitable<void> run(asio::awaitable<void> processor);

  // The processor's side.
  asio::awaitable<StreamEvent> next();
  asio::awaitable<bool> send_text(std::string_view text);  // false once the stream is broken
  asio::awaitable<bool> send_binary(const void* data, std::size_t size);
  asio::awaitable<void> close(const websocket::close_reason& reason);
  // The common ending for inactivity (1011 NET-0001), drop (as its cue says:
  // 1011 NET-0000 by default) and stop (1001); nothing for client_gone.
  asio::awaitable<void> end(const StreamEvent& event);

  // Asks the stream to close (1001) soon; from the stream's strand only. A
  // stream that cannot close gracefully within a few seconds is cut.
  void request_stop();

 private:
  using Clock = std::chrono::steady_clock;
  using Channel = asio::experimental::channel<void(boost::system::error_code, StreamEvent)>;

  asio::awaitable<void> read_loop();
  asio::awaitable<void> watch_loop();
  asio::awaitable<void> drive(asio::awaitable<void> processor);
  // A cue due now, at most once per stream.
  std::optional<StreamEvent> due_drop(Clock::time_point now);
  double audio_seconds() const { return static_cast<double>(audio_bytes_) / options_.bytes_per_second; }

  WsStream& ws_;
  Options options_;
  Channel events_;
  asio::steady_timer watch_timer_;
  asio::steady_timer read_timer_;
  Clock::time_point last_activity_;
  Clock::time_point opened_;
  std::uint64_t audio_bytes_ = 0;  // binary bytes received
  bool drop_due_ = false;          // a cue fired: the stream is ending
  std::mt19937_64 rng_;
  bool done_ = false;            // the processor has returned
  bool stop_requested_ = false;
  bool broken_ = false;          // a write failed
};

}  // namespace sluice::sim
