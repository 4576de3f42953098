#pragma once
// GET /api/v1/stream: Server-Sent Events for the dashboard. A snapshot of the
// pools and the open sessions about once a second, and every event of the
// gateway's event log as it is recorded. Each stream is a coroutine on its
// connection's executor that sleeps on a timer between frames, so it holds no
// I/O thread; it ends when a write fails (the client went), when a write
// stalls for 30 s, or when the admin server stops (the gateway's drain
// ended), with the last chunk sent.
#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace sluice::admin {

// The streams under way: events are published to every one of them, and
// stop() ends them all. Any thread.
class StreamHub {
 public:
  struct Client;

  // Queues an SSE frame ("event: ...\ndata: ...\n\n") for every stream and
  // wakes each on its own executor.
  void publish(const std::string& frame);
  // Ends every stream under way, and every stream started later at once.
  void stop();
  std::size_t clients() const;

  // For serve_event_stream.
  void join(const std::shared_ptr<Client>& c);
  void leave(const Client* c);

 private:
  mutable std::mutex mutex_;
  bool stopped_ = false;                       // guarded by mutex_
  std::vector<std::weak_ptr<Client>> clients_;  // guarded by mutex_
};

// One SSE frame: `event` names it, `data` is one line of JSON; `id` when > 0.
std::string sse_frame(std::string_view event, std::string_view data, std::uint64_t id = 0);

// Writes the response header and then frames until the stream ends (see
// above). `snapshot` gives the periodic snapshot frame; it runs on the
// connection's executor and must be quick (it reads in-memory state only).
// `hub` and `snapshot` must outlive the stream (they are the caller's, who
// awaits it).
boost::asio::awaitable<void> serve_event_stream(boost::beast::tcp_stream& stream, unsigned http_version,
                                                StreamHub& hub, const std::function<std::string()>& snapshot);

}  // namespace sluice::admin
