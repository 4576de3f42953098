// sluice: a gateway for streaming speech APIs. Wiring only: each command
// lives in its own file under src/app/.
#include <CLI/CLI.hpp>

#include "app/admin_commands.hpp"
#include "app/history_commands.hpp"
#include "app/loadgen_command.hpp"
#include "app/serve_command.hpp"
#include "app/sim_command.hpp"

int main(int argc, char** argv) {
  CLI::App app{"sluice " SLUICE_VERSION
               ": a gateway for Deepgram's streaming WebSockets with live control and exact history of every "
               "stream"};
  app.require_subcommand(1);
  app.set_version_flag("--version", SLUICE_VERSION);
  int exit_code = 0;
  sluice::app::register_serve_command(app, exit_code);
  sluice::app::register_check_config_command(app, exit_code);
  sluice::app::register_hash_key_command(app, exit_code);
  sluice::app::register_sim_command(app);
  sluice::app::register_loadgen_command(app, exit_code);
  sluice::app::register_history_commands(app, exit_code);
  sluice::app::register_admin_commands(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    // The history commands and check-config promise 2 for any bad argument.
    bool two = sluice::app::history_command_selected(app) || app.got_subcommand("check-config");
    return code != 0 && two ? 2 : code;
  }
  return exit_code;
}
