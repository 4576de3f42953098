#pragma once
// The fleet's release delay (cluster mode): how long the vendor keeps counting
// a stream after it closed, learned from every instance's 429s and
// acceptances and applied to every instance's releases (docs/admission.md,
// "The release delay in a fleet"). Light on purpose: admission includes it.
#include <chrono>
#include <optional>

namespace sluice::cluster {

struct FleetDelay {
  // In force: the pool's configured release_delay, or the fleet's estimate
  // from its bounds (0 until a lower bound is learned).
  std::chrono::milliseconds delay{0};
  std::optional<std::chrono::milliseconds> lower, upper;  // the fleet's learned bounds, when known
  int cooling = 0;  // the fleet's released slots cooling, as of the reply
};

// What the fleet made of an upstream 429 (LeaseStore::refused).
struct RefusalVerdict {
  // Released streams the vendor may still count explain it: a lower bound was
  // learned. Otherwise the fleet's effective limit was lowered.
  bool explained = false;
  // When explained: the age of the release that explains it; the vendor frees
  // the slot once that release is as old as the delay.
  std::optional<std::chrono::milliseconds> release_age;
  int effective_limit = 0;  // the fleet's, after it
  int in_use = 0;           // the fleet's leases of the pool, the refused one included
  FleetDelay delay;
};

}  // namespace sluice::cluster
