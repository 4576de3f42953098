#pragma once
// A TCP accept loop: binds at construction (so port 0 can be discovered at
// once), then hands each accepted socket to a handler coroutine spawned on a
// strand of its own, or, when the io_context runs on one thread only, on the
// io_context's own executor (a strand there would only add a lock and a queue
// to every completion). An accept that fails for want of a resource (EMFILE,
// ENFILE, ENOBUFS, ENOMEM) is retried after a pause, 10 ms doubling up to 1 s
// until an accept succeeds, and logged once per such episode; every failed
// accept is counted (accept_error_counts). The accept loop runs on a strand
// of the listener's own, and stop() closes the acceptor on that strand, so
// stop() may be called from any thread (a signal handler's, on another I/O
// thread) while the loop accepts. Destroy it once no thread runs the
// io_context.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct AcceptErrorCounters;

class Listener {
 public:
  using Handler = std::function<asio::awaitable<void>(tcp::socket)>;

  // Throws std::system_error naming the endpoint if it cannot bind.
  // `strand_per_connection`: false only when `ioc` runs on a single thread.
  Listener(asio::io_context& ioc, const tcp::endpoint& endpoint, Handler handler,
           std::string name, bool strand_per_connection = true);
  ~Listener();

  tcp::endpoint local_endpoint() const;
  void start();
  // Stops accepting: closes the acceptor on the loop's strand (at once when
  // called there, else as soon as the strand runs). Any thread.
  void stop();

 private:
  asio::awaitable<void> accept_loop();
  void close();

  asio::io_context& ioc_;
  asio::strand<asio::io_context::executor_type> strand_;  // the accept loop's and stop()'s
  tcp::acceptor acceptor_;
  tcp::endpoint endpoint_;  // as bound (port 0 resolved)
  Handler handler_;
  std::string name_;
  bool strand_per_connection_;
  asio::steady_timer backoff_;  // the pause after a failed accept
  AcceptErrorCounters* errors_;  // this listener name's counters (process-wide)
};

// Failed accepts since the process started, by listener name and reason
// ("emfile", "enfile", "enobufs", "enomem", "other"); listeners of one name
// share a count. Every reason of every listener made so far is listed, from 0.
struct AcceptErrorCount {
  std::string listener;
  std::string reason;
  std::uint64_t total = 0;
};
std::vector<AcceptErrorCount> accept_error_counts();

// Parses "HOST:PORT" (IPv4, [IPv6] or a name that resolves synchronously; use
// only at startup). Throws std::invalid_argument saying what was expected.
tcp::endpoint parse_endpoint(std::string_view text);

std::string to_string(const tcp::endpoint& ep);

}  // namespace sluice::net
