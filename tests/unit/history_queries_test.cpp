// The interval sweeps on their own: hand-made cases with known answers, and
// random spans checked against a brute-force count at every instant.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <stdexcept>

#include "history/queries.hpp"

namespace sluice::history {
namespace {

Span span(std::int64_t session, const std::string& pool, Micros start, Micros end, const std::string& tenant = "acme",
          double audio = 0, double idle = 0) {
  Span s;
  s.run_id = 1;
  s.session_id = session;
  s.pool = pool;
  s.tenant = tenant;
  s.start = start;
  s.end = end;
  s.audio_seconds = audio;
  s.idle_seconds = idle;
  return s;
}

std::vector<PoolConcurrency> sweep(Micros from, Micros to, Micros origin, Micros size, std::vector<Span> spans) {
  std::stable_sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.start < b.start; });
  ConcurrencySweep c(from, to, origin, size);
  for (const auto& s : spans) c.add(s);
  return c.finish();
}

std::int64_t utc(std::int64_t) { return 0; }
std::int64_t plus_two_hours(std::int64_t) { return 7200; }

constexpr Micros kS = 1'000'000;
constexpr Micros kMin = 60 * kS;
constexpr Micros kDay = 86'400 * kS;

TEST(HistoryIntervals, OpenAtIsHalfOpen) {
  auto s = span(1, "p", 10, 20);
  EXPECT_FALSE(open_at(s, 9));
  EXPECT_TRUE(open_at(s, 10));   // opened exactly at T: open
  EXPECT_TRUE(open_at(s, 19));
  EXPECT_FALSE(open_at(s, 20));  // closed exactly at T: not open
  auto zero = span(2, "p", 10, 10);
  EXPECT_FALSE(open_at(zero, 10));  // a zero-length stream is never open
}

TEST(HistoryIntervals, MeetsIsHalfOpen) {
  auto s = span(1, "p", 10, 20);
  EXPECT_TRUE(meets(s, 0, 11));
  EXPECT_FALSE(meets(s, 0, 10));   // the range ends where the stream opens
  EXPECT_FALSE(meets(s, 20, 30));  // the range starts where the stream closed
  EXPECT_TRUE(meets(s, 19, 30));
  EXPECT_TRUE(meets(s, 12, 13));   // inside
  EXPECT_TRUE(meets(s, 0, 100));   // around
  auto zero = span(2, "p", 10, 10);
  EXPECT_TRUE(meets(zero, 10, 11));
  EXPECT_TRUE(meets(zero, 0, 11));
  EXPECT_FALSE(meets(zero, 0, 10));
  EXPECT_FALSE(meets(zero, 11, 20));
}

TEST(ConcurrencySweep, RejectsAnEmptyRangeAStepOfZeroAndTooManyWindows) {
  EXPECT_THROW(ConcurrencySweep(10, 10, 0, 1), QueryError);
  EXPECT_THROW(ConcurrencySweep(10, 5, 0, 1), QueryError);
  EXPECT_THROW(ConcurrencySweep(0, 10, 0, 0), QueryError);
  EXPECT_THROW(ConcurrencySweep(0, 10, 0, -1), QueryError);
  // A week in 1 µs steps: far more than kMaxWindows.
  try {
    ConcurrencySweep(0, 7 * kDay, 0, 1);
    FAIL() << "expected QueryError";
  } catch (const QueryError& e) {
    EXPECT_NE(std::string(e.what()).find("too many"), std::string::npos) << e.what();
  }
  // Exactly kMaxWindows is allowed.
  EXPECT_NO_THROW(ConcurrencySweep(0, static_cast<Micros>(ConcurrencySweep::kMaxWindows), 0, 1));
  EXPECT_THROW(ConcurrencySweep(0, static_cast<Micros>(ConcurrencySweep::kMaxWindows) + 1, 0, 1), QueryError);
}

TEST(ConcurrencySweep, SpansOutOfOrderAreALogicError) {
  ConcurrencySweep c(0, 100, 0, 10);
  c.add(span(1, "p", 50, 60));
  EXPECT_THROW(c.add(span(2, "p", 40, 60)), std::logic_error);
  // Equal starts are in order.
  EXPECT_NO_THROW(c.add(span(3, "p", 50, 55)));
}

TEST(ConcurrencySweep, NoStreamsGivesNoPools) {
  EXPECT_TRUE(sweep(0, 100, 0, 10, {}).empty());
  // Streams outside the range do not show their pool.
  EXPECT_TRUE(sweep(100, 200, 0, 10, {span(1, "p", 0, 100), span(2, "p", 200, 300)}).empty());
}

