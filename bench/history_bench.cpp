// The history store on a synthetic week: writes it the way the recorder
// does (one transaction per second of history: the rows of the streams that
// opened, the final rows of those that closed, per-second concurrency
// samples, events, the run's heartbeat), then measures the database's size
// and the time of the queries the CLI and the API run, before and after
// retention and the per-minute rollup. SQLite always; PostgreSQL too when a
// URL is given (in a schema of its own, dropped at the end).
//
//   sluice_history_bench [--days 7] [--concurrency 1000] [--postgres URL] ...
//
// Prints a Markdown report on stdout; progress on stderr.
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "history/queries.hpp"
#include "history/rollup.hpp"
#include "history/store.hpp"

namespace fs = std::filesystem;
using namespace sluice::history;

namespace {

constexpr Micros kS = 1'000'000;
constexpr Micros kMin = 60 * kS;
constexpr Micros kHour = 60 * kMin;
constexpr Micros kDay = 24 * kHour;
// Monday 2025-11-17 00:00:00 UTC.
constexpr Micros kWeekStart = 1'763'337'600 * kS;

struct Options {
  double days = 7;
  int concurrency = 1000;
  double mean_seconds = 180;
  int pools = 3;
  int tenants = 8;
  int batch_seconds = 1;
  int repeat = 5;
  std::uint64_t seed = 1;
  std::string sqlite_path;
  std::string postgres_url;
  bool no_sqlite = false;
  bool keep = false;
};

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::string human_bytes(double b) {
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return fmt::format("{:.1f} MiB", b / (1024.0 * 1024));
  if (b >= 1024.0) return fmt::format("{:.1f} KiB", b / 1024.0);
  return fmt::format("{:.0f} B", b);
}

std::string ms(double seconds) {
  double v = seconds * 1000;
  if (v < 10) return fmt::format("{:.2f}", v);
  if (v < 100) return fmt::format("{:.1f}", v);
  return fmt::format("{:.0f}", v);
}

// --- The synthetic history ----------------------------------------------------

// Streams arrive as a Poisson process at concurrency / mean per second and
// last an exponential time (at least 1 s), so on average `concurrency` are
// open; a few last much longer (a 1-in-2000 chance of a 20-minute-mean tail).
// The week starts in its steady state. Pools and tenants get skewed shares.
class History {
 public:
  History(const Options& o, std::int64_t run_id) : o_(o), run_(run_id), rng_(o.seed) {
    for (int p = 0; p < o.pools; ++p) {
      pools_.push_back(p == 0 ? "listen-nova" : p == 1 ? "listen-whisper" : p == 2 ? "listen-en" : fmt::format("pool-{}", p));
      pool_weight_.push_back(1.0 / (p + 1));
    }
    for (int t = 0; t < o.tenants; ++t) {
      tenants_.push_back(fmt::format("tenant-{:02}", t));
      tenant_weight_.push_back(1.0 / std::pow(t + 1, 1.2));
    }
    pool_pick_ = std::discrete_distribution<int>(pool_weight_.begin(), pool_weight_.end());
    tenant_pick_ = std::discrete_distribution<int>(tenant_weight_.begin(), tenant_weight_.end());
    open_.assign(pools_.size(), 0);
    // Steady state at the start: `concurrency` streams already open, with
    // the (memoryless) remaining time of an exponential.
    for (int i = 0; i < o.concurrency; ++i) {
      Micros age = duration();
      auto s = make(kWeekStart - age);
      Micros rest = duration();
      pending_.push(Close{kWeekStart + rest, s});
      ++open_[static_cast<std::size_t>(pool_index(s.pool))];
      ++initially_open_;
      // Their open rows are written in the first batch.
      first_.push_back(s);
    }
  }

