#pragma once
// Exact answers over session intervals. A stream holds capacity during the
// half-open interval [opened, closed): it is open at T when opened <= T <
// closed, so one that opened exactly at T counts, one that closed exactly at
// T does not, and a zero-length stream is never open at an instant. Ranges
// are half-open too: [from, to).
//
// The sweeps take spans one at a time in order of start (the store reads
// them so) and keep only the streams open at the current instant, so a week
// of history needs memory for its peak, not for its millions of rows.
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "history/records.hpp"

namespace sluice::history {

// True when the span is open at instant t.
bool open_at(const Span& s, Micros t);
// True when the span meets [a, b): a zero-length span when a <= start < b.
bool meets(const Span& s, Micros a, Micros b);

// Thrown for a range or step the queries cannot answer (what() says why).
class QueryError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

struct Window {
  Micros start = 0, end = 0;  // [start, end), clipped to the range
  int max_open = 0;           // most streams open at once within it
  int min_open = 0;           // fewest
  Micros peak_at = 0;         // the first instant max_open was reached
};

struct PoolConcurrency {
  std::string pool;
  int peak = 0;               // most streams open at once within the range
  Micros peak_at = 0;         // the first instant that many were open
  Micros peak_until = 0;      // when that first stretch at the peak ended
  std::size_t best = 0;       // index of the window holding peak_at
  std::vector<Window> windows;
  std::vector<std::pair<std::int64_t, std::int64_t>> peak_sessions;  // (run, session) open at peak_at
};

// Concurrency per pool over [from, to) in windows of `size`, aligned to
// `origin` + k * size and clipped to the range. Peaks use origin 0 (windows on
// the clock: 12:00-12:10, 12:10-12:20, ...); a series uses origin = from.
class ConcurrencySweep {
 public:
  static constexpr std::size_t kMaxWindows = 1'000'000;
  ConcurrencySweep(Micros from, Micros to, Micros origin, Micros size);
  ~ConcurrencySweep();
  // Spans must come in order of start; throws std::logic_error otherwise.
  void add(const Span& s);
  // Every pool seen, sorted by name.
  std::vector<PoolConcurrency> finish();

 private:
  struct Pool;
  Pool& pool(const std::string& name);
  Micros from_, to_, origin_, size_;
  Micros last_start_;
  std::map<std::string, Pool*> pools_;
};

struct UsageRow {
  std::string day;  // YYYY-MM-DD in the zone the offset function describes
  std::string tenant, pool;
  std::int64_t sessions = 0;      // streams that opened that day
  double stream_minutes = 0;      // open time within the day
  double audio_seconds = 0;       // in proportion to the stream's open time within the day
  double idle_seconds = 0;        // likewise
};

// Usage per day, tenant and pool within [from, to). `utc_offset` gives the
// zone's offset east of UTC in seconds at a Unix time (0 for UTC).
class UsageSweep {
 public:
  using OffsetFn = std::function<std::int64_t(std::int64_t unix_seconds)>;
  UsageSweep(Micros from, Micros to, OffsetFn utc_offset);
  void add(const Span& s);
  std::vector<UsageRow> finish();  // by day, then tenant, then pool

 private:
  Micros from_, to_;
  OffsetFn offset_;
  std::map<std::tuple<std::string, std::string, std::string>, UsageRow> rows_;
};

}  // namespace sluice::history
