#pragma once
#include <CLI/App.hpp>

namespace sluice::app {
// `sluice sessions`, `peaks`, `concurrency` and `usage`: questions to the
// history database, opened read-only and directly (the gateway may be down).
// Exit status 2 for bad arguments, 1 when the database cannot be read.
void register_history_commands(CLI::App& app, int& exit_code);
// True when the command line named one of them (its parse errors exit 2).
bool history_command_selected(const CLI::App& app);
}  // namespace sluice::app
