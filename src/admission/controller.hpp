#pragma once
// Admission: pools with limits, tenant quotas and reservations, a wait queue,
// and Leases. A Lease is the only way to hold capacity, and releasing it (its
// destructor) is the only way capacity returns.
//
// A released slot whose stream the vendor had accepted cools for the pool's
// release delay (configured, or learned from upstream 429s: release_delay.hpp)
// before it admits another stream.
//
// Thread safety: Controller is safe to use from any thread; one mutex guards
// all pool state. A waiting handshake parks on a timer of its own executor;
// the controller wakes it by posting to that executor. One timer of the
// controller's (on a strand of the executor it was given) wakes the queues
// when a cooldown ends.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <map>
#include <optional>
#include <utility>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "admission/release_delay.hpp"
#include "cluster/fleet_delay.hpp"
#include "cluster/fleet_lease.hpp"
#include "config/config.hpp"
#include "util/histogram.hpp"

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
  // Cluster mode: the fleet's lease for this stream, given back with this one
  // (first, so the fleet has the room before local waiters ask for it).
  void attach(cluster::FleetLease fleet) { fleet_ = std::move(fleet); }
  bool in_fleet() const { return static_cast<bool>(fleet_); }
  const std::string& fleet_id() const { return fleet_.id(); }
  const std::string& pool_name() const;
  SteadyClock::time_point granted_at() const { return granted_at_; }

 private:
  friend class Controller;
  friend class Ticket;
  Lease(std::shared_ptr<ControllerState> state, std::shared_ptr<Pool> pool, std::string tenant,
        SteadyClock::time_point granted_at)
      : state_(std::move(state)), pool_(std::move(pool)), tenant_(std::move(tenant)), granted_at_(granted_at) {}
  std::shared_ptr<ControllerState> state_;
  std::shared_ptr<Pool> pool_;
  std::string tenant_;
  SteadyClock::time_point granted_at_{};
  bool upstream_open_ = false;  // the vendor accepted this lease's stream: its release cools
  cluster::FleetLease fleet_;
};

enum class Refusal {
  none,
  no_pool,
  queue_full,
  queue_timeout,
  tenant_quota,
  shutting_down,
  abandoned,
  upstream_429,
  cluster_unavailable,  // cluster mode: Redis cannot be reached (on_redis_loss: refuse, or past the local share)
};
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
  int cooling = 0;          // released slots the vendor may still count
  double release_delay_seconds = 0;  // the pool's release delay in force
  double waited_seconds = 0;
  bool blocked_by_quota = false;  // the last reason this request could not be admitted
  std::string upstream_request_id;  // upstream_429: the vendor's dg-request-id of the last refusal
};

// What Controller::on_upstream_429 decided, with the pool as it stood.
struct Upstream429Decision {
  bool retry = false;
  SteadyClock::duration wait{};  // before the next attempt (when retry)
  // Released streams the vendor may still count explain the refusal: the
  // delay was learned from it and the effective limit is left alone.
  bool explained = false;
  int gateway_in_use = 0;
  int upstream_open = 0;  // the pool's streams the vendor accepted and still holds
  int cooling = 0;
  int limit = 0;
  int effective_limit = 0;
  double release_delay_seconds = 0;
  // When !retry: the gateway's own refusal (reason upstream_429) to answer.
  AdmitResult refusal;
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

// What a fleet lease is asked for with (Controller::fleet_terms): the pool's
// and tenant's limits as this instance has them.
struct FleetTerms {
  bool found = false;
  int effective_limit = 0;
  int tenant_max = 0;
  int priority = 0;
  int limit = 0;  // the pool's configured limit (the vendor's)
  std::optional<std::chrono::milliseconds> release_delay;  // configured; unset: the fleet's learned one
  std::vector<std::pair<std::string, int>> reservations;  // every tenant's in the pool
  config::Seconds queue_timeout{0};
  int max_queue = 0;
  bool closed = false;  // shutting down: the pool admits nothing more
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
  int upstream_open = 0;  // streams the vendor accepted whose leases are held
  int cooling = 0;        // released slots cooling now
  double release_delay_seconds = 0;  // in force: configured, or learned (0 until something is learned)
  bool release_delay_configured = false;
  bool resume_enabled = false;     // resume.enabled (docs/resume.md)
  std::optional<double> release_delay_lower_seconds;  // learned bounds, when known
  std::optional<double> release_delay_upper_seconds;
  // For /metrics: refusals by reason (refusal_name), and the seconds from
  // arrival to admission (every admitted stream, 0 when at once) and from
  // admission to the upstream's 101 (retries after upstream 429s included).
  std::map<std::string, long long> refused_by_reason;
  util::HistogramSnapshot queue_wait;
  util::HistogramSnapshot upstream_handshake;
};

class Controller {
 public:
  // `timers` runs the timer that wakes queues when a cooldown ends (a strand
  // of it is taken). Without it, each waiter wakes itself when its pool's
  // next cooldown ends.
  Controller(const std::vector<config::PoolConfig>& pools, const std::vector<config::Tenant>& tenants,
             config::Retry429Config retry, boost::asio::any_io_executor timers = {});
  ~Controller();

