#pragma once
// The simulator's drop cues (SimFaults::drops, Simulator::add_drop) and the
// record of the streams it dropped. Thread-safe: cues are armed from any
// thread (the admin listener, a test) and read by every stream's strand.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

#include "sim/simulator.hpp"

namespace sluice::sim {

class Drops {
 public:
  explicit Drops(std::vector<DropCue> cues);
  DropCue add(DropCue cue);
  // Any cue armed at all: streams only look for one then.
  bool any() const { return armed_.load(std::memory_order_acquire); }
  // The first cue for stream `n` that is due with `audio_seconds` received
  // and `elapsed` since it opened, if any.
  std::optional<DropCue> due(std::uint64_t n, double audio_seconds, std::chrono::steady_clock::duration elapsed) const;
  void record(SimDrop drop);
  std::vector<SimDrop> records() const;

 private:
  mutable std::mutex mutex_;
  std::vector<DropCue> cues_;     // guarded by mutex_
  std::vector<SimDrop> records_;  // guarded by mutex_
  std::atomic<bool> armed_{false};
};

}  // namespace sluice::sim
