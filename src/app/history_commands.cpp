#include "app/history_commands.hpp"

#include <boost/json/value.hpp>
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "history/db.hpp"
#include "history/report.hpp"
#include "history/store.hpp"
#include "util/json_text.hpp"

namespace sluice::app {
namespace {

namespace json = boost::json;
using history::ReportKind;

struct HistoryOptions {
  ReportKind kind = ReportKind::sessions;
  std::string store_url, config_file;
  bool json = false, csv = false;
  std::string at, from, to, step, window, pool, tenant, instance, tz = "UTC";
  bool all = false;
  // Set for the options the command has, to tell "given" from "empty".
  CLI::Option *at_opt = nullptr, *from_opt = nullptr, *to_opt = nullptr, *step_opt = nullptr,
              *window_opt = nullptr, *pool_opt = nullptr, *tenant_opt = nullptr,
              *instance_opt = nullptr;
};

const char* env_lookup(const char* name) { return std::getenv(name); }

std::optional<std::string> given(const CLI::Option* opt, const std::string& value) {
  if (!opt || opt->count() == 0) return std::nullopt;
  return value;
}

// --store, else the environment (SLUICE_STORE_URL, SLUICE_DATA_DIR) over the
// file's store section, else the default: where `serve` with the same
// --config and environment writes. Throws config::ConfigError.
std::string store_url(const HistoryOptions& o) {
  if (!o.store_url.empty()) return o.store_url;
  config::Config c;
  if (!o.config_file.empty()) c = config::load_config_file(o.config_file);
  config::apply_environment(c, env_lookup);
  return c.store.effective_url();
}


// "2025-03-01T12:00:00.000Z" as "2025-03-01 12:00:00.000" (the heading names
// the zone); an offset stays, since it can change within a range.
std::string show_time(const json::value& v) {
  if (!v.is_string()) return "-";
  std::string s(v.as_string());
  if (s.size() > 10 && s[10] == 'T') s[10] = ' ';
  if (!s.empty() && s.back() == 'Z') s.pop_back();
  return s;
}

std::string show_number(const json::value& v, int decimals = 1) {
  if (v.is_int64()) return std::to_string(v.as_int64());
  if (v.is_uint64()) return std::to_string(v.as_uint64());
  if (v.is_double()) return fmt::format("{:.{}f}", v.as_double(), decimals);
  return "-";
}

std::string show_text(const json::value& v) {
  if (v.is_string()) return std::string(v.as_string());
  if (v.is_null()) return "-";
  if (v.is_bool()) return v.as_bool() ? "true" : "false";
  if (v.is_number()) return show_number(v, 3);
  return util::json_text(v);
}

// Columns padded to their widest cell; numbers right-aligned.
class Table {
 public:
  Table(std::vector<std::string> headers, std::vector<bool> right) : headers_(std::move(headers)), right_(std::move(right)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  bool empty() const { return rows_.empty(); }

  std::string render(std::string_view indent = "") const {
    std::vector<std::size_t> width(headers_.size());
    for (std::size_t c = 0; c < headers_.size(); ++c) width[c] = headers_[c].size();
    for (const auto& r : rows_)
      for (std::size_t c = 0; c < r.size() && c < width.size(); ++c) width[c] = std::max(width[c], r[c].size());
    std::string out;
    auto line = [&](const std::vector<std::string>& cells) {
      std::string l(indent);
      for (std::size_t c = 0; c < cells.size(); ++c) {
        if (c) l += "  ";
        auto pad = std::string(width[c] - std::min(width[c], cells[c].size()), ' ');
        bool last = c + 1 == cells.size();
        if (c < right_.size() && right_[c]) l += pad + cells[c];
        else l += last ? cells[c] : cells[c] + pad;
      }
      while (!l.empty() && l.back() == ' ') l.pop_back();
      out += l + "\n";
    };
    line(headers_);
    for (const auto& r : rows_) line(r);
    return out;
  }

 private:
  std::vector<std::string> headers_;
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos && (s.empty() || (s.front() != ' ' && s.back() != ' ')))
    return s;
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"') out += '"';
    out += ch;
  }
  return out + "\"";
}

// A JSON value as a CSV cell: null empty, strings raw, numbers in their
// shortest form (112, not JSON's 1.12E2), objects as JSON.
std::string csv_cell(const json::value& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return std::string(v.as_string());
  if (v.is_double()) return fmt::format("{}", v.as_double());
  if (v.is_bool()) return v.as_bool() ? "true" : "false";
  return util::json_text(v);
}

void csv_row(std::string& out, const std::vector<std::string>& cells) {
  for (std::size_t i = 0; i < cells.size(); ++i) out += (i ? "," : "") + csv_field(cells[i]);
  out += "\n";
}

std::string range_text(const json::object& r) {
  if (r.contains("at")) return "at " + show_time(r.at("at"));
  return "over [" + show_time(r.at("from")) + ", " + show_time(r.at("to")) + ")";
}

std::string filters_text(const json::object& r) {
  std::string s;
  if (r.at("pool").is_string()) s += ", pool " + std::string(r.at("pool").as_string());
  if (r.at("tenant").is_string()) s += ", tenant " + std::string(r.at("tenant").as_string());
  if (auto* i = r.if_contains("instance"); i && i->is_string()) s += ", instance " + std::string(i->as_string());
  return s;
}

std::string duration_text(double seconds) {
  auto s = static_cast<long long>(std::llround(seconds));
  if (static_cast<double>(s) != seconds || s == 0) return fmt::format("{}s", seconds);
  if (s % 86400 == 0) return fmt::format("{}d", s / 86400);
  if (s % 3600 == 0) return fmt::format("{}h", s / 3600);
  if (s % 60 == 0) return fmt::format("{}m", s / 60);
  return fmt::format("{}s", s);
}

std::string session_table(const json::array& sessions, bool with_accepted, std::string_view indent = "") {
  std::vector<std::string> headers = {"INSTANCE", "RUN", "SESSION", "TENANT", "POOL", "PATH", "MODEL"};
  std::vector<bool> right = {false, true, true, false, false, false, false};
  if (with_accepted) {
    headers.push_back("ACCEPTED");
    right.push_back(false);
  }
  for (auto h : {"OPENED", "CLOSED", "SECONDS", "AUDIO_S", "OUTCOME", "CLOSE"}) headers.push_back(h);
  for (bool r : {false, false, true, true, false, false}) right.push_back(r);
  Table t(headers, right);
  for (const auto& v : sessions) {
    const auto& s = v.as_object();
    const auto* instance = s.if_contains("instance");
    std::vector<std::string> row = {instance ? show_text(*instance) : "-",
                                    show_number(s.at("run_id")),  show_number(s.at("session_id")),
                                    show_text(s.at("tenant")),    show_text(s.at("pool")),
                                    show_text(s.at("path")),      show_text(s.at("model"))};
    if (with_accepted) row.push_back(show_time(s.at("accepted_at")));
    row.push_back(show_time(s.at("opened_at")));
    row.push_back(s.at("still_open").as_bool() ? "(open)" : show_time(s.at("closed_at")));
    row.push_back(show_number(s.at("duration_seconds")));
    row.push_back(show_number(s.at("audio_seconds")));
    auto outcome = show_text(s.at("outcome"));
    if (s.at("outcome_reason").is_string()) outcome += " (" + show_text(s.at("outcome_reason")) + ")";
    row.push_back(outcome);
    std::string close;
    if (!s.at("close_code").is_null()) close = show_number(s.at("close_code"));
    if (s.at("closed_by").is_string()) close += (close.empty() ? "" : " ") + std::string("by ") + show_text(s.at("closed_by"));
    row.push_back(close.empty() ? "-" : close);
    t.add(std::move(row));
  }
  return t.render(indent);
}

std::string sessions_text(const json::object& r) {
  const auto& list = r.at("sessions").as_array();
  bool all = r.contains("include_unopened") && r.at("include_unopened").as_bool();
  auto what = r.contains("at") ? "open " + range_text(r)
                               : "that met [" + show_time(r.at("from")) + ", " + show_time(r.at("to")) + ")";
  std::string out = fmt::format("Sessions {} (zone {}{}{}): {}\n", what, show_text(r.at("zone")), filters_text(r),
                                all ? ", with never-opened" : "", list.size());
  if (list.empty()) return out + "(none)\n";
  return out + session_table(list, all);
}

std::string concurrency_text(const json::object& r) {
  std::string out = fmt::format("Concurrency per {} {} (zone {}{})\n", duration_text(r.at("step_seconds").as_double()),
                                range_text(r), show_text(r.at("zone")), filters_text(r));
  const auto& pools = r.at("pools").as_array();
  if (pools.empty()) return out + "(no streams)\n";
  Table t({"POOL", "START", "MAX", "MIN"}, {false, false, true, true});
  for (const auto& pv : pools) {
    const auto& p = pv.as_object();
    for (const auto& pt : p.at("points").as_array()) {
      const auto& o = pt.as_object();
      t.add({show_text(p.at("pool")), show_time(o.at("start")), show_number(o.at("max")), show_number(o.at("min"))});
    }
  }
  return out + t.render();
}

std::string peaks_text(const json::object& r) {
  std::string out = fmt::format("Peak concurrency in {} windows {} (zone {}{})\n",
                                duration_text(r.at("window_seconds").as_double()), range_text(r),
                                show_text(r.at("zone")), filters_text(r));
  const auto& pools = r.at("pools").as_array();
  if (pools.empty()) return out + "(no streams)\n";
  for (const auto& pv : pools) {
    const auto& p = pv.as_object();
    const auto& best = p.at("best_window").as_object();
    out += fmt::format("\nPool {}: peak {} open at {} until {}\n", show_text(p.at("pool")), show_number(p.at("peak")),
                       show_time(p.at("peak_at")), show_time(p.at("peak_until")));
    out += fmt::format("Highest window: {} to {} (max {}, min {})\n", show_time(best.at("start")),
                       show_time(best.at("end")), show_number(best.at("max")), show_number(best.at("min")));
    Table t({"WINDOW START", "WINDOW END", "MAX", "MIN", ""}, {false, false, true, true, false});
    for (const auto& wv : p.at("windows").as_array()) {
      const auto& w = wv.as_object();
      bool is_best = w.at("start") == best.at("start");
      t.add({show_time(w.at("start")), show_time(w.at("end")), show_number(w.at("max")), show_number(w.at("min")),
             is_best ? "<- peak" : ""});
    }
    out += t.render("  ");
    const auto& sessions = p.at("sessions").as_array();
    out += fmt::format("Sessions open at the peak ({}):\n", sessions.size());
    if (!sessions.empty()) out += session_table(sessions, false, "  ");
  }
  return out;
}

std::string usage_text(const json::object& r) {
  std::string out = fmt::format("Usage per day {} (zone {}{})\n", range_text(r), show_text(r.at("zone")),
                                filters_text(r));
  const auto& rows = r.at("rows").as_array();
  if (rows.empty()) return out + "(no streams)\n";
  Table t({"DAY", "TENANT", "POOL", "SESSIONS", "STREAM_MIN", "AUDIO_S", "IDLE_S"},
          {false, false, false, true, true, true, true});
  for (const auto& rv : rows) {
    const auto& u = rv.as_object();
    t.add({show_text(u.at("day")), show_text(u.at("tenant")), show_text(u.at("pool")), show_number(u.at("sessions")),
           show_number(u.at("stream_minutes"), 2), show_number(u.at("audio_seconds")),
           show_number(u.at("idle_seconds"))});
  }
  const auto& tot = r.at("totals").as_object();
  t.add({"total", "", "", show_number(tot.at("sessions")), show_number(tot.at("stream_minutes"), 2),
         show_number(tot.at("audio_seconds")), show_number(tot.at("idle_seconds"))});
  return out + t.render();
}

// Every field of a session, counters flattened, params last (as JSON).
constexpr const char* kSessionCsvColumns[] = {
    "run_id", "instance", "session_id", "request_id", "tenant", "pool", "path", "model", "client_address", "user_agent",
    "accepted_at", "admitted_at", "opened_at", "first_audio_at", "last_audio_at", "closed_at", "last_seen_at",
    "still_open", "close_code", "close_reason", "closed_by", "outcome", "outcome_reason", "client_messages",
    "client_bytes", "upstream_messages", "upstream_bytes", "audio_messages", "audio_bytes", "keep_alive",
    "audio_seconds", "idle_seconds", "duration_seconds", "upstream_request_ids", "resumes", "params"};

std::string report_csv(ReportKind kind, const json::object& r) {
  std::string out;
  switch (kind) {
    case ReportKind::sessions: {
      csv_row(out, std::vector<std::string>(std::begin(kSessionCsvColumns), std::end(kSessionCsvColumns)));
      for (const auto& v : r.at("sessions").as_array()) {
        const auto& s = v.as_object();
        const auto& counters = s.at("counters").as_object();
        std::vector<std::string> row;
        for (const auto& c : kSessionCsvColumns) {
          if (auto* f = s.if_contains(c)) row.push_back(csv_cell(*f));
          else row.push_back(csv_cell(counters.at(c)));
        }
        csv_row(out, row);
      }
      break;
    }
    case ReportKind::concurrency:
      csv_row(out, {"pool", "start", "max", "min"});
      for (const auto& pv : r.at("pools").as_array()) {
        const auto& p = pv.as_object();
        for (const auto& pt : p.at("points").as_array()) {
          const auto& o = pt.as_object();
          csv_row(out, {csv_cell(p.at("pool")), csv_cell(o.at("start")), csv_cell(o.at("max")), csv_cell(o.at("min"))});
        }
      }
      break;
    case ReportKind::peaks:
      csv_row(out, {"pool", "start", "end", "max", "min", "peak_at", "peak_window"});
      for (const auto& pv : r.at("pools").as_array()) {
        const auto& p = pv.as_object();
        const auto& best = p.at("best_window").as_object();
        for (const auto& wv : p.at("windows").as_array()) {
          const auto& w = wv.as_object();
          csv_row(out, {csv_cell(p.at("pool")), csv_cell(w.at("start")), csv_cell(w.at("end")), csv_cell(w.at("max")),
                        csv_cell(w.at("min")), csv_cell(w.at("peak_at")),
                        w.at("start") == best.at("start") ? "true" : "false"});
        }
      }
      break;
    case ReportKind::usage:
      csv_row(out, {"day", "tenant", "pool", "sessions", "stream_minutes", "audio_seconds", "idle_seconds"});
      for (const auto& rv : r.at("rows").as_array()) {
        const auto& u = rv.as_object();
        csv_row(out, {csv_cell(u.at("day")), csv_cell(u.at("tenant")), csv_cell(u.at("pool")),
                      csv_cell(u.at("sessions")), csv_cell(u.at("stream_minutes")), csv_cell(u.at("audio_seconds")),
                      csv_cell(u.at("idle_seconds"))});
      }
      break;
  }
  return out;
}

std::string report_text(ReportKind kind, const json::object& r) {
  switch (kind) {
    case ReportKind::sessions: return sessions_text(r);
    case ReportKind::concurrency: return concurrency_text(r);
    case ReportKind::peaks: return peaks_text(r);
    case ReportKind::usage: return usage_text(r);
  }
  return {};
}


int run_history(const HistoryOptions& o) {
  auto name = history::report_name(o.kind);
  auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                 std::chrono::system_clock::now().time_since_epoch()).count();
  history::ReportArgs args;
  args.at = given(o.at_opt, o.at);
  args.from = given(o.from_opt, o.from);
  args.to = given(o.to_opt, o.to);
  args.step = given(o.step_opt, o.step);
  args.window = given(o.window_opt, o.window);
  args.pool = given(o.pool_opt, o.pool);
  args.tenant = given(o.tenant_opt, o.tenant);
  args.instance = given(o.instance_opt, o.instance);
  args.tz = o.tz;
  args.all = o.all;
  history::ReportRequest request;
  std::string url;
  try {
    request = history::parse_report_request(o.kind, args, now, "--");
    url = store_url(o);
  } catch (const history::QueryError& e) {
    std::cerr << "sluice " << name << ": " << e.what() << "\n";
    return 2;
  } catch (const config::ConfigError& e) {
    std::cerr << "sluice " << name << ": invalid configuration: " << e.what() << "\n";
    return 2;
  }
  json::object report;
  try {
    history::OpenOptions opts;
    opts.read_only = true;
    history::Store store(url, opts);
    report = history::run_report(store, request, now);
  } catch (const history::QueryError& e) {
    std::cerr << "sluice " << name << ": " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "sluice " << name << ": cannot read the history at " << history::redact_url(url) << ": " << e.what()
              << "\n";
    return 1;
  }
  if (o.json) std::cout << util::json_text(report) << "\n";
  else if (o.csv) std::cout << report_csv(o.kind, report);
  else std::cout << report_text(o.kind, report);
  std::cout.flush();
  return 0;
}

