#include "admission/release_delay.hpp"

#include <algorithm>

namespace sluice::admission {

ReleaseDelayEstimator::ReleaseDelayEstimator(std::size_t capacity) : capacity_(std::max<std::size_t>(capacity, 1)) {}

void ReleaseDelayEstimator::set_capacity(std::size_t capacity) {
  capacity_ = std::max<std::size_t>(capacity, 1);
  trim();
}

void ReleaseDelayEstimator::trim() {
  while (releases_.size() > capacity_) releases_.pop_front();
}

void ReleaseDelayEstimator::note_release(TimePoint t) {
  if (!releases_.empty() && t < releases_.back()) t = releases_.back();
  releases_.push_back(t);
  trim();
}

std::optional<ReleaseDelayEstimator::TimePoint> ReleaseDelayEstimator::release(int k) const {
  if (k < 1 || static_cast<std::size_t>(k) > releases_.size()) return std::nullopt;
  return releases_[releases_.size() - static_cast<std::size_t>(k)];
}

std::optional<ReleaseDelayEstimator::Duration> ReleaseDelayEstimator::on_refusal(TimePoint now, int k) {
  auto r = release(k);
  if (!r || now - *r > kMaxDelay) return std::nullopt;
  auto age = now - *r;
  // The newest evidence wins: upper bounds it contradicts are dropped.
  std::erase_if(upper_, [&](const Sample& s) { return s.value <= age; });
  lower_.push_front({age, now});
  if (lower_.size() > kMaxSamples) lower_.pop_back();
  return age;
}

std::optional<ReleaseDelayEstimator::Duration> ReleaseDelayEstimator::on_acceptance(TimePoint now, int k) {
  auto r = release(k);
  if (!r || now - *r > kMaxDelay) return std::nullopt;
  auto age = now - *r;
  std::erase_if(lower_, [&](const Sample& s) { return s.value >= age; });
  upper_.push_front({age, now});
  if (upper_.size() > kMaxSamples) upper_.pop_back();
  return age;
}

std::optional<ReleaseDelayEstimator::Duration> ReleaseDelayEstimator::lower(TimePoint now) const {
  std::optional<Duration> out;
  for (const auto& s : lower_)
    if (now - s.seen <= kSampleWindow && (!out || s.value > *out)) out = s.value;
  return out;
}

std::optional<ReleaseDelayEstimator::Duration> ReleaseDelayEstimator::upper(TimePoint now) const {
  std::optional<Duration> out;
  for (const auto& s : upper_)
    if (now - s.seen <= kSampleWindow && (!out || s.value < *out)) out = s.value;
  return out;
}

ReleaseDelayEstimator::Duration ReleaseDelayEstimator::estimate(TimePoint now) const {
  auto lo = lower(now);
  if (!lo) return Duration::zero();
  auto est = *lo + std::max(kMinMargin, *lo / 10);
  if (auto hi = upper(now); hi && est > *hi) est = std::max(*hi, *lo);
  return est;
}

int ReleaseDelayEstimator::cooling(TimePoint now, Duration delay) const {
  if (delay <= Duration::zero()) return 0;
  int n = 0;
  for (auto it = releases_.rbegin(); it != releases_.rend() && now - *it < delay; ++it) ++n;
  return n;
}

std::optional<ReleaseDelayEstimator::TimePoint> ReleaseDelayEstimator::next_cooling_end(TimePoint now,
                                                                                       Duration delay) const {
  if (delay <= Duration::zero()) return std::nullopt;
  // Oldest first: the first release whose cooldown ends after now.
  for (auto r : releases_)
    if (r + delay > now) return r + delay;
  return std::nullopt;
}

void ReleaseDelayEstimator::clear_bounds() {
  lower_.clear();
  upper_.clear();
}

}  // namespace sluice::admission