TEST(ConcurrencySweep, APoolWithOnlyZeroLengthStreamsShowsAtZero) {
  auto r = sweep(0, 100, 0, 50, {span(1, "p", 10, 10)});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].pool, "p");
  EXPECT_EQ(r[0].peak, 0);
  EXPECT_EQ(r[0].peak_at, 0);
  EXPECT_EQ(r[0].peak_until, 100);
  ASSERT_EQ(r[0].windows.size(), 2u);
  EXPECT_EQ(r[0].windows[0].max_open, 0);
  EXPECT_EQ(r[0].windows[1].min_open, 0);
  EXPECT_TRUE(r[0].peak_sessions.empty());
}

TEST(ConcurrencySweep, CloseBeforeOpenAtTheSameInstant) {
  // One closes at 50 as another opens at 50: never two at once.
  auto r = sweep(0, 100, 0, 100, {span(1, "p", 0, 50), span(2, "p", 50, 100)});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].peak, 1);
  EXPECT_EQ(r[0].peak_at, 0);
  EXPECT_EQ(r[0].peak_until, 100);
  EXPECT_EQ(r[0].windows[0].min_open, 1);
  EXPECT_EQ(r[0].windows[0].max_open, 1);
}

TEST(ConcurrencySweep, PeakItsFirstInstantItsEndAndItsSessions) {
  // Times in minutes from an origin on the clock.
  const Micros t0 = 1'700'000'400 * kS;  // a multiple of 10 minutes
  auto m = [&](Micros minutes) { return t0 + minutes * kMin; };
  std::vector<Span> spans{
      span(1, "p", m(0), m(30)),    // the whole time
      span(2, "p", m(12), m(17)),   // peak of 3 from 12 to 14 (with 3)
      span(3, "p", m(11), m(14)),
      span(4, "p", m(25), m(27)),   // peak of 3 again later (not the first)
      span(5, "p", m(26), m(28)),
      span(6, "p", m(5), m(5)),     // zero-length
      span(7, "q", m(1), m(2)),     // another pool
  };
  auto r = sweep(m(0), m(30), 0, 10 * kMin, spans);
  ASSERT_EQ(r.size(), 2u);
  const auto& p = r[0];
  EXPECT_EQ(p.pool, "p");
  EXPECT_EQ(p.peak, 3);
  EXPECT_EQ(p.peak_at, m(12));
  EXPECT_EQ(p.peak_until, m(14));
  EXPECT_EQ(p.best, 1u);
  std::vector<std::pair<std::int64_t, std::int64_t>> made{{1, 1}, {1, 2}, {1, 3}};
  EXPECT_EQ(p.peak_sessions, made);
  ASSERT_EQ(p.windows.size(), 3u);
  EXPECT_EQ(p.windows[0].start, m(0));
  EXPECT_EQ(p.windows[0].end, m(10));
  EXPECT_EQ(p.windows[0].max_open, 1);
  EXPECT_EQ(p.windows[0].min_open, 1);
  EXPECT_EQ(p.windows[0].peak_at, m(0));
  EXPECT_EQ(p.windows[1].max_open, 3);
  EXPECT_EQ(p.windows[1].min_open, 1);
  EXPECT_EQ(p.windows[1].peak_at, m(12));
  EXPECT_EQ(p.windows[2].max_open, 3);
  EXPECT_EQ(p.windows[2].peak_at, m(26));
  EXPECT_EQ(p.windows[2].min_open, 1);

  const auto& q = r[1];
  EXPECT_EQ(q.pool, "q");
  EXPECT_EQ(q.peak, 1);
  EXPECT_EQ(q.peak_at, m(1));
  EXPECT_EQ(q.peak_until, m(2));
  EXPECT_EQ(q.windows[0].min_open, 0);
  EXPECT_EQ(q.windows[1].max_open, 0);
  EXPECT_EQ(q.windows[2].max_open, 0);
}

TEST(ConcurrencySweep, StreamsStillOpenAtTheEndOfTheRange) {
  // Two streams open past `to`: the peak lasts to the end of the range and
  // the last window's minimum is not lowered by their ends.
  auto r = sweep(0, 100, 0, 50, {span(1, "p", 10, 200), span(2, "p", 60, 300)});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].peak, 2);
  EXPECT_EQ(r[0].peak_at, 60);
  EXPECT_EQ(r[0].peak_until, 100);
  EXPECT_EQ(r[0].windows[1].max_open, 2);
  EXPECT_EQ(r[0].windows[1].min_open, 1);
  EXPECT_EQ(r[0].windows[0].min_open, 0);
  EXPECT_EQ(r[0].windows[0].max_open, 1);
}

