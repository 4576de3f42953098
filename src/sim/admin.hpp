#pragma once
// The admin endpoint's representation of the simulator's ground truth.
#include <string>

#include "sim/simulator.hpp"

namespace sluice::sim {

// {"projects":{"<name>":{"<family>":{"open":n,"max_open":n,"accepted":n,
//  "refused_429":n}}},"handshakes":n,"unauthorized":n}
std::string stats_to_json(const SimStats& stats);

}  // namespace sluice::sim