  // The batch for [t, t + step): what the recorder would write then.
  WriteBatch batch(Micros t, Micros step) {
    WriteBatch b;
    b.sessions = std::move(first_);
    first_.clear();
    const double rate = o_.concurrency / o_.mean_seconds;  // per second
    for (Micros sec = t; sec < t + step; sec += kS) {
      // Arrivals in this second, in order.
      std::poisson_distribution<int> arrivals(rate);
      int n = arrivals(rng_);
      std::vector<Micros> at(static_cast<std::size_t>(n));
      std::uniform_int_distribution<Micros> within(0, kS - 1);
      for (auto& a : at) a = sec + within(rng_);
      std::sort(at.begin(), at.end());
      std::vector<int> max_open = open_, min_open = open_;
      std::size_t next = 0;
      for (;;) {
        Micros close_at = pending_.empty() ? std::numeric_limits<Micros>::max() : pending_.top().at;
        Micros open_at = next < at.size() ? at[next] : std::numeric_limits<Micros>::max();
        Micros when = std::min(close_at, open_at);
        if (when >= sec + kS) break;
        if (close_at <= open_at) {  // closes first at equal instants
          auto c = pending_.top();
          pending_.pop();
          finish(c.row, c.at);
          auto p = static_cast<std::size_t>(pool_index(c.row.pool));
          --open_[p];
          min_open[p] = std::min(min_open[p], open_[p]);
          if (c.row.outcome == Outcome::reaped)
            b.events.push_back({.run_id = run_, .time = c.at, .type = "reap", .session_id = c.row.session_id,
                                .pool = c.row.pool, .tenant = c.row.tenant,
                                .fields = R"({"reason":"idle","idle_seconds":30})"});
          b.sessions.push_back(std::move(c.row));
          ++closed_;
        } else {
          ++next;
          if (refuse_(rng_) < 0.002) {  // refused at admission: one row, never opened
            auto s = make(open_at);
            s.opened_at.reset();
            s.admitted_at.reset();
            s.closed_at = open_at + 300;
            s.last_seen_at = *s.closed_at;
            s.outcome = Outcome::refused;
            s.outcome_reason = "pool full";
            b.events.push_back({.run_id = run_, .time = open_at, .type = "refused", .session_id = s.session_id,
                                .pool = s.pool, .tenant = s.tenant, .fields = R"({"reason":"pool full"})"});
            b.sessions.push_back(std::move(s));
            ++refused_;
            continue;
          }
          auto s = make(open_at);
          auto p = static_cast<std::size_t>(pool_index(s.pool));
          ++open_[p];
          max_open[p] = std::max(max_open[p], open_[p]);
          pending_.push(Close{open_at + duration(), s});
          b.sessions.push_back(std::move(s));
          ++opened_;
        }
      }
      for (std::size_t p = 0; p < pools_.size(); ++p) {
        if (max_open[p] == 0) continue;  // no row for a second with none open
        b.samples.push_back({.run_id = run_, .pool = pools_[p], .second = sec / kS, .resolution = 1,
                             .max_open = max_open[p], .min_open = min_open[p]});
      }
    }
    b.run_seen = std::make_pair(run_, t + step);
    return b;
  }

  std::int64_t opened() const { return opened_ + initially_open_; }
  std::int64_t opened_in_range() const { return opened_; }
  std::int64_t closed() const { return closed_; }
  std::int64_t refused() const { return refused_; }
  std::int64_t still_open() const { return static_cast<std::int64_t>(pending_.size()); }
  const std::vector<std::string>& pools() const { return pools_; }

 private:
  struct Close {
    Micros at;
    SessionRecord row;
    bool operator>(const Close& o) const { return at > o.at; }
  };

  Micros duration() {
    double mean = o_.mean_seconds;
    if (tail_(rng_) < 0.0005) mean = 1200;
    std::exponential_distribution<double> d(1.0 / mean);
    return std::max<Micros>(kS, static_cast<Micros>(d(rng_) * 1e6));
  }

  int pool_index(const std::string& name) const {
    for (std::size_t i = 0; i < pools_.size(); ++i)
      if (pools_[i] == name) return static_cast<int>(i);
    return 0;
  }

