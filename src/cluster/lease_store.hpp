#pragma once
// The fleet's leases in Redis: acquire, renew and release are each one
// server-side script, so each is atomic and one round trip. A lease is a
// member of its pool's sorted set (and of its tenant's in that pool) scored by
// its expiry on the Redis server's clock, with a hash of its owner's fields
// that expires with it. A lease whose instance stops renewing it (a crash)
// drops out of every count at its expiry; nothing else has to notice.
// Releasing publishes the pool's name, so waiters anywhere can wake.
//
// Key layout (docs/architecture.md, "Cluster: the keys in Redis"), with P the
// configured prefix and the pool's name as the hash tag (one slot per pool):
//   P:{pool}:leases           sorted set: lease id -> expiry (ms, server clock)
//   P:{pool}:tenant:<tenant>  sorted set: the tenant's lease ids -> expiry
//   P:{pool}:lease:<id>       hash: instance, session, tenant, pool,
//                             request_id, opened_ms; expires with the lease
//   P:{pool}:waiting          sorted set: waiting lease ids -> their order
//                             (-priority * 1e13 + arrival ms)
//   P:{pool}:waiting:expiry   sorted set: the same ids -> expiry
//   P:{pool}:effective        string: the fleet's lowered effective limit,
//                             while the vendor holds fewer than the limit
//   P:{pool}:accepted         sorted set: the lease ids whose stream the vendor
//                             accepted -> expiry (their release cools)
//   P:{pool}:released         sorted set: released accepted leases -> release
//                             time (ms, server clock); 10 minutes, 4096 at most
//   P:{pool}:delay:lower      sorted set: the learned lower bounds of the
//   P:{pool}:delay:upper      release delay, "<ms>:<learned ms>:<lease id>" ->
//                             when learned; 10 minutes, 64 at most
//   P:released                channel: a pool's name, on each release
//   P:instances               set: the instances that publish their sessions
//   P:sessions:<instance>     string: the instance's live sessions as a JSON
//                             array (GET /api/v1/sessions); expires as leases do
//   P:end:<instance>          channel: a session id the instance is to end
//
// Blocking (RedisConnection): for the cluster thread, never an I/O thread.
// Not thread-safe: one owner.
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cluster/fleet_delay.hpp"
#include "cluster/redis.hpp"

namespace sluice::cluster {

struct LeaseRecord {
  std::string id;  // unique in the fleet: "<instance>/<session>"
  std::string instance;
  std::string session;
  std::string tenant;
  std::string pool;
  std::string request_id;  // the upstream's, once known
  long long opened_ms = 0;  // wall clock, ms since the epoch
};

struct AcquireRequest {
  LeaseRecord lease;
  int limit = 0;       // the pool's effective limit
  int tenant_max = 0;  // the tenant's quota in the pool; 0: none
  // The pool's configured release delay; unset: the fleet's learned one. A
  // released slot whose stream the vendor accepted cools this long in the
  // fleet before it admits another stream.
  std::optional<std::chrono::milliseconds> release_delay;
  // Other tenants' reservations in this pool: room they reserved and do not
  // use is not ours to take.
  std::vector<std::pair<std::string, int>> reservations;
  // Register even past the limit: a stream that is already open (re-register
  // after Redis lost its leases).
  bool force = false;
  bool accepted = false;  // with force: the vendor accepted its stream (its release cools)
  // When refused for room, keep (or take) a place on the pool's wait list, so
  // that later arrivals anywhere in the fleet do not pass it; the caller
  // renews it (renew_waiting) while it waits and leave()s when it gives up.
  bool wait = false;
  int priority = 0;  // the tenant's; higher first (clamped to -100..100), FIFO within one
};

struct AcquireResult {
  enum class Outcome { granted, already_held, pool_full, tenant_full };
  Outcome outcome = Outcome::pool_full;
  int in_use = 0;         // the pool's leases in the fleet, this one included when granted
  int tenant_in_use = 0;  // the tenant's, likewise
  // When refused for room: how soon the soonest lease (or wait-list place)
  // lapses unless renewed. A crashed instance's capacity returns then with
  // no release published, so a waiter asks again at that moment.
  std::optional<std::chrono::milliseconds> next_expiry;
  // The limit applied: the request's, or the fleet's lowered effective limit
  // when that is lower.
  int limit = 0;
  FleetDelay delay;  // the fleet's release delay and cooling slots, as the script saw them
  bool granted() const { return outcome == Outcome::granted || outcome == Outcome::already_held; }
};

class LeaseStore {
 public:
  struct Options {
    std::string prefix = "sluice";
    std::chrono::milliseconds ttl{6000};  // a lease's life without renewal
    RedisConnection::Options connection;
  };
  // Connects on first use, and again after a broken connection.
  LeaseStore(RedisUrl url, Options options);
  ~LeaseStore();

