#pragma once
// The fleet view's reads and requests, for the admin API: every instance's
// published sessions, a request to another instance to end one of its
// sessions, and each pool's leases across the fleet by instance. Blocking
// (one Redis connection, serialized): for the admin's query threads, never
// an I/O thread. Thread-safe.
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cluster/lease_store.hpp"

namespace sluice::cluster {

struct FleetPoolUse {
  std::string pool;
  int in_use = 0;                          // live leases in the fleet
  int waiting = 0;                         // places on the fleet's wait list
  std::optional<int> lowered_limit;        // the fleet's effective limit, when lowered
  std::map<std::string, int> by_instance;  // leases per instance
  FleetDelay delay;                        // the release delay in force and the fleet's cooling slots
};

class FleetReader {
 public:
  FleetReader(RedisUrl url, LeaseStore::Options options);
  // Each throws RedisError (no secret in it) when Redis cannot be asked.
  std::vector<LeaseStore::Published> sessions();
  long long end_session(const std::string& instance, const std::string& id);
  // Each pool by name, with its configured release delay (unset: learned).
  std::vector<FleetPoolUse> pools(
      const std::vector<std::pair<std::string, std::optional<std::chrono::milliseconds>>>& pools);

 private:
  std::mutex mutex_;
  LeaseStore store_;  // guarded by mutex_
};

}  // namespace sluice::cluster
