#pragma once
// The durable history behind one interface, on SQLite or PostgreSQL: the
// schema and its migrations, writes in batches, crash recovery, retention and
// the raw reads the queries are built on. Not thread safe: the recorder's
// writer thread owns the one that writes; each reader opens its own.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "history/db.hpp"
#include "history/records.hpp"
#include "history/rollup.hpp"

namespace sluice::history {

constexpr int kSchemaVersion = 4;

struct WriteBatch {
  std::vector<SessionRecord> sessions;    // upserts: the whole row each time
  std::vector<EventRecord> events;
  std::vector<ConcurrencySample> samples; // upserts by (run, pool, resolution, second)
  std::optional<std::pair<std::int64_t, Micros>> run_seen;  // run id, last seen
  bool empty() const { return sessions.empty() && events.empty() && samples.empty() && !run_seen; }
};

struct SessionQuery {
  Micros from = 0, to = 0;                // rows whose interval meets [from, to]
  std::optional<std::string> pool, tenant;
  std::optional<std::string> instance;    // only the streams of this gateway's runs
  bool include_unopened = false;          // also refused / never-opened rows accepted in the range
};

struct RetentionPolicy {
  Micros sessions = 0, events = 0, seconds = 0, minutes = 0;  // keep this long; 0 = forever
  Micros rollup_after = 0;                // per-second samples older than this become per-minute
};

struct RetentionResult {
  std::int64_t sessions = 0, events = 0, samples = 0, rolled_up = 0;
};

class Store {
 public:
  // Opens and, unless read_only, migrates the schema to kSchemaVersion.
  // A read-only open of a database newer than this build refuses to read it.
  Store(const std::string& url, const OpenOptions& options = {});
  ~Store();

  Connection& connection() { return *db_; }
  int schema_version();
  std::string describe() const { return db_->describe(); }

  // Starts a run and returns its id.
  std::int64_t begin_run(const RunRecord& run);
  void end_run(std::int64_t run_id, Micros at);
  // Marks every still-open row of a dead run `interrupted`, ending at its last
  // known activity: runs of `instance` (a restart's predecessors) other than
  // `self`, when given, and runs of any instance not seen since
  // `stale_before`. Returns the rows marked. Gateways sharing a store run it
  // now and then, so a killed instance's rows are closed by a survivor.
  std::int64_t recover_interrupted(std::int64_t self, const std::optional<std::string>& instance,
                                   Micros stale_before);

  void write(const WriteBatch& batch);  // in one transaction; throws DbError

  // Reads, ordered by opened_at (then accepted_at).
  void sessions(const SessionQuery& q, const std::function<void(SessionRecord&&)>& fn);
  // The intervals alone, for the sweeps; a stream still open ends at `now`.
  void spans(const SessionQuery& q, Micros now, const std::function<void(Span&&)>& fn);
  std::vector<EventRecord> events(Micros from, Micros to, const std::optional<std::string>& type, std::size_t limit);
  std::vector<ConcurrencySample> samples(Micros from, Micros to, const std::optional<std::string>& pool);
  std::vector<RunRecord> runs();

  RetentionResult enforce_retention(const RetentionPolicy& policy, Micros now);

  // The concurrency rollup (rollup.hpp). Fills in the oldest run of minutes
  // not yet rolled up that ended at least a few seconds before `now`, at most
  // `max_minutes` of them, in one transaction; returns how many it wrote (0
  // when there is nothing to do). The writer calls it until it returns 0.
  std::int64_t update_rollup(Micros now, int max_minutes = 120);
  // Minutes in [m0, m1) the rollup covers.
  std::vector<Micros> rollup_covered(Micros m0, Micros m1);
  // The rollup's rows of minutes in [m0, m1), by minute; with or without the
  // changes within each minute.
  void rollup_minutes(Micros m0, Micros m1, const std::optional<std::string>& pool, bool changes,
                      const std::function<void(MinuteRow&&)>& fn);
  // Runs `fn` in one read transaction, so its queries see one state of the
  // database.
  void read_snapshot(const std::function<void()>& fn);

 private:
  void migrate();
  std::unique_ptr<Connection> db_;
  int version_ = kSchemaVersion;  // as opened (a read-only store may read an older schema)
};

}  // namespace sluice::history
