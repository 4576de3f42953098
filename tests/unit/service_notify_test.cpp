// The service manager's notification protocol (util/service_notify): one
// datagram to $NOTIFY_SOCKET, a path or an abstract name ("@name").
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "util/service_notify.hpp"

using namespace sluice::util;

namespace {

// Binds an abstract datagram socket named `name` (without the leading NUL).
int bind_abstract(const std::string& name) {
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path + 1, name.data(), name.size());
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) ADD_FAILURE() << std::strerror(errno);
  return fd;
}

std::string receive(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 2000) != 1) return "(nothing)";
  char buf[1024];
  auto n = ::recv(fd, buf, sizeof buf, 0);
  return n < 0 ? "(error)" : std::string(buf, static_cast<std::size_t>(n));
}

}  // namespace

TEST(ServiceNotify, SendsToAnAbstractSocket) {
  auto name = "sluice-notify-test-" + std::to_string(::getpid());
  int fd = bind_abstract(name);
  ::setenv("NOTIFY_SOCKET", ("@" + name).c_str(), 1);
  EXPECT_TRUE(service::notify_ready("listening on 127.0.0.1:8080\nand more"));
  EXPECT_EQ(receive(fd), "READY=1\nSTATUS=listening on 127.0.0.1:8080 and more");  // one STATUS line
  EXPECT_TRUE(service::notify_reloading("reloading"));
  auto reloading = receive(fd);
  EXPECT_EQ(reloading.rfind("RELOADING=1\nMONOTONIC_USEC=", 0), 0u) << reloading;
  EXPECT_NE(reloading.find("\nSTATUS=reloading"), std::string::npos) << reloading;
  EXPECT_TRUE(service::notify_stopping(""));
  EXPECT_EQ(receive(fd), "STOPPING=1");
  ::unsetenv("NOTIFY_SOCKET");
  ::close(fd);
}

TEST(ServiceNotify, NothingWithoutOrWithABadSocket) {
  ::unsetenv("NOTIFY_SOCKET");
  EXPECT_FALSE(service::notify("READY=1"));
  ::setenv("NOTIFY_SOCKET", "relative/path", 1);
  EXPECT_FALSE(service::notify("READY=1"));
  ::setenv("NOTIFY_SOCKET", "/nonexistent/sluice-notify.sock", 1);
  EXPECT_FALSE(service::notify("READY=1"));
  ::unsetenv("NOTIFY_SOCKET");
}
