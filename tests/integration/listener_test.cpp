// The accept loop out of descriptors: with RLIMIT_NOFILE lowered so that
// every accept fails with EMFILE, the loop backs off instead of spinning, says
// so once, counts it for /metrics, and accepts the waiting connections once
// descriptors are free. `sluice serve` takes the hard open-file limit.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <sstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "child_process.hpp"
#include "net/listener.hpp"
#include "stack.hpp"
#include "sluice_binary.hpp"

using namespace sluice;
using namespace sluice::testing;
using namespace std::chrono_literals;

namespace {

// Counts the lines one listener logs about failed accepts, and prints none.
class CountingSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit CountingSink(std::string listener) : failed_(listener + ": accept failed"), again_(listener + ": accepting again") {}
  int failures() const { return failures_.load(); }    // one per episode, or one per failed accept
  int recoveries() const { return recoveries_.load(); }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::string_view text(msg.payload.data(), msg.payload.size());
    if (text.starts_with(failed_)) ++failures_;
    if (text.starts_with(again_)) ++recoveries_;
  }
  void flush_() override {}

 private:
  std::string failed_, again_;
  std::atomic<int> failures_{0}, recoveries_{0};
};

// Replaces the default logger for the test's lifetime.
class CapturedLog {
 public:
  explicit CapturedLog(const std::string& listener)
      : sink_(std::make_shared<CountingSink>(listener)), saved_(spdlog::default_logger()) {
    auto logger = std::make_shared<spdlog::logger>("listener-test", sink_);
    logger->set_level(spdlog::level::debug);
    spdlog::set_default_logger(logger);
  }
  ~CapturedLog() { spdlog::set_default_logger(saved_); }
  CountingSink& sink() { return *sink_; }

 private:
  std::shared_ptr<CountingSink> sink_;
  std::shared_ptr<spdlog::logger> saved_;
};

int highest_open_fd() {
  int highest = 2;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    auto name = e.path().filename().string();
    int fd = 0;
    if (std::from_chars(name.data(), name.data() + name.size(), fd).ec == std::errc()) highest = std::max(highest, fd);
  }
  return highest;
}

// Lowers the soft RLIMIT_NOFILE, fills every free descriptor below it, and
// undoes both when destroyed.
class DescriptorsExhausted {
 public:
  explicit DescriptorsExhausted(int headroom) {
    ::getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit low = saved_;
    low.rlim_cur = static_cast<rlim_t>(highest_open_fd() + 1 + headroom);
    if (::setrlimit(RLIMIT_NOFILE, &low) != 0) throw std::runtime_error("setrlimit failed");
  }
  // Takes every descriptor still free; returns how many.
  int fill() {
    for (int i = 0; i < 100000; ++i) {
      int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        last_errno_ = errno;
        break;
      }
      held_.push_back(fd);
    }
    return static_cast<int>(held_.size());
  }
  int last_errno() const { return last_errno_; }
  void free_all() {
    for (int fd : held_) ::close(fd);
    held_.clear();
  }
  ~DescriptorsExhausted() {
    free_all();
    ::setrlimit(RLIMIT_NOFILE, &saved_);
  }

 private:
  rlimit saved_{};
  std::vector<int> held_;
  int last_errno_ = 0;
};

// A bare listener on its own I/O thread. Its handler counts the connections
// and keeps them open, so each one holds a descriptor until the end.
class LoneListener {
 public:
  explicit LoneListener(const std::string& name)
      : listener_(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0),
                  [this](tcp::socket s) -> asio::awaitable<void> {
                    held_.push_back(std::move(s));  // on the I/O thread only
                    ++accepted;
                    co_return;
                  },
                  name, false) {
    listener_.start();
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~LoneListener() {
    std::promise<void> stopped;
    asio::post(ioc_, [&] {
      listener_.stop();
      held_.clear();
      stopped.set_value();
    });
    stopped.get_future().wait();
    work_.reset();
    ioc_.stop();
    thread_.join();
  }
  unsigned short port() const { return listener_.local_endpoint().port(); }
  std::atomic<int> accepted{0};

 private:
  asio::io_context ioc_;
  asio::executor_work_guard<asio::io_context::executor_type> work_{asio::make_work_guard(ioc_)};
  net::Listener listener_;
  std::vector<tcp::socket> held_;
  std::thread thread_;
};

