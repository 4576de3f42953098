#pragma once
// A histogram with fixed bucket bounds for /metrics: one observation is a few
// relaxed atomic additions, no lock and no allocation, so it may be recorded
// from any thread at the event it measures (an admission, an upstream
// handshake, a stream's end). A snapshot reads each atomic once: taken while
// observations run, its count may be a moment ahead of or behind its sum.
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace sluice::util {

// What a histogram held at one moment: per-bucket counts (not cumulative),
// the last one for observations above every bound (+Inf).
struct HistogramSnapshot {
  std::vector<double> bounds;         // upper bounds, ascending
  std::vector<std::uint64_t> counts;  // bounds.size() + 1
  double sum = 0;
  std::uint64_t count = 0;
  // Adds another snapshot with the same bounds (a pool's series summed).
  void add(const HistogramSnapshot& o) {
    if (counts.empty()) {
      *this = o;
      return;
    }
    for (std::size_t i = 0; i < counts.size() && i < o.counts.size(); ++i) counts[i] += o.counts[i];
    sum += o.sum;
    count += o.count;
  }
};

// Bucket bounds in seconds.
inline constexpr std::array<double, 14> kQueueWaitBuckets{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                          0.5,   1,     2.5,  5,     10,   30,  60};
inline constexpr std::array<double, 12> kHandshakeBuckets{0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                          1,    2.5,   5,    10,  30,   60};
// A round trip to Redis on loopback is tens of microseconds.
inline constexpr std::array<double, 13> kRedisBuckets{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                      0.025,  0.05,    0.1,    0.25,  0.5,    1};
inline constexpr std::array<double, 14> kStreamDurationBuckets{1,   5,    10,   30,   60,    120,   300,
                                                               600, 1200, 1800, 3600, 7200, 14400, 86400};

class Histogram {
 public:
  static constexpr std::size_t kMaxBounds = 15;
  explicit Histogram(std::span<const double> bounds) : bounds_(bounds.begin(), bounds.end()) {
    if (bounds_.size() > kMaxBounds) bounds_.resize(kMaxBounds);
  }
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void observe(double v) {
    std::size_t i = 0;
    while (i < bounds_.size() && v > bounds_[i]) ++i;
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    // The sum in nanoseconds (seconds-valued histograms): an integer add,
    // exact, and no compare-and-swap loop.
    sum_ns_.fetch_add(v > 0 ? static_cast<std::int64_t>(v * 1e9 + 0.5) : 0, std::memory_order_relaxed);
  }

  HistogramSnapshot snapshot() const {
    HistogramSnapshot s;
    s.bounds = bounds_;
    s.counts.resize(bounds_.size() + 1);
    for (std::size_t i = 0; i <= bounds_.size(); ++i) s.counts[i] = buckets_[i].load(std::memory_order_relaxed);
    s.sum = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
    // The count is the buckets' total, so the exposition stays consistent
    // (the +Inf bucket equals _count) whatever ran meanwhile.
    s.count = 0;
    for (auto c : s.counts) s.count += c;
    return s;
  }

 private:
  std::vector<double> bounds_;
  std::array<std::atomic<std::uint64_t>, kMaxBounds + 1> buckets_{};
  std::atomic<std::int64_t> sum_ns_{0};
};

}  // namespace sluice::util