TEST(ConcurrencySweep, AllStreamsEndAtTheEndOfTheRange) {
  // Several streams end exactly at `to`: at no instant in the range are
  // fewer than 3 open.
  auto r = sweep(0, 100, 0, 100, {span(1, "p", 0, 100), span(2, "p", 0, 100), span(3, "p", 0, 150)});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].peak, 3);
  EXPECT_EQ(r[0].peak_until, 100);
  EXPECT_EQ(r[0].windows[0].min_open, 3);
  EXPECT_EQ(r[0].windows[0].max_open, 3);
}

TEST(ConcurrencySweep, SeriesAlignedToFrom) {
  // A series uses origin = from: steps [from, from + step), ...
  auto r = sweep(5, 35, 5, 10, {span(1, "p", 0, 12), span(2, "p", 20, 40), span(3, "p", 22, 23)});
  ASSERT_EQ(r.size(), 1u);
  const auto& w = r[0].windows;
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0].start, 5);
  EXPECT_EQ(w[0].end, 15);
  EXPECT_EQ(w[0].max_open, 1);
  EXPECT_EQ(w[0].min_open, 0);  // from 12 to 15 nothing is open
  EXPECT_EQ(w[1].start, 15);
  EXPECT_EQ(w[1].max_open, 2);
  EXPECT_EQ(w[1].min_open, 0);
  EXPECT_EQ(w[1].peak_at, 22);
  EXPECT_EQ(w[2].start, 25);
  EXPECT_EQ(w[2].end, 35);
  EXPECT_EQ(w[2].max_open, 1);
  EXPECT_EQ(w[2].min_open, 1);
  EXPECT_EQ(r[0].peak, 2);
  EXPECT_EQ(r[0].peak_at, 22);
  EXPECT_EQ(r[0].peak_until, 23);
  EXPECT_EQ(r[0].best, 1u);
}

TEST(ConcurrencySweep, WindowsOnTheClockAreClippedToTheRange) {
  auto r = sweep(7, 33, 0, 10, {span(1, "p", 0, 100)});
  ASSERT_EQ(r.size(), 1u);
  const auto& w = r[0].windows;
  ASSERT_EQ(w.size(), 4u);
  EXPECT_EQ(w[0].start, 7);
  EXPECT_EQ(w[0].end, 10);
  EXPECT_EQ(w[3].start, 30);
  EXPECT_EQ(w[3].end, 33);
  for (const auto& x : w) {
    EXPECT_EQ(x.max_open, 1);
    EXPECT_EQ(x.min_open, 1);
    EXPECT_EQ(x.peak_at, x.start);
  }
  EXPECT_EQ(r[0].peak_at, 7);
  EXPECT_EQ(r[0].peak_until, 33);
}

// --- Random spans against a brute-force count --------------------------------

struct Expected {
  int peak = 0;
  Micros peak_at = 0, peak_until = 0;
  std::size_t best = 0;
  std::vector<Window> windows;
  std::vector<std::pair<std::int64_t, std::int64_t>> peak_sessions;
};

