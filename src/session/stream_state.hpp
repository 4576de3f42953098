#pragma once
// What one stream holds from its registration to its end, with one owner:
// the live registry entry, the pool lease, the upstream leg's count and the
// history row. Each comes down in the destructor, in order (the row's end is
// recorded while the entry is still there, then the leg, the lease and the
// entry go), so no exit (a refusal, an exception, a coroutine destroyed at
// shutdown) can leave a concurrency count up or a history row open.
//
// The log has one line when the stream opens and one when it ends (whether
// it opened or not), each with every field of the session (util/log.hpp).
//
// Thread safety: used by the stream's own coroutines (one strand) only.
#include <spdlog/common.h>

#include <chrono>
#include <memory>
#include <string_view>

#include "admission/controller.hpp"
#include "history/recorder.hpp"
#include "registry/registry.hpp"

namespace sluice::session {

class StreamState {
 public:
  StreamState(std::shared_ptr<history::Recorder> recorder, registry::Registration registration);
  ~StreamState();
  StreamState(const StreamState&) = delete;
  StreamState& operator=(const StreamState&) = delete;

  registry::SessionEntry& entry() { return registration_.entry(); }
  registry::SessionId id() { return entry().info().id; }

  // Admission granted: the lease is held and the history row opens.
  void admitted(admission::Lease lease);
  // The upstream leg exists (connecting, then open) while this is held.
  void connecting();
  // The vendor and the client both accepted: the stream is open.
  void opened();
  // The upstream leg is gone: the lease (its capacity) returns now. Once.
  void upstream_gone();
  // The row's ending, recorded once: a stream that never opened (refused,
  // timed out in the queue, the vendor refused, the client left during the
  // upgrade), or one that was relayed. A stream destroyed without either is
  // recorded all the same: interrupted if it was admitted, else abandoned.
  // Each logs the stream's one ending line with every field of the session
  // and the ending: `line` is its message (default "[S<id>] ended").
  void not_opened(const history::Ending& how, std::string_view line = {},
                  spdlog::level::level_enum level = spdlog::level::info);
  void finished(const history::Ending& how, std::string_view line = {},
                spdlog::level::level_enum level = spdlog::level::info);

  admission::Lease& lease() { return lease_; }
  // Since the request arrived (registration), on the steady clock.
  double seconds_since_arrival() const;

 private:
  std::shared_ptr<history::Recorder> recorder_;  // null when the history is off
  registry::Registration registration_;
  std::chrono::steady_clock::time_point arrived_ = std::chrono::steady_clock::now();
  admission::Lease lease_;
  admission::LegToken leg_;
  bool admitted_ = false;
  bool ended_ = false;  // the row's ending is recorded
  bool opened_ = false;
  bool upstream_gone_ = false;

  void log_ending(const history::Ending& how, std::string_view line, spdlog::level::level_enum level);
};

}  // namespace sluice::session
