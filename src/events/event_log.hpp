#pragma once
// Notable events (upstream 429s with their snapshots, refusals, queue
// timeouts, reaps, reloads, starts and stops) kept in a bounded in-memory log
// for the admin API, and handed to subscribers (the durable recorder).
// Thread safety: every method may be called from any thread.
#include <boost/json/object.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace sluice::events {

struct Event {
  std::uint64_t id = 0;
  std::int64_t time_ns = 0;  // system clock
  std::string type;          // upstream_429, refusal, queue_timeout, reap, config_reload, start, stop
  boost::json::object fields;
};

struct EventFilter {
  std::optional<std::string> type;
  std::optional<std::int64_t> since_ns;
  std::optional<std::int64_t> until_ns;
  std::size_t limit = 1000;
};

class EventLog {
 public:
  explicit EventLog(std::size_t capacity = 10000) : capacity_(capacity) {}

  Event record(std::string type, boost::json::object fields);
  std::vector<Event> list(const EventFilter& filter) const;  // oldest first
  std::size_t count(const std::string& type) const;
  void subscribe(std::function<void(const Event&)> sink);

 private:
  const std::size_t capacity_;
  mutable std::mutex mutex_;
  std::deque<Event> events_;  // guarded by mutex_
  std::uint64_t next_id_ = 1; // guarded by mutex_
  std::vector<std::function<void(const Event&)>> sinks_;  // guarded by mutex_
};

boost::json::object to_json(const Event& e);

}  // namespace sluice::events
