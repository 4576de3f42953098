#include "history/rollup.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <limits>
#include <set>

#include "history/store.hpp"

namespace sluice::history {

namespace {
Micros floor_div(Micros a, Micros b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
}  // namespace

Micros floor_minute(Micros t) { return floor_div(t, kRollupMinute) * kRollupMinute; }

PieceSummary summarize(const MinuteRow& row, Micros p0, Micros p1) {
  PieceSummary s;
  int cur = row.before;
  auto it = row.changes.begin();
  for (; it != row.changes.end() && it->at <= p0; ++it) {
    cur += it->delta;
    if (it->zero && it->at == p0) s.met = true;
  }
  s.start = s.max = s.min = cur;
  s.max_at = p0;
  s.max_until = p1;
  bool in_first_stretch = true;
  for (; it != row.changes.end() && it->at < p1; ++it) {
    if (it->zero) s.met = true;
    if (it->delta == 0) continue;
    cur += it->delta;
    if (cur > s.max) {
      s.max = cur;
      s.max_at = it->at;
      s.max_until = p1;
      in_first_stretch = true;
    } else if (cur < s.max && in_first_stretch) {
      s.max_until = it->at;
      in_first_stretch = false;
    }
    s.min = std::min(s.min, cur);
  }
  if (s.max > 0) s.met = true;
  return s;
}

MinuteBuilder::MinuteBuilder(Micros a, Micros b) : a_(a), b_(b) {}

void MinuteBuilder::before(const std::string& pool, int count) { pools_[pool].before += count; }
void MinuteBuilder::open(const std::string& pool, Micros t) { pools_[pool].events.emplace_back(t, 1); }
void MinuteBuilder::close(const std::string& pool, Micros t) { pools_[pool].events.emplace_back(t, -1); }
void MinuteBuilder::zero(const std::string& pool, Micros t) { pools_[pool].events.emplace_back(t, 0); }

void MinuteBuilder::add(const Span& s) {
  if (s.end <= s.start) {
    if (a_ <= s.start && s.start < b_) zero(s.pool, s.start);
    return;
  }
  if (!(s.start < b_ && s.end > a_)) return;
  if (s.start < a_) before(s.pool, 1);
  else open(s.pool, s.start);
  if (s.end < b_) close(s.pool, s.end);
}

std::vector<MinuteRow> MinuteBuilder::finish() {
  std::vector<MinuteRow> out;
  for (auto& [name, p] : pools_) {
    std::sort(p.events.begin(), p.events.end());
    // Net changes per instant.
    std::vector<Change> changes;
    for (const auto& [t, d] : p.events) {
      if (changes.empty() || changes.back().at != t) changes.push_back({t, 0, false});
      changes.back().delta += d;
      if (d == 0) changes.back().zero = true;
    }
    std::erase_if(changes, [](const Change& c) { return c.delta == 0 && !c.zero; });
    int cur = p.before;
    std::size_t i = 0;
    for (Micros m = a_; m < b_; m += kRollupMinute) {
      if (cur == 0 && (i == changes.size() || changes[i].at >= m + kRollupMinute)) {
        // Nothing open and nothing happens in this minute: skip to the next
        // minute with a change.
        if (i == changes.size()) break;
        m = floor_minute(changes[i].at) - kRollupMinute;
        continue;
      }
      MinuteRow row;
      row.pool = name;
      row.minute = m;
      row.before = cur;
      row.has_changes = true;
      while (i < changes.size() && changes[i].at < m + kRollupMinute) {
        cur += changes[i].delta;
        row.changes.push_back(changes[i++]);
      }
      auto s = summarize(row, m, m + kRollupMinute);
      if (!s.met) continue;
      row.start = s.start;
      row.max = s.max;
      row.min = s.min;
      row.max_at = s.max_at;
      row.max_until = s.max_until;
      out.push_back(std::move(row));
    }
  }
  std::sort(out.begin(), out.end(),
            [](const MinuteRow& x, const MinuteRow& y) { return std::tie(x.minute, x.pool) < std::tie(y.minute, y.pool); });
  return out;
}

// Each change: the microseconds since the previous one (or the minute's
// start) in decimal, then a letter: 'z' for a zero-length stream alone; '+'
// and '-' for one more or one fewer open ('Z' and 'X' with a zero-length
// stream there too); 'p' and 'm' ('P' and 'M') for more than one, followed by
// how many and ';'.
std::string encode_changes(const std::vector<Change>& changes, Micros minute) {
  std::string out;
  out.reserve(changes.size() * 7);
  Micros prev = minute;
  for (const auto& c : changes) {
    fmt::format_to(std::back_inserter(out), "{}", c.at - prev);
    prev = c.at;
    if (c.delta == 0) {
      out += 'z';
      continue;
    }
    int n = c.delta > 0 ? c.delta : -c.delta;
    if (n == 1) {
      out += c.delta > 0 ? (c.zero ? 'Z' : '+') : (c.zero ? 'X' : '-');
    } else {
      out += c.delta > 0 ? (c.zero ? 'P' : 'p') : (c.zero ? 'M' : 'm');
      fmt::format_to(std::back_inserter(out), "{};", n);
    }
  }
  return out;
}

std::vector<Change> decode_changes(std::string_view text, Micros minute) {
  std::vector<Change> out;
  Micros prev = minute;
  const char* p = text.data();
  const char* end = p + text.size();
  auto malformed = [] { return DbError("the concurrency rollup holds a malformed change list"); };
  auto number = [&](std::int64_t& v) {
    auto r = std::from_chars(p, end, v);
    if (r.ec != std::errc()) throw malformed();
    p = r.ptr;
  };
  while (p < end) {
    std::int64_t gap = 0;
    number(gap);
    if (p == end) throw malformed();
    char kind = *p++;
    Change c;
    c.at = prev + gap;
    prev = c.at;
    switch (kind) {
      case 'z': c.zero = true; break;
      case '+': c.delta = 1; break;
      case '-': c.delta = -1; break;
      case 'Z': c.delta = 1, c.zero = true; break;
      case 'X': c.delta = -1, c.zero = true; break;
      case 'p': case 'm': case 'P': case 'M': {
        std::int64_t n = 0;
        number(n);
        if (p == end || *p++ != ';') throw malformed();
        c.delta = static_cast<int>(kind == 'p' || kind == 'P' ? n : -n);
        c.zero = kind == 'P' || kind == 'M';
        break;
      }
      default: throw malformed();
    }
    out.push_back(c);
  }
  return out;
}

std::vector<PoolConcurrency> concurrency_by_sweep(Store& store, Micros from, Micros to, Micros origin, Micros size,
                                                  const std::optional<std::string>& pool,
                                                  const std::optional<std::string>& tenant, Micros now,
                                                  const std::optional<std::string>& instance) {
  ConcurrencySweep sweep(from, to, origin, size);
  store.spans({.from = from, .to = to, .pool = pool, .tenant = tenant, .instance = instance}, now,
              [&](Span&& s) { sweep.add(s); });
  return sweep.finish();
}

namespace {

struct Piece {
  Micros p0, p1;
  std::size_t window;
  PieceSummary s;
};

// One pool's answer from its pieces, in order, covering [from, to).
PoolConcurrency evaluate(const std::string& name, const std::vector<Piece>& pieces, Micros from, Micros to,
                         Micros origin, Micros size) {
  PoolConcurrency r;
  r.pool = name;
  for (auto k = floor_div(from - origin, size);; ++k) {
    Window w;
    w.start = std::max(from, origin + k * size);
    w.end = std::min(to, origin + (k + 1) * size);
    if (w.start >= to) break;
    w.peak_at = w.start;
    w.min_open = std::numeric_limits<int>::max();
    r.windows.push_back(w);
  }
  std::size_t peak_piece = 0;
  r.peak_at = from;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const auto& pc = pieces[i];
    auto& w = r.windows[pc.window];
    if (pc.s.max > w.max_open) {
      w.max_open = pc.s.max;
      w.peak_at = pc.s.max_at;
    }
    w.min_open = std::min(w.min_open, pc.s.min);
    if (pc.s.max > r.peak) {
      r.peak = pc.s.max;
      r.peak_at = pc.s.max_at;
      peak_piece = i;
    }
  }
  r.peak_until = to;
  if (r.peak > 0) {
    const auto& first = pieces[peak_piece];
    if (first.s.max_until < first.p1) {
      r.peak_until = first.s.max_until;
    } else {
      for (auto i = peak_piece + 1; i < pieces.size(); ++i) {
        const auto& pc = pieces[i];
        if (pc.s.start < r.peak) {
          r.peak_until = pc.p0;
          break;
        }
        if (pc.s.max_until < pc.p1) {
          r.peak_until = pc.s.max_until;
          break;
        }
      }
    }
  }
  for (std::size_t k = 0; k < r.windows.size(); ++k)
    if (r.windows[k].start <= r.peak_at && r.peak_at < r.windows[k].end) r.best = k;
  return r;
}

}  // namespace

std::vector<PoolConcurrency> concurrency(Store& store, Micros from, Micros to, Micros origin, Micros size,
                                         const std::optional<std::string>& pool,
                                         const std::optional<std::string>& tenant, Micros now,
                                         const std::optional<std::string>& instance) {
  if (tenant || instance) return concurrency_by_sweep(store, from, to, origin, size, pool, tenant, now, instance);
  // Checks the range and the number of windows as the sweep does.
  { ConcurrencySweep check(from, to, origin, size); }
  std::vector<PoolConcurrency> out;
  store.read_snapshot([&] {
    const Micros m0 = floor_minute(from), m1 = floor_minute(to - 1) + kRollupMinute;
    // Minutes the rollup covers (and that are over by `now`).
    std::set<Micros> covered;
    for (auto m : store.rollup_covered(m0, m1))
      if (m + kRollupMinute <= now) covered.insert(m);
    // minute -> pool -> row
    std::map<Micros, std::map<std::string, MinuteRow>> rows;
    // The rest from the spans, one run of minutes at a time.
    for (Micros m = m0; m < m1;) {
      if (covered.count(m)) {
        m += kRollupMinute;
        continue;
      }
      Micros a = m;
      while (m < m1 && !covered.count(m)) m += kRollupMinute;
      MinuteBuilder b(a, m);
      store.spans({.from = std::max(a, from), .to = std::min(m, to), .pool = pool}, now, [&](Span&& s) { b.add(s); });
      for (auto& row : b.finish()) rows[row.minute][row.pool] = std::move(row);
    }
    // A minute needs its changes when the range's ends or a window's edge cut it.
    auto cut = [&](Micros m) {
      return m < from || m + kRollupMinute > to ||
             floor_div(m - origin, size) != floor_div(m + kRollupMinute - 1 - origin, size);
    };
    std::vector<std::pair<Micros, Micros>> runs;  // covered minutes needing changes, as ranges
    for (auto m : covered) {
      if (!cut(m)) continue;
      if (!runs.empty() && runs.back().second == m) runs.back().second = m + kRollupMinute;
      else runs.emplace_back(m, m + kRollupMinute);
    }
    if (!covered.empty()) {
      store.rollup_minutes(m0, m1, pool, false, [&](MinuteRow&& row) {
        if (covered.count(row.minute)) rows[row.minute][row.pool] = std::move(row);
      });
      auto load = [&](Micros a, Micros b) {
        store.rollup_minutes(a, b, pool, true, [&](MinuteRow&& row) {
          if (covered.count(row.minute) && cut(row.minute)) rows[row.minute][row.pool] = std::move(row);
        });
      };
      if (runs.size() > 64) load(m0, m1);
      else
        for (auto [a, b] : runs) load(a, b);
    }
    // Every pool met anywhere, and its pieces in order.
    std::set<std::string> names;
    for (const auto& [m, by_pool] : rows)
      for (const auto& [name, _] : by_pool) names.insert(name);
    const Micros first_window = floor_div(from - origin, size);
    for (const auto& name : names) {
      std::vector<Piece> pieces;
      bool met = false;
      MinuteRow empty;
      for (Micros m = m0; m < m1; m += kRollupMinute) {
        const MinuteRow* row = &empty;
        if (auto it = rows.find(m); it != rows.end())
          if (auto jt = it->second.find(name); jt != it->second.end()) row = &jt->second;
        Micros lo = std::max(m, from), hi = std::min(m + kRollupMinute, to);
        if (row != &empty && !row->has_changes) {
          // A whole minute within one window: its summary.
          Piece pc{lo, hi, static_cast<std::size_t>(floor_div(lo - origin, size) - first_window), {}};
          pc.s.start = row->start;
          pc.s.max = row->max;
          pc.s.min = row->min;
          pc.s.max_at = row->max_at;
          pc.s.max_until = row->max_until;
          pc.s.met = true;
          met = true;
          pieces.push_back(pc);
          continue;
        }
        for (Micros p0 = lo; p0 < hi;) {
          auto k = floor_div(p0 - origin, size);
          Micros p1 = std::min(hi, origin + (k + 1) * size);
          Piece pc{p0, p1, static_cast<std::size_t>(k - first_window), summarize(*row, p0, p1)};
          met = met || pc.s.met;
          pieces.push_back(pc);
          p0 = p1;
        }
      }
      if (!met) continue;
      auto r = evaluate(name, pieces, from, to, origin, size);
      if (r.peak > 0) {
        store.spans({.from = r.peak_at, .to = r.peak_at + 1, .pool = name}, now, [&](Span&& s) {
          if (open_at(s, r.peak_at)) r.peak_sessions.emplace_back(s.run_id, s.session_id);
        });
        std::sort(r.peak_sessions.begin(), r.peak_sessions.end());
      }
      out.push_back(std::move(r));
    }
  });
  return out;
}

}  // namespace sluice::history
