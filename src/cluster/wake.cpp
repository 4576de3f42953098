#include "cluster/wake.hpp"

#include <boost/asio/post.hpp>

#include <vector>

namespace sluice::cluster {

FleetWake::Registration::~Registration() {
  if (!owner_) return;
  std::lock_guard lock(owner_->mutex_);
  owner_->entries_.erase(it_);
}

FleetWake::Registration FleetWake::add(const std::string& pool, std::shared_ptr<boost::asio::steady_timer> timer) {
  std::lock_guard lock(mutex_);
  entries_.push_front(Entry{pool, std::move(timer)});
  return Registration(this, entries_.begin());
}

void FleetWake::notify(const std::string& pool) {
  ++generation_;
  std::vector<std::shared_ptr<boost::asio::steady_timer>> wake;
  {
    std::lock_guard lock(mutex_);
    for (auto& e : entries_)
      if (pool.empty() || e.pool == pool) wake.push_back(e.timer);
  }
  for (auto& t : wake) boost::asio::post(t->get_executor(), [t] { t->cancel(); });
}

int FleetWake::waiting() const {
  std::lock_guard lock(mutex_);
  return static_cast<int>(entries_.size());
}

int FleetWake::waiting(const std::string& pool) const {
  std::lock_guard lock(mutex_);
  int n = 0;
  for (const auto& e : entries_) n += e.pool == pool;
  return n;
}

}  // namespace sluice::cluster
