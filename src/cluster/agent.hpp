#pragma once
// An instance's link to the fleet's leases: the only code that talks to
// Redis, on two threads of its own, so no I/O thread ever waits for Redis.
//
// - The worker thread runs the lease scripts (LeaseStore) in order: acquires
//   handed in by sessions, releases, and every `renew_every` one renewal per
//   pool of all the leases this instance holds. A renewal that finds leases
//   Redis lost (a restarted or failed-over server) registers them again, past
//   the limit if need be: their streams are open, and the fleet's count must
//   say so.
// - The subscriber thread listens on the release channel and calls
//   `on_released(pool)` for each release anywhere in the fleet, and
//   `on_released("")` after each (re)subscription, when releases may have
//   been missed. It also hears the requests of other instances to end one
//   of this instance's sessions (`on_end`).
// - The fleet view: every `publish_every` the worker publishes this
//   instance's live sessions (`sessions_snapshot`), expiring with the leases;
//   stopping withdraws them.
//
// A release is never lost to a failing Redis: it is retried until Redis takes
// it or the lease has expired there anyway. Destroying the Agent releases
// every lease it still holds (best effort, within the command timeout) and
// joins both threads.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "cluster/fleet_lease.hpp"
#include "cluster/lease_store.hpp"
#include "util/histogram.hpp"

namespace sluice::cluster {

struct AcquireOutcome {
  bool ok = false;       // Redis answered (result is valid)
  AcquireResult result;  // when ok
  FleetLease lease;      // when granted
  std::string error;     // when !ok: why Redis could not be asked (no secret in it)
};

class Agent : public std::enable_shared_from_this<Agent> {
 public:
  struct Options {
    LeaseStore::Options store;
    std::string instance;                           // this instance's id in the fleet
    std::chrono::milliseconds renew_every{2000};    // well inside store.ttl
    std::chrono::milliseconds reconnect_every{500}; // after a failure
    // This instance's live sessions as a JSON array, called on the worker
    // thread; unset: nothing is published.
    std::function<std::string()> sessions_snapshot;
    std::chrono::milliseconds publish_every{1000};
    // Another instance asks this one to end its session `id` (DELETE
    // /api/v1/sessions/{id}?instance=…); called on the subscriber thread.
    std::function<void(const std::string& id)> on_end;
    // The fleet's release delay of `pool` as a script just gave it (acquire,
    // accepted, refused), and every renewal for the pools this instance has
    // used; called on the worker thread.
    std::function<void(const std::string& pool, const FleetDelay&)> on_delay;
  };
  using ReleasedFn = std::function<void(const std::string& pool)>;

  // Starts both threads.
  static std::shared_ptr<Agent> start(RedisUrl url, Options options, ReleasedFn on_released);
  ~Agent();
  // Releases what it holds and joins the threads; the destructor does it too.
  void stop();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Runs the acquire script on the worker thread; the outcome is delivered on
  // `executor`. A granted lease is renewed until its FleetLease goes (an
  // outcome nobody takes gives it back as it is destroyed).
  void acquire(AcquireRequest request, boost::asio::any_io_executor executor,
               std::function<void(AcquireOutcome)> done);
  // The same, for a coroutine.
  boost::asio::awaitable<AcquireOutcome> acquire(AcquireRequest request);
  // Gives a lease back; never blocks. (FleetLease calls it.)
  void release(const std::string& pool, const std::string& tenant, const std::string& id);
  // Leaves the pool's wait list (a waiter that gave up); never blocks. A
  // place on it is renewed with the leases until then.
  void leave(const std::string& pool, const std::string& id);
  // Takes a lease the fleet does not know of yet (admitted while Redis was
  // unreachable): registered past the limit as soon as Redis answers, then
  // renewed and released as any other.
  FleetLease adopt(AcquireRequest request);

  // Runs `task` on the worker thread, in order with the scripts, with the
  // worker's lease store: for a read that an I/O thread must not wait for
  // (the fleet's holders of a pool, for an upstream-429 event). A stopping
  // agent runs it at once on the caller's thread with no store (nullptr),
  // so a task is never dropped. A task catches RedisError itself.
  using Task = std::function<void(LeaseStore*)>;
  void run(Task task);

  // The vendor accepted the stream of the lease `id` of `pool`
  // (LeaseStore::accepted): its release will cool in the fleet, the fleet
  // may learn an upper bound of the release delay, and a lowered limit is
  // the pool's again. Never blocks; runs before any later release of it.
  void accepted(const std::string& pool, const std::string& id, int limit,
                std::optional<std::chrono::milliseconds> release_delay);
  // The vendor refused it with 429 (LeaseStore::refused): the fleet's
  // verdict, or nullopt when Redis cannot be asked.
  void refused(const std::string& pool, const std::string& id, int limit,
               std::optional<std::chrono::milliseconds> release_delay, boost::asio::any_io_executor executor,
               std::function<void(std::optional<RefusalVerdict>)> done);
  boost::asio::awaitable<std::optional<RefusalVerdict>> refused(std::string pool, std::string id, int limit,
                                                                std::optional<std::chrono::milliseconds> release_delay);

  // From an acquire's request to its outcome (the worker's queue and the
  // script's round trip), for /metrics.
  util::HistogramSnapshot acquire_latency() const { return acquire_seconds_.snapshot(); }
  int held() const { return held_count_.load(); }         // leases this instance holds
  bool redis_ok() const { return redis_ok_.load(); }       // the last command reached Redis
  long long reregistered() const { return reregistered_.load(); }  // leases registered again after a loss
  const std::string& instance() const { return options_.instance; }

 private:
  struct Job {
    AcquireRequest request;
    boost::asio::any_io_executor executor;
    std::function<void(AcquireOutcome)> done;
    std::chrono::steady_clock::time_point asked = std::chrono::steady_clock::now();
  };
  struct Release {
    std::string pool, tenant, id;
    std::chrono::steady_clock::time_point give_up;  // past it, the lease has expired in Redis anyway
  };
  Agent(RedisUrl url, Options options, ReleasedFn on_released);
  void work();
  void subscribe();
  void renew_all();
  void run_releases();
  void run_releases(std::deque<Release> todo, std::deque<std::pair<std::string, std::string>> leaving);
  void take_adopted();
  void publish();

  RedisUrl url_;
  Options options_;
  ReleasedFn on_released_;
  LeaseStore store_;  // the worker thread's

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;           // guarded by mutex_
  std::deque<Release> releases_;   // guarded by mutex_
  std::deque<std::pair<std::string, std::string>> leaving_;  // (pool, id); guarded by mutex_
  std::deque<AcquireRequest> adopted_;                       // guarded by mutex_
  std::deque<Task> tasks_;                                   // guarded by mutex_
  bool stopping_ = false;          // guarded by mutex_
  std::map<std::string, AcquireRequest> held_;  // by lease id; the worker thread's
  std::map<std::string, std::string> waiting_;  // lease id -> pool; the worker thread's
  std::set<std::string> pools_seen_;            // pools whose release delay is refreshed; the worker thread's

  std::atomic<int> held_count_{0};
  std::atomic<bool> redis_ok_{false};
  std::atomic<bool> stop_subscriber_{false};
  std::atomic<long long> reregistered_{0};
  util::Histogram acquire_seconds_{util::kRedisBuckets};
  std::thread worker_;
  std::thread subscriber_;
};

}  // namespace sluice::cluster
