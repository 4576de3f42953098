#pragma once

#include "util/histogram.hpp"

namespace sluice::admin {

// Cluster mode's figures (the instance's link to Redis), read at scrape time.
struct ClusterFigures {
  bool redis_up = false;            // the last command reached Redis
  int leases_held = 0;              // fleet leases this instance holds
  int waiting = 0;                  // streams of this instance waiting for the fleet
  long long reregistered = 0;       // leases registered again after Redis lost them
  long long local_share_admissions = 0;  // admitted on the local share while Redis was away
  util::HistogramSnapshot acquire;  // acquire: request to outcome, seconds
};

}  // namespace sluice::admin
