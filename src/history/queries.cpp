#include "history/queries.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <limits>
#include <tuple>

namespace sluice::history {

bool open_at(const Span& s, Micros t) { return s.start <= t && t < s.end; }

bool meets(const Span& s, Micros a, Micros b) {
  if (s.end <= s.start) return a <= s.start && s.start < b;
  return s.start < b && s.end > a;
}

namespace {

Micros floor_div(Micros a, Micros b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

struct Open {
  Micros end;
  std::int64_t run, session;
  bool operator>(const Open& o) const { return end > o.end; }
};

}  // namespace

// One pool's sweep: the streams open now (a min-heap on their end), the
// changes at the current instant not yet committed, and the windows.
struct ConcurrencySweep::Pool {
  std::string name;
  std::vector<Open> heap;
  int count = 0;        // streams open after every change so far
  int committed = 0;    // the count from the last committed instant on
  bool pending = false;
  Micros pending_t = 0;
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  std::size_t last_window = kNone;  // the window of the last commit
  std::vector<Window> windows;
  PoolConcurrency result;
  bool peaked = false;

  void touch(std::size_t k, int value, Micros at) {
    auto& w = windows[k];
    if (value > w.max_open) {
      w.max_open = value;
      w.peak_at = at;
    }
    w.min_open = std::min(w.min_open, value);
  }

