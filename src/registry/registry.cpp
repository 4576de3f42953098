#include "registry/registry.hpp"

namespace sluice::registry {

std::string_view state_name(SessionState s) {
  switch (s) {
    case SessionState::queued: return "queued";
    case SessionState::connecting: return "connecting";
    case SessionState::open: return "open";
    case SessionState::closing: return "closing";
  }
  return "unknown";
}

namespace {
std::atomic<std::int64_t> wall_offset_ns{0};
}  // namespace

Clock::time_point wall_now() {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::nanoseconds(wall_offset_ns.load(std::memory_order_relaxed)));
}

std::int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(wall_now().time_since_epoch()).count();
}

std::int64_t mono_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now().time_since_epoch()).count();
}

void set_wall_offset_for_tests(std::chrono::nanoseconds offset) {
  wall_offset_ns.store(offset.count(), std::memory_order_relaxed);
}

void SessionEntry::set_request_id(std::string id) {
  std::lock_guard lock(mutex_);
  if (upstream_request_ids_.empty() && !id.empty()) upstream_request_ids_.push_back(id);
  request_id_ = std::move(id);
}

void SessionEntry::add_upstream_request_id(std::string id) {
  std::lock_guard lock(mutex_);
  ++resumes_;
  if (request_id_.empty()) request_id_ = id;
  upstream_request_ids_.push_back(std::move(id));
}

std::vector<std::string> SessionEntry::upstream_request_ids() const {
  std::lock_guard lock(mutex_);
  return upstream_request_ids_;
}

int SessionEntry::resumes() const {
  std::lock_guard lock(mutex_);
  return resumes_;
}

std::string SessionEntry::request_id() const {
  std::lock_guard lock(mutex_);
  return request_id_;
}

void SessionEntry::set_upstream_summary(std::optional<double> duration, std::optional<int> channels) {
  std::lock_guard lock(mutex_);
  if (duration) meta_duration_ = duration;
  if (channels) meta_channels_ = channels;
}

double SessionEntry::audio_seconds() const {
  if (info_.audio_bytes_per_second > 0)
    return static_cast<double>(counters_.audio_bytes.load(std::memory_order_relaxed)) /
           info_.audio_bytes_per_second;
  std::lock_guard lock(mutex_);
  return meta_duration_.value_or(0);
}

double SessionEntry::idle_seconds_until(std::int64_t until) const {
  const auto& c = counters_;
  auto idle = c.idle_ns.load(std::memory_order_relaxed);
  auto since = c.last_audio_ns.load(std::memory_order_relaxed);
  if (!since) since = c.upstream_open_ns.load(std::memory_order_relaxed);
  if (since && until - since > kSilentGapNs) idle += until - since;
  return static_cast<double>(idle) / 1e9;
}

void SessionEntry::set_end_handler(std::function<void()> handler) {
  bool run;
  {
    std::lock_guard lock(mutex_);
    end_handler_ = handler;
    run = end_handler_ && end_requested_;
  }
  if (run) handler();
}

bool SessionEntry::request_end() const {
  std::function<void()> h;
  {
    std::lock_guard lock(mutex_);
    end_requested_ = true;
    h = end_handler_;
  }
  if (!h) return false;
  h();
  return true;
}

Registration::~Registration() {
  if (registry_ && entry_) registry_->remove(entry_->info().id);
}

Registration Registry::add(SessionInfo info) {
  auto entry = std::make_shared<SessionEntry>(std::move(info));
  {
    std::lock_guard lock(mutex_);
    sessions_.emplace(entry->info().id, entry);
  }
  return Registration(this, std::move(entry));
}

void Registry::remove(SessionId id) {
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  // Its relay is done (both legs are gone): its counters are final. They move
  // to the pool's ended totals under the lock traffic() reads under.
  const auto& e = *it->second;
  const auto& c = e.counters();
  if (e.info().pool.empty()) {  // no pool matched: refused, nothing relayed
    sessions_.erase(it);
    return;
  }
  auto& slot = ended_[e.info().pool];
  if (!slot) slot = std::make_unique<Ended>();
  slot->client_bytes += c.client_bytes.load(std::memory_order_relaxed);
  slot->upstream_bytes += c.upstream_bytes.load(std::memory_order_relaxed);
  slot->audio_seconds += e.audio_seconds();
  if (auto opened = c.upstream_open_ns.load(std::memory_order_relaxed)) {
    auto closed = c.closed_ns.load(std::memory_order_relaxed);
    if (!closed) closed = mono_ns();
    slot->duration.observe(static_cast<double>(std::max<std::int64_t>(0, closed - opened)) / 1e9);
    ++slot->streams;
  }
  sessions_.erase(it);
}

