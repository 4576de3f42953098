#pragma once
// A log-linear histogram of durations in nanoseconds: exact below 256 ns,
// then 128 buckets per power of two, so every value is kept within 0.8 %.
// Fixed size (about 60 KB), O(1) record, mergeable. Not thread-safe: one
// writer, merged after the writers stop.
#include <cstdint>
#include <vector>

namespace sluice::loadgen {

class LatencyHistogram {
 public:
  LatencyHistogram();

  void record(std::uint64_t ns);
  void merge(const LatencyHistogram& other);

  std::uint64_t count() const { return count_; }
  std::uint64_t max() const { return max_; }
  double mean() const { return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0; }
  // The value at quantile q (0..1): the midpoint of its bucket, never above
  // max(); max() itself for the last rank. 0 when empty.
  std::uint64_t quantile(double q) const;

 private:
  static std::size_t index_of(std::uint64_t ns);
  static std::uint64_t midpoint_of(std::size_t index);

  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  std::uint64_t max_ = 0;
  std::uint64_t sum_ = 0;
};

}  // namespace sluice::loadgen
