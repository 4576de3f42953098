#pragma once
// The durable recorder: sessions, events and per-second concurrency written
// to the history store by one writer thread. The I/O threads only hand it
// records under a short lock; they never wait for the database.
//
// Nothing admitted is lost: a session's latest row is kept in a map keyed by
// its id until it is committed (later snapshots replace earlier ones), so a
// stalled or failing database costs memory in proportion to the streams that
// changed meanwhile, never a record. Only events have a bounded queue; when it
// overflows the newest are dropped, counted (stats, /metrics) and logged.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "history/records.hpp"
#include "history/store.hpp"

namespace sluice::registry {
class SessionEntry;
}
namespace sluice::events {
struct Event;
}

namespace sluice::history {

struct RecorderOptions {
  std::string url;                  // the store
  std::string instance;             // names this gateway in the runs table
  std::string version;
  Micros heartbeat = 5'000'000;     // open rows' last_seen_at is refreshed this often
  Micros flush_interval = 200'000;  // the writer commits at least this often when there is work
  std::size_t queue_limit = 10000;  // events waiting beyond this are dropped
  RetentionPolicy retention;
  Micros retention_interval = 3'600'000'000;
  Micros stale_after = 60'000'000;  // a run silent this long is dead (its open rows are interrupted);
                                    // checked at start and every stale_after / 4
};

// How a stream ended, beyond what its counters say.
struct Ending {
  Outcome outcome = Outcome::completed;
  std::string outcome_reason;
  std::string closed_by;            // client, upstream, gateway
  std::optional<int> close_code;
  std::string close_reason;
};

struct RecorderStats {
  std::uint64_t sessions_written = 0;   // row writes committed
  std::uint64_t events_written = 0;
  std::uint64_t samples_written = 0;
  std::uint64_t events_dropped = 0;     // queue overflow
  std::uint64_t write_failures = 0;     // batches that failed (kept and retried)
  std::size_t pending_sessions = 0;     // rows waiting for the writer
  std::size_t pending_events = 0;
  std::size_t live_sessions = 0;        // rows the heartbeat refreshes
  std::int64_t last_commit_us = 0;      // wall time of the last successful commit
  std::int64_t interrupted_at_start = 0;
  std::int64_t interrupted_by_sweep = 0;  // other gateways' rows this one closed (they went silent)
  std::string last_error;
};

class Recorder {
 public:
  // Opens (and migrates) the store, starts a run, marks the open rows of
  // dead runs interrupted, and starts the writer. Throws DbError.
  explicit Recorder(RecorderOptions options);
  ~Recorder();  // stop()
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  std::int64_t run_id() const { return run_id_; }
  const std::string& describe() const { return where_; }

  // Lifecycle of a stream (any thread). Each writes the whole row.
  void admitted(const std::shared_ptr<registry::SessionEntry>& e);  // holds a lease; row "open"
  void opened(const registry::SessionEntry& e);                      // upstream accepted: +1 concurrency
  void upstream_closed(const registry::SessionEntry& e);             // capacity released: -1 concurrency
  void finished(const registry::SessionEntry& e, const Ending& how);  // the final row
  // A stream that never held a lease (refused, timed out in the queue) or
  // whose upstream refused it: its only row.
  void not_opened(const registry::SessionEntry& e, const Ending& how);
  void event(const events::Event& e);

  RecorderStats stats() const;
  // Commits everything handed over so far, and the concurrency of the second
  // in progress; returns false if the store would not take it within
  // `timeout_us` (tests and shutdown).
  bool flush(Micros timeout_us);
  // Flushes what it can, ends the run and stops the writer.
  void stop();

  // The row as it stands now (any thread).
  SessionRecord snapshot(const registry::SessionEntry& e) const;

 private:
  using Key = std::pair<std::int64_t, std::int64_t>;
  struct PoolCount {
    int open = 0;
    std::int64_t second = 0;  // the second being accumulated (0: none yet)
    int max = 0, min = 0;
  };

  void run();
  void put(SessionRecord r);
  void finish(const registry::SessionEntry& e, const Ending& how, bool opened);
  void count(const std::string& pool, int delta, std::int64_t at_us);
  void close_pool(const std::string& pool, PoolCount& pc, std::int64_t before, std::vector<ConcurrencySample>& out);
  void heartbeat(WriteBatch& batch, Micros now);

  RecorderOptions options_;
  std::unique_ptr<Store> store_;    // the writer thread's, after the constructor
  std::int64_t run_id_ = 0;
  std::string where_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable committed_;
  std::map<Key, SessionRecord> pending_;                                   // guarded by mutex_
  std::vector<EventRecord> events_;                                        // guarded by mutex_
  std::map<Key, std::shared_ptr<const registry::SessionEntry>> live_;      // guarded by mutex_
  std::map<std::string, PoolCount> pools_;                                 // guarded by mutex_
  std::vector<ConcurrencySample> samples_;                                 // guarded by mutex_
  RecorderStats stats_;                                                    // guarded by mutex_
  bool stopping_ = false, stopped_ = false;                                // guarded by mutex_
  // flush() calls made, and those a completed writer pass has served (one
  // that began after the call, so it also wrote the second in progress).
  std::uint64_t flushes_requested_ = 0, flushes_done_ = 0;                 // guarded by mutex_
  Micros stop_deadline_ = 0;                                               // guarded by mutex_
  std::thread writer_;
};

}  // namespace sluice::history