  // Admits now, refuses now, or queues (then Ticket::wait()). `executor` is
  // the caller's strand, where its wake-up will be posted.
  Ticket enqueue(const std::string& pool, const std::string& tenant, boost::asio::any_io_executor executor);

  // The upstream refused `lease`'s handshake with 429 (`attempt` 0 for the
  // first). Learns from it (see docs/admission.md): a refusal that released
  // streams the vendor may still count explain gives a lower bound of the
  // release delay; any other lowers the effective limit to the streams the
  // vendor holds open. Decides whether and when to try again: while the
  // lease is younger than retry_429.deadline. Cluster mode: `fleet` is the
  // fleet's verdict (cluster::Agent::refused), which did the learning, and
  // the decision follows it; without one (Redis out of reach) nothing is
  // learned, and the retries back off.
  Upstream429Decision on_upstream_429(const Lease& lease, int attempt, const cluster::RefusalVerdict* fleet = nullptr);
  // The terms of a fleet lease for `tenant` in `pool` (cluster mode).
  FleetTerms fleet_terms(const std::string& pool, const std::string& tenant) const;
  // The upstream accepted `lease`'s stream: an upper bound of the release
  // delay; a lowered effective limit goes back to the limit; the lease's
  // release will cool.
  void on_upstream_accepted(Lease& lease);
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
  // Requests for which no pool matched (refusal no_pool).
  long long no_pool_refused() const;
  // A handshake refused outside admission's own decisions, counted by reason
  // for /metrics: before a pool was chosen (`pool` empty: a malformed or
  // unknown request, no credentials) or after admission (the vendor failed
  // the handshake). Refusals are rare; this takes the controller's lock.
  void count_refusal(const std::string& pool, std::string_view reason);
  // A refusal decided outside the pool's own queue (cluster mode: by the
  // fleet), described as the pool stands and counted.
  AdmitResult refuse(const std::string& pool, const std::string& tenant, Refusal r);
  // Cluster mode: the vendor counts the fleet's streams, so the fleet (in
  // Redis) learns from upstream 429s and acceptances: an unexplained 429
  // lowers the fleet's effective limit, not this instance's, and the release
  // delay and its cooling slots are the fleet's (note_fleet_delay), not
  // learned or held aside here.
  void share_with_fleet(bool shared);
  void note_fleet_delay(const std::string& pool, const cluster::FleetDelay& delay);
  // Refusals before a pool was chosen, by reason, no_pool included.
  std::map<std::string, long long> unpooled_refusals() const;

 private:
  void enqueue_locked(Ticket& t, const std::string& pool, const std::string& tenant,
                      boost::asio::any_io_executor executor);
  std::shared_ptr<ControllerState> state_;
};

}  // namespace sluice::admission
