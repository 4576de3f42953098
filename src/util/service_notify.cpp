#include "util/service_notify.hpp"

#include <systemd/sd-daemon.h>
#include <time.h>

#include <string>

namespace sluice::util::service {

bool notify(std::string_view state) {
  // sd_notify: > 0 sent, 0 no $NOTIFY_SOCKET, < 0 an error (-errno).
  return ::sd_notify(0, std::string(state).c_str()) > 0;
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
