#pragma once
// Readiness and state notifications to the service manager (systemd's
// Type=notify) through libsystemd's sd_notify(3): one datagram of
// newline-separated KEY=VALUE assignments to the AF_UNIX socket named by
// $NOTIFY_SOCKET (a path, or an abstract name written with a leading '@').
// Without $NOTIFY_SOCKET (not started by systemd) nothing is sent.
#include <string>
#include <string_view>

namespace sluice::util::service {

// Sends `state` (e.g. "READY=1\nSTATUS=listening"); returns whether it was
// sent. A failure is not an error for the caller: the gateway works without
// a service manager.
bool notify(std::string_view state);

// "READY=1" with a STATUS= line.
bool notify_ready(std::string_view status);
// "RELOADING=1" with MONOTONIC_USEC= (CLOCK_MONOTONIC now, which systemd 253
// and later expect with it) and a STATUS= line.
bool notify_reloading(std::string_view status);
// "STOPPING=1" with a STATUS= line.
bool notify_stopping(std::string_view status);

}  // namespace sluice::util::service
