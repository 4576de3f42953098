#include "history/recorder.hpp"

#include <boost/json/array.hpp>

#include <boost/json/value.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "events/event_log.hpp"
#include "util/json_text.hpp"
#include "protocol/endpoint.hpp"
#include "registry/registry.hpp"
#include "util/json_text.hpp"

namespace sluice::history {
namespace {

// Wall time, for the run's own times and the concurrency of a stream without
// a timestamp of its own.
Micros now_us() { return registry::wall_ns() / 1000; }

// A stream's steady timestamp (0: never) as the wall time it records.
std::optional<Micros> us(const registry::SessionInfo& info, std::int64_t mono) {
  return mono ? std::optional<Micros>(info.to_wall_ns(mono) / 1000) : std::nullopt;
}

}  // namespace

Recorder::Recorder(RecorderOptions options) : options_(std::move(options)) {
  store_ = std::make_unique<Store>(options_.url);
  where_ = store_->describe();
  auto now = now_us();
  RunRecord record;
  record.instance = options_.instance;
  record.version = options_.version;
  record.pid = static_cast<int>(::getpid());
  record.started_at = now;
  run_id_ = store_->begin_run(record);
  stats_.interrupted_at_start =
      store_->recover_interrupted(run_id_, options_.instance, now - options_.stale_after);
  if (stats_.interrupted_at_start > 0)
    spdlog::warn("history: {} stream(s) of an earlier run were still open; marked interrupted at their last activity",
                 stats_.interrupted_at_start);
  writer_ = std::thread([this] { run(); });
}

Recorder::~Recorder() { stop(); }

SessionRecord Recorder::snapshot(const registry::SessionEntry& e) const {
  const auto& info = e.info();
  const auto& c = e.counters();
  SessionRecord r;
  r.run_id = run_id_;
  r.session_id = static_cast<std::int64_t>(info.id);
  r.request_id = e.request_id();
  {
    auto ids = e.upstream_request_ids();
    if (!ids.empty()) {
      boost::json::array a;
      for (auto& id : ids) a.emplace_back(id);
      r.upstream_request_ids = util::json_text(a);
    }
    r.resumes = e.resumes();
  }
  r.tenant = info.tenant;
  r.pool = info.pool;
  r.path = std::string(protocol::endpoint_path(info.endpoint));
  r.model = info.model;
  boost::json::object params;
  for (const auto& [k, v] : info.params) params[k] = v;
  r.params = util::json_text(params);
  r.client_address = info.client_address;
  r.user_agent = info.user_agent;
  // Every time of the row is on the stream's own timeline: its wall-clock
  // acceptance plus steady time since (see SessionInfo::to_wall_ns).
  r.accepted_at = info.accepted_ns() / 1000;
  r.admitted_at = us(info, c.admitted_ns.load(std::memory_order_relaxed));
  r.opened_at = us(info, c.upstream_open_ns.load(std::memory_order_relaxed));
  r.first_audio_at = us(info, c.first_audio_ns.load(std::memory_order_relaxed));
  r.last_audio_at = us(info, c.last_audio_ns.load(std::memory_order_relaxed));
  auto closed = c.closed_ns.load(std::memory_order_relaxed);
  r.closed_at = us(info, closed);
  auto now = registry::mono_ns();
  r.last_seen_at = info.to_wall_ns(closed ? closed : now) / 1000;
  r.client_messages = static_cast<std::int64_t>(c.client_messages.load(std::memory_order_relaxed));
  r.client_bytes = static_cast<std::int64_t>(c.client_bytes.load(std::memory_order_relaxed));
  r.upstream_messages = static_cast<std::int64_t>(c.upstream_messages.load(std::memory_order_relaxed));
  r.upstream_bytes = static_cast<std::int64_t>(c.upstream_bytes.load(std::memory_order_relaxed));
  r.audio_messages = static_cast<std::int64_t>(c.audio_messages.load(std::memory_order_relaxed));
  r.audio_bytes = static_cast<std::int64_t>(c.audio_bytes.load(std::memory_order_relaxed));
  r.keep_alive = static_cast<std::int64_t>(c.keep_alive.load(std::memory_order_relaxed));
  r.audio_seconds = e.audio_seconds();
  r.idle_seconds = r.opened_at ? e.idle_seconds_until(closed ? closed : now) : 0;
  return r;
}

void Recorder::put(SessionRecord r) {
  Key key{r.run_id, r.session_id};
  std::lock_guard lock(mutex_);
  pending_.insert_or_assign(key, std::move(r));
}

void Recorder::admitted(const std::shared_ptr<registry::SessionEntry>& e) {
  auto r = snapshot(*e);
  {
    std::lock_guard lock(mutex_);
    live_.insert_or_assign(Key{run_id_, r.session_id}, e);
  }
  put(std::move(r));
}

void Recorder::opened(const registry::SessionEntry& e) {
  auto r = snapshot(e);
  count(r.pool, +1, r.opened_at.value_or(now_us()));
  put(std::move(r));
}

void Recorder::upstream_closed(const registry::SessionEntry& e) {
  auto closed = e.counters().closed_ns.load(std::memory_order_relaxed);
  count(e.info().pool, -1, closed ? e.info().to_wall_ns(closed) / 1000 : now_us());
}

void Recorder::finished(const registry::SessionEntry& e, const Ending& how) { finish(e, how, true); }

void Recorder::not_opened(const registry::SessionEntry& e, const Ending& how) { finish(e, how, false); }

void Recorder::finish(const registry::SessionEntry& e, const Ending& how, bool opened) {
  auto r = snapshot(e);
  if (!opened) r.opened_at.reset();
  if (!r.closed_at) r.closed_at = r.last_seen_at;
  r.outcome = how.outcome;
  r.outcome_reason = how.outcome_reason;
  r.closed_by = how.closed_by;
  r.close_code = how.close_code;
  r.close_reason = how.close_reason;
  {
    std::lock_guard lock(mutex_);
    live_.erase(Key{run_id_, r.session_id});
  }
  put(std::move(r));
}

void Recorder::event(const events::Event& ev) {
  EventRecord r;
  r.run_id = run_id_;
  r.time = ev.time_ns / 1000;
  r.type = ev.type;
  if (auto* v = ev.fields.if_contains("session_id")) {
    if (v->is_uint64()) r.session_id = static_cast<std::int64_t>(v->get_uint64());
    if (v->is_int64()) r.session_id = v->get_int64();
  }
  if (auto* v = ev.fields.if_contains("pool"); v && v->is_string()) r.pool = std::string(v->get_string());
  if (auto* v = ev.fields.if_contains("tenant"); v && v->is_string()) r.tenant = std::string(v->get_string());
  r.fields = util::json_text(ev.fields);
  std::lock_guard lock(mutex_);
  if (events_.size() >= options_.queue_limit) {
    // Only the history of events is lossy; session rows never are.
    if (stats_.events_dropped++ % 1000 == 0)
      spdlog::warn("history: the event queue is full ({} waiting for {}): dropped {} event(s) so far",
                   events_.size(), where_, stats_.events_dropped);
    return;
  }
  events_.push_back(std::move(r));
}

// Per pool, the open count and the current second's maximum and minimum;
// a second is written once it is over (none while nothing was open).
void Recorder::close_pool(const std::string& pool, PoolCount& pc, std::int64_t before,
                          std::vector<ConcurrencySample>& out) {
  if (pc.second == 0 || pc.second >= before) return;
  if (pc.max > 0) out.push_back({run_id_, pool, pc.second, 1, pc.max, pc.min});
  if (pc.open > 0)
    for (auto s = pc.second + 1; s < before; ++s) out.push_back({run_id_, pool, s, 1, pc.open, pc.open});
  pc.second = before;
  pc.max = pc.min = pc.open;
}

void Recorder::count(const std::string& pool, int delta, std::int64_t at_us) {
  std::lock_guard lock(mutex_);
  auto& pc = pools_[pool];
  auto second = at_us / 1'000'000;
  if (pc.second == 0) {
    pc.second = second;
    pc.max = pc.min = pc.open;
  } else {
    close_pool(pool, pc, second, samples_);  // a late timestamp counts in the current second
  }
  pc.open += delta;
  pc.max = std::max(pc.max, pc.open);
  pc.min = std::min(pc.min, pc.open);
}

void Recorder::heartbeat(WriteBatch& batch, Micros now) {
  std::vector<std::shared_ptr<const registry::SessionEntry>> live;
  {
    std::lock_guard lock(mutex_);
    live.reserve(live_.size());
    for (const auto& [_, e] : live_) live.push_back(e);
  }
  std::vector<SessionRecord> rows;
  rows.reserve(live.size());
  for (const auto& e : live) rows.push_back(snapshot(*e));
  std::lock_guard lock(mutex_);
  for (auto& r : rows) {
    Key key{r.run_id, r.session_id};
    if (!live_.count(key)) continue;  // finished meanwhile: its final row is pending
    pending_.insert_or_assign(key, std::move(r));
  }
  batch.run_seen = std::pair{run_id_, now};
}

void Recorder::run() {
  // The writer yields to the I/O threads: a frame must not wait behind a
  // write. Under SCHED_IDLE an I/O thread that wakes preempts the writer at
  // once (a nice value alone still lets the writer run out a whole time
  // slice, milliseconds, first); the writer keeps a small share of a busy CPU,
  // and its rows wait, coalesced, in `pending_`. Lowering a thread's own
  // priority needs no privilege.
  sched_param idle{};
  if (::pthread_setschedparam(::pthread_self(), SCHED_IDLE, &idle) != 0)
    spdlog::debug("history: could not lower the writer thread's priority");
  ::pthread_setname_np(::pthread_self(), "sluice-history");  // as top -H and /proc show it
  auto next_heartbeat = now_us() + options_.heartbeat;
  auto next_retention = now_us();
  auto next_rollup = now_us();
  auto next_sweep = now_us() + options_.stale_after / 4;
  Micros backoff = 0;
  std::uint64_t flushes_seen = 0;  // a failed pass leaves its flushes to the next, after the backoff
  for (;;) {
    bool stopping, flushing;
    std::uint64_t flushes;
    {
      std::unique_lock lock(mutex_);
      auto wait = std::chrono::microseconds(std::max<Micros>(options_.flush_interval, backoff));
      wake_.wait_for(lock, wait, [&] { return stopping_ || flushes_requested_ > flushes_seen; });
      flushes = flushes_seen = flushes_requested_;
      flushing = flushes > flushes_done_;
      stopping = stopping_;
    }
    auto now = now_us();
    WriteBatch batch;
    if (now >= next_heartbeat || stopping) {
      heartbeat(batch, now);
      next_heartbeat = now + options_.heartbeat;
    }
    std::map<Key, SessionRecord> sessions;
    {
      std::lock_guard lock(mutex_);
      for (auto& [pool, pc] : pools_) {
        close_pool(pool, pc, now / 1'000'000, samples_);
        // On a flush or at the end, the second in progress too, as far as it
        // went (the store merges it with the rest later: max of maxima, min
        // of minima).
        if ((flushing || stopping) && pc.second && (pc.max > 0 || pc.min > 0))
          samples_.push_back({run_id_, pool, pc.second, 1, pc.max, pc.min});
      }
      sessions.swap(pending_);
      batch.events.swap(events_);
      batch.samples.swap(samples_);
    }
    batch.sessions.reserve(sessions.size());
    for (auto& [_, r] : sessions) batch.sessions.push_back(std::move(r));
    bool ok = true;
    if (!batch.empty()) {
      try {
        store_->write(batch);
      } catch (const DbError& e) {
        ok = false;
        std::lock_guard lock(mutex_);
        if (stats_.write_failures++ % 50 == 0)
          spdlog::warn("history: cannot write to {} ({}); keeping {} row(s) and {} event(s) to retry", where_, e.what(),
                       batch.sessions.size(), batch.events.size());
        stats_.last_error = e.what();
        // Put everything back; a newer row for the same stream wins.
        for (auto& r : batch.sessions) pending_.try_emplace(Key{r.run_id, r.session_id}, std::move(r));
        batch.events.insert(batch.events.end(), std::make_move_iterator(events_.begin()),
                            std::make_move_iterator(events_.end()));
        events_.swap(batch.events);
        batch.samples.insert(batch.samples.end(), samples_.begin(), samples_.end());
        samples_.swap(batch.samples);
      } catch (const std::exception& e) {
        ok = false;
        spdlog::error("history: unexpected failure writing to {}: {}", where_, e.what());
      }
    }
    if (ok) {
      backoff = 0;
      std::lock_guard lock(mutex_);
      stats_.sessions_written += batch.sessions.size();
      stats_.events_written += batch.events.size();
      stats_.samples_written += batch.samples.size();
      if (!batch.empty()) stats_.last_commit_us = now;
      flushes_done_ = flushes;
      committed_.notify_all();
    } else {
      backoff = std::min<Micros>(std::max<Micros>(backoff * 2, 50'000), 1'000'000);
    }
    if (ok && !stopping && now >= next_rollup) {
      // Minutes that are over, into the concurrency rollup; an hour of
      // history at a time when catching up, so writes are not held back.
      try {
        if (store_->update_rollup(now) == 0) next_rollup = now + 5'000'000;
      } catch (const DbError& e) {
        next_rollup = now + 5'000'000;
        spdlog::warn("history: cannot update the concurrency rollup in {}: {}", where_, e.what());
      }
    }
    if (ok && !stopping && now >= next_sweep) {
      // Another gateway on this store that stopped heartbeating (kill -9, a
      // lost machine): its open rows end at their last activity now, not at
      // its next start, which may never come.
      next_sweep = now + std::max<Micros>(options_.stale_after / 4, options_.heartbeat);
      try {
        if (auto n = store_->recover_interrupted(run_id_, std::nullopt, now - options_.stale_after); n > 0) {
          spdlog::warn("history: {} stream(s) of a gateway silent for over {:g} s were still open; marked "
                       "interrupted at their last activity",
                       n, static_cast<double>(options_.stale_after) / 1e6);
          std::lock_guard lock(mutex_);
          stats_.interrupted_by_sweep += n;
        }
      } catch (const DbError& e) {
        spdlog::warn("history: cannot look for silent gateways' open streams in {}: {}", where_, e.what());
      }
    }
    if (ok && now >= next_retention) {
      next_retention = now + options_.retention_interval;
      try {
        auto r = store_->enforce_retention(options_.retention, now);
        if (r.sessions || r.events || r.samples || r.rolled_up)
          spdlog::info("history: retention removed {} session(s), {} event(s), {} sample(s); rolled up {} second(s)",
                       r.sessions, r.events, r.samples, r.rolled_up);
      } catch (const DbError& e) {
        spdlog::warn("history: retention failed on {}: {}", where_, e.what());
      }
    }
    if (stopping) {
      if (ok) break;
      if (now >= stop_deadline_) {
        std::lock_guard lock(mutex_);
        spdlog::error("history: giving up on {} at shutdown with {} row(s) and {} event(s) unwritten; the rows stay "
                      "open in the store and the next start marks them interrupted",
                      where_, pending_.size(), events_.size());
        break;
      }
    }
  }
  try {
    store_->end_run(run_id_, now_us());
  } catch (const DbError& e) {
    spdlog::warn("history: cannot record the end of this run in {}: {}", where_, e.what());
  }
}

RecorderStats Recorder::stats() const {
  std::lock_guard lock(mutex_);
  auto s = stats_;
  s.pending_sessions = pending_.size();
  s.pending_events = events_.size();
  s.live_sessions = live_.size();
  return s;
}

bool Recorder::flush(Micros timeout_us) {
  std::unique_lock lock(mutex_);
  // Served by a pass that starts after this call: it takes every row and
  // event handed before it, and the concurrency of the second in progress.
  auto target = ++flushes_requested_;
  wake_.notify_all();
  return committed_.wait_for(lock, std::chrono::microseconds(timeout_us), [&] { return flushes_done_ >= target; });
}

void Recorder::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    stopped_ = true;
    stopping_ = true;
    stop_deadline_ = now_us() + 5'000'000;
  }
  wake_.notify_all();
  if (writer_.joinable()) writer_.join();
}

}  // namespace sluice::history
