#include "sim/connection_set.hpp"

#include <boost/asio/post.hpp>

#include <utility>
#include <vector>

namespace sluice::sim {

ConnectionSet::Registration::~Registration() {
  if (owner_) owner_->remove(id_);
}

std::optional<ConnectionSet::Registration> ConnectionSet::add(boost::asio::any_io_executor strand,
                                                              const StopFn* stop) {
  std::lock_guard lock(mutex_);
  if (stopped_) return std::nullopt;
  auto id = next_id_++;
  entries_.emplace(id, Entry{std::move(strand), stop});
  return Registration(shared_from_this(), id);
}

void ConnectionSet::remove(std::uint64_t id) {
  std::lock_guard lock(mutex_);
  entries_.erase(id);
}

void ConnectionSet::stop_all() {
  std::vector<std::pair<std::uint64_t, boost::asio::any_io_executor>> targets;
  {
    std::lock_guard lock(mutex_);
    stopped_ = true;
    for (const auto& [id, entry] : entries_) targets.emplace_back(id, entry.strand);
  }
  for (auto& [id, strand] : targets) {
    boost::asio::post(strand, [self = shared_from_this(), id = id] {
      // On the connection's strand: if it is still registered its frame is
      // alive and not running, so its stop function may be called.
      std::lock_guard lock(self->mutex_);
      auto it = self->entries_.find(id);
      if (it != self->entries_.end() && it->second.stop && *it->second.stop) (*it->second.stop)();
    });
  }
}

std::size_t ConnectionSet::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace sluice::sim
