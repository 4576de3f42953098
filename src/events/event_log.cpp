#include "events/event_log.hpp"

#include <algorithm>

#include "registry/registry.hpp"
#include "util/time_json.hpp"

namespace sluice::events {

Event EventLog::record(std::string type, boost::json::object fields) {
  Event e;
  e.time_ns = registry::wall_ns();
  e.type = std::move(type);
  e.fields = std::move(fields);
  std::vector<std::function<void(const Event&)>> sinks;
  {
    std::lock_guard lock(mutex_);
    e.id = next_id_++;
    events_.push_back(e);
    if (events_.size() > capacity_) events_.pop_front();
    sinks = sinks_;
  }
  for (auto& s : sinks) s(e);
  return e;
}

std::vector<Event> EventLog::list(const EventFilter& f) const {
  std::vector<Event> out;
  std::lock_guard lock(mutex_);
  for (const auto& e : events_) {
    if (f.type && e.type != *f.type) continue;
    if (f.since_ns && e.time_ns < *f.since_ns) continue;
    if (f.until_ns && e.time_ns > *f.until_ns) continue;
    out.push_back(e);
  }
  if (out.size() > f.limit) out.erase(out.begin(), out.end() - static_cast<std::ptrdiff_t>(f.limit));
  return out;
}

std::size_t EventLog::count(const std::string& type) const {
  std::lock_guard lock(mutex_);
  return static_cast<std::size_t>(std::count_if(events_.begin(), events_.end(), [&](const Event& e) { return e.type == type; }));
}

void EventLog::subscribe(std::function<void(const Event&)> sink) {
  std::lock_guard lock(mutex_);
  sinks_.push_back(std::move(sink));
}

boost::json::object to_json(const Event& e) {
  boost::json::object o;
  o["id"] = e.id;
  o["time"] = util::time_json(e.time_ns);
  o["type"] = e.type;
  for (const auto& kv : e.fields) o[kv.key()] = kv.value();
  return o;
}

}  // namespace sluice::events
