#include "util/service_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

namespace sluice::util::service {

bool notify(std::string_view state) {
  const char* name = std::getenv("NOTIFY_SOCKET");
  if (!name || !*name) return false;
  std::string_view path(name);
  // A path, or an abstract socket written as "@name"; sun_path has room for 107 bytes and a NUL.
  if ((path.front() != '/' && path.front() != '@') || path.size() >= sizeof(sockaddr_un::sun_path)) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (path.front() == '@') addr.sun_path[0] = '\0';
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  ssize_t sent;
  do {
    sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&addr), len);
  } while (sent < 0 && errno == EINTR);
  ::close(fd);
  return sent == static_cast<ssize_t>(state.size());
}

namespace {
std::string with_status(std::string_view head, std::string_view status) {
  std::string s(head);
  if (!status.empty()) {
    s += "\nSTATUS=";
    // One line: a newline would start another assignment.
    for (char c : status) s += c == '\n' ? ' ' : c;
  }
  return s;
}
}  // namespace

bool notify_ready(std::string_view status) { return notify(with_status("READY=1", status)); }

bool notify_reloading(std::string_view status) {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  auto usec = static_cast<unsigned long long>(ts.tv_sec) * 1000000ull + static_cast<unsigned long long>(ts.tv_nsec) / 1000;
  return notify(with_status("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec), status));
}

bool notify_stopping(std::string_view status) { return notify(with_status("STOPPING=1", status)); }

}  // namespace sluice::util::service
