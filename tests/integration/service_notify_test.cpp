// sluice under a service manager: systemd's Type=notify readiness protocol
// (READY=1 once listening, RELOADING=1 then READY=1 around a SIGHUP reload,
// STOPPING=1 on SIGTERM), on a NOTIFY_SOCKET the test binds.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

#include "child_process.hpp"
#include "sluice_binary.hpp"
#include "temp_dir.hpp"

using namespace sluice::testing;
namespace fs = std::filesystem;

namespace {

// A unix datagram socket standing in for systemd's notification socket.
class NotifySocket {
 public:
  explicit NotifySocket(const fs::path& path) : path_(path.string()) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      throw std::runtime_error("cannot bind " + path_);
  }
  ~NotifySocket() { ::close(fd_); }
  const std::string& path() const { return path_; }

  // The next datagram, or nullopt after `limit`.
  std::optional<std::string> next(std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) != 1) return std::nullopt;
    char buf[4096];
    auto n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<std::size_t>(n));
  }

 private:
  std::string path_;
  int fd_ = -1;
};

bool has_line(const std::optional<std::string>& message, const std::string& line) {
  if (!message) return false;
  std::string text = "\n" + *message + "\n";
  return text.find("\n" + line + "\n") != std::string::npos;
}

bool has_prefix_line(const std::optional<std::string>& message, const std::string& prefix) {
  return message && ("\n" + *message).find("\n" + prefix) != std::string::npos;
}

}  // namespace

TEST(ServiceNotifyProcess, ReadyWhenListeningReloadingAroundSighupStoppingOnDrain) {
  TempDir t;
  NotifySocket notify(t.dir / "notify.sock");
  auto config = t.write("sluice.yaml", "log: {level: warn}\n");
  ::setenv("NOTIFY_SOCKET", notify.path().c_str(), 1);
  ChildProcess gw({SLUICE_BINARY, "serve", "--config", config, "--listen", "127.0.0.1:0", "--admin-listen",
                   "127.0.0.1:0", "--admin-token-file", (t.dir / "admin.token").string(), "--drain-seconds", "0"});
  ::unsetenv("NOTIFY_SOCKET");
  gw.wait_for_line(R"(listening on 127\.0\.0\.1:\d+ admin)");

  auto ready = notify.next();
  ASSERT_TRUE(ready) << "no READY=1 within 10 s";
  EXPECT_TRUE(has_line(ready, "READY=1")) << *ready;
  EXPECT_TRUE(has_prefix_line(ready, "STATUS=listening on 127.0.0.1:")) << *ready;

  // A good reload: RELOADING=1 (with the monotonic clock systemd 253 wants), then READY=1.
  ::kill(gw.pid(), SIGHUP);
  auto reloading = notify.next();
  EXPECT_TRUE(has_line(reloading, "RELOADING=1")) << reloading.value_or("(none)");
  EXPECT_TRUE(has_prefix_line(reloading, "MONOTONIC_USEC=")) << reloading.value_or("(none)");
  auto reloaded = notify.next();
  EXPECT_TRUE(has_line(reloaded, "READY=1")) << reloaded.value_or("(none)");
  EXPECT_TRUE(has_prefix_line(reloaded, "STATUS=configuration reloaded")) << reloaded.value_or("(none)");

  // A refused reload ends in READY=1 too: the service runs on as it was.
  t.write("sluice.yaml", "log: {level: loud}\n");
  ::kill(gw.pid(), SIGHUP);
  EXPECT_TRUE(has_line(notify.next(), "RELOADING=1"));
  auto refused = notify.next();
  EXPECT_TRUE(has_line(refused, "READY=1")) << refused.value_or("(none)");
  EXPECT_TRUE(has_prefix_line(refused, "STATUS=configuration reload refused")) << refused.value_or("(none)");

  ::kill(gw.pid(), SIGTERM);
  auto stopping = notify.next();
  EXPECT_TRUE(has_line(stopping, "STOPPING=1")) << stopping.value_or("(none)");
  int status = gw.stop(0);  // signal 0: only wait for the exit
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST(ServiceNotifyProcess, NothingIsSentWithoutNotifySocket) {
  // The gateway starts and stops as before when no service manager asks.
  ::unsetenv("NOTIFY_SOCKET");
  TempDir t;
  ChildProcess gw({SLUICE_BINARY, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                   "--admin-token-file", (t.dir / "admin.token").string(), "--log-level", "warn"});
  gw.wait_for_line(R"(listening on 127\.0\.0\.1:\d+ admin)");
  int status = gw.stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}