  SessionRecord make(Micros opened) {
    SessionRecord s;
    s.run_id = run_;
    s.session_id = ++next_id_;
    std::uniform_int_distribution<std::uint64_t> u64;
    auto a = u64(rng_), b = u64(rng_);
    s.request_id = fmt::format("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xfff,
                               b >> 52, b & 0xffffffffffffULL);
    s.tenant = tenants_[static_cast<std::size_t>(tenant_pick_(rng_))];
    s.pool = pools_[static_cast<std::size_t>(pool_pick_(rng_))];
    s.path = "/v1/listen";
    s.model = s.pool == "listen-whisper" ? "whisper-large" : "nova-3";
    s.params = R"({"encoding":"linear16","sample_rate":"16000","channels":"1","interim_results":"true"})";
    s.client_address = fmt::format("198.51.100.{}:{}", (a >> 8) % 254 + 1, 1024 + b % 60000);
    s.user_agent = "deepgram-python-sdk/3.7.0";
    s.accepted_at = opened - 1500;
    s.admitted_at = opened - 1200;
    s.opened_at = opened;
    s.first_audio_at = opened + 20'000;
    s.last_seen_at = opened;
    s.outcome = Outcome::open;
    return s;
  }

  void finish(SessionRecord& s, Micros closed) {
    double secs = static_cast<double>(closed - *s.opened_at) / 1e6;
    s.closed_at = closed;
    s.last_seen_at = closed;
    s.last_audio_at = std::max(*s.first_audio_at, closed - 300'000);
    bool reaped = tail_(rng_) < 0.02;
    s.outcome = reaped ? Outcome::reaped : Outcome::completed;
    s.outcome_reason = reaped ? "idle" : "";
    s.close_code = reaped ? 1008 : 1000;
    s.closed_by = reaped ? "gateway" : "client";
    s.audio_messages = static_cast<std::int64_t>(secs * 10);
    s.audio_bytes = s.audio_messages * 3200;
    s.client_messages = s.audio_messages + 2;
    s.client_bytes = s.audio_bytes + 200;
    s.upstream_messages = static_cast<std::int64_t>(secs / 2) + 2;
    s.upstream_bytes = s.upstream_messages * 900;
    s.keep_alive = static_cast<std::int64_t>(secs / 8);
    s.audio_seconds = secs * (reaped ? 0.6 : 0.95);
    s.idle_seconds = reaped ? secs * 0.4 : 0;
  }

  const Options& o_;
  std::int64_t run_;
  std::mt19937_64 rng_;
  std::vector<std::string> pools_, tenants_;
  std::vector<double> pool_weight_, tenant_weight_;
  std::discrete_distribution<int> pool_pick_, tenant_pick_;
  std::uniform_real_distribution<double> tail_{0, 1}, refuse_{0, 1};
  std::priority_queue<Close, std::vector<Close>, std::greater<>> pending_;
  std::vector<int> open_;
  std::vector<SessionRecord> first_;
  std::int64_t next_id_ = 0, opened_ = 0, closed_ = 0, refused_ = 0, initially_open_ = 0;
};

// --- Measuring ---------------------------------------------------------------------

struct Size {
  double total = 0;
  std::vector<std::pair<std::string, double>> parts;  // table (with its indexes) -> bytes
  std::string note;
};

Size measure_size(Store& store, const std::string& sqlite_path) {
  Size s;
  auto& db = store.connection();
  if (db.dialect() == Dialect::sqlite) {
    std::error_code ec;
    auto file = static_cast<double>(fs::file_size(sqlite_path, ec));
    auto wal = static_cast<double>(fs::file_size(sqlite_path + "-wal", ec));
    if (ec) wal = 0;
    s.total = file + wal;
    std::int64_t pages = 0, free_pages = 0, page_size = 0;
    db.query("PRAGMA page_count", {}, [&](const Row& r) { pages = r.integer(0); });
    db.query("PRAGMA freelist_count", {}, [&](const Row& r) { free_pages = r.integer(0); });
    db.query("PRAGMA page_size", {}, [&](const Row& r) { page_size = r.integer(0); });
    s.note = fmt::format("file {} + WAL {}; {} pages of {} B, {} free", human_bytes(file), human_bytes(wal), pages,
                         page_size, free_pages);
    try {
      // Per table, indexes included (SQLite's dbstat table, when built in).
      std::map<std::string, double> by_table;
      std::map<std::string, std::string> owner;
      db.query("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')", {},
               [&](const Row& r) { owner[r.text(0)] = r.text(1); });
      db.query("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name", {}, [&](const Row& r) {
        auto name = r.text(0);
        auto it = owner.find(name);
        by_table[it == owner.end() ? name : it->second] += static_cast<double>(r.integer(1));
      });
      for (auto& [k, v] : by_table) s.parts.emplace_back(k, v);
    } catch (const DbError&) {
    }
  } else {
    db.query(
        "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind = 'r' ORDER BY 1",
        {}, [&](const Row& r) {
          s.parts.emplace_back(r.text(0), static_cast<double>(r.integer(1)));
          s.total += static_cast<double>(r.integer(1));
        });
    s.note = "pg_total_relation_size of the tables (heap, indexes, TOAST, free space map)";
  }
  std::sort(s.parts.begin(), s.parts.end(), [](auto& a, auto& b) { return a.second > b.second; });
  return s;
}

struct Timing {
  std::string name;
  double best = 0, median = 0;
  std::string answer;
};

template <typename F>
Timing timed(const std::string& name, int repeat, F&& f) {
  std::vector<double> t;
  std::string answer;
  for (int i = 0; i < repeat; ++i) {
    auto start = std::chrono::steady_clock::now();
    answer = f();
    t.push_back(seconds_since(start));
  }
  std::sort(t.begin(), t.end());
  std::cerr << fmt::format("bench:   {}: {} ms ({})\n", name, ms(t[t.size() / 2]), answer);
  return {name, t.front(), t[t.size() / 2], answer};
}

bool same(const std::vector<PoolConcurrency>& a, const std::vector<PoolConcurrency>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto &x = a[i], &y = b[i];
    if (x.pool != y.pool || x.peak != y.peak || x.peak_at != y.peak_at || x.peak_until != y.peak_until ||
        x.best != y.best || x.peak_sessions != y.peak_sessions || x.windows.size() != y.windows.size())
      return false;
    for (std::size_t k = 0; k < x.windows.size(); ++k) {
      const auto &v = x.windows[k], &w = y.windows[k];
      if (v.start != w.start || v.end != w.end || v.max_open != w.max_open || v.min_open != w.min_open ||
          v.peak_at != w.peak_at)
        return false;
    }
  }
  return true;
}

std::vector<Timing> run_queries(Store& store, const Options& o, Micros end, Micros now, const std::string& pool) {
  std::vector<Timing> out;
  const Micros span = end - kWeekStart;
  const Micros mid = kWeekStart + span / 2 + 1'234'567'891;
  const int r = o.repeat;
  const int r_long = std::max(1, std::min(r, 3));

  out.push_back(timed("sessions open at an instant mid-week (full rows)", r, [&] {
    std::int64_t n = 0;
    store.sessions({.from = mid, .to = mid + 1}, [&](SessionRecord&& s) {
      if (s.opened_at && *s.opened_at <= mid && (!s.closed_at || mid < *s.closed_at)) ++n;
    });
    return fmt::format("{} open", n);
  }));
  out.push_back(timed("sessions in a 1-minute range (full rows)", r, [&] {
    std::int64_t n = 0;
    store.sessions({.from = mid, .to = mid + kMin}, [&](SessionRecord&&) { ++n; });
    return fmt::format("{} rows", n);
  }));
  out.push_back(timed("sessions in a 1-minute range, one pool", r, [&] {
    std::int64_t n = 0;
    store.sessions({.from = mid, .to = mid + kMin, .pool = pool}, [&](SessionRecord&&) { ++n; });
    return fmt::format("{} rows", n);
  }));
  out.push_back(timed("concurrency at an instant (sweep)", r, [&] {
    ConcurrencySweep c(mid, mid + 1, mid, 1);
    store.spans({.from = mid, .to = mid + 1}, now, [&](Span&& s) { c.add(s); });
    int total = 0;
    for (auto& p : c.finish()) total += p.peak;
    return fmt::format("{} open", total);
  }));
  // The rollup's answers, then the sweep's over every span (what the queries
  // did before the rollup), and whether they agree.
  std::vector<PoolConcurrency> peaks_fast, peaks_sweep, series_fast, series_sweep;
  auto peaks_text = [](const std::vector<PoolConcurrency>& res) {
    std::string peaks;
    for (auto& p : res) peaks += fmt::format("{}{}={}", peaks.empty() ? "" : ", ", p.pool, p.peak);
    return peaks;
  };
  out.push_back(timed("peaks over the whole range, 10-minute windows", r_long, [&] {
    peaks_fast = concurrency(store, kWeekStart, end, 0, 10 * kMin, std::nullopt, std::nullopt, now);
    return fmt::format("peaks {}", peaks_text(peaks_fast));
  }));
  out.push_back(timed("the same by the sweep over every span", r_long, [&] {
    std::int64_t n = 0;
    ConcurrencySweep c(kWeekStart, end, 0, 10 * kMin);
    store.spans({.from = kWeekStart, .to = end}, now, [&](Span&& s) {
      ++n;
      c.add(s);
    });
    peaks_sweep = c.finish();
    return fmt::format("{} spans; peaks {}; {}", n, peaks_text(peaks_sweep),
                       same(peaks_fast, peaks_sweep) ? "equal" : "DIFFERENT");
  }));
  out.push_back(timed("series over a day, 1-minute steps", r, [&] {
    series_fast = concurrency(store, mid, mid + kDay, mid, kMin, std::nullopt, std::nullopt, now);
    return fmt::format("{} pools x {} steps", series_fast.size(),
                       series_fast.empty() ? 0 : series_fast[0].windows.size());
  }));
  out.push_back(timed("the same by the sweep over every span", r, [&] {
    ConcurrencySweep c(mid, mid + kDay, mid, kMin);
    store.spans({.from = mid, .to = mid + kDay}, now, [&](Span&& s) { c.add(s); });
    series_sweep = c.finish();
    return fmt::format("{} pools x {} steps; {}", series_sweep.size(),
                       series_sweep.empty() ? 0 : series_sweep[0].windows.size(),
                       same(series_fast, series_sweep) ? "equal" : "DIFFERENT");
  }));
  out.push_back(timed("usage over the whole range (per day, tenant, pool)", r_long, [&] {
    UsageSweep u(kWeekStart, end, [](std::int64_t) -> std::int64_t { return 0; });
    store.spans({.from = kWeekStart, .to = end}, now, [&](Span&& s) { u.add(s); });
    auto rows = u.finish();
    double minutes = 0;
    for (auto& x : rows) minutes += x.stream_minutes;
    return fmt::format("{} rows, {:.0f} stream-minutes", rows.size(), minutes);
  }));
  out.push_back(timed("concurrency samples over a day (one pool)", r, [&] {
    auto s = store.samples(mid, mid + kDay, pool);
    return fmt::format("{} rows", s.size());
  }));
  out.push_back(timed("events in an hour", r, [&] {
    auto e = store.events(mid, mid + kHour, std::nullopt, 100000);
    return fmt::format("{} events", e.size());
  }));
  return out;
}

struct Report {
  std::string backend, where;
  double write_seconds = 0, recover_seconds = 0, retention_seconds = 0, rollup_seconds = 0, rollup_restart_seconds = 0;
  std::int64_t rollup_restart_minutes = 0;
  std::int64_t batches = 0, session_writes = 0, sample_rows = 0, events = 0, sessions = 0, recovered = 0;
  RetentionResult retention;
  Size size, size_after;
  std::vector<Timing> queries, queries_after;
};

Report run_backend(const Options& o, const std::string& backend, const std::string& sqlite_path, Store& store) {
  Report rep;
  rep.backend = backend;
  rep.where = store.describe();
  const Micros end = kWeekStart + static_cast<Micros>(o.days * static_cast<double>(kDay));
  const Micros step = o.batch_seconds * kS;
  const std::string instance = "bench:8080";
  auto run_id = store.begin_run({.instance = instance, .version = "bench", .pid = static_cast<int>(::getpid()),
                                 .started_at = kWeekStart});
  History h(o, run_id);
  std::cerr << fmt::format("bench: {}: writing {:.2f} days at {} concurrent streams into {}\n", backend, o.days,
                           o.concurrency, rep.where);
  auto start = std::chrono::steady_clock::now();
  auto last_report = start;
  for (Micros t = kWeekStart; t < end; t += step) {
    auto b = h.batch(t, std::min(step, end - t));
    rep.session_writes += static_cast<std::int64_t>(b.sessions.size());
    rep.sample_rows += static_cast<std::int64_t>(b.samples.size());
    rep.events += static_cast<std::int64_t>(b.events.size());
    store.write(b);
    ++rep.batches;
    // As the recorder's writer does: minutes that are over into the rollup.
    if ((t + step) / kMin != t / kMin) {
      auto r0 = std::chrono::steady_clock::now();
      while (store.update_rollup(t + step) > 0) {
      }
      rep.rollup_seconds += seconds_since(r0);
    }
    if (seconds_since(last_report) >= 10) {
      last_report = std::chrono::steady_clock::now();
      double done = static_cast<double>(t - kWeekStart) / static_cast<double>(end - kWeekStart);
      std::cerr << fmt::format("bench: {}: {:.1f}% of the history written, {:.0f} s\n", backend, done * 100,
                               seconds_since(start));
    }
  }
  rep.write_seconds = seconds_since(start);
  rep.sessions = h.opened() + h.refused();
  std::cerr << fmt::format("bench: {}: wrote {} sessions ({} row writes), {} samples, {} events in {:.1f} s\n",
                           backend, rep.sessions, rep.session_writes, rep.sample_rows, rep.events, rep.write_seconds);

  // What autovacuum / ANALYZE would have done by the time anyone queries a
  // week-old history. SQLite: the store runs no ANALYZE, so neither does this.
  if (store.connection().dialect() == Dialect::postgres) store.connection().exec("VACUUM ANALYZE sessions, events, concurrency, runs, meta, rollup_minutes, rollup_cover");
  rep.size = measure_size(store, sqlite_path);

  // A gateway restart: the streams still open belong to a dead run now.
  {
    auto self = store.begin_run({.instance = instance, .version = "bench", .pid = static_cast<int>(::getpid()),
                                 .started_at = end + kMin});
    auto t0 = std::chrono::steady_clock::now();
    rep.recovered = store.recover_interrupted(self, instance, end);
    rep.recover_seconds = seconds_since(t0);
    std::cerr << fmt::format("bench: {}: recovered {} interrupted streams in {} ms\n", backend, rep.recovered,
                             ms(rep.recover_seconds));
    // The minutes the recovered rows changed, again into the rollup.
    t0 = std::chrono::steady_clock::now();
    for (std::int64_t n; (n = store.update_rollup(end + kMin)) > 0;) rep.rollup_restart_minutes += n;
    rep.rollup_restart_seconds = seconds_since(t0);
    std::cerr << fmt::format("bench: {}: rolled up {} minutes again in {} ms\n", backend, rep.rollup_restart_minutes,
                             ms(rep.rollup_restart_seconds));
  }

  const Micros now = end + kMin;
  const std::string pool = h.pools().front();
  std::cerr << fmt::format("bench: {}: queries\n", backend);
  rep.queries = run_queries(store, o, end, now, pool);

  // Retention: per-second samples older than a day become per-minute rows;
  // sessions and events older than (range - 1 day) are deleted, so a day of
  // history goes (on a week: keep 6 days).
  RetentionPolicy policy{.sessions = end - kWeekStart - kDay + kMin,
                         .events = end - kWeekStart - kDay + kMin,
                         .seconds = 0,
                         .minutes = 0,
                         .rollup_after = kDay};
  if (end - kWeekStart <= kDay) policy.sessions = policy.events = 0;
  auto t0 = std::chrono::steady_clock::now();
  rep.retention = store.enforce_retention(policy, now);
  rep.retention_seconds = seconds_since(t0);
  std::cerr << fmt::format("bench: {}: retention: {} sessions, {} events deleted, {} seconds rolled up in {} ms\n",
                           backend, rep.retention.sessions, rep.retention.events, rep.retention.rolled_up,
                           ms(rep.retention_seconds));
  if (store.connection().dialect() == Dialect::postgres) store.connection().exec("VACUUM ANALYZE sessions, events, concurrency, runs, meta, rollup_minutes, rollup_cover");
  rep.size_after = measure_size(store, sqlite_path);
  std::cerr << fmt::format("bench: {}: queries after retention\n", backend);
  rep.queries_after = run_queries(store, o, end, now, pool);
  return rep;
}

void print(const Options& o, const std::vector<Report>& reports) {
  const double stream_days = o.concurrency * o.days;
  for (const auto& r : reports) {
    fmt::print("\n### {}\n\n", r.backend);
    fmt::print("- database: `{}`\n", r.where);
    fmt::print("- written: {} sessions ({} row writes: open and final rows), {} per-second samples, {} events, "
               "in {} transactions (one per {} s of history)\n",
               r.sessions, r.session_writes, r.sample_rows, r.events, r.batches, o.batch_seconds);
    fmt::print("- write time: {:.1f} s: {:.0f} sessions/s, {:.0f} row writes/s, {:.0f} s of history per s\n",
               r.write_seconds, static_cast<double>(r.sessions) / r.write_seconds,
               static_cast<double>(r.session_writes + r.sample_rows + r.events) / r.write_seconds,
               o.days * 86400 / r.write_seconds);
    fmt::print("- of the write time, the concurrency rollup: {:.1f} s\n", r.rollup_seconds);
    fmt::print("- recovery at restart: {} streams marked interrupted in {} ms; then {} minutes rolled up again in {} ms\n",
               r.recovered, ms(r.recover_seconds), r.rollup_restart_minutes, ms(r.rollup_restart_seconds));
    fmt::print("\n| size | total | per session | per stream-day |\n|---|---|---|---|\n");
    auto row = [&](const std::string& name, double bytes) {
      fmt::print("| {} | {} | {:.0f} B | {} |\n", name, human_bytes(bytes), bytes / static_cast<double>(r.sessions),
                 human_bytes(bytes / stream_days));
    };
    row("**all tables**", r.size.total);
    for (const auto& [name, bytes] : r.size.parts) row(fmt::format("{} (with its indexes)", name), bytes);
    fmt::print("\n{}.\n", r.size.note);
    fmt::print("\n| query | median ms | best ms | answer |\n|---|---|---|---|\n");
    for (const auto& q : r.queries) fmt::print("| {} | {} | {} | {} |\n", q.name, ms(q.median), ms(q.best), q.answer);
    fmt::print("\nRetention (per-second samples older than 1 day rolled up into minutes; {}): {} sessions, {} events "
               "deleted, {} per-second rows rolled up, in {} ms. Size after: {} ({}).\n",
               o.days > 1 ? "the sessions closed and the events of the first day deleted" : "nothing deleted",
               r.retention.sessions, r.retention.events, r.retention.rolled_up,
               ms(r.retention_seconds), human_bytes(r.size_after.total), r.size_after.note);
    fmt::print("\n| query after retention | median ms | best ms | answer |\n|---|---|---|---|\n");
    for (const auto& q : r.queries_after)
      fmt::print("| {} | {} | {} | {} |\n", q.name, ms(q.median), ms(q.best), q.answer);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Writes a synthetic history into the store and measures its size and query times"};
  app.add_option("--days", o.days, "days of history")->check(CLI::Range(0.01, 31.0));
  app.add_option("--concurrency", o.concurrency, "streams open on average")->check(CLI::Range(1, 20000));
  app.add_option("--mean-seconds", o.mean_seconds, "mean stream duration")->check(CLI::Range(1.0, 86400.0));
  app.add_option("--pools", o.pools, "pools")->check(CLI::Range(1, 16));
  app.add_option("--tenants", o.tenants, "tenants")->check(CLI::Range(1, 1000));
  app.add_option("--batch-seconds", o.batch_seconds, "seconds of history per write transaction")
      ->check(CLI::Range(1, 3600));
  app.add_option("--repeat", o.repeat, "runs of each query (the median is reported)")->check(CLI::Range(1, 100));
  app.add_option("--seed", o.seed, "random seed");
  app.add_option("--sqlite", o.sqlite_path, "SQLite file to write (default: a new file under the temp directory)");
  app.add_flag("--no-sqlite", o.no_sqlite, "PostgreSQL only");
  app.add_option("--postgres", o.postgres_url, "PostgreSQL URL (a schema is created in it and dropped at the end)");
  app.add_flag("--keep", o.keep, "keep the SQLite file and the PostgreSQL schema");
  CLI11_PARSE(app, argc, argv);

  std::vector<Report> reports;
  try {
    if (!o.no_sqlite) {
      bool temp = o.sqlite_path.empty();
      if (temp) o.sqlite_path = (fs::temp_directory_path() / fmt::format("sluice-history-bench-{}.db", ::getpid())).string();
      for (auto suffix : {"", "-wal", "-shm"}) fs::remove(o.sqlite_path + suffix);
      {
        Store store(o.sqlite_path);
        reports.push_back(run_backend(o, "SQLite", o.sqlite_path, store));
      }
      if (!o.keep)
        for (auto suffix : {"", "-wal", "-shm"}) fs::remove(o.sqlite_path + suffix);
    }
    if (!o.postgres_url.empty()) {
      auto schema = fmt::format("sluice_bench_{}", ::getpid());
      auto admin = open_database(o.postgres_url);
      admin->exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE");
      admin->exec("CREATE SCHEMA " + schema);
      auto url = o.postgres_url + (o.postgres_url.find('?') == std::string::npos ? "?" : "&") +
                 "options=-csearch_path%3D" + schema;
      {
        Store store(url);
        reports.push_back(run_backend(o, "PostgreSQL", "", store));
      }
      if (!o.keep) admin->exec("DROP SCHEMA " + schema + " CASCADE");
    }
  } catch (const std::exception& e) {
    std::cerr << "bench: " << e.what() << "\n";
    return 1;
  }
  fmt::print("## History store: {:.2f} days at {} concurrent streams\n\n", o.days, o.concurrency);
  fmt::print("- synthetic history: Poisson arrivals at {:.2f}/s, exponential durations (mean {:.0f} s, at least 1 s; "
             "1 in 2000 with a 20-minute mean), {} pools, {} tenants, 0.2 % refused at admission, 2 % reaped "
             "(one event each); seed {}\n",
             o.concurrency / o.mean_seconds, o.mean_seconds, o.pools, o.tenants, o.seed);
  fmt::print("- queries: each run {} times (the whole-range ones {}), median and best reported; the time includes "
             "reading every row and running the sweep\n",
             o.repeat, std::max(1, std::min(o.repeat, 3)));
  struct rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  fmt::print("- bench process peak RSS: {} MiB\n", ru.ru_maxrss / 1024);
  print(o, reports);
  return 0;
}
