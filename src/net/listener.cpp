#include "net/listener.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <stdexcept>
#include <system_error>

#include "net/endpoint.hpp"

namespace sluice::net {

namespace {

enum Reason : std::size_t { kEmfile, kEnfile, kEnobufs, kEnomem, kOther, kReasons };
constexpr std::array<const char*, kReasons> kReasonNames{"emfile", "enfile", "enobufs", "enomem", "other"};

Reason reason_of(const boost::system::error_code& ec) {
  namespace errc = boost::system::errc;
  if (ec == errc::too_many_files_open) return kEmfile;
  if (ec == errc::too_many_files_open_in_system) return kEnfile;
  if (ec == errc::no_buffer_space) return kEnobufs;
  if (ec == errc::not_enough_memory) return kEnomem;
  return kOther;
}

// The pause after an accept failed for want of a resource.
constexpr std::chrono::milliseconds kFirstPause{10};
constexpr std::chrono::milliseconds kLongestPause{1000};

}  // namespace

struct AcceptErrorCounters {
  std::array<std::atomic<std::uint64_t>, kReasons> by_reason{};
};

namespace {

// Process-wide, by listener name; entries are never removed, so a listener
// keeps a plain pointer to its own.
struct CounterTable {
  std::mutex mutex;
  std::map<std::string, std::unique_ptr<AcceptErrorCounters>, std::less<>> by_name;
};

CounterTable& counter_table() {
  static CounterTable* table = new CounterTable;  // outlives every listener
  return *table;
}

AcceptErrorCounters* counters_for(const std::string& name) {
  auto& t = counter_table();
  std::lock_guard lock(t.mutex);
  auto& c = t.by_name[name];
  if (!c) c = std::make_unique<AcceptErrorCounters>();
  return c.get();
}

}  // namespace

std::vector<AcceptErrorCount> accept_error_counts() {
  auto& t = counter_table();
  std::lock_guard lock(t.mutex);
  std::vector<AcceptErrorCount> out;
  for (const auto& [name, c] : t.by_name)
    for (std::size_t r = 0; r < kReasons; ++r)
      out.push_back({name, kReasonNames[r], c->by_reason[r].load(std::memory_order_relaxed)});
  return out;
}

Listener::Listener(asio::io_context& ioc, const tcp::endpoint& endpoint, Handler handler,
                   std::string name, bool strand_per_connection)
    : ioc_(ioc),
      strand_(asio::make_strand(ioc)),
      acceptor_(strand_),
      handler_(std::move(handler)),
      name_(std::move(name)),
      strand_per_connection_(strand_per_connection),
      backoff_(strand_),
      errors_(counters_for(name_)) {
  boost::system::error_code ec;
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::system_error(ec, "cannot listen on " + to_string(endpoint) + " (" + name_ + ")");
  endpoint_ = acceptor_.local_endpoint();
}

Listener::~Listener() { close(); }  // no thread runs the loop any more

tcp::endpoint Listener::local_endpoint() const { return endpoint_; }

void Listener::start() { asio::co_spawn(strand_, accept_loop(), asio::detached); }

void Listener::stop() {
  asio::dispatch(strand_, [this] { close(); });
}

void Listener::close() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  backoff_.cancel();
}

asio::awaitable<void> Listener::accept_loop() {
  using std::chrono::milliseconds;
  milliseconds pause{0};  // zero: not backing off
  std::uint64_t failed = 0;
  std::chrono::steady_clock::time_point failing_since;
  for (;;) {
    asio::any_io_executor executor = ioc_.get_executor();
    if (strand_per_connection_) executor = asio::make_strand(ioc_);
    auto [ec, socket] = co_await acceptor_.async_accept(executor, asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) {
      auto reason = reason_of(ec);
      errors_->by_reason[reason].fetch_add(1, std::memory_order_relaxed);
      if (reason == kOther) {
        // An error of that one connection: go on with the next.
        spdlog::warn("{}: accept failed: {}", name_, ec.message());
        continue;
      }
      // Out of descriptors or memory: an immediate retry fails the same way
      // (the connection stays in the backlog), so wait, longer each time.
      if (pause.count() == 0) {
        pause = kFirstPause;
        failed = 0;
        failing_since = std::chrono::steady_clock::now();
        spdlog::warn("{}: accept failed: {}; retrying in {} ms, then at longer intervals up to {} ms, until an "
                     "accept succeeds (logged once)",
                     name_, ec.message(), kFirstPause.count(), kLongestPause.count());
      } else {
        pause = std::min(pause * 2, kLongestPause);
      }
      ++failed;
      backoff_.expires_after(pause);
      auto [wec] = co_await backoff_.async_wait(asio::as_tuple(asio::use_awaitable));
      if (wec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
      continue;
    }
    if (pause.count() != 0) {
      auto ms = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - failing_since);
      spdlog::info("{}: accepting again after {} failed accept(s) over {} ms", name_, failed, ms.count());
      pause = milliseconds(0);
    }
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(socket.get_executor(), handler_(std::move(socket)), [name = name_](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::error("{}: connection handler failed: {}", name, ex.what());
      }
    });
  }
}

tcp::endpoint parse_endpoint(std::string_view text) {
  auto [host, port] = parse_host_port(text);
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (!ec) return {addr, port};
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty())
    throw std::invalid_argument("cannot resolve host '" + host + "' in '" + std::string(text) + "'");
  return results.begin()->endpoint();
}

std::string to_string(const tcp::endpoint& ep) {
  if (ep.address().is_v6()) return "[" + ep.address().to_string() + "]:" + std::to_string(ep.port());
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

}  // namespace sluice::net
