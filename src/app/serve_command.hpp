#pragma once
#include <CLI/App.hpp>

namespace sluice::app {
// `sluice serve`: the gateway (with the bundled simulator as upstream when no
// upstream and no DEEPGRAM_API_KEY are configured).
void register_serve_command(CLI::App& app, int& exit_code);
// `sluice check-config FILE`: loads and validates FILE as serve would; exit
// 0 (ok, one line on stdout), 1 (the first error on stderr) or 2 (bad usage).
void register_check_config_command(CLI::App& app, int& exit_code);
// `sluice hash-key KEY`: prints the hash to put in a tenant's keys.
void register_hash_key_command(CLI::App& app, int& exit_code);
}  // namespace sluice::app
