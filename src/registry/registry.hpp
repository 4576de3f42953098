#pragma once
// The live table of streams. Every stream is registered from the moment its
// upgrade request is read until both of its legs are gone.
//
// Thread safety: Registry is safe to use from any thread (one mutex guards the
// table). A SessionEntry's immutable info is set before it is published; its
// counters are atomics written only by the session's own strand and read by
// anyone; its few strings (request id, close summary) sit behind its mutex.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "protocol/endpoint.hpp"
#include "util/histogram.hpp"

namespace sluice::registry {

// Two clocks. Deadlines and durations run on the steady clock (mono_ns): a
// step of the wall clock (NTP, an operator setting the date) must neither reap
// a healthy stream nor spare a dead one. Wall time (wall_now, wall_ns) is only
// for what is recorded or shown; a session's steady timestamps become wall
// times through its one anchor (SessionInfo::to_wall_ns).
using Clock = std::chrono::system_clock;
using SteadyClock = std::chrono::steady_clock;
using SessionId = std::uint64_t;

enum class SessionState : int { queued, connecting, open, closing };
std::string_view state_name(SessionState s);  // "queued", "connecting", "open", "closing"

// What identifies and classifies a stream; fixed once the request is read.
struct SessionInfo {
  SessionId id = 0;
  std::string tenant;
  std::string pool;
  protocol::Endpoint endpoint = protocol::Endpoint::listen_v1;
  std::string model;
  // Classifying query parameters (a fixed allow-list: never secrets or URLs).
  std::vector<std::pair<std::string, std::string>> params;
  std::string client_address;
  std::string user_agent;
  // When the upgrade request was read, on both clocks: the session's anchor.
  Clock::time_point accepted;
  std::int64_t accepted_mono = 0;  // mono_ns() at `accepted`
  double audio_bytes_per_second = 0;  // 0: raw format unknown

  // Wall nanoseconds since the epoch of `accepted`.
  std::int64_t accepted_ns() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(accepted.time_since_epoch()).count();
  }
  // The wall time (ns since the epoch) of `mono`, one of this session's steady
  // timestamps: accepted + (mono - accepted_mono), so the session's durations
  // stay exact whatever the wall clock does meanwhile. 0 ("never") stays 0.
  std::int64_t to_wall_ns(std::int64_t mono) const { return mono ? accepted_ns() + (mono - accepted_mono) : 0; }
  // Seconds since the upgrade request was read, at steady time `now`.
  double age_seconds(std::int64_t now) const { return static_cast<double>(now - accepted_mono) / 1e9; }
};

// Adds to a counter that has one writer (its stream's relay, on one thread at
// a time): a relaxed load and store, no locked read-modify-write. Readers on
// other threads see a value that was true a moment ago.
template <class T>
inline void bump(std::atomic<T>& counter, T by) {
  counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}

// Counters updated on the relay path, each written by its stream's relay
// only (see bump) and read by anyone.
struct SessionCounters {
  std::atomic<std::uint64_t> client_messages{0}, client_bytes{0};
  std::atomic<std::uint64_t> upstream_messages{0}, upstream_bytes{0};
  std::atomic<std::uint64_t> audio_messages{0}, audio_bytes{0};
  std::atomic<std::uint64_t> keep_alive{0}, finalize{0}, close_stream{0};
  // Steady-clock nanoseconds (mono_ns); 0 = never. Shown and recorded as
  // wall time through SessionInfo::to_wall_ns.
  std::atomic<std::int64_t> upstream_open_ns{0}, last_audio_ns{0}, last_text_ns{0}, last_upstream_ns{0};
  std::atomic<std::int64_t> last_keep_alive_ns{0};
  // For the history: admitted to its pool, first client audio, upstream leg
  // gone (its capacity released), and the time spent open without client
  // audio for more than kSilentGapNs at a stretch.
  std::atomic<std::int64_t> admitted_ns{0}, first_audio_ns{0}, closed_ns{0}, idle_ns{0};
  std::atomic<int> state{static_cast<int>(SessionState::queued)};
};

