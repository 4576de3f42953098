#pragma once
// Admission: pools with limits, tenant quotas and reservations, a wait queue,
// and Leases. A Lease is the only way to hold capacity, and releasing it (its
// destructor) is the only way capacity returns.
//
// Thread safety: Controller is safe to use from any thread; one mutex guards
// all pool state. A waiting handshake parks on a timer of its own executor;
// the controller wakes it by posting to that executor.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <map>
#include <optional>
#include <utility>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace sluice::admission {

using SteadyClock = std::chrono::steady_clock;

struct ControllerState;
struct Pool;
struct Waiter;

// Counts one upstream leg (connecting or open) while it exists; taken from a
// Lease, so legs without a lease cannot be counted. Move-only.
class LegToken {
 public:
  LegToken() = default;
  LegToken(LegToken&& o) noexcept { *this = std::move(o); }
  LegToken& operator=(LegToken&& o) noexcept;
  ~LegToken() { reset(); }
  void reset();

 private:
  friend class Lease;
  explicit LegToken(std::shared_ptr<ControllerState> s) : state_(std::move(s)) {}
  std::shared_ptr<ControllerState> state_;
};

// Holds one unit of a pool's capacity for one tenant. Move-only; releases
// exactly once (destructor or release()).
class Lease {
 public:
  Lease() = default;
  Lease(Lease&& o) noexcept { *this = std::move(o); }
  Lease& operator=(Lease&& o) noexcept;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease() { release(); }

  void release();
  explicit operator bool() const { return pool_ != nullptr; }
  LegToken open_leg();  // requires a held lease
  const std::string& pool_name() const;

 private:
  friend class Controller;
  friend class Ticket;
  Lease(std::shared_ptr<ControllerState> state, std::shared_ptr<Pool> pool, std::string tenant)
      : state_(std::move(state)), pool_(std::move(pool)), tenant_(std::move(tenant)) {}
  std::shared_ptr<ControllerState> state_;
  std::shared_ptr<Pool> pool_;
  std::string tenant_;
};

enum class Refusal { none, no_pool, queue_full, queue_timeout, tenant_quota, shutting_down, abandoned };
std::string_view refusal_name(Refusal r);

struct AdmitResult {
  Lease lease;  // set when admitted
  Refusal refusal = Refusal::none;
  std::string pool;
  int limit = 0;
  int effective_limit = 0;
  int in_use = 0;
  int queued = 0;          // waiting in the pool when this request left the queue
  int tenant_in_use = 0;
  int tenant_max = 0;
  double waited_seconds = 0;
  bool blocked_by_quota = false;  // the last reason this request could not be admitted
};

// A request's place in a queue, handed out by Controller::enqueue. The owner
// awaits wait(); abandon() (from the owner's executor) makes it leave at once.
// Destroying a Ticket (on the owner's executor) leaves the queue too, and
// gives back a lease granted to it and not taken. Move-only.
class Ticket {
 public:
  Ticket() = default;
  Ticket(Ticket&& o) noexcept;
  Ticket& operator=(Ticket&& o) noexcept;
  Ticket(const Ticket&) = delete;
  Ticket& operator=(const Ticket&) = delete;
  ~Ticket();

  bool decided() const;              // admitted or refused without waiting
  AdmitResult take_result();         // when decided()
  boost::asio::awaitable<AdmitResult> wait();  // when not decided()
  void abandon();

 private:
  friend class Controller;
  std::shared_ptr<ControllerState> state_;
  std::shared_ptr<Waiter> waiter_;
  AdmitResult immediate_;
  bool decided_ = false;
};

struct PoolStatus {
  std::string name;
  int limit = 0;
  int effective_limit = 0;
  int in_use = 0;
  int queued = 0;
  std::map<std::string, int> tenants_in_use;
  config::PoolConfig config;
  long long admitted_total = 0;
  long long refused_total = 0;
  long long upstream_429_total = 0;
};

class Controller {
 public:
  Controller(const std::vector<config::PoolConfig>& pools, const std::vector<config::Tenant>& tenants,
             config::Retry429Config retry);
  ~Controller();

  // Admits now, refuses now, or queues (then Ticket::wait()). `executor` is
  // the caller's strand, where its wake-up will be posted.
  Ticket enqueue(const std::string& pool, const std::string& tenant, boost::asio::any_io_executor executor);

  // The upstream refused with 429 although this pool had room: lower the
  // pool's effective limit to `accepted` (streams the vendor holds open now).
  void on_upstream_429(const std::string& pool, int accepted);
  // Raises lowered limits by one step when their recovery interval passed.
  void recover(SteadyClock::time_point now);
  // Replaces the pools and quotas (reload). Leases keep counting in the pool
  // of the same name; pools that disappear keep their leases until released.
  void reconfigure(const std::vector<config::PoolConfig>& pools, const std::vector<config::Tenant>& tenants,
                   config::Retry429Config retry);
  // Changes a pool's limit live (resets its effective limit). False if unknown.
  bool set_limit(const std::string& pool, int limit);
  // Refuses every waiting request and all new ones (shutdown).
  void close();

  std::vector<PoolStatus> status() const;
  std::optional<PoolStatus> status(const std::string& pool) const;
  int leases_in_use() const;
  // Leases held and upstream legs counted, read together.
  std::pair<int, int> leases_and_legs() const;
  std::optional<config::PoolConfig> pool_config(const std::string& pool) const;

 private:
  std::shared_ptr<ControllerState> state_;
};

}  // namespace sluice::admission
