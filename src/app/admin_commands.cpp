#include "app/admin_commands.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <fmt/chrono.h>
#include <fmt/format.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <thread>

#include "config/config.hpp"
#include "util/json_text.hpp"

namespace sluice::app {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;

struct AdminOptions {
  std::string config_file;
  std::string admin;       // HOST:PORT of the admin listener
  std::string token_file;  // where `serve` wrote a generated token
  double timeout = 5;      // seconds per request
};

// A failure to report: its message, and the exit status (1: the gateway
// answered no; 2: bad input; 3: the gateway cannot be reached).
struct Failure : std::runtime_error {
  Failure(int status, const std::string& message) : std::runtime_error(message), status(status) {}
  int status;
};

struct Target {
  std::string host, port, token;
};

// The admin listener and token the same way `serve` finds them: the command
// line, the environment, the configuration file, the defaults; a token
// `serve` generated is read from its token file.
Target resolve(const AdminOptions& o) {
  config::Config cfg;
  try {
    if (!o.config_file.empty()) cfg = config::load_config_file(o.config_file);
    config::apply_environment(cfg, [](const char* name) -> const char* { return std::getenv(name); });
  } catch (const config::ConfigError& e) {
    throw Failure(2, std::string("invalid configuration: ") + e.what());
  }
  std::string listen = o.admin.empty() ? cfg.admin.listen : o.admin;
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size())
    throw Failure(2, "admin address must be HOST:PORT, got '" + listen + "'");
  Target t;
  t.host = listen.substr(0, colon);
  t.port = listen.substr(colon + 1);
  if (t.host.size() > 2 && t.host.front() == '[' && t.host.back() == ']') t.host = t.host.substr(1, t.host.size() - 2);
  if (t.host.empty() || t.host == "0.0.0.0") t.host = "127.0.0.1";
  if (t.host == "::") t.host = "::1";
  t.token = cfg.admin.token;
  if (t.token.empty()) {
    std::ifstream in(o.token_file);
    std::getline(in, t.token);
  }
  if (t.token.empty())
    throw Failure(2, "no admin token: set SLUICE_ADMIN_TOKEN, admin.token in --config, or run where `serve` wrote " +
                         o.token_file + " (--token-file)");
  return t;
}

// One request to the admin API; the parsed JSON answer of a 2xx.
json::value request(const AdminOptions& o, http::verb verb, const std::string& target) {
  auto t = resolve(o);
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  http::response<http::string_body> res;
  boost::system::error_code failed;
  std::string stage = "connecting to";
  auto deadline = std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(o.timeout));
  asio::ip::tcp::resolver resolver(ioc);
  resolver.async_resolve(t.host, t.port, [&](boost::system::error_code ec, asio::ip::tcp::resolver::results_type r) {
    if (ec) return void(failed = ec);
    stream.expires_after(deadline);
    stream.async_connect(r, [&](boost::system::error_code ec, const asio::ip::tcp::endpoint&) {
      if (ec) return void(failed = ec);
      stage = "talking to";
      auto req = std::make_shared<http::request<http::empty_body>>(verb, target, 11);
      req->set(http::field::host, t.host);
      req->set(http::field::authorization, "Bearer " + t.token);
      req->set(http::field::user_agent, "sluice-cli/" SLUICE_VERSION);
      http::async_write(stream, *req, [&, req](boost::system::error_code ec, std::size_t) {
        if (ec) return void(failed = ec);
        auto buffer = std::make_shared<beast::flat_buffer>();
        http::async_read(stream, *buffer, res, [&, buffer](boost::system::error_code ec, std::size_t) {
          if (ec) failed = ec;
        });
      });
    });
  });
  ioc.run();
  if (failed)
    throw Failure(3, fmt::format("cannot reach the admin API: {} {}:{}: {}", stage, t.host, t.port, failed.message()));
  boost::system::error_code ec;
  auto body = json::parse(res.body(), ec);
  if (res.result_int() / 100 != 2) {
    std::string message = res.body();
    if (!ec && body.is_object())
      if (auto* m = body.as_object().if_contains("message"); m && m->is_string()) message = m->as_string().c_str();
    throw Failure(res.result() == http::status::unauthorized ? 2 : 1,
                  fmt::format("the gateway answered {}: {}", res.result_int(), message));
  }
  if (ec) throw Failure(1, "the gateway's answer is not JSON: " + ec.message());
  return body;
}

