#pragma once
// The per-minute rollup of concurrency: for each pool and minute of the
// clock, the count of open streams at the minute's start, its maximum (and the
// first instant of it, and when that first stretch at the maximum ended) and
// its minimum, and every instant within the minute where the count changed.
// With the changes a minute can be cut anywhere, to the microsecond, so the
// rollup answers any range, window or step exactly as the sweep over the
// session intervals does (queries.hpp), reading minutes instead of streams.
//
// The store keeps it (store.hpp): the recorder's writer fills in minutes that
// are over, and a trigger on `sessions` removes the minutes any change of a
// row's interval touches, in the same transaction as the change, so a stored
// minute always equals the sweep of the rows as they are.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "history/queries.hpp"
#include "history/records.hpp"

namespace sluice::history {

class Store;

constexpr Micros kRollupMinute = 60'000'000;

Micros floor_minute(Micros t);

// The net change of the count at one instant; `zero` when a zero-length
// stream is there (it changes nothing but meets a range holding the instant).
struct Change {
  Micros at = 0;
  int delta = 0;
  bool zero = false;
};

struct MinuteRow {
  std::string pool;
  Micros minute = 0;            // its first instant, a multiple of a minute
  int before = 0;               // open just before it (changes at `minute` itself are in `changes`)
  int start = 0, max = 0, min = 0;
  Micros max_at = 0;            // the first instant of max
  Micros max_until = 0;         // the end of that first stretch (minute + 1 min if it lasts)
  std::vector<Change> changes;  // in order, all within the minute
  bool has_changes = false;     // `changes` read (a summary row may come without them)
};

// What a part [p0, p1) of a minute holds.
struct PieceSummary {
  int start = 0, max = 0, min = 0;
  Micros max_at = 0, max_until = 0;
  bool met = false;  // some stream meets the part
};
PieceSummary summarize(const MinuteRow& row, Micros p0, Micros p1);

// The minutes [a, b) of every pool a stream meets, from the counts open just
// before a and the opens, closes and zero-length streams within [a, b), in
// any order.
class MinuteBuilder {
 public:
  MinuteBuilder(Micros a, Micros b);
  void before(const std::string& pool, int count);
  void open(const std::string& pool, Micros t);
  void close(const std::string& pool, Micros t);
  void zero(const std::string& pool, Micros t);
  // A span as store.spans() gives it (meeting [a, b)).
  void add(const Span& s);
  // Minutes where something is open or meets, by minute then pool.
  std::vector<MinuteRow> finish();

 private:
  struct Pool {
    int before = 0;
    std::vector<std::pair<Micros, int>> events;  // delta 0: a zero-length stream
  };
  Micros a_, b_;
  std::map<std::string, Pool> pools_;
};

std::string encode_changes(const std::vector<Change>& changes, Micros minute);
std::vector<Change> decode_changes(std::string_view text, Micros minute);

// Concurrency per pool over [from, to) in windows of `size` aligned to
// `origin`: the same answer as ConcurrencySweep over store.spans(), from the
// rollup where it covers the range and from the spans where it does not.
// With a tenant or an instance it is the sweep (the rollup counts whole
// pools, every gateway sharing the store together).
std::vector<PoolConcurrency> concurrency(Store& store, Micros from, Micros to, Micros origin, Micros size,
                                         const std::optional<std::string>& pool,
                                         const std::optional<std::string>& tenant, Micros now,
                                         const std::optional<std::string>& instance = std::nullopt);

// The sweep alone, for comparison and for what the rollup does not answer.
std::vector<PoolConcurrency> concurrency_by_sweep(Store& store, Micros from, Micros to, Micros origin, Micros size,
                                                  const std::optional<std::string>& pool,
                                                  const std::optional<std::string>& tenant, Micros now,
                                                  const std::optional<std::string>& instance = std::nullopt);

}  // namespace sluice::history
