#pragma once
// The simulated vendor's books: which project a key belongs to, how many
// streams each project holds open per service family, and the refusals.
// Thread safety: every member may be called from any thread; counts sit
// behind one mutex (admission is rare next to audio, so it is never hot).
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "protocol/endpoint.hpp"
#include "sim/simulator.hpp"

namespace sluice::sim {

class Accounting : public std::enable_shared_from_this<Accounting> {
 public:
  // A counted stream. Invariant: a stream holds exactly one Lease from its
  // admission until its socket is gone; the count falls when the Lease is
  // destroyed, or `stale_accounting` later when that fault is set.
  class Lease {
   public:
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease();

   private:
    friend class Accounting;
    Lease(std::shared_ptr<Accounting> owner, std::string project, protocol::Family family);
    std::shared_ptr<Accounting> owner_;
    std::string project_;
    protocol::Family family_;
  };

  Accounting(boost::asio::io_context& ioc, const SimConfig& config);

  // The project a key belongs to; any key belongs to "default" when no
  // projects are configured.
  std::optional<std::string> project_for(std::string_view key) const;

  // Admits a stream unless the project is at its limit for the family (then
  // the refusal is counted and nullopt returned).
  std::optional<Lease> try_acquire(const std::string& project, protocol::Family family);

  void note_handshake();
  void note_unauthorized();
  SimStats snapshot() const;
  void reset_max();  // max_open := open, for tests that measure in phases

  // Releases stale counts now; from here on counts fall as streams close.
  void stop();

 private:
  void release(const std::string& project, protocol::Family family);
  void release_now(const std::string& project, protocol::Family family);

  boost::asio::io_context& ioc_;
  bool open_admission_;  // no projects configured: any key is "default"
  std::map<std::string, std::string, std::less<>> project_by_key_;
  std::map<std::string, std::map<protocol::Family, int>> limits_;
  std::chrono::milliseconds stale_accounting_;

  mutable std::mutex mutex_;
  SimStats stats_;       // guarded by mutex_
  bool stopped_ = false; // guarded by mutex_
  std::set<std::shared_ptr<boost::asio::steady_timer>> stale_timers_;  // guarded by mutex_
};

}  // namespace sluice::sim
