#include "loadgen/latency_histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace sluice::loadgen {
namespace {

constexpr unsigned kSubBits = 7;                      // 2^7 = 128 buckets per power of two
constexpr std::uint64_t kLinear = 2ull << kSubBits;   // values below 256 have a bucket each
constexpr std::size_t kBuckets = kLinear + (64 - kSubBits - 1) * (1ull << kSubBits);

}  // namespace

LatencyHistogram::LatencyHistogram() : counts_(kBuckets, 0) {}

std::size_t LatencyHistogram::index_of(std::uint64_t ns) {
  if (ns < kLinear) return static_cast<std::size_t>(ns);
  unsigned top = static_cast<unsigned>(std::bit_width(ns)) - 1;  // >= kSubBits + 1
  unsigned shift = top - kSubBits;
  std::uint64_t mantissa = (ns >> shift) - (1ull << kSubBits);  // 0..127
  return kLinear + (top - kSubBits - 1) * (1ull << kSubBits) + mantissa;
}

std::uint64_t LatencyHistogram::midpoint_of(std::size_t index) {
  if (index < kLinear) return index;
  std::size_t i = index - kLinear;
  unsigned shift = static_cast<unsigned>(i >> kSubBits) + 1;
  std::uint64_t mantissa = (i & ((1ull << kSubBits) - 1)) + (1ull << kSubBits);
  std::uint64_t low = mantissa << shift;
  return low + (1ull << shift) / 2;
}

void LatencyHistogram::record(std::uint64_t ns) {
  ++counts_[index_of(ns)];
  ++count_;
  sum_ += ns;
  max_ = std::max(max_, ns);
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  max_ = std::max(max_, other.max_);
}

std::uint64_t LatencyHistogram::quantile(double q) const {
  if (count_ == 0) return 0;
  auto rank = static_cast<std::uint64_t>(std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(count_)));
  rank = std::max<std::uint64_t>(rank, 1);
  if (rank >= count_) return max_;
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(midpoint_of(i), max_);
  }
  return max_;
}

}  // namespace sluice::loadgen
