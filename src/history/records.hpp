#pragma once
// What the history holds: one row per stream, notable events, and per-second
// concurrency samples. Times are microseconds since the Unix epoch (UTC);
// 0 / nullopt means "not (yet) known".
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sluice::history {

using Micros = std::int64_t;

// How a stream ended. `open` while it runs; `refused` by the gateway at once
// (quota, full queue, no pool, shutting down); `queue_timeout` after waiting;
// `abandoned` when the client left before its stream opened (in the queue or
// during the upgrade); `upstream_refused` when the vendor refused the
// handshake or could not be reached; `reaped` when the pool's hygiene closed
// it; `interrupted` when the gateway that held it stopped without closing it
// (found at the next start, or by another gateway once the run is stale).
enum class Outcome { open, completed, reaped, refused, queue_timeout, upstream_refused, abandoned, interrupted };
std::string_view outcome_name(Outcome o);
std::optional<Outcome> outcome_from_name(std::string_view s);

struct SessionRecord {
  std::int64_t run_id = 0;      // the gateway run that served it
  std::int64_t session_id = 0;  // x-sluice-session-id within that run
  std::string request_id;       // the vendor's dg-request-id
  std::string tenant, pool, path, model;
  std::string params;           // classifying query parameters, as a JSON object
  std::string client_address, user_agent;
  Micros accepted_at = 0;       // upgrade request read
  std::optional<Micros> admitted_at, opened_at, first_audio_at, last_audio_at, closed_at;
  Micros last_seen_at = 0;      // last time the gateway knew it was alive
  std::optional<int> close_code;
  std::string close_reason, closed_by;  // closed_by: client, upstream, gateway
  Outcome outcome = Outcome::open;
  std::string outcome_reason;   // reap reason, refusal reason, upstream status
  std::int64_t client_messages = 0, client_bytes = 0, upstream_messages = 0, upstream_bytes = 0;
  std::int64_t audio_messages = 0, audio_bytes = 0, keep_alive = 0;
  double audio_seconds = 0;
  double idle_seconds = 0;      // open, without client audio for more than 1 s at a stretch
  std::string upstream_request_ids;  // every upstream request id, as a JSON array (empty: none recorded)
  int resumes = 0;              // upstream reconnects after the first connection (docs/resume.md)

  // It held upstream capacity during [opened_at, closed_at); a row still open
  // holds it until now. Recovery sets closed_at of an interrupted row to its
  // last_seen_at.
  bool held_capacity() const { return opened_at.has_value(); }
};

// The part of a session the interval queries need.
struct Span {
  std::int64_t run_id = 0, session_id = 0;
  std::string pool, tenant;
  Micros start = 0, end = 0;  // [start, end); end = now for a stream still open
  bool still_open = false;
  double audio_seconds = 0, idle_seconds = 0;
};

struct EventRecord {
  std::int64_t id = 0;          // assigned by the store
  std::int64_t run_id = 0;
  Micros time = 0;
  std::string type;
  std::optional<std::int64_t> session_id;
  std::string pool, tenant;
  std::string fields;           // the event's JSON object
};

struct ConcurrencySample {
  std::int64_t run_id = 0;
  std::string pool;
  std::int64_t second = 0;      // Unix seconds (start of the second or minute)
  int resolution = 1;           // 1: per second; 60: per minute (rolled up)
  int max_open = 0, min_open = 0;
};

struct RunRecord {
  std::int64_t run_id = 0;
  std::string instance;         // host:port of the client listener unless configured
  std::string version;
  int pid = 0;
  Micros started_at = 0, last_seen_at = 0;
  std::optional<Micros> stopped_at;
};

}  // namespace sluice::history
