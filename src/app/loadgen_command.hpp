#pragma once
#include <CLI/App.hpp>

namespace sluice::app {
// `sluice loadgen`: opens N real-time streams to a loopback ws:// URL and
// measures each frame's round trip against the simulator's bench mode
// (src/loadgen; bench/run drives it).
void register_loadgen_command(CLI::App& app, int& exit_code);
}  // namespace sluice::app