std::string str(const json::value* v) {
  if (!v || v->is_null()) return "-";
  if (v->is_string()) return v->as_string().empty() ? "-" : std::string(v->as_string());
  return util::json_text(*v);
}

double num(const json::value* v) {
  if (!v || !v->is_number()) return 0;
  return v->to_number<double>();
}

std::string seconds(double s) {
  if (s < 60) return fmt::format("{:.1f}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", static_cast<long>(s) / 60, static_cast<long>(s) % 60);
  return fmt::format("{}h{:02}m", static_cast<long>(s) / 3600, static_cast<long>(s) % 3600 / 60);
}

// In cluster mode each pool also shows the fleet's leases, its wait list and
// the leases per instance.
std::string pools_table(const json::value& answer) {
  const bool fleet = answer.as_object().contains("fleet_leases");
  std::string out = fmt::format("{:<16} {:>6} {:>6} {:>9} {:>6} {:>7} {:>9} {:>9}", "POOL", "IN USE", "LIMIT",
                                "EFFECTIVE", "QUEUED", "COOLING", "DELAY", "429s");
  out += fleet ? fmt::format(" {:>6} {:>7}  {}\n", "FLEET", "WAITING", "BY INSTANCE") : "\n";
  for (const auto& p : answer.at("pools").as_array()) {
    const auto& o = p.as_object();
    std::string fleet_cells;
    if (fleet) {
      const auto* f = o.if_contains("fleet");
      if (f && f->is_object()) {
        std::string by;
        for (const auto& [name, n] : f->as_object().at("instances").as_object())
          by += fmt::format("{}{}={}", by.empty() ? "" : " ", std::string_view(name), str(&n));
        fleet_cells = fmt::format(" {:>6} {:>7}  {}", str(f->as_object().if_contains("in_use")),
                                  str(f->as_object().if_contains("waiting")), by.empty() ? "-" : by);
      } else {
        fleet_cells = fmt::format(" {:>6} {:>7}  {}", "?", "?", "-");
      }
    }
    out += fmt::format("{:<16} {:>6} {:>6} {:>9} {:>6} {:>7} {:>9} {:>9}{}\n", str(o.if_contains("name")),
                       str(o.if_contains("in_use")), str(o.if_contains("limit")), str(o.if_contains("effective_limit")),
                       str(o.if_contains("queued")), str(o.if_contains("cooling")),
                       num(o.if_contains("release_delay_seconds")) > 0
                           ? seconds(num(o.if_contains("release_delay_seconds")))
                           : std::string("-"),
                       str(o.if_contains("upstream_429_total")), fleet_cells);
  }
  if (const auto* e = answer.as_object().if_contains("fleet_error"); e && e->is_string())
    out += "fleet: " + std::string(e->as_string()) + "\n";
  return out;
}