// A blocking client socket, made before descriptors run out.
int client_socket() { return ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); }

bool connect_to(int fd, unsigned short port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
}

// The process-wide count behind sluice_accept_errors_total.
std::uint64_t accept_errors(const std::string& listener, const std::string& reason) {
  for (const auto& e : net::accept_error_counts())
    if (e.listener == listener && e.reason == reason) return e.total;
  return 0;
}

}  // namespace

TEST(Listener, OutOfDescriptorsBacksOffAndAcceptsAgainWhenTheyAreFree) {
  constexpr int kClients = 8;
  CapturedLog log("emfile-test");
  LoneListener l("emfile-test");
  std::vector<int> clients;
  {
    DescriptorsExhausted exhausted(16);
    for (int i = 0; i < kClients; ++i) clients.push_back(client_socket());
    for (int fd : clients) ASSERT_GE(fd, 0);
    ASSERT_GT(exhausted.fill(), 0);
    ASSERT_EQ(exhausted.last_errno(), EMFILE);
    // The handshakes complete in the kernel's backlog; accepts fail. (A
    // descriptor that another thread held during the fill and gave back
    // since lets one accept through, which then keeps it.)
    for (int fd : clients) ASSERT_TRUE(connect_to(fd, l.port())) << std::strerror(errno);
    ASSERT_TRUE(eventually([&] { return log.sink().failures() >= 1; })) << l.accepted.load() << " accepted";
    const auto first = accept_errors("emfile-test", "emfile");
    // Watch the loop for a while: backing off (10 ms doubling) it tries a
    // handful of times in half a second; retrying at once, thousands.
    std::this_thread::sleep_for(500ms);
    const int logged = log.sink().failures();
    const auto failed = accept_errors("emfile-test", "emfile") - first;
    std::printf("out of descriptors for 500 ms: %d line(s) logged about failed accepts, %llu failed accepts counted\n",
                logged, static_cast<unsigned long long>(failed));
    EXPECT_LE(logged, 2) << "the accept loop logged every failed attempt";
    EXPECT_GE(failed, 1u);
    EXPECT_LE(failed, 30u) << "the accept loop retried without pausing";
    EXPECT_LT(l.accepted.load(), kClients);
    // Descriptors come back: the waiting connections are accepted (within the
    // longest pause, 1 s), and the end of the episode is logged.
    exhausted.free_all();
    EXPECT_TRUE(eventually([&] { return l.accepted.load() == kClients; })) << l.accepted.load();
    EXPECT_GE(log.sink().recoveries(), 1);
  }
  // A new connection is accepted as before, and the count stands still.
  const auto settled = accept_errors("emfile-test", "emfile");
  int late = client_socket();
  ASSERT_GE(late, 0);
  ASSERT_TRUE(connect_to(late, l.port()));
  EXPECT_TRUE(eventually([&] { return l.accepted.load() == kClients + 1; }));
  EXPECT_EQ(accept_errors("emfile-test", "emfile"), settled);
  EXPECT_EQ(accept_errors("emfile-test", "other"), 0u);
  ::close(late);
  for (int fd : clients) ::close(fd);
}