constexpr const char* kTimeHelp =
    "Times: RFC 3339 (2026-11-20T14:00:00Z, 2026-11-20T15:00:00.250+01:00, a space for the T), a date "
    "(2026-11-20: midnight in --tz), a local time without offset (2026-11-20 14:00, in --tz), now, or relative "
    "to now: -2h, -30m, -7d, -90s, now-2h (units s, m, h, d, w). Ranges are half-open [from, to); --to "
    "defaults to now. A stream holds capacity during [opened, closed): it is open at T when opened <= T < "
    "closed; one still open counts until now.\n"
    "Store: --store URL, else SLUICE_STORE_URL / SLUICE_DATA_DIR over --config's store section, else "
    "sluice-data/history.db. Opened read-only: works while the gateway is down.\n"
    "Exit status: 0 answered, 2 bad arguments (the message says what was expected), 1 the database cannot be "
    "read.";

CLI::App* add_history_command(CLI::App& app, int& exit_code, ReportKind kind, const std::string& description,
                              const std::string& examples, std::shared_ptr<HistoryOptions> o) {
  o->kind = kind;
  auto* cmd = app.add_subcommand(std::string(history::report_name(kind)), description);
  cmd->add_option("--store", o->store_url,
                  "History database: a file path, sqlite:PATH or postgres://… (default: from --config and the "
                  "environment, else sluice-data/history.db)");
  cmd->add_option("-c,--config", o->config_file, "The gateway's YAML configuration, for its store section")
      ->check(CLI::ExistingFile);
  auto* json_flag = cmd->add_flag("--json", o->json, "Print the answer as one JSON object (the admin API's shape)");
  auto* csv_flag = cmd->add_flag("--csv", o->csv, "Print the answer as CSV with a header row");
  json_flag->excludes(csv_flag);
  csv_flag->excludes(json_flag);
  cmd->add_option("--tz", o->tz, "Time zone for input without an offset and for output: UTC or an IANA name "
                                 "such as Europe/Berlin")
      ->capture_default_str();
  cmd->footer(examples + "\n\n" + kTimeHelp);
  cmd->callback([o, &exit_code] { exit_code = run_history(*o); });
  return cmd;
}

}  // namespace

