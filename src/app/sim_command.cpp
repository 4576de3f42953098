#include "app/sim_command.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "util/log.hpp"
#include "net/listener.hpp"
#include "protocol/endpoint.hpp"
#include "sim/simulator.hpp"

namespace sluice::app {
namespace {

struct SimOptions {
  std::string listen = "127.0.0.1:8081";
  std::string admin_listen = "127.0.0.1:8082";
  std::vector<std::string> keys;
  std::vector<std::string> limits;
  double inactivity_timeout = 10;
  long handshake_delay_ms = 0;
  double drop_probability = 0;
  std::vector<std::string> drop_at;
  long read_delay_ms = 0;
  double stale_accounting = 0;
  bool bench = false;
  unsigned seed = 0;
  int threads = 1;
  std::string log_level = "info";
};

net::tcp::endpoint endpoint_option(const std::string& option, const std::string& text) {
  try {
    return net::parse_endpoint(text);
  } catch (const std::invalid_argument& e) {
    throw CLI::ValidationError(option, e.what());
  }
}

std::chrono::milliseconds seconds_option(double seconds) {
  return std::chrono::milliseconds(static_cast<long long>(seconds * 1000 + 0.5));
}

// Builds the simulator's configuration; throws CLI::ValidationError naming
// the option at fault.
sim::SimConfig make_config(const SimOptions& o) {
  sim::SimConfig c;
  c.listen = endpoint_option("--listen", o.listen);
  c.admin_listen = endpoint_option("--admin-listen", o.admin_listen);

  for (const auto& spec : o.limits) {
    auto eq = spec.find('=');
    auto family = eq == std::string::npos ? std::nullopt : protocol::family_from_name(spec.substr(0, eq));
    int n = -1;
    if (family) {
      auto value = std::string_view(spec).substr(eq + 1);
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || p != value.data() + value.size()) n = -1;
    }
    if (!family || n < 0)
      throw CLI::ValidationError("--limit", "expected FAMILY=N with FAMILY one of streaming, flux, tts, agent "
                                            "and N a non-negative integer, got '" + spec + "'");
    c.default_limits[*family] = n;
  }

  std::map<std::string, std::vector<std::string>> keys_by_project;
  for (const auto& spec : o.keys) {
    // PROJECT:KEY, or KEY for the project "default".
    auto colon = spec.find(':');
    std::string project = colon == std::string::npos ? "default" : spec.substr(0, colon);
    std::string key = colon == std::string::npos ? spec : spec.substr(colon + 1);
    if (project.empty() || key.empty())
      throw CLI::ValidationError("--key", "expected KEY or PROJECT:KEY (both non-empty), got '" + spec + "'");
    keys_by_project[project].push_back(key);
  }
  for (auto& [name, keys] : keys_by_project)
    c.projects.push_back(sim::SimProject{name, std::move(keys), c.default_limits});

  c.inactivity_timeout = seconds_option(o.inactivity_timeout);
  c.faults.handshake_delay = std::chrono::milliseconds(o.handshake_delay_ms);
  c.faults.drop_probability = o.drop_probability;
  for (const auto& spec : o.drop_at) {
    auto cue = sim::parse_drop_cue(spec);
    if (!cue.cue) throw CLI::ValidationError("--drop-at", cue.error);
    c.faults.drops.push_back(*cue.cue);
  }
  c.faults.read_delay = std::chrono::milliseconds(o.read_delay_ms);
  c.faults.stale_accounting = seconds_option(o.stale_accounting);
  c.bench = o.bench;
  c.seed = o.seed;
  return c;
}

void run_sim(const SimOptions& o) {
  auto config = make_config(o);
  util::log::setup(o.log_level);
  boost::asio::io_context ioc(o.threads);
  std::optional<sim::Simulator> simulator;
  try {
    simulator.emplace(ioc, std::move(config));
  } catch (const std::exception& e) {
    std::cerr << "sluice sim: " << e.what() << "\n";
    throw CLI::RuntimeError(1);
  }
  simulator->start();
  std::printf("sluice sim listening on %s admin %s\n", net::to_string(simulator->endpoint()).c_str(),
              net::to_string(simulator->admin_endpoint()).c_str());
  std::fflush(stdout);
  spdlog::info("sim: {} thread(s), inactivity timeout {}s{}", o.threads, o.inactivity_timeout,
               o.bench ? ", bench mode (Echo per frame)" : "");

  // SIGINT/SIGTERM: stop accepting and close every stream; run() returns
  // once the last connection is gone.
  boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    spdlog::info("sim: signal {}, stopping", sig);
    simulator->stop();
  });
  std::vector<std::thread> pool;
  for (int i = 1; i < o.threads; ++i) pool.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  spdlog::info("sim: stopped");
}

}  // namespace

