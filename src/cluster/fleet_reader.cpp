#include "cluster/fleet_reader.hpp"

namespace sluice::cluster {

FleetReader::FleetReader(RedisUrl url, LeaseStore::Options options) : store_(std::move(url), std::move(options)) {}

std::vector<LeaseStore::Published> FleetReader::sessions() {
  std::lock_guard lock(mutex_);
  return store_.fleet_sessions();
}

long long FleetReader::end_session(const std::string& instance, const std::string& id) {
  std::lock_guard lock(mutex_);
  return store_.end_session(instance, id);
}

std::vector<FleetPoolUse> FleetReader::pools(
    const std::vector<std::pair<std::string, std::optional<std::chrono::milliseconds>>>& pools) {
  std::lock_guard lock(mutex_);
  std::vector<FleetPoolUse> out;
  for (const auto& [name, release_delay] : pools) {
    FleetPoolUse u;
    u.pool = name;
    for (const auto& h : store_.holders(name)) ++u.by_instance[h.instance];
    for (const auto& [_, n] : u.by_instance) u.in_use += n;
    u.waiting = store_.waiting(name);
    u.lowered_limit = store_.lowered_limit(name);
    u.delay = store_.delay(name, release_delay);
    out.push_back(std::move(u));
  }
  return out;
}

}  // namespace sluice::cluster
