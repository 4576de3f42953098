#include "app/serve_command.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <thread>

#include "config/config.hpp"
#include "net/listener.hpp"
#include "protocol/credential.hpp"
#include "protocol/errors.hpp"
#include "admission/controller.hpp"
#include "events/event_log.hpp"
#include "registry/registry.hpp"
#include "server/gateway.hpp"
#include "sim/simulator.hpp"
#include "util/log.hpp"
#include "util/service_notify.hpp"

namespace sluice::app {
namespace {

struct ServeOptions {
  std::string config_file;
  std::string listen;
  std::string admin_listen;
  std::string upstream;
  std::string log_level;
  std::string log_format;
  std::string admin_token_file = "sluice-admin.token";
  int threads = 0;
  double drain_seconds = -1;  // unset: the file's drain_timeout
};

const char* env_lookup(const char* name) { return std::getenv(name); }

std::string rlimit_text(rlim_t v) { return v == RLIM_INFINITY ? "unlimited" : std::to_string(v); }

// Two descriptors per stream: the soft limit (often 1024) would cap the
// gateway long before the hard one, so take the hard one.
void raise_open_file_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    spdlog::warn("open files: cannot read RLIMIT_NOFILE: {}", std::strerror(errno));
    return;
  }
  const rlim_t soft = rl.rlim_cur;
  if (soft != rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      spdlog::warn("open files: cannot raise the soft limit {} to the hard limit {}: {}", rlimit_text(soft),
                   rlimit_text(rl.rlim_max), std::strerror(errno));
      return;
    }
  }
  spdlog::info("open files: soft limit {} (was {}), hard limit {}", rlimit_text(rl.rlim_cur), rlimit_text(soft),
               rlimit_text(rl.rlim_max));
}

// The file, then the environment, then the flags.
config::Config load_effective_config(const ServeOptions& o) {
  config::Config cfg;
  if (!o.config_file.empty()) cfg = config::load_config_file(o.config_file);
  config::apply_environment(cfg, env_lookup);
  if (!o.listen.empty()) cfg.listen = o.listen;
  if (!o.admin_listen.empty()) cfg.admin.listen = o.admin_listen;
  if (!o.upstream.empty()) cfg.upstream.url = o.upstream;
  if (!o.log_level.empty()) cfg.log.level = o.log_level;
  if (!o.log_format.empty()) cfg.log.format = o.log_format;
  if (o.threads > 0) cfg.threads = o.threads;
  if (o.drain_seconds >= 0) cfg.drain_timeout = config::Seconds(o.drain_seconds);
  config::validate(cfg);
  config::check_upstream_key(cfg);
  return cfg;
}

// `check-config FILE`: the file as `serve --config FILE` loads it (with the
// environment), and the TLS files it names loaded as at start.
int run_check_config(const std::string& file) {
  ServeOptions o;
  o.config_file = file;
  try {
    auto cfg = load_effective_config(o);
    server::check_tls_files(cfg);
  } catch (const config::ConfigError& e) {
    std::cerr << "sluice: invalid configuration: " << e.what() << "\n";
    return 1;
  }
  std::cout << "sluice: configuration " << file << " is ok\n";
  return 0;
}

