#pragma once
// The processors of the four simulated endpoints (and the bench echo): each
// consumes a stream's events from StreamIo and writes its answers, until the
// stream is over. They run on the connection's strand, inside StreamIo::run.
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "sim/stream_io.hpp"
#include "sim/stream_params.hpp"

namespace sluice::sim {

struct StreamContext {
  std::string request_id;  // the dg-request-id of the 101
  std::uint64_t seed = 0;
  std::chrono::system_clock::time_point created;
  std::string log_prefix;  // "[sim C12]"
};

asio::awaitable<void> serve_listen(StreamIo& io, const StreamParams& params, const StreamContext& ctx);
asio::awaitable<void> serve_flux(StreamIo& io, const StreamParams& params, const StreamContext& ctx);
asio::awaitable<void> serve_speak(StreamIo& io, const StreamParams& params, const StreamContext& ctx);
asio::awaitable<void> serve_agent(StreamIo& io, const StreamParams& params, const StreamContext& ctx);

// Bench mode on /v1/listen: each binary frame is answered at once with
// {"type":"Echo","t":"<first 8 bytes as 16 hex digits>"}; CloseStream closes
// with 1000. Reads and writes alternate in one loop, with no JSON library,
// no queue and no timers, so the simulator costs as little as it can.
asio::awaitable<void> serve_bench(WsStream& ws, const StreamContext& ctx);

// The Echo message for a frame (zero-padded when shorter than 8 bytes),
// written into `out`; returns its length.
std::size_t format_echo(const unsigned char* frame, std::size_t size, char (&out)[40]);

// Sends each message in order; false once the stream is broken.
asio::awaitable<bool> send_all(StreamIo& io, const std::vector<std::string>& messages);

}  // namespace sluice::sim