// --from, --to, --pool, --tenant and --instance, as every history command has them.
void add_range_options(CLI::App* cmd, HistoryOptions& o) {
  o.from_opt = cmd->add_option("--from", o.from, "Start of the range (inclusive)");
  o.to_opt = cmd->add_option("--to", o.to, "End of the range (exclusive; default now)");
  o.pool_opt = cmd->add_option("--pool", o.pool, "Only this pool");
  o.tenant_opt = cmd->add_option("--tenant", o.tenant, "Only this tenant's streams");
  o.instance_opt = cmd->add_option("--instance", o.instance,
                                   "Only the streams of this gateway (store.instance), of those sharing the store; "
                                   "default: all of them");
}

void register_history_commands(CLI::App& app, int& exit_code) {
  {
    auto o = std::make_shared<HistoryOptions>();
    auto* cmd = add_history_command(
        app, exit_code, ReportKind::sessions,
        "History: the streams open at an instant (--at), or those that met a range (--from/--to), with every "
        "recorded field",
        "Examples:\n"
        "  sluice sessions --at 2026-11-20T14:00:00Z\n"
        "  sluice sessions --at -1h --pool streaming --json\n"
        "  sluice sessions --from 2026-11-20 --to 2026-11-21 --tenant acme --all --csv > day.csv",
        o);
    o->at_opt = cmd->add_option("--at", o->at, "The instant: streams open then (opened <= T < closed)");
    add_range_options(cmd, *o);
    cmd->add_flag("--all", o->all,
                  "With --from/--to: also streams that never opened (refused, queue timeouts), by their accept time");
  }
  {
    auto o = std::make_shared<HistoryOptions>();
    auto* cmd = add_history_command(
        app, exit_code, ReportKind::peaks,
        "History: the most streams open at once per pool, in windows on the clock (12:00-12:10, 12:10-12:20, "
        "...), with the highest window and the sessions that made the peak",
        "Examples:\n"
        "  sluice peaks --window 10m --from -24h\n"
        "  sluice peaks --window 1h --from 2026-11-20 --to 2026-11-27 --tz Europe/Berlin --pool streaming\n"
        "  sluice peaks --window 10m --from -7d --csv",
        o);
    o->window_opt = cmd->add_option("--window", o->window, "Window length: 30s, 10m, 1h, 1d (required)");
    add_range_options(cmd, *o);
  }
  {
    auto o = std::make_shared<HistoryOptions>();
    auto* cmd = add_history_command(
        app, exit_code, ReportKind::concurrency,
        "History: streams open at once per pool as a series, the most and fewest in each step from --from",
        "Examples:\n"
        "  sluice concurrency --from -1h --step 1m\n"
        "  sluice concurrency --from 2026-11-20T14:00:00Z --to 2026-11-20T15:00:00Z --step 10s --csv",
        o);
    o->step_opt = cmd->add_option("--step", o->step, "Step: 1s, 10s, 1m, 1h (required)");
    add_range_options(cmd, *o);
  }
  {
    auto o = std::make_shared<HistoryOptions>();
    auto* cmd = add_history_command(
        app, exit_code, ReportKind::usage,
        "History: usage per day (in --tz), tenant and pool: streams opened, stream minutes, audio and idle "
        "seconds",
        "Examples:\n"
        "  sluice usage --from 2026-11-01 --to 2026-12-01\n"
        "  sluice usage --from 2026-11-01 --to 2026-12-01 --tz America/New_York --tenant acme --csv",
        o);
    add_range_options(cmd, *o);
  }
}

bool history_command_selected(const CLI::App& app) {
  for (const auto* sub : app.get_subcommands()) {
    auto n = sub->get_name();
    if (n == "sessions" || n == "peaks" || n == "concurrency" || n == "usage") return true;
  }
  return false;
}

}  // namespace sluice::app