int run_serve(const ServeOptions& o) {
  config::Config cfg;
  try {
    cfg = load_effective_config(o);
  } catch (const config::ConfigError& e) {
    std::cerr << "sluice: invalid configuration: " << e.what() << "\n";
    return 2;
  }
  util::log::setup(cfg.log.level, *util::log::parse_format(cfg.log.format));
  raise_open_file_limit();

  boost::asio::io_context ioc(cfg.threads);
  std::unique_ptr<sim::Simulator> simulator;
  if (!cfg.upstream.url && cfg.upstream.api_key.empty()) {
    // Nothing to reach Deepgram with: run the bundled simulator as upstream.
    sim::SimConfig sc;
    simulator = std::make_unique<sim::Simulator>(ioc, sc);
    simulator->start();
    auto url = "ws://" + net::to_string(simulator->endpoint());
    cfg.upstream.url = url;
    cfg.upstream.agent_url = url;
    cfg.upstream.api_key = "sluice-local-simulator";
    spdlog::warn("no upstream configured and DEEPGRAM_API_KEY is not set: using the bundled Deepgram simulator "
                 "at {} as the upstream (its ground truth: http://{}/state)",
                 url, net::to_string(simulator->admin_endpoint()));
  }
  if (cfg.admin.token.empty()) {
    cfg.admin.token = protocol::make_uuid();
    std::ofstream out(o.admin_token_file, std::ios::trunc);
    out << cfg.admin.token << "\n";
    out.close();
    ::chmod(o.admin_token_file.c_str(), 0600);
    spdlog::warn("no admin token configured (SLUICE_ADMIN_TOKEN or admin.token): generated one for this run "
                 "in {}",
                 o.admin_token_file);
  }
  bool pass_through = cfg.pass_through();
  auto tenants = cfg.tenants.size();
  auto upstream_url = cfg.upstream.effective_url();
  auto threads = cfg.threads;
  auto drain_timeout = cfg.drain_timeout;
  auto close_grace = cfg.relay.close_grace;
  auto close_timeout = cfg.relay.close_timeout;
  auto admin_token = cfg.admin.token;
  auto cfg_upstream_url = cfg.upstream.url.value_or("");
  std::optional<server::Gateway> gateway;
  try {
    gateway.emplace(ioc, std::move(cfg));
  } catch (const config::ConfigError& e) {
    std::cerr << "sluice: invalid configuration: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "sluice: " << e.what() << "\n";
    return 1;
  }
  gateway->start();
  if (pass_through)
    spdlog::info("pass-through mode: no client keys configured; clients send their own Deepgram key, "
                 "tenants are named by its fingerprint");
  else
    spdlog::info("virtual-key mode: {} tenant(s); the upstream key is injected by the gateway", tenants);
  auto ep = net::to_string(gateway->endpoint());
  auto admin_ep = net::to_string(gateway->admin_endpoint());
  spdlog::info("relaying to {} with {} thread(s)", upstream_url, threads);
  // SIGHUP: reload the configuration file (and environment, and flags) for
  // new streams; a bad one is refused with the reason and the old one stays.
  boost::asio::signal_set hup(ioc, SIGHUP);
  std::function<void()> wait_hup = [&] {
    hup.async_wait([&](boost::system::error_code ec, int) {
      if (ec) return;
      util::service::notify_reloading("reloading the configuration");
      try {
        auto next = load_effective_config(o);
        if (simulator) {
          next.upstream.url = cfg_upstream_url;
          next.upstream.agent_url = cfg_upstream_url;
          next.upstream.api_key = "sluice-local-simulator";
        }
        if (next.admin.token.empty()) next.admin.token = admin_token;
        gateway->reload(std::move(next));
        spdlog::info("configuration reloaded");
        util::service::notify_ready("configuration reloaded; listening on " + ep + ", admin " + admin_ep);
      } catch (const std::exception& e) {
        spdlog::error("configuration reload refused, the running configuration stays: {}", e.what());
        boost::json::object ev;
        ev["error"] = e.what();
        gateway->events().record("config_reload_refused", std::move(ev));
        util::service::notify_ready("configuration reload refused (see the log); the running configuration stays");
      }
      wait_hup();
    });
  };
  wait_hup();

  // SIGINT/SIGTERM: stop accepting (readyz false, queued handshakes refused),
  // let streams run up to the drain deadline, then ask each to finish (the
  // endpoint's close message upstream, finals delivered), and exit once every
  // stream is gone and every lease returned.
  boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
  boost::asio::steady_timer drain(ioc);
  auto to_steady = [](config::Seconds s) {
    return std::chrono::duration_cast<std::chrono::steady_clock::duration>(s);
  };
  std::chrono::steady_clock::time_point end_at, give_up_at;
  bool ending = false;
  std::function<void()> wait_drained = [&] {
    auto now = std::chrono::steady_clock::now();
    auto open = gateway->registry().size();
    if (open == 0 || now >= give_up_at) {
      auto leases = gateway->admission().leases_in_use();
      boost::json::object ev;
      ev["open_streams"] = static_cast<std::uint64_t>(open);
      ev["leases"] = leases;
      gateway->events().record("stop", std::move(ev));
      spdlog::info("stopped: {} stream(s) still open, {} lease(s) held", open, leases);
      gateway->stop();
      if (simulator) simulator->stop();
      hup.cancel();
      // The dashboard's event streams were told to end: a moment for each to
      // write its last frame and chunk (a few bytes into the socket's buffer)
      // before the I/O threads stop.
      drain.expires_after(std::chrono::milliseconds(100));
      drain.async_wait([&](boost::system::error_code) { ioc.stop(); });
      return;
    }
    if (!ending && now >= end_at) {
      ending = true;
      spdlog::info("drain deadline reached: ending {} open stream(s)", open);
      gateway->end_all_sessions();
    }
    drain.expires_after(std::chrono::milliseconds(50));
    drain.async_wait([&](boost::system::error_code) { wait_drained(); });
  };
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    auto now = std::chrono::steady_clock::now();
    end_at = now + to_steady(drain_timeout);
    give_up_at = end_at + to_steady(close_grace + close_timeout * 2);
    spdlog::info("signal {}: draining {} open stream(s) for up to {:.0f} s", sig, gateway->registry().size(),
                 drain_timeout.count());
    gateway->stop_accepting();
    util::service::notify_stopping("draining " + std::to_string(gateway->registry().size()) + " open stream(s)");
    // A second signal ends the streams at once.
    signals.async_wait([&](boost::system::error_code ec2, int) {
      if (!ec2) end_at = std::chrono::steady_clock::now();
    });
    wait_drained();
  });

  std::printf("sluice listening on %s admin %s\n", ep.c_str(), admin_ep.c_str());
  std::printf("try: node examples/stream-wav.mjs ws://%s tests/fixtures/speech.wav   "
              "(sessions: curl -H \"Authorization: Bearer $(cat %s)\" http://%s/api/v1/sessions)\n",
              ep.c_str(), o.admin_token_file.c_str(), admin_ep.c_str());
  std::fflush(stdout);
  // Both listeners are bound and accepting, and SIGHUP and SIGTERM are
  // handled (a signal before this would have ended the process): announce
  // it, on stdout and to systemd (Type=notify).
  util::service::notify_ready("listening on " + ep + ", admin " + admin_ep);

  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  return 0;
}

}  // namespace