// Idle streams (no audio for relay.idle_after) are marked with '*', streams
// that only sent KeepAlive since they opened with '!'.
// A fleet's list (scope=cluster) starts each row with the instance.
std::string sessions_table(const json::value& answer) {
  const bool fleet = answer.as_object().contains("scope");
  std::string out = fleet ? fmt::format("{:<12} ", "INSTANCE") : "";
  out += fmt::format("{:>6}  {:<8} {:<12} {:<18} {:<11} {:>8} {:>8}  {}\n", "ID", "STATE", "POOL", "TENANT", "PATH",
                     "AGE", "NO AUDIO", "REQUEST ID");
  for (const auto& s : answer.at("sessions").as_array()) {
    const auto& o = s.as_object();
    const auto* counters = o.if_contains("counters");
    bool keepalive_only = counters && counters->is_object() &&
                          num(counters->as_object().if_contains("audio_messages")) == 0 &&
                          num(counters->as_object().if_contains("keep_alive")) > 0;
    auto state = str(o.if_contains("state"));
    char mark = keepalive_only ? '!' : state == "idle" ? '*' : ' ';
    if (fleet) out += fmt::format("{:<12} ", str(o.if_contains("instance")));
    out += fmt::format("{:>6}{} {:<8} {:<12} {:<18} {:<11} {:>8} {:>8}  {}\n", str(o.if_contains("id")), mark, state,
                       str(o.if_contains("pool")), str(o.if_contains("tenant")), str(o.if_contains("path")),
                       seconds(num(o.if_contains("age_seconds"))), seconds(num(o.if_contains("idle_seconds"))),
                       str(o.if_contains("request_id")));
  }
  return out;
}

std::string query(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string q;
  for (const auto& [k, v] : params) {
    if (v.empty()) continue;
    q += (q.empty() ? "?" : "&") + k + "=";
    for (unsigned char c : v) {
      if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') q += static_cast<char>(c);
      else q += fmt::format("%{:02X}", c);
    }
  }
  return q;
}

void add_admin_options(CLI::App* cmd, AdminOptions& o) {
  cmd->add_option("-c,--config", o.config_file, "The gateway's YAML configuration (for admin.listen and admin.token)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--admin", o.admin,
                  "Admin listener HOST:PORT (default: SLUICE_ADMIN_LISTEN, admin.listen in --config, 127.0.0.1:9090)");
  cmd->add_option("--token-file", o.token_file,
                  "Where `serve` wrote a generated admin token, read when SLUICE_ADMIN_TOKEN and admin.token are unset")
      ->capture_default_str();
  cmd->add_option("--timeout", o.timeout, "Seconds to wait for the gateway's answer")
      ->check(CLI::Range(0.1, 600.0))
      ->capture_default_str();
}

int report(const Failure& f) {
  std::cerr << "sluice: " << f.what() << "\n";
  return f.status;
}

}  // namespace