  // The count from instant t on is `count`.
  void commit(Micros t, std::size_t k) {
    // Windows entered since the last commit held the previous count at their
    // start (unless this change is exactly at the start).
    for (auto j = last_window == kNone ? 0 : last_window + 1; j <= k && j < windows.size(); ++j) {
      if (j < k || windows[j].start < t) touch(j, committed, windows[j].start);
    }
    if (k < windows.size()) touch(k, count, t);
    last_window = k;
    if (count > result.peak) {
      result.peak = count;
      result.peak_at = t;
      result.peak_until = 0;
      peaked = true;
      result.peak_sessions.clear();
      for (const auto& o : heap) result.peak_sessions.emplace_back(o.run, o.session);
      std::sort(result.peak_sessions.begin(), result.peak_sessions.end());
    } else if (peaked && result.peak_until == 0 && count < result.peak) {
      result.peak_until = t;
    }
    committed = count;
    pending = false;
  }
};

ConcurrencySweep::ConcurrencySweep(Micros from, Micros to, Micros origin, Micros size)
    : from_(from), to_(to), origin_(origin), size_(size), last_start_(std::numeric_limits<Micros>::min()) {
  if (to <= from) throw QueryError("the range is empty: 'to' must be later than 'from'");
  if (size <= 0) throw QueryError("the window or step must be positive");
  auto first = floor_div(from - origin, size);
  auto last = floor_div(to - 1 - origin, size);
  if (last - first + 1 > static_cast<Micros>(kMaxWindows))
    throw QueryError(fmt::format("{} windows is too many (at most {}): use a longer window or step or a shorter range",
                                 last - first + 1, kMaxWindows));
}

ConcurrencySweep::~ConcurrencySweep() {
  for (auto& [_, p] : pools_) delete p;
}

ConcurrencySweep::Pool& ConcurrencySweep::pool(const std::string& name) {
  auto it = pools_.find(name);
  if (it != pools_.end()) return *it->second;
  auto* p = new Pool;
  p->name = name;
  p->result.pool = name;
  for (auto k = floor_div(from_ - origin_, size_);; ++k) {
    Window w;
    w.start = std::max(from_, origin_ + k * size_);
    w.end = std::min(to_, origin_ + (k + 1) * size_);
    w.peak_at = w.start;
    w.min_open = std::numeric_limits<int>::max();
    if (w.start >= to_) break;
    p->windows.push_back(w);
  }
  pools_.emplace(name, p);
  return *p;
}

void ConcurrencySweep::add(const Span& s) {
  if (s.start < last_start_) throw std::logic_error("ConcurrencySweep: spans out of order");
  last_start_ = s.start;
  auto start = std::max(s.start, from_);
  auto end = std::min(s.end, to_);
  if (end <= start) {
    if (meets(s, from_, to_)) pool(s.pool);  // a pool with only zero-length streams still shows, at 0
    return;
  }
  auto& p = pool(s.pool);
  auto window_of = [&](Micros t) {
    return static_cast<std::size_t>(floor_div(t - origin_, size_) - floor_div(from_ - origin_, size_));
  };
  // Closes up to and including `start` come first: at an equal instant the
  // one that closes is no longer open when the other opens.
  while (!p.heap.empty() && p.heap.front().end <= start) {
    auto e = p.heap.front().end;
    if (p.pending && e > p.pending_t) p.commit(p.pending_t, window_of(p.pending_t));
    std::pop_heap(p.heap.begin(), p.heap.end(), std::greater<>{});
    p.heap.pop_back();
    --p.count;
    p.pending = true;
    p.pending_t = e;
  }
  if (p.pending && p.pending_t < start) p.commit(p.pending_t, window_of(p.pending_t));
  p.heap.push_back({end, s.run_id, s.session_id});
  std::push_heap(p.heap.begin(), p.heap.end(), std::greater<>{});
  ++p.count;
  p.pending = true;
  p.pending_t = start;
}

std::vector<PoolConcurrency> ConcurrencySweep::finish() {
  std::vector<PoolConcurrency> out;
  auto window_of = [&](Micros t) {
    return static_cast<std::size_t>(floor_div(t - origin_, size_) - floor_div(from_ - origin_, size_));
  };
  for (auto& [name, pp] : pools_) {
    auto& p = *pp;
    while (!p.heap.empty()) {
      auto e = p.heap.front().end;
      if (p.pending && e > p.pending_t) p.commit(p.pending_t, window_of(p.pending_t));
      std::pop_heap(p.heap.begin(), p.heap.end(), std::greater<>{});
      p.heap.pop_back();
      --p.count;
      if (e >= to_) continue;  // still open at the end of the range
      p.pending = true;
      p.pending_t = e;
    }
    if (p.pending) p.commit(p.pending_t, window_of(p.pending_t));
    // Carry the last count through the windows after the last change.
    for (auto j = p.last_window == Pool::kNone ? 0 : p.last_window + 1; j < p.windows.size(); ++j)
      p.touch(j, p.committed, p.windows[j].start);
    if (!p.peaked) p.result.peak_at = from_;
    if (p.result.peak_until == 0) p.result.peak_until = to_;
    for (std::size_t k = 0; k < p.windows.size(); ++k) {
      if (p.windows[k].start <= p.result.peak_at && p.result.peak_at < p.windows[k].end) p.result.best = k;
    }
    p.result.windows = std::move(p.windows);
    out.push_back(std::move(p.result));
  }
  return out;
}

UsageSweep::UsageSweep(Micros from, Micros to, OffsetFn utc_offset) : from_(from), to_(to), offset_(utc_offset) {
  if (to <= from) throw QueryError("the range is empty: 'to' must be later than 'from'");
}

void UsageSweep::add(const Span& s) {
  constexpr Micros kDay = 86'400'000'000;
  auto day_name = [&](Micros t) {
    auto secs = floor_div(t, 1'000'000);
    std::time_t local = static_cast<std::time_t>(secs + offset_(secs));
    std::tm tm{};
    gmtime_r(&local, &tm);
    return fmt::format("{:04}-{:02}-{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
  };
  auto row = [&](const std::string& day) -> UsageRow& {
    auto& r = rows_[{day, s.tenant, s.pool}];
    if (r.day.empty()) {
      r.day = day;
      r.tenant = s.tenant;
      r.pool = s.pool;
    }
    return r;
  };
  if (s.start >= from_ && s.start < to_) row(day_name(s.start)).sessions += 1;
  auto start = std::max(s.start, from_);
  auto end = std::min(s.end, to_);
  if (end <= start) return;
  const double total = static_cast<double>(s.end - s.start);
  for (auto t = start; t < end;) {
    auto secs = floor_div(t, 1'000'000);
    auto off = offset_(secs) * 1'000'000;
    auto next_midnight = (floor_div(t + off, kDay) + 1) * kDay - off;
    auto piece_end = std::min(end, next_midnight);
    if (piece_end <= t) piece_end = end;  // an offset change that would not advance
    auto& r = row(day_name(t));
    auto piece = static_cast<double>(piece_end - t);
    r.stream_minutes += piece / 60e6;
    r.audio_seconds += s.audio_seconds * piece / total;
    r.idle_seconds += s.idle_seconds * piece / total;
    t = piece_end;
  }
}

std::vector<UsageRow> UsageSweep::finish() {
  std::vector<UsageRow> out;
  out.reserve(rows_.size());
  for (auto& [_, r] : rows_) out.push_back(std::move(r));
  return out;
}

}  // namespace sluice::history