void register_sim_command(CLI::App& app) {
  auto o = std::make_shared<SimOptions>();
  auto* cmd = app.add_subcommand(
      "sim", "Run a Deepgram-compatible simulator (/v1/listen, /v2/listen, /v1/speak, /v1/agent/converse) "
             "with per-project concurrency limits, fault injection and its ground truth on an admin port");
  cmd->add_option("--listen", o->listen, "Streaming listener HOST:PORT (port 0 picks a free port)")
      ->capture_default_str();
  cmd->add_option("--admin-listen", o->admin_listen,
                  "Admin listener HOST:PORT: GET /state, POST /reset-max, GET|POST /drops, GET /healthz")
      ->capture_default_str();
  cmd->add_option("--key", o->keys,
                  "An accepted API key, KEY or PROJECT:KEY (repeatable; KEY alone belongs to project "
                  "'default'). Without any --key every key is accepted into project 'default'");
  cmd->add_option("--limit", o->limits,
                  "Concurrent streams per project for a service family, FAMILY=N with FAMILY one of "
                  "streaming (/v1/listen), flux (/v2/listen), tts (/v1/speak), agent (repeatable; applies "
                  "to every project; unlimited when absent). Over it the handshake gets HTTP 429");
  cmd->add_option("--inactivity-timeout", o->inactivity_timeout,
                  "Seconds without audio or a text message before a stream is closed with 1011 NET-0001 "
                  "(0: never)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--handshake-delay", o->handshake_delay_ms,
                  "Fault: milliseconds to wait before answering every upgrade request")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--drop-probability", o->drop_probability,
                  "Fault: probability per second of stream of closing it with 1011 (NET-0000)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--drop-at", o->drop_at,
                  "Fault on cue: [STREAM@](audio|time):SECONDS[/HOW] ends the STREAM-th stream accepted (every "
                  "stream without STREAM@) once it received SECONDS of audio, or SECONDS after it opened; HOW: "
                  "1011 (NET-0000, default), 1012, 1013, cut (FIN, no close frame), reset (RST). Repeatable; "
                  "more can be armed live with POST /drops on the admin listener")
      ->type_name("CUE");
  cmd->add_option("--read-delay", o->read_delay_ms,
                  "Fault: milliseconds to wait before reading each client message (a slow vendor)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--stale-accounting", o->stale_accounting,
                  "Fault: seconds a closed stream keeps counting toward its project's limit")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--bench", o->bench,
                "Bench mode: answer each /v1/listen binary frame at once with "
                "{\"type\":\"Echo\",\"t\":\"<first 8 bytes in hex>\"} and generate nothing else");
  cmd->add_option("--seed", o->seed, "Seed for simulated transcripts and faults (0: random)")
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "I/O threads")->capture_default_str()->check(CLI::Range(1, 256));
  cmd->add_option("--log-level", o->log_level, "trace, debug, info, warn or error")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  cmd->callback([o] { run_sim(*o); });
}

}  // namespace sluice::app