Expected brute(const std::vector<Span>& spans, const std::string& pool, Micros from, Micros to, Micros origin,
               Micros size) {
  auto count_at = [&](Micros t) {
    int n = 0;
    for (const auto& s : spans)
      if (s.pool == pool && open_at(s, t)) ++n;
    return n;
  };
  std::set<Micros> instants{from};
  for (const auto& s : spans) {
    if (s.pool != pool) continue;
    if (s.start > from && s.start < to) instants.insert(s.start);
    if (s.end > from && s.end < to) instants.insert(s.end);
  }
  Expected e;
  auto floor_div = [](Micros a, Micros b) { return a >= 0 ? a / b : -((-a + b - 1) / b); };
  for (auto k = floor_div(from - origin, size);; ++k) {
    Window w;
    w.start = std::max(from, origin + k * size);
    w.end = std::min(to, origin + (k + 1) * size);
    if (w.start >= to) break;
    instants.insert(w.start);
    e.windows.push_back(w);
  }
  for (auto& w : e.windows) {
    bool seen = false;
    for (auto t : instants) {
      if (t < w.start || t >= w.end) continue;
      int n = count_at(t);
      if (!seen || n > w.max_open) {
        w.max_open = n;
        w.peak_at = t;
      }
      if (!seen || n < w.min_open) w.min_open = n;
      seen = true;
    }
  }
  bool first = true;
  for (auto t : instants) {
    int n = count_at(t);
    if (first || n > e.peak) {
      e.peak = n;
      e.peak_at = t;
    }
    first = false;
  }
  e.peak_until = to;
  for (auto t : instants) {
    if (t > e.peak_at && count_at(t) < e.peak) {
      e.peak_until = t;
      break;
    }
  }
  for (std::size_t k = 0; k < e.windows.size(); ++k)
    if (e.windows[k].start <= e.peak_at && e.peak_at < e.windows[k].end) e.best = k;
  if (e.peak > 0) {
    for (const auto& s : spans)
      if (s.pool == pool && open_at(s, e.peak_at)) e.peak_sessions.emplace_back(s.run_id, s.session_id);
    std::sort(e.peak_sessions.begin(), e.peak_sessions.end());
  }
  return e;
}

TEST(ConcurrencySweep, MatchesABruteForceCountOnRandomSpans) {
  std::mt19937_64 rng(20261122);
  auto uniform = [&](Micros lo, Micros hi) { return std::uniform_int_distribution<Micros>(lo, hi)(rng); };
  for (int round = 0; round < 400; ++round) {
    std::vector<Span> spans;
    int n = static_cast<int>(uniform(0, 40));
    for (int i = 0; i < n; ++i) {
      // Small integers so that many starts and ends coincide.
      Micros start = uniform(0, 60);
      Micros end = start + (uniform(0, 5) == 0 ? 0 : uniform(1, 30));
      spans.push_back(span(i + 1, uniform(0, 2) == 0 ? "b" : "a", start, end));
    }
    Micros from = uniform(0, 50);
    Micros to = from + uniform(1, 40);
    Micros size = uniform(1, 15);
    Micros origin = uniform(0, 1) ? 0 : from;
    auto got = sweep(from, to, origin, size, spans);
    std::set<std::string> want_pools;
    for (const auto& s : spans)
      if (meets(s, from, to)) want_pools.insert(s.pool);
    ASSERT_EQ(got.size(), want_pools.size()) << "round " << round;
    for (const auto& p : got) {
      SCOPED_TRACE(testing::Message() << "round " << round << " pool " << p.pool << " [" << from << ", " << to
                                      << ") size " << size << " origin " << origin);
      auto e = brute(spans, p.pool, from, to, origin, size);
      EXPECT_EQ(p.peak, e.peak);
      EXPECT_EQ(p.peak_at, e.peak_at);
      EXPECT_EQ(p.peak_until, e.peak_until);
      EXPECT_EQ(p.best, e.best);
      EXPECT_EQ(p.peak_sessions, e.peak_sessions);
      ASSERT_EQ(p.windows.size(), e.windows.size());
      for (std::size_t k = 0; k < e.windows.size(); ++k) {
        SCOPED_TRACE(testing::Message() << "window " << k);
        EXPECT_EQ(p.windows[k].start, e.windows[k].start);
        EXPECT_EQ(p.windows[k].end, e.windows[k].end);
        EXPECT_EQ(p.windows[k].max_open, e.windows[k].max_open);
        EXPECT_EQ(p.windows[k].min_open, e.windows[k].min_open);
        EXPECT_EQ(p.windows[k].peak_at, e.windows[k].peak_at);
      }
    }
    if (HasFailure()) return;
  }
}

// --- Usage ---------------------------------------------------------------------

const UsageRow* find(const std::vector<UsageRow>& rows, const std::string& day, const std::string& tenant,
                     const std::string& pool) {
  for (const auto& r : rows)
    if (r.day == day && r.tenant == tenant && r.pool == pool) return &r;
  return nullptr;
}

TEST(UsageSweep, RejectsAnEmptyRange) { EXPECT_THROW(UsageSweep(5, 5, utc), QueryError); }