// The wall clock (system_clock), shifted by the offset a test set (see
// set_wall_offset_for_tests; 0 otherwise): for what is recorded or shown.
Clock::time_point wall_now();
std::int64_t wall_ns();  // wall_now() as nanoseconds since the epoch
// The steady clock in nanoseconds: for deadlines, durations and every
// timestamp a session keeps (one read per message on the relay path).
std::int64_t mono_ns();
// Tests only: shifts the wall clock as seen by the gateway by `offset`, as an
// NTP step or an operator setting the date would.
void set_wall_offset_for_tests(std::chrono::nanoseconds offset);

// A pause in client audio longer than this counts as idle time (open, billed,
// but no audio).
constexpr std::int64_t kSilentGapNs = 1'000'000'000;

// Notes an audio frame arriving at steady time `now` (the relay's hot path: a few relaxed
// atomics, no lock).
inline void note_audio(SessionCounters& c, std::int64_t now) {
  auto prev = c.last_audio_ns.load(std::memory_order_relaxed);
  if (prev == 0) {
    c.first_audio_ns.store(now, std::memory_order_relaxed);
    prev = c.upstream_open_ns.load(std::memory_order_relaxed);
  }
  if (prev && now - prev > kSilentGapNs) bump(c.idle_ns, now - prev);
  c.last_audio_ns.store(now, std::memory_order_relaxed);
}

class SessionEntry {
 public:
  explicit SessionEntry(SessionInfo info) : info_(std::move(info)) {}

  const SessionInfo& info() const { return info_; }
  // Idle seconds so far (see kSilentGapNs), counting the current silence up
  // to `until` (steady) when it is already longer than the gap.
  double idle_seconds_until(std::int64_t until) const;
  SessionCounters& counters() { return counters_; }
  const SessionCounters& counters() const { return counters_; }

  SessionState state() const { return static_cast<SessionState>(counters_.state.load(std::memory_order_relaxed)); }
  void set_state(SessionState s) { counters_.state.store(static_cast<int>(s), std::memory_order_relaxed); }

  // The first upstream request id (set_request_id), and every upstream
  // request id the stream had: a resumed stream has one per connection.
  void set_request_id(std::string id);
  std::string request_id() const;
  void add_upstream_request_id(std::string id);
  std::vector<std::string> upstream_request_ids() const;
  int resumes() const;  // upstream connections after the first
  // From the upstream's Metadata: audio duration and channel count.
  void set_upstream_summary(std::optional<double> duration, std::optional<int> channels);
  // Audio seconds: from the declared raw format when known, else Metadata.
  double audio_seconds() const;

  // The session installs how to end it gracefully (posted onto its strand).
  // A request that came before the handler runs it at once.
  void set_end_handler(std::function<void()> handler);
  // Asks the session to end gracefully. Never lost: a stream that is not
  // relaying yet (queued, connecting) ends as soon as it opens. True if the
  // stream was relaying (its end has begun).
  bool request_end() const;

 private:
  const SessionInfo info_;
  SessionCounters counters_;
  mutable std::mutex mutex_;
  std::string request_id_;              // guarded by mutex_
  std::vector<std::string> upstream_request_ids_;  // guarded by mutex_
  int resumes_ = 0;                     // guarded by mutex_
  std::optional<double> meta_duration_; // guarded by mutex_
  std::optional<int> meta_channels_;    // guarded by mutex_
  std::function<void()> end_handler_;   // guarded by mutex_
  mutable bool end_requested_ = false;  // guarded by mutex_
};

class Registry;