std::map<std::string, PoolTraffic> Registry::traffic() const {
  std::map<std::string, PoolTraffic> out;
  auto now = mono_ns();
  const auto idle_after = static_cast<double>(idle_after_ns_.load(std::memory_order_relaxed));
  std::lock_guard lock(mutex_);
  for (const auto& [pool, ended] : ended_) {
    auto& t = out[pool];
    t.client_bytes = ended->client_bytes;
    t.upstream_bytes = ended->upstream_bytes;
    t.audio_seconds = ended->audio_seconds;
    t.streams_ended = ended->streams;
    t.duration = ended->duration.snapshot();
  }
  for (const auto& [id, e] : sessions_) {
    if (e->info().pool.empty()) continue;
    auto& t = out[e->info().pool];
    if (t.duration.counts.empty()) t.duration = util::Histogram(util::kStreamDurationBuckets).snapshot();
    const auto& c = e->counters();
    t.client_bytes += c.client_bytes.load(std::memory_order_relaxed);
    t.upstream_bytes += c.upstream_bytes.load(std::memory_order_relaxed);
    t.audio_seconds += e->audio_seconds();
    auto s = e->state();
    if (s != SessionState::open && s != SessionState::closing) continue;
    ++t.open;
    if (s == SessionState::open && idle_seconds(*e, now) * 1e9 >= idle_after) {
      ++t.idle;
      if (c.last_keep_alive_ns.load(std::memory_order_relaxed) > c.last_audio_ns.load(std::memory_order_relaxed))
        ++t.keep_alive_only;
    }
  }
  return out;
}

std::shared_ptr<SessionEntry> Registry::find(SessionId id) const {
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second;
}

std::size_t Registry::size() const {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

double Registry::idle_seconds(const SessionEntry& e, std::int64_t now) {
  const auto& c = e.counters();
  auto since = c.last_audio_ns.load(std::memory_order_relaxed);
  if (since == 0) since = c.upstream_open_ns.load(std::memory_order_relaxed);
  if (since == 0) return 0;
  return static_cast<double>(now - since) / 1e9;
}

bool Registry::keep_alive_only(const SessionEntry& e, std::int64_t now) const {
  const auto& c = e.counters();
  return c.last_keep_alive_ns.load(std::memory_order_relaxed) > c.last_audio_ns.load(std::memory_order_relaxed) &&
         idle_seconds(e, now) * 1e9 >= static_cast<double>(idle_after_ns_.load(std::memory_order_relaxed));
}

std::string_view Registry::display_state(const SessionEntry& e, std::int64_t now) const {
  auto s = e.state();
  if (s == SessionState::open &&
      idle_seconds(e, now) * 1e9 >= static_cast<double>(idle_after_ns_.load(std::memory_order_relaxed)))
    return "idle";
  return state_name(s);
}

std::vector<std::shared_ptr<SessionEntry>> Registry::list(const SessionFilter& f) const {
  std::vector<std::shared_ptr<SessionEntry>> all;
  {
    std::lock_guard lock(mutex_);
    all.reserve(sessions_.size());
    for (const auto& [id, e] : sessions_) all.push_back(e);
  }
  auto now = mono_ns();
  std::vector<std::shared_ptr<SessionEntry>> out;
  for (auto& e : all) {
    if (f.tenant && e->info().tenant != *f.tenant) continue;
    if (f.pool && e->info().pool != *f.pool) continue;
    if (f.path && protocol::endpoint_path(e->info().endpoint) != *f.path) continue;
    if (f.state && display_state(*e, now) != *f.state) continue;
    if (f.idle_for && (e->state() == SessionState::queued || e->state() == SessionState::connecting || idle_seconds(*e, now) < *f.idle_for)) continue;
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace sluice::registry