// stop() from a thread that does not run the io_context while two I/O
// threads accept (as the gateway's drain on SIGTERM does with threads: 2):
// the acceptor is closed on the loop's strand, so nothing touches it from two
// threads at once (ThreadSanitizer runs this), and no connection is accepted
// once the close has run.
TEST(Listener, StopFromAnotherThreadWhileTwoThreadsAccept) {
  asio::io_context ioc;
  auto work = asio::make_work_guard(ioc);
  std::atomic<int> accepted{0};
  net::Listener listener(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0),
                         [&](tcp::socket) -> asio::awaitable<void> {
                           ++accepted;
                           co_return;
                         },
                         "stop-test", true);
  listener.start();
  const auto port = listener.local_endpoint().port();
  std::vector<std::thread> io;
  for (int i = 0; i < 2; ++i) io.emplace_back([&] { ioc.run(); });
  // A client connecting over and over (bounded) while the listener stops.
  std::atomic<bool> stop_client{false};
  std::atomic<int> connected{0};
  std::thread client([&] {
    for (int i = 0; i < 2000 && !stop_client; ++i) {
      int fd = client_socket();
      if (fd < 0) break;
      if (connect_to(fd, port)) ++connected;
      ::close(fd);
    }
  });
  ASSERT_TRUE(eventually([&] { return accepted.load() >= 20; })) << accepted.load();
  listener.stop();
  // The close runs on the strand: connections are refused from then on.
  EXPECT_TRUE(eventually([&] {
    int fd = client_socket();
    bool ok = connect_to(fd, port);
    ::close(fd);
    return !ok;
  }));
  stop_client = true;
  client.join();
  const int settled = accepted.load();
  EXPECT_GT(settled, 0);
  // Nothing is accepted after the close (a connection in the backlog at the
  // close is reset by the kernel, not handed over).
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(accepted.load(), settled);
  work.reset();
  ioc.stop();
  for (auto& t : io) t.join();
}

TEST(Listener, MetricsCountFailedAcceptsPerListenerAndReason) {
  Stack s;
  auto res = admin_call(s.admin_port(), http::verb::get, "/metrics", "");
  ASSERT_EQ(res.result_int(), 200u);
  const auto& body = res.body();
  EXPECT_NE(body.find("# TYPE sluice_accept_errors_total counter\n"), std::string::npos) << body;
  for (const char* listener : {"gateway", "admin"})
    for (const char* reason : {"emfile", "enfile", "enobufs", "enomem", "other"}) {
      auto series = std::string("sluice_accept_errors_total{listener=\"") + listener + "\",reason=\"" + reason + "\"} ";
      EXPECT_NE(body.find(series), std::string::npos) << series;
    }
}

TEST(Process, ServeRaisesTheOpenFileSoftLimitToTheHardOne) {
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  if (saved.rlim_max != RLIM_INFINITY && saved.rlim_max <= 256) GTEST_SKIP() << "hard limit " << saved.rlim_max;
  std::optional<ChildProcess> gw;
  {
    // The child inherits a low soft limit; the test's own is restored at once.
    struct Restore {
      rlimit& r;
      ~Restore() { ::setrlimit(RLIMIT_NOFILE, &r); }
    } restore{saved};
    rlimit low = saved;
    low.rlim_cur = 256;
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
    gw.emplace(std::vector<std::string>{SLUICE_BINARY, "serve", "--listen", "127.0.0.1:0", "--admin-listen",
                                        "127.0.0.1:0", "--upstream", "ws://127.0.0.1:1", "--admin-token-file",
                                        "/tmp/sluice-test-admin.token", "--log-level", "warn"});
  }
  gw->wait_for_line(R"(listening on 127\.0\.0\.1:(\d+) admin)");
  std::ifstream limits("/proc/" + std::to_string(gw->pid()) + "/limits");
  std::string line, soft, hard;
  while (std::getline(limits, line))
    if (line.rfind("Max open files", 0) == 0) std::istringstream(line.substr(14)) >> soft >> hard;
  auto expected = saved.rlim_max == RLIM_INFINITY ? std::string("unlimited") : std::to_string(saved.rlim_max);
  EXPECT_EQ(hard, expected);
  EXPECT_EQ(soft, expected) << "the gateway kept the soft limit it was started with (256)";
}