void register_admin_commands(CLI::App& app, int& exit_code) {
  constexpr const char* kFooter =
      "Exit status: 0 done; 1 the gateway refused (e.g. no such stream); 2 bad input or no admin token; 3 the gateway "
      "cannot be reached.";
  {
    struct Opts {
      AdminOptions admin{.token_file = "sluice-admin.token"};
      std::string pool, tenant, state, path;
      double idle_for = -1;
      bool json = false, cluster = false;
    };
    auto o = std::make_shared<Opts>();
    auto* cmd = app.add_subcommand("ls", "List the open streams of a running gateway (its admin API)");
    add_admin_options(cmd, o->admin);
    cmd->add_option("--pool", o->pool, "Only this pool's streams");
    cmd->add_option("--tenant", o->tenant, "Only this tenant's streams");
    cmd->add_option("--state", o->state, "Only streams in this state")
        ->check(CLI::IsMember({"queued", "connecting", "open", "idle", "closing"}));
    cmd->add_option("--idle-for", o->idle_for, "Only streams without audio for at least this many seconds")
        ->check(CLI::NonNegativeNumber);
    cmd->add_flag("--cluster", o->cluster,
                  "Every instance's streams (cluster mode: scope=cluster), each with the instance that holds it");
    cmd->add_flag("--json", o->json, "Print the admin API's answer as it is");
    cmd->footer(std::string("Streams marked * are idle (no audio for relay.idle_after); ! sent only KeepAlive. ") +
                kFooter);
    cmd->callback([o, &exit_code] {
      try {
        auto target = "/api/v1/sessions" + query({{"scope", o->cluster ? "cluster" : ""},
                                                  {"pool", o->pool},
                                                  {"tenant", o->tenant},
                                                  {"state", o->state},
                                                  {"idle_for", o->idle_for >= 0 ? fmt::format("{}", o->idle_for) : ""}});
        auto answer = request(o->admin, http::verb::get, target);
        std::cout << (o->json ? util::json_text(answer) + "\n" : sessions_table(answer));
      } catch (const Failure& f) {
        exit_code = report(f);
      }
    });
  }
  {
    struct Opts {
      AdminOptions admin{.token_file = "sluice-admin.token"};
      bool json = false;
    };
    auto o = std::make_shared<Opts>();
    auto* cmd = app.add_subcommand("pools", "Show the pools of a running gateway: use, limits, queue, release delay");
    add_admin_options(cmd, o->admin);
    cmd->add_flag("--json", o->json, "Print the admin API's answer as it is");
    cmd->footer(kFooter);
    cmd->callback([o, &exit_code] {
      try {
        auto answer = request(o->admin, http::verb::get, "/api/v1/pools");
        std::cout << (o->json ? util::json_text(answer) + "\n" : pools_table(answer));
      } catch (const Failure& f) {
        exit_code = report(f);
      }
    });
  }
  {
    struct Opts {
      AdminOptions admin{.token_file = "sluice-admin.token"};
      std::uint64_t id = 0;
      std::string instance;
    };
    auto o = std::make_shared<Opts>();
    auto* cmd = app.add_subcommand(
        "end", "End a stream gracefully: the vendor's final results still reach the client (DELETE /api/v1/sessions/ID)");
    add_admin_options(cmd, o->admin);
    cmd->add_option("id", o->id, "The stream's id (as `sluice ls` and the x-sluice-session-id header show it)")
        ->required();
    cmd->add_option("--instance", o->instance,
                    "The instance that holds it, when another gateway of the fleet does (as `sluice ls --cluster` "
                    "shows it)");
    cmd->footer(kFooter);
    cmd->callback([o, &exit_code] {
      try {
        auto answer = request(o->admin, http::verb::delete_,
                              fmt::format("/api/v1/sessions/{}", o->id) + query({{"instance", o->instance}}));
        std::cout << "stream " << o->id << ": " << str(answer.as_object().if_contains("status")) << "\n";
      } catch (const Failure& f) {
        exit_code = report(f);
      }
    });
  }
  {
    struct Opts {
      AdminOptions admin{.token_file = "sluice-admin.token"};
      double interval = 1;
      int count = 0;
    };
    auto o = std::make_shared<Opts>();
    auto* cmd = app.add_subcommand("top", "Pools and streams of a running gateway, refreshed until interrupted");
    add_admin_options(cmd, o->admin);
    cmd->add_option("-n,--interval", o->interval, "Seconds between refreshes")
        ->check(CLI::Range(0.1, 3600.0))
        ->capture_default_str();
    cmd->add_option("--count", o->count, "Stop after this many refreshes (0: until interrupted)")
        ->check(CLI::NonNegativeNumber);
    cmd->footer(std::string("Streams marked * are idle; ! sent only KeepAlive. ") + kFooter);
    cmd->callback([o, &exit_code] {
      const bool tty = ::isatty(STDOUT_FILENO);
      for (int i = 0; o->count == 0 || i < o->count; ++i) {
        if (i > 0) std::this_thread::sleep_for(std::chrono::duration<double>(o->interval));
        try {
          auto pools = request(o->admin, http::verb::get, "/api/v1/pools");
          auto sessions = request(o->admin, http::verb::get, "/api/v1/sessions");
          std::string screen = tty ? "\x1b[H\x1b[2J" : "";
          auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
          screen += fmt::format("sluice top: {} stream(s), every {}s, {:%H:%M:%S} UTC\n\n",
                                sessions.at("sessions").as_array().size(), o->interval, fmt::gmtime(now));
          screen += pools_table(pools) + "\n" + sessions_table(sessions);
          if (!tty) screen += "\n";
          std::cout << screen << std::flush;
        } catch (const Failure& f) {
          exit_code = report(f);
          return;
        }
      }
    });
  }
}

}  // namespace sluice::app
