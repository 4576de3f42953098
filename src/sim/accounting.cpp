#include "sim/accounting.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include <algorithm>
#include <vector>

namespace sluice::sim {

namespace asio = boost::asio;
using protocol::Family;

namespace {
constexpr Family kFamilies[] = {Family::streaming, Family::flux, Family::tts, Family::agent};
}

Accounting::Lease::Lease(std::shared_ptr<Accounting> owner, std::string project, Family family)
    : owner_(std::move(owner)), project_(std::move(project)), family_(family) {}

Accounting::Lease::~Lease() {
  if (owner_) owner_->release(project_, family_);
}

Accounting::Accounting(asio::io_context& ioc, const SimConfig& config)
    : ioc_(ioc),
      open_admission_(config.projects.empty()),
      stale_accounting_(config.faults.stale_accounting) {
  if (open_admission_) limits_["default"] = config.default_limits;
  for (const auto& project : config.projects) {
    for (const auto& key : project.keys) project_by_key_.emplace(key, project.name);
    auto& limits = limits_[project.name];
    for (const auto& [family, n] : project.limits) limits[family] = n;
  }
  // Every known project shows all families from the start, zeros included,
  // so the admin view has the same shape before and after traffic.
  for (const auto& [name, unused] : limits_)
    for (Family f : kFamilies) stats_.projects[name][f];
}

std::optional<std::string> Accounting::project_for(std::string_view key) const {
  if (open_admission_) return std::string("default");
  auto it = project_by_key_.find(key);
  if (it == project_by_key_.end()) return std::nullopt;
  return it->second;
}

std::optional<Accounting::Lease> Accounting::try_acquire(const std::string& project, Family family) {
  std::lock_guard lock(mutex_);
  auto& counts = stats_.projects[project][family];
  if (auto p = limits_.find(project); p != limits_.end()) {
    if (auto l = p->second.find(family); l != p->second.end() && counts.open >= l->second) {
      ++counts.refused_429;
      return std::nullopt;
    }
  }
  ++counts.open;
  ++counts.accepted;
  counts.max_open = std::max(counts.max_open, counts.open);
  return Lease(shared_from_this(), project, family);
}

void Accounting::release(const std::string& project, Family family) {
  std::shared_ptr<asio::steady_timer> timer;
  {
    std::lock_guard lock(mutex_);
    if (stale_accounting_.count() > 0 && !stopped_) {
      // A vendor with stale accounting: the slot stays taken for a while
      // after the socket is gone.
      timer = std::make_shared<asio::steady_timer>(asio::make_strand(ioc_), stale_accounting_);
      stale_timers_.insert(timer);
    }
  }
  if (!timer) {
    release_now(project, family);
    return;
  }
  // Released when the timer fires or is cancelled by stop(), whichever first.
  timer->async_wait([self = shared_from_this(), timer, project, family](boost::system::error_code) {
    {
      std::lock_guard lock(self->mutex_);
      self->stale_timers_.erase(timer);
    }
    self->release_now(project, family);
  });
}

void Accounting::release_now(const std::string& project, Family family) {
  std::lock_guard lock(mutex_);
  --stats_.projects[project][family].open;
}

void Accounting::note_handshake() {
  std::lock_guard lock(mutex_);
  ++stats_.handshakes;
}

void Accounting::note_unauthorized() {
  std::lock_guard lock(mutex_);
  ++stats_.unauthorized;
}

SimStats Accounting::snapshot() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void Accounting::reset_max() {
  std::lock_guard lock(mutex_);
  for (auto& [name, families] : stats_.projects)
    for (auto& [family, counts] : families) counts.max_open = counts.open;
}

void Accounting::stop() {
  std::vector<std::shared_ptr<asio::steady_timer>> timers;
  {
    std::lock_guard lock(mutex_);
    stopped_ = true;
    timers.assign(stale_timers_.begin(), stale_timers_.end());
  }
  // Each timer is touched only on its own strand.
  for (auto& t : timers) asio::post(t->get_executor(), [t] { t->cancel(); });
}

}  // namespace sluice::sim
