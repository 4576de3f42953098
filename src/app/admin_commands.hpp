#pragma once
// The live command line: `sluice ls`, `sluice pools`, `sluice end ID` and
// `sluice top`, talking to a running gateway's admin API.
#include <CLI/CLI.hpp>

namespace sluice::app {

void register_admin_commands(CLI::App& app, int& exit_code);

}  // namespace sluice::app
