#pragma once
// Wakes the sessions of this instance that wait for room in the fleet when a
// release is heard anywhere (cluster::Agent's subscriber calls notify()).
// Thread-safe. A waiter registers its timer before it asks Redis, and
// compares generation() before and after: a release heard in between is not
// missed.
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>

namespace sluice::cluster {

class FleetWake {
  struct Entry {
    std::string pool;
    std::shared_ptr<boost::asio::steady_timer> timer;
  };

 public:
  // A waiting session's place; leaves in its destructor. Move-only.
  class Registration {
   public:
    Registration() = default;
    Registration(Registration&& o) noexcept : owner_(std::exchange(o.owner_, nullptr)), it_(o.it_) {}
    Registration& operator=(Registration&&) = delete;
    ~Registration();

   private:
    friend class FleetWake;
    Registration(FleetWake* owner, std::list<Entry>::iterator it) : owner_(owner), it_(it) {}
    FleetWake* owner_ = nullptr;
    std::list<Entry>::iterator it_;
  };

  // The timer is cancelled (on its own executor) at each release in `pool`.
  Registration add(const std::string& pool, std::shared_ptr<boost::asio::steady_timer> timer);
  // A release in `pool`; "" for every pool (after a resubscription).
  void notify(const std::string& pool);
  std::uint64_t generation() const { return generation_.load(); }
  int waiting() const;
  int waiting(const std::string& pool) const;

 private:
  mutable std::mutex mutex_;
  std::list<Entry> entries_;  // guarded by mutex_
  std::atomic<std::uint64_t> generation_{0};
};

}  // namespace sluice::cluster
