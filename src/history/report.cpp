#include "history/report.hpp"

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <utility>

#include "config/config.hpp"
#include "history/queries.hpp"
#include "history/rollup.hpp"

namespace sluice::history {

namespace json = boost::json;

std::string_view report_name(ReportKind kind) {
  switch (kind) {
    case ReportKind::sessions: return "sessions";
    case ReportKind::concurrency: return "concurrency";
    case ReportKind::peaks: return "peaks";
    case ReportKind::usage: return "usage";
  }
  return "sessions";
}

namespace {

constexpr std::string_view kTimeExample = "a time such as 2026-11-20T14:00:00Z, 2026-11-20 or -2h";

Micros floor_div(Micros a, Micros b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Rounded to `digits` decimals, so answers print as 12.5 rather than 12.500000000000002.
double round_to(double v, int digits) {
  double scale = std::pow(10.0, digits);
  return std::round(v * scale) / scale;
}
double seconds(Micros us) { return round_to(static_cast<double>(us) / 1e6, 3); }

json::value time_or_null(const std::optional<Micros>& t, const Zone& zone) {
  if (!t) return nullptr;
  return json::value(format_time(*t, zone));
}

json::value text_or_null(const std::string& s) {
  if (s.empty()) return nullptr;
  return json::value(s);
}

json::value filter_json(const std::optional<std::string>& v) {
  if (!v) return nullptr;
  return json::value(*v);
}

// The range and filters every answer repeats, so an answer says what it answers.
json::object header(const ReportRequest& r) {
  json::object o;
  o["report"] = report_name(r.kind);
  o["zone"] = r.zone.name();
  if (r.at) {
    o["at"] = format_time(*r.at, r.zone);
  } else {
    o["from"] = format_time(r.from, r.zone);
    o["to"] = format_time(r.to, r.zone);
  }
  if (r.kind == ReportKind::concurrency) o["step_seconds"] = static_cast<double>(r.step) / 1e6;
  if (r.kind == ReportKind::peaks) o["window_seconds"] = static_cast<double>(r.step) / 1e6;
  o["pool"] = filter_json(r.pool);
  o["tenant"] = filter_json(r.tenant);
  o["instance"] = filter_json(r.instance);
  if (r.kind == ReportKind::sessions && !r.at) o["include_unopened"] = r.include_unopened;
  return o;
}

SessionQuery span_query(const ReportRequest& r) {
  SessionQuery q;
  q.from = r.from;
  q.to = r.to;
  q.pool = r.pool;
  q.tenant = r.tenant;
  q.instance = r.instance;
  return q;
}

// Which gateway each run was, for the sessions' `instance`.
class InstanceNames {
 public:
  explicit InstanceNames(Store& store) {
    for (auto& run : store.runs()) names_.emplace(run.run_id, std::move(run.instance));
  }
  const std::string* of(std::int64_t run_id) const {
    auto it = names_.find(run_id);
    return it == names_.end() ? nullptr : &it->second;
  }

 private:
  std::map<std::int64_t, std::string> names_;
};

// The sweep's pools; a pool asked for by name shows even without streams (at 0).
std::vector<PoolConcurrency> sweep(Store& store, const ReportRequest& r, Micros origin, Micros now) {
  auto pools = concurrency(store, r.from, r.to, origin, r.step, r.pool, r.tenant, now, r.instance);
  if (r.pool && pools.empty()) {
    ConcurrencySweep empty(r.from, r.to, origin, r.step);
    Span none;
    none.pool = *r.pool;
    none.start = none.end = r.from;
    empty.add(none);
    pools = empty.finish();
  }
  return pools;
}

void check_window_count(const ReportRequest& r, Micros origin, std::string_view what, std::string_view option) {
  auto n = floor_div(r.to - 1 - origin, r.step) - floor_div(r.from - origin, r.step) + 1;
  if (n > static_cast<Micros>(kMaxPoints))
    throw QueryError(fmt::format("{} {} in the range is too many (at most {}): use a longer {} or a shorter range", n,
                                 what, kMaxPoints, option));
}

json::object window_json(const Window& w, const Zone& zone) {
  json::object o;
  o["start"] = format_time(w.start, zone);
  o["end"] = format_time(w.end, zone);
  o["max"] = w.max_open;
  o["min"] = w.min_open;
  o["peak_at"] = format_time(w.peak_at, zone);
  return o;
}

}  // namespace

ReportRequest parse_report_request(ReportKind kind, const ReportArgs& a, Micros now, std::string_view prefix) {
  ReportRequest r;
  r.kind = kind;
  auto name = [&](std::string_view n) { return fmt::format("{}{}", prefix, n); };
  if (a.tz) r.zone = Zone::named(*a.tz);  // TimeError names the zone
  auto time = [&](std::string_view n, const std::string& text) {
    try {
      return parse_time(text, now, r.zone);
    } catch (const TimeError& e) {
      throw TimeError(fmt::format("{}: {}", name(n), e.what()));
    }
  };
  auto duration = [&](std::string_view n, const std::optional<std::string>& text) -> Micros {
    if (!text) throw QueryError(fmt::format("missing {}: expected a duration such as 30s, 1m, 10m or 1h", name(n)));
    Micros us = 0;
    try {
      us = static_cast<Micros>(std::llround(config::parse_duration(name(n), *text).count() * 1e6));
    } catch (const config::ConfigError& e) {
      throw QueryError(e.what());
    }
    if (us <= 0) throw QueryError(fmt::format("{}: must be positive, got '{}'", name(n), *text));
    return us;
  };
  if (kind == ReportKind::sessions && a.at) {
    if (a.from || a.to)
      throw QueryError(fmt::format("give either {} alone, or {} and {}; not both", name("at"), name("from"), name("to")));
    r.at = time("at", *a.at);
  } else {
    if (!a.from) {
      if (kind == ReportKind::sessions)
        throw QueryError(fmt::format("missing {} (or {}): expected {}", name("from"), name("at"), kTimeExample));
      throw QueryError(fmt::format("missing {}: expected {}", name("from"), kTimeExample));
    }
    r.from = time("from", *a.from);
    r.to = a.to ? time("to", *a.to) : now;
    if (r.to <= r.from)
      throw QueryError(fmt::format("{} ({}) must be later than {} ({})", name("to"), format_time(r.to, r.zone),
                                   name("from"), format_time(r.from, r.zone)));
  }
  r.pool = a.pool;
  r.tenant = a.tenant;
  if (a.instance && a.instance->empty()) throw QueryError(fmt::format("{}: expected an instance name", name("instance")));
  r.instance = a.instance;
  r.include_unopened = a.all;
  if (kind == ReportKind::concurrency) {
    r.step = duration("step", a.step);
    check_window_count(r, r.from, "points", name("step"));
  } else if (kind == ReportKind::peaks) {
    r.step = duration("window", a.window);
    check_window_count(r, 0, "windows", name("window"));
  }
  return r;
}

json::object session_json(const SessionRecord& s, const Zone& zone, Micros now, const std::string* instance) {
  json::object o;
  o["run_id"] = s.run_id;
  o["instance"] = instance ? json::value(*instance) : json::value(nullptr);
  o["session_id"] = s.session_id;
  o["request_id"] = text_or_null(s.request_id);
  o["tenant"] = s.tenant;
  o["pool"] = s.pool;
  o["path"] = s.path;
  o["model"] = text_or_null(s.model);
  json::value params = nullptr;
  if (!s.params.empty()) {
    boost::system::error_code ec;
    auto v = json::parse(s.params, ec);
    params = ec ? json::value(s.params) : std::move(v);
  }
  o["params"] = std::move(params);
  o["client_address"] = text_or_null(s.client_address);
  o["user_agent"] = text_or_null(s.user_agent);
  o["accepted_at"] = format_time(s.accepted_at, zone);
  o["admitted_at"] = time_or_null(s.admitted_at, zone);
  o["opened_at"] = time_or_null(s.opened_at, zone);
  o["first_audio_at"] = time_or_null(s.first_audio_at, zone);
  o["last_audio_at"] = time_or_null(s.last_audio_at, zone);
  o["closed_at"] = time_or_null(s.closed_at, zone);
  o["last_seen_at"] = format_time(s.last_seen_at, zone);
  o["still_open"] = s.opened_at && !s.closed_at;
  if (s.close_code) o["close_code"] = *s.close_code;
  else o["close_code"] = nullptr;
  o["close_reason"] = text_or_null(s.close_reason);
  o["closed_by"] = text_or_null(s.closed_by);
  o["outcome"] = outcome_name(s.outcome);
  o["outcome_reason"] = text_or_null(s.outcome_reason);
  json::object counters;
  counters["client_messages"] = s.client_messages;
  counters["client_bytes"] = s.client_bytes;
  counters["upstream_messages"] = s.upstream_messages;
  counters["upstream_bytes"] = s.upstream_bytes;
  counters["audio_messages"] = s.audio_messages;
  counters["audio_bytes"] = s.audio_bytes;
  counters["keep_alive"] = s.keep_alive;
  o["counters"] = std::move(counters);
  o["audio_seconds"] = round_to(s.audio_seconds, 3);
  o["idle_seconds"] = round_to(s.idle_seconds, 3);
  {
    json::value ids = json::array();
    if (!s.upstream_request_ids.empty()) {
      boost::system::error_code ec;
      auto v = json::parse(s.upstream_request_ids, ec);
      if (!ec && v.is_array()) ids = std::move(v);
    } else if (!s.request_id.empty()) {
      ids = json::array{json::value(s.request_id)};  // a row recorded before the column existed
    }
    o["upstream_request_ids"] = std::move(ids);
  }
  o["resumes"] = s.resumes;
  if (s.opened_at) o["duration_seconds"] = seconds(s.closed_at.value_or(std::max(now, *s.opened_at)) - *s.opened_at);
  else o["duration_seconds"] = nullptr;
  return o;
}

json::object sessions_report(Store& store, const ReportRequest& r, Micros now) {
  auto o = header(r);
  json::array list;
  InstanceNames instances(store);
  SessionQuery q;
  q.pool = r.pool;
  q.tenant = r.tenant;
  q.instance = r.instance;
  if (r.at) {
    // Open at T: opened_at <= T < closed_at; a stream still open counts up to now.
    q.from = *r.at;
    q.to = *r.at + 1;
    store.sessions(q, [&](SessionRecord&& s) {
      if (!s.opened_at || *s.opened_at > *r.at) return;
      if (s.closed_at ? *r.at < *s.closed_at : *r.at <= now)
        list.push_back(session_json(s, r.zone, now, instances.of(s.run_id)));
    });
  } else {
    q.from = r.from;
    q.to = r.to;
    q.include_unopened = r.include_unopened;
    store.sessions(q, [&](SessionRecord&& s) {
      if (s.opened_at) {
        Span span;
        span.start = *s.opened_at;
        span.end = s.closed_at.value_or(std::max(now, span.start));
        if (!meets(span, r.from, r.to)) return;
      }
      list.push_back(session_json(s, r.zone, now, instances.of(s.run_id)));
    });
  }
  o["count"] = list.size();
  o["sessions"] = std::move(list);
  return o;
}

json::object concurrency_report(Store& store, const ReportRequest& r, Micros now) {
  auto o = header(r);
  json::array pools;
  for (const auto& p : sweep(store, r, r.from, now)) {
    json::object po;
    po["pool"] = p.pool;
    po["peak"] = p.peak;
    po["peak_at"] = format_time(p.peak_at, r.zone);
    json::array points;
    for (const auto& w : p.windows) {
      json::object pt;
      pt["start"] = format_time(w.start, r.zone);
      pt["max"] = w.max_open;
      pt["min"] = w.min_open;
      points.push_back(std::move(pt));
    }
    po["points"] = std::move(points);
    pools.push_back(std::move(po));
  }
  o["pools"] = std::move(pools);
  return o;
}

json::object peaks_report(Store& store, const ReportRequest& r, Micros now) {
  auto o = header(r);
  json::array pools;
  InstanceNames instances(store);
  for (const auto& p : sweep(store, r, 0, now)) {
    json::object po;
    po["pool"] = p.pool;
    po["peak"] = p.peak;
    po["peak_at"] = format_time(p.peak_at, r.zone);
    po["peak_until"] = format_time(p.peak_until, r.zone);
    po["best_window"] = p.windows.empty() ? json::value(nullptr) : json::value(window_json(p.windows[p.best], r.zone));
    json::array windows;
    for (const auto& w : p.windows) windows.push_back(window_json(w, r.zone));
    po["windows"] = std::move(windows);
    // The streams that made the peak, as the sweep counted them.
    json::array sessions;
    if (p.peak > 0) {
      std::set<std::pair<std::int64_t, std::int64_t>> ids(p.peak_sessions.begin(), p.peak_sessions.end());
      SessionQuery q;
      q.from = p.peak_at;
      q.to = p.peak_at + 1;
      q.pool = p.pool;
      q.instance = r.instance;
      store.sessions(q, [&](SessionRecord&& s) {
        if (ids.count({s.run_id, s.session_id}))
          sessions.push_back(session_json(s, r.zone, now, instances.of(s.run_id)));
      });
    }
    po["sessions"] = std::move(sessions);
    pools.push_back(std::move(po));
  }
  o["pools"] = std::move(pools);
  return o;
}

json::object usage_report(Store& store, const ReportRequest& r, Micros now) {
  auto o = header(r);
  const Zone zone = r.zone;
  UsageSweep sweep(r.from, r.to, [zone](std::int64_t t) { return zone.offset_at(t); });
  store.spans(span_query(r), now, [&](Span&& span) { sweep.add(span); });
  json::array rows;
  std::int64_t sessions = 0;
  double minutes = 0, audio = 0, idle = 0;
  for (const auto& u : sweep.finish()) {
    json::object row;
    row["day"] = u.day;
    row["tenant"] = u.tenant;
    row["pool"] = u.pool;
    row["sessions"] = u.sessions;
    row["stream_minutes"] = round_to(u.stream_minutes, 4);
    row["audio_seconds"] = round_to(u.audio_seconds, 3);
    row["idle_seconds"] = round_to(u.idle_seconds, 3);
    rows.push_back(std::move(row));
    sessions += u.sessions;
    minutes += u.stream_minutes;
    audio += u.audio_seconds;
    idle += u.idle_seconds;
  }
  o["rows"] = std::move(rows);
  json::object totals;
  totals["sessions"] = sessions;
  totals["stream_minutes"] = round_to(minutes, 4);
  totals["audio_seconds"] = round_to(audio, 3);
  totals["idle_seconds"] = round_to(idle, 3);
  o["totals"] = std::move(totals);
  return o;
}

json::object run_report(Store& store, const ReportRequest& r, Micros now) {
  switch (r.kind) {
    case ReportKind::sessions: return sessions_report(store, r, now);
    case ReportKind::concurrency: return concurrency_report(store, r, now);
    case ReportKind::peaks: return peaks_report(store, r, now);
    case ReportKind::usage: return usage_report(store, r, now);
  }
  return sessions_report(store, r, now);
}

}  // namespace sluice::history
