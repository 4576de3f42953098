#pragma once
#include <CLI/App.hpp>

namespace sluice::app {
// `sluice sim`: a Deepgram-compatible simulator (src/sim) with per-project
// concurrency limits, fault injection and its ground truth on an admin port.
void register_sim_command(CLI::App& app);
}  // namespace sluice::app
