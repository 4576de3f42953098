#pragma once
// How long the vendor keeps counting a stream after it closed, learned from
// the refusals and acceptances the gateway meets (see docs/admission.md).
//
// The estimator keeps the times the pool's recently released streams were
// released (a bounded ring on the steady clock) and two sets of bounds:
//  - a 429 while the vendor must still count k of the released streams: the
//    k-th most recent release is still counted, so the delay is longer than
//    its age (a lower bound);
//  - an accepted handshake while the vendor can count at most k-1 released
//    streams: the k-th most recent release is no longer counted, so the delay
//    is shorter than its age (an upper bound).
// A new bound drops older ones that contradict it (the newest evidence wins),
// and bounds older than kSampleWindow are forgotten.
//
// Not thread-safe: the Controller calls it under its mutex.
#include <chrono>
#include <cstddef>
#include <deque>
#include <optional>

namespace sluice::admission {

class ReleaseDelayEstimator {
 public:
  using Clock = std::chrono::steady_clock;
  using Duration = Clock::duration;
  using TimePoint = Clock::time_point;

  // No release older than this explains a 429 or bounds the delay: the
  // longest delay the gateway will learn.
  static constexpr Duration kMaxDelay = std::chrono::seconds(30);
  // Bounds older than this are forgotten.
  static constexpr Duration kSampleWindow = std::chrono::minutes(10);
  // Bounds kept per kind, newest first.
  static constexpr std::size_t kMaxSamples = 64;
  // Added to the lower bound: at least this, or a tenth of it.
  static constexpr Duration kMinMargin = std::chrono::milliseconds(250);

  // Keeps at least the `capacity` most recent releases (a pool's limit is
  // enough: no bound and no cooldown count looks further back than that).
  explicit ReleaseDelayEstimator(std::size_t capacity = 64);
  void set_capacity(std::size_t capacity);

  // A stream the vendor had accepted was released at `t` (non-decreasing).
  void note_release(TimePoint t);

  // The release `k` places back (1 = the most recent), if the ring holds it.
  std::optional<TimePoint> release(int k) const;

  // A 429 at `now` while the vendor must still count `k` of the released
  // streams. Returns the lower bound learned (the k-th most recent release's
  // age), or nullopt when no release young enough explains the refusal.
  std::optional<Duration> on_refusal(TimePoint now, int k);
  // An accepted handshake at `now` while the vendor counts at most k-1 of the
  // released streams. Returns the upper bound learned, if any.
  std::optional<Duration> on_acceptance(TimePoint now, int k);

  // The greatest lower bound and the least upper bound seen within the window.
  std::optional<Duration> lower(TimePoint now) const;
  std::optional<Duration> upper(TimePoint now) const;
  // The delay to hold released slots for: the lower bound plus a margin
  // (kMinMargin or a tenth of it, whichever is more), never above the upper
  // bound; zero before any lower bound was seen.
  Duration estimate(TimePoint now) const;

  // Releases still cooling at `now` under `delay` (released less than `delay` ago).
  int cooling(TimePoint now, Duration delay) const;
  // When the next of them stops cooling (strictly after `now`), if any does.
  std::optional<TimePoint> next_cooling_end(TimePoint now, Duration delay) const;

  void clear_bounds();

 private:
  struct Sample {
    Duration value;
    TimePoint seen;
  };
  void trim();
  std::size_t capacity_;
  std::deque<TimePoint> releases_;  // oldest first
  std::deque<Sample> lower_;        // newest first
  std::deque<Sample> upper_;        // newest first
};

}  // namespace sluice::admission