  AcquireResult acquire(const AcquireRequest& request);
  // Extends the given leases of one pool (id, tenant) by the ttl. Returns the
  // ids Redis no longer held (expired or lost): their owner re-registers them
  // (acquire with force).
  std::vector<std::string> renew(const std::string& pool, const std::vector<std::pair<std::string, std::string>>& leases);
  // True when the lease was held. Publishes the pool's name either way.
  bool release(const std::string& pool, const std::string& tenant, const std::string& id);
  // Keeps wait-list places alive; returns the ids no longer listed.
  std::vector<std::string> renew_waiting(const std::string& pool, const std::vector<std::string>& ids);
  // Leaves the wait list (a waiter that gave up); true when it was listed.
  bool leave(const std::string& pool, const std::string& id);
  // The pool's live leases in the fleet.
  int count(const std::string& pool);
  // Places on the pool's wait list.
  int waiting(const std::string& pool);
  // Every live lease of the pool with its owner's fields, oldest first.
  std::vector<LeaseRecord> holders(const std::string& pool);

  // The fleet's knowledge of the vendor (docs/admission.md, "The release
  // delay in a fleet"). refused(): the vendor answered 429 to the stream of
  // lease `id`: learns a lower bound of the release delay when released
  // streams explain it, else lowers the fleet's effective limit to its other
  // leases (at least 1; never raises it) for at most `lasts`. accepted(): the
  // vendor accepted it: its release will cool, an upper bound may be learned,
  // and a lowered limit is the pool's again (published, so waiters ask
  // again). `limit` is the pool's configured limit, `release_delay` its
  // configured delay (unset: learned). delay(): the release delay in force
  // and the slots cooling. lowered_limit(): the lowered limit, if any.
  RefusalVerdict refused(const std::string& pool, const std::string& id, int limit, std::chrono::milliseconds lasts,
                         std::optional<std::chrono::milliseconds> release_delay);
  struct Accepted {
    bool restored = false;  // the fleet's limit had been lowered
    FleetDelay delay;
  };
  Accepted accepted(const std::string& pool, const std::string& id, int limit,
                    std::optional<std::chrono::milliseconds> release_delay);
  FleetDelay delay(const std::string& pool, std::optional<std::chrono::milliseconds> release_delay);
  std::optional<int> lowered_limit(const std::string& pool);
  // A round trip that changes nothing: is Redis there?
  void ping();

  // The fleet view. An instance publishes its live sessions (a JSON array)
  // with the lease expiry, so a stopped or killed instance drops out of the
  // view by itself; withdraw() takes them out at once (a clean stop).
  void publish_sessions(const std::string& instance, const std::string& sessions_json);
  void withdraw_sessions(const std::string& instance);
  struct Published {
    std::string instance;
    std::string sessions_json;  // as published
    long long age_ms = 0;       // how long ago (ttl minus what remains of it)
  };
  // Every instance's published sessions, by instance name.
  std::vector<Published> fleet_sessions();
  // Asks `instance` to end its session `id`; returns how many subscribers
  // heard it (0: the instance is not listening).
  long long end_session(const std::string& instance, const std::string& id);

  std::string released_channel() const;
  std::string end_channel(const std::string& instance) const;
  std::string instances_key() const;
  std::string sessions_key(const std::string& instance) const;
  std::string pool_key(const std::string& pool) const;
  std::string tenant_key(const std::string& pool, const std::string& tenant) const;
  std::string lease_key(const std::string& pool, const std::string& id) const;
  std::string waiting_key(const std::string& pool) const;
  std::string waiting_expiry_key(const std::string& pool) const;
  std::string effective_key(const std::string& pool) const;
  std::string accepted_key(const std::string& pool) const;
  std::string released_key(const std::string& pool) const;
  std::string delay_lower_key(const std::string& pool) const;
  std::string delay_upper_key(const std::string& pool) const;
  const Options& options() const { return options_; }
  const RedisUrl& url() const { return url_; }

 private:
  struct Script {
    const char* source;
    std::string sha;
  };
  // EVALSHA, loading the script first when Redis does not know it (first
  // use, or a restarted server). An error reply throws.
  Reply eval(Script& script, const std::vector<std::string>& keys, const std::vector<std::string>& args);
  RedisConnection& connection();
  std::string pool_scoped(const std::string& pool, std::string_view what) const;

  RedisUrl url_;
  Options options_;
  std::unique_ptr<RedisConnection> conn_;
  Script acquire_, renew_, release_, count_, holders_, renew_waiting_, leave_, refused_, accepted_, delay_;
};

}  // namespace sluice::cluster