TEST(UsageSweep, SplitsAcrossMidnightInProportion) {
  const Micros midnight = 1'763'769'600 * kS;  // 2025-11-22 00:00:00 UTC
  UsageSweep u(midnight - kDay, midnight + kDay, utc);
  // 30 minutes before midnight to 90 minutes after: a quarter on the first day.
  u.add(span(1, "p", midnight - 30 * kMin, midnight + 90 * kMin, "acme", 100, 20));
  auto rows = u.finish();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].day, "2025-11-21");
  EXPECT_EQ(rows[1].day, "2025-11-22");
  EXPECT_EQ(rows[0].sessions, 1);
  EXPECT_EQ(rows[1].sessions, 0);  // counted on the day it opened
  EXPECT_DOUBLE_EQ(rows[0].stream_minutes, 30);
  EXPECT_DOUBLE_EQ(rows[1].stream_minutes, 90);
  EXPECT_DOUBLE_EQ(rows[0].audio_seconds, 25);
  EXPECT_DOUBLE_EQ(rows[1].audio_seconds, 75);
  EXPECT_DOUBLE_EQ(rows[0].idle_seconds, 5);
  EXPECT_DOUBLE_EQ(rows[1].idle_seconds, 15);
}

TEST(UsageSweep, ClipsToTheRangeAndKeepsTheShareOfTheWholeStream) {
  const Micros midnight = 1'763'769'600 * kS;
  // The range is the second day only: the stream opened the day before, so
  // it is not counted as a session, but its minutes there are.
  UsageSweep u(midnight, midnight + kDay, utc);
  u.add(span(1, "p", midnight - 30 * kMin, midnight + 90 * kMin, "acme", 120, 0));
  auto rows = u.finish();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].day, "2025-11-22");
  EXPECT_EQ(rows[0].sessions, 0);
  EXPECT_DOUBLE_EQ(rows[0].stream_minutes, 90);
  EXPECT_DOUBLE_EQ(rows[0].audio_seconds, 90);
}

TEST(UsageSweep, GroupsByDayTenantAndPoolInOrder) {
  const Micros midnight = 1'763'769'600 * kS;
  UsageSweep u(midnight, midnight + 2 * kDay, utc);
  u.add(span(1, "p", midnight + 10 * kMin, midnight + 20 * kMin, "zeta", 60, 0));
  u.add(span(2, "p", midnight + 11 * kMin, midnight + 12 * kMin, "acme", 30, 30));
  u.add(span(3, "q", midnight + 12 * kMin, midnight + 12 * kMin, "acme"));  // zero-length: a session, no minutes
  u.add(span(4, "p", midnight + kDay + kMin, midnight + kDay + 3 * kMin, "acme", 10, 5));
  u.add(span(5, "p", midnight + 30 * kMin, midnight + 40 * kMin, "acme", 6, 0));
  auto rows = u.finish();
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].day, "2025-11-22");
  EXPECT_EQ(rows[0].tenant, "acme");
  EXPECT_EQ(rows[0].pool, "p");
  EXPECT_EQ(rows[0].sessions, 2);
  EXPECT_DOUBLE_EQ(rows[0].stream_minutes, 11);
  EXPECT_DOUBLE_EQ(rows[0].audio_seconds, 36);
  EXPECT_DOUBLE_EQ(rows[0].idle_seconds, 30);
  const auto* q = find(rows, "2025-11-22", "acme", "q");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->sessions, 1);
  EXPECT_DOUBLE_EQ(q->stream_minutes, 0);
  const auto* z = find(rows, "2025-11-22", "zeta", "p");
  ASSERT_NE(z, nullptr);
  EXPECT_DOUBLE_EQ(z->stream_minutes, 10);
  EXPECT_EQ(rows[3].day, "2025-11-23");
  EXPECT_DOUBLE_EQ(rows[3].stream_minutes, 2);
}

TEST(UsageSweep, DaysInAnotherZone) {
  const Micros midnight = 1'763'769'600 * kS;  // 02:00 on 2025-11-22 at UTC+2
  UsageSweep u(midnight - kDay, midnight + kDay, plus_two_hours);
  // 21:30 to 22:30 UTC is 23:30 to 00:30 at UTC+2.
  u.add(span(1, "p", midnight - 150 * kMin, midnight - 90 * kMin, "acme", 60, 0));
  auto rows = u.finish();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].day, "2025-11-21");
  EXPECT_DOUBLE_EQ(rows[0].stream_minutes, 30);
  EXPECT_DOUBLE_EQ(rows[0].audio_seconds, 30);
  EXPECT_EQ(rows[1].day, "2025-11-22");
  EXPECT_DOUBLE_EQ(rows[1].stream_minutes, 30);
}

}  // namespace
}  // namespace sluice::history
