#include "app/loadgen_command.hpp"

#include <boost/json/value.hpp>

#include <CLI/CLI.hpp>
#include <cmath>
#include <iostream>
#include <memory>

#include "loadgen/load_generator.hpp"
#include "loadgen/report_format.hpp"
#include "util/json_text.hpp"

namespace sluice::app {
namespace {

struct LoadgenOptions {
  loadgen::LoadConfig config;
  long interval_ms = 100;
  double duration_s = 10;
  bool json = false;
  bool quiet = false;
};

int run_loadgen(LoadgenOptions& o) {
  auto& c = o.config;
  c.interval = std::chrono::milliseconds(o.interval_ms);
  c.duration = std::chrono::milliseconds(std::llround(o.duration_s * 1000));
  if (auto error = loadgen::validate(c)) throw CLI::ValidationError("loadgen", *error);
  if (!o.quiet) c.on_progress = [](std::string_view line) { std::cerr << "loadgen: " << line << std::endl; };
  auto report = loadgen::run_load(c);
  if (o.json)
    std::cout << util::json_text(loadgen::report_json(report)) << "\n";
  else
    std::cout << loadgen::report_table(report);
  bool clean = report.connects_failed == 0 && report.frames_lost == 0 && report.streams_ended_early == 0;
  return clean ? 0 : 2;
}

}  // namespace

void register_loadgen_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<LoadgenOptions>();
  auto& c = o->config;
  auto* cmd = app.add_subcommand(
      "loadgen",
      "Open N real-time WebSocket streams to a loopback ws:// URL, send a frame every T ms on each, and measure "
      "each frame's round trip against `sluice sim --bench` (directly or through a proxy)");
  cmd->add_option("--url", c.url, "ws:// URL on 127.0.0.0/8, ::1 or localhost")->capture_default_str();
  cmd->add_option("--streams", c.streams, "Concurrent streams")
      ->capture_default_str()
      ->check(CLI::Range(1, loadgen::kMaxStreams));
  cmd->add_option("--frame-bytes", c.frame_bytes, "Bytes per binary frame (the first 8 carry the send time)")
      ->capture_default_str()
      ->check(CLI::Range(8, 1 << 20));
  cmd->add_option("--interval-ms", o->interval_ms, "Milliseconds between frames on each stream")
      ->capture_default_str()
      ->check(CLI::Range(1, 60000));
  cmd->add_option("--duration", o->duration_s, "Seconds each stream sends for, from its handshake")
      ->capture_default_str()
      ->check(CLI::Range(0.001, static_cast<double>(loadgen::kMaxDuration.count())));
  cmd->add_option("--ramp", c.ramp, "Streams opened per second (0: as fast as possible)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--key", c.key, "API key, sent as 'Authorization: Token KEY'");
  cmd->add_option("--threads", c.threads, "I/O threads")->capture_default_str()->check(CLI::Range(1, 64));
  cmd->add_flag("--idle", c.idle, "Hold the streams open for the duration without sending frames");
  cmd->add_option("--max-pending", c.max_pending_handshakes, "Handshakes in flight at most")
      ->capture_default_str()
      ->check(CLI::Range(1, loadgen::kMaxStreams));
  cmd->add_option("--watch-pid", c.watch_pids,
                  "Also report this process's CPU time and RSS over the measured window, e.g. the proxy under "
                  "test (repeatable)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--seed", c.seed, "Seed for the frame phases (0: random)")->capture_default_str();
  cmd->add_flag("--json", o->json, "Print the report as one JSON object");
  cmd->add_flag("-q,--quiet", o->quiet, "No progress lines on standard error");
  cmd->footer(
      "Bounded: at most 20000 streams and 600 s, loopback only. Exit status 2 when a connect failed, a frame "
      "went unanswered or a stream ended early.");
  cmd->callback([o, &exit_code] { exit_code = run_loadgen(*o); });
}

}  // namespace sluice::app