void register_serve_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<ServeOptions>();
  auto* cmd = app.add_subcommand("serve", "Run the gateway: relay Deepgram streaming WebSockets and serve the admin API");
  cmd->add_option("-c,--config", o->config_file, "YAML configuration file (see config/sluice.example.yaml)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--listen", o->listen, "Client listener HOST:PORT (default 127.0.0.1:8080; overrides the file)");
  cmd->add_option("--admin-listen", o->admin_listen, "Admin API listener HOST:PORT (default 127.0.0.1:9090)");
  cmd->add_option("--upstream", o->upstream,
                  "Upstream base URL, ws:// or wss:// (default wss://api.deepgram.com; without it and without "
                  "DEEPGRAM_API_KEY the bundled simulator is started as upstream)");
  cmd->add_option("--log-level", o->log_level, "trace, debug, info, warn or error (default info)");
  cmd->add_option("--log-format", o->log_format,
                  "text (default) or json: one JSON object per line with time, level, run, msg and the stream's fields")
      ->check(CLI::IsMember({"text", "json"}));
  cmd->add_option("--threads", o->threads, "I/O threads (default 1)")->check(CLI::Range(1, 256));
  cmd->add_option("--admin-token-file", o->admin_token_file,
                  "Where to write a generated admin token when none is configured")
      ->capture_default_str();
  cmd->add_option("--drain-seconds", o->drain_seconds,
                  "On SIGTERM/SIGINT, how long open streams may run on before they are ended (default: "
                  "drain_timeout from the file, 30)")
      ->check(CLI::NonNegativeNumber);
  cmd->footer(
      "Environment: DEEPGRAM_API_KEY (upstream key, virtual-key mode), SLUICE_ADMIN_TOKEN (admin bearer token), "
      "SLUICE_LISTEN, SLUICE_ADMIN_LISTEN, SLUICE_UPSTREAM_URL, SLUICE_AGENT_UPSTREAM_URL, SLUICE_LOG_LEVEL, "
      "SLUICE_THREADS, SLUICE_TLS_CERT, SLUICE_TLS_KEY. Precedence: flags > environment > file > defaults.");
  cmd->callback([o, &exit_code] { exit_code = run_serve(*o); });
}

void register_check_config_command(CLI::App& app, int& exit_code) {
  auto file = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand(
      "check-config", "Check a configuration file as `serve --config FILE` would load it, without starting (like nginx -t)");
  cmd->add_option("FILE", *file, "The YAML configuration file, e.g. /etc/sluice/sluice.yaml")->required();
  cmd->footer(
      "Loads FILE with the environment applied as serve does (${VAR} interpolation, *_file secrets, "
      "DEEPGRAM_API_KEY, SLUICE_* overrides), validates it, and loads the TLS files it names. Prints "
      "\"sluice: configuration FILE is ok\" and exits 0, or prints the first error to stderr, with the file and "
      "line (\"sluice: invalid configuration: FILE:12: pools[0].limit: must be between 1 and 1000000, got 0\"), "
      "and exits 1. Bad usage exits 2. Secrets are never printed.");
  cmd->callback([file, &exit_code] { exit_code = run_check_config(*file); });
}

void register_hash_key_command(CLI::App& app, int& exit_code) {
  auto key = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("hash-key", "Print the hash of a client key, for a tenant's keys in the config");
  cmd->add_option("key", *key, "The client key; '-' reads it from standard input")->required();
  cmd->callback([key, &exit_code] {
    std::string k = *key;
    if (k == "-") std::getline(std::cin, k);
    if (k.empty()) throw CLI::ValidationError("key", "must not be empty");
    std::cout << protocol::key_hash(k) << "\n";
    exit_code = 0;
  });
}

}  // namespace sluice::app
