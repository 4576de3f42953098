#pragma once
// A lease in the fleet (Redis), held by this instance: its destructor, or
// release(), gives it back through the instance's cluster::Agent. Move-only.
// Light on purpose: admission::Lease carries one.
#include <memory>
#include <string>
#include <utility>

namespace sluice::cluster {

class Agent;

class FleetLease {
 public:
  FleetLease() = default;
  FleetLease(FleetLease&& o) noexcept { *this = std::move(o); }
  FleetLease& operator=(FleetLease&& o) noexcept;
  FleetLease(const FleetLease&) = delete;
  FleetLease& operator=(const FleetLease&) = delete;
  ~FleetLease() { release(); }
  void release();
  explicit operator bool() const { return !id_.empty(); }
  const std::string& id() const { return id_; }

 private:
  friend class Agent;
  std::weak_ptr<Agent> agent_;
  std::string pool_, tenant_, id_;
};

}  // namespace sluice::cluster