// Holds a stream's place in the registry; removes it when destroyed.
class Registration {
 public:
  Registration() = default;
  Registration(Registry* registry, std::shared_ptr<SessionEntry> entry)
      : registry_(registry), entry_(std::move(entry)) {}
  Registration(Registration&& o) noexcept : registry_(o.registry_), entry_(std::move(o.entry_)) { o.registry_ = nullptr; }
  Registration& operator=(Registration&&) = delete;
  Registration(const Registration&) = delete;
  ~Registration();

  SessionEntry& entry() const { return *entry_; }
  const std::shared_ptr<SessionEntry>& shared() const { return entry_; }
  SessionEntry* operator->() const { return entry_.get(); }
  Registry* registry() const { return registry_; }

 private:
  Registry* registry_ = nullptr;
  std::shared_ptr<SessionEntry> entry_;
};

struct SessionFilter {
  std::optional<std::string> tenant;
  std::optional<std::string> path;
  std::optional<std::string> pool;
  std::optional<std::string> state;       // queued, connecting, open, idle, closing
  std::optional<double> idle_for;         // seconds without client audio, at least
};

// A pool's traffic for /metrics: what its ended streams relayed plus what its
// live ones have relayed so far, and its live streams' states.
struct PoolTraffic {
  std::uint64_t client_bytes = 0;    // received from clients (relayed upstream)
  std::uint64_t upstream_bytes = 0;  // received from the upstream (relayed to clients)
  double audio_seconds = 0;
  std::uint64_t streams_ended = 0;   // streams that opened and have ended
  int open = 0;                      // open (relaying, or closing)
  int idle = 0;                      // open, no client audio for idle_after
  int keep_alive_only = 0;           // idle and kept open by KeepAlive messages
  util::HistogramSnapshot duration;  // ended streams: seconds from open to the upstream leg's end
};

class Registry {
 public:
  explicit Registry(std::chrono::duration<double> idle_after = std::chrono::seconds(10))
      : idle_after_ns_(to_ns(idle_after)) {}

  SessionId next_id() { return next_id_.fetch_add(1, std::memory_order_relaxed); }
  Registration add(SessionInfo info);

  std::shared_ptr<SessionEntry> find(SessionId id) const;
  std::vector<std::shared_ptr<SessionEntry>> list(const SessionFilter& filter = {}) const;
  std::size_t size() const;

  // `now` is steady (mono_ns) in these three.
  // True when the stream has had no audio for idle_after and has been kept
  // open by KeepAlive messages since its last audio.
  bool keep_alive_only(const SessionEntry& e, std::int64_t now) const;
  // "idle" when open and without client audio for idle_after (or since open).
  std::string_view display_state(const SessionEntry& e, std::int64_t now) const;
  // Seconds since the last client audio (or since the upstream opened).
  static double idle_seconds(const SessionEntry& e, std::int64_t now);

  void set_idle_after(std::chrono::duration<double> d) { idle_after_ns_.store(to_ns(d)); }

  // Per pool, read under the registry's lock: a stream's counts move from
  // the live sum to the ended totals as it leaves (under the same lock), so
  // the byte and audio counters never go back between two reads.
  std::map<std::string, PoolTraffic> traffic() const;

 private:
  friend class Registration;
  void remove(SessionId id);
  static std::int64_t to_ns(std::chrono::duration<double> d) {
    return static_cast<std::int64_t>(d.count() * 1e9);
  }

  std::atomic<std::int64_t> idle_after_ns_;
  std::atomic<SessionId> next_id_{1};
  mutable std::mutex mutex_;
  std::map<SessionId, std::shared_ptr<SessionEntry>> sessions_;  // guarded by mutex_
  // What ended streams relayed, per pool (guarded by mutex_).
  struct Ended {
    std::uint64_t client_bytes = 0, upstream_bytes = 0, streams = 0;
    double audio_seconds = 0;
    util::Histogram duration{util::kStreamDurationBuckets};
  };
  std::map<std::string, std::unique_ptr<Ended>> ended_;  // guarded by mutex_
};

}  // namespace sluice::registry
