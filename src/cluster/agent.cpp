#include "cluster/agent.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sluice::cluster {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;

// How long an upstream 429 that nothing released explains lowers the fleet's
// limit, unless an acceptance restores it sooner.
constexpr auto kLowerFor = std::chrono::minutes(10);

FleetLease& FleetLease::operator=(FleetLease&& o) noexcept {
  if (this != &o) {
    release();
    agent_ = std::move(o.agent_);
    pool_ = std::move(o.pool_);
    tenant_ = std::move(o.tenant_);
    id_ = std::exchange(o.id_, {});
  }
  return *this;
}

void FleetLease::release() {
  if (id_.empty()) return;
  // An agent already gone released everything it held as it stopped.
  if (auto a = agent_.lock()) a->release(pool_, tenant_, id_);
  id_.clear();
  agent_.reset();
}

std::shared_ptr<Agent> Agent::start(RedisUrl url, Options options, ReleasedFn on_released) {
  std::shared_ptr<Agent> a(new Agent(std::move(url), std::move(options), std::move(on_released)));
  a->worker_ = std::thread([a = a.get()] { a->work(); });
  a->subscriber_ = std::thread([a = a.get()] { a->subscribe(); });
  return a;
}

Agent::Agent(RedisUrl url, Options options, ReleasedFn on_released)
    : url_(url), options_(std::move(options)), on_released_(std::move(on_released)), store_(url, options_.store) {
  if (options_.renew_every.count() <= 0 || options_.renew_every >= options_.store.ttl)
    throw RedisError("cluster: the renewal interval must be positive and shorter than the lease expiry");
}

Agent::~Agent() { stop(); }

void Agent::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !worker_.joinable() && !subscriber_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  stop_subscriber_ = true;
  // The last owner may be a FleetLease on one of our own threads.
  for (auto* t : {&worker_, &subscriber_}) {
    if (!t->joinable()) continue;
    if (t->get_id() == std::this_thread::get_id())
      t->detach();
    else
      t->join();
  }
}

void Agent::acquire(AcquireRequest request, asio::any_io_executor executor, std::function<void(AcquireOutcome)> done) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      jobs_.push_back(Job{std::move(request), executor, std::move(done)});
      cv_.notify_all();
      return;
    }
  }
  AcquireOutcome out;
  out.error = "the cluster link is stopping";
  asio::post(executor, [done = std::move(done), out = std::move(out)]() mutable { done(std::move(out)); });
}

asio::awaitable<AcquireOutcome> Agent::acquire(AcquireRequest request) {
  auto ex = co_await asio::this_coro::executor;
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(AcquireOutcome)>(
      [this, ex](auto handler, AcquireRequest q) {
        // std::function needs a copyable callable: the handler is shared.
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        acquire(std::move(q), ex, [h](AcquireOutcome o) { std::move (*h)(std::move(o)); });
      },
      asio::use_awaitable, std::move(request));
}

void Agent::run(Task task) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      tasks_.push_back(std::move(task));
      cv_.notify_all();
      return;
    }
  }
  task(nullptr);
}

void Agent::accepted(const std::string& pool, const std::string& id, int limit,
                     std::optional<std::chrono::milliseconds> release_delay) {
  run([this, pool, id, limit, release_delay](LeaseStore* store) {
    if (!store) return;
    // Re-registered as accepted if Redis loses it.
    if (auto it = held_.find(id); it != held_.end()) it->second.accepted = true;
    pools_seen_.insert(pool);
    try {
      auto a = store->accepted(pool, id, limit, release_delay);
      redis_ok_ = true;
      if (a.restored)
        spdlog::info("cluster: the vendor accepts again; pool '{}' is back at its limit in the fleet", pool);
      if (options_.on_delay) options_.on_delay(pool, a.delay);
    } catch (const RedisError& e) {
      spdlog::warn("cluster: cannot tell the fleet that the vendor accepted a stream of pool '{}': {}", pool, e.what());
    }
  });
}

void Agent::refused(const std::string& pool, const std::string& id, int limit,
                    std::optional<std::chrono::milliseconds> release_delay, asio::any_io_executor executor,
                    std::function<void(std::optional<RefusalVerdict>)> done) {
  run([this, pool, id, limit, release_delay, executor, done = std::move(done)](LeaseStore* store) mutable {
    std::optional<RefusalVerdict> v;
    if (store) {
      try {
        v = store->refused(pool, id, limit, kLowerFor, release_delay);
        redis_ok_ = true;
        if (options_.on_delay) options_.on_delay(pool, v->delay);
      } catch (const RedisError& e) {
        spdlog::warn("cluster: cannot ask the fleet about an upstream 429 in pool '{}': {}", pool, e.what());
      }
    }
    asio::post(executor, [done = std::move(done), v = std::move(v)]() mutable { done(std::move(v)); });
  });
}

asio::awaitable<std::optional<RefusalVerdict>> Agent::refused(std::string pool, std::string id, int limit,
                                                              std::optional<std::chrono::milliseconds> release_delay) {
  auto ex = co_await asio::this_coro::executor;
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(std::optional<RefusalVerdict>)>(
      [this, ex](auto handler, std::string p, std::string i, int l, std::optional<std::chrono::milliseconds> d) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        refused(p, i, l, d, ex, [h](std::optional<RefusalVerdict> v) { std::move (*h)(std::move(v)); });
      },
      asio::use_awaitable, std::move(pool), std::move(id), limit, release_delay);
}

void Agent::release(const std::string& pool, const std::string& tenant, const std::string& id) {
  std::lock_guard lock(mutex_);
  releases_.push_back(Release{pool, tenant, id, SteadyClock::now() + options_.store.ttl});
  cv_.notify_all();
}

void Agent::leave(const std::string& pool, const std::string& id) {
  std::lock_guard lock(mutex_);
  leaving_.emplace_back(pool, id);
  cv_.notify_all();
}

FleetLease Agent::adopt(AcquireRequest request) {
  request.force = true;
  request.wait = false;
  FleetLease out;
  out.agent_ = weak_from_this();
  out.pool_ = request.lease.pool;
  out.tenant_ = request.lease.tenant;
  out.id_ = request.lease.id;
  std::lock_guard lock(mutex_);
  adopted_.push_back(std::move(request));
  cv_.notify_all();
  return out;
}

void Agent::take_adopted() {
  std::deque<AcquireRequest> todo;
  {
    std::lock_guard lock(mutex_);
    todo.swap(adopted_);
  }
  for (auto& q : todo) {
    auto id = q.lease.id;
    held_[id] = std::move(q);
    held_count_ = static_cast<int>(held_.size());
    try {
      store_.acquire(held_[id]);
      redis_ok_ = true;
    } catch (const RedisError&) {
      redis_ok_ = false;  // registered by the next renewal that reaches Redis
    }
  }
}

namespace {

// The cluster threads yield to the I/O threads when they share a CPU: their
// work (a snapshot of every session each second, the renewals) is never
// urgent to the millisecond, and a stream's frames are. Renewals still run
// well within the lease expiry, since the I/O threads leave most of a CPU.
void lower_priority() {
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10) != 0)
    spdlog::debug("cluster: cannot lower the cluster thread's priority: {}", std::strerror(errno));
}

}  // namespace

void Agent::work() {
  lower_priority();
  // At once: redis_ok() (and /readyz) should know about Redis from the start.
  auto next_renew = SteadyClock::now();
  auto next_publish = SteadyClock::now();
  for (;;) {
    std::deque<Job> jobs;
    std::deque<Task> tasks;
    std::deque<Release> releases;
    std::deque<std::pair<std::string, std::string>> leaving;
    bool stopping = false;
    {
      std::unique_lock lock(mutex_);
      auto until = options_.sessions_snapshot ? std::min(next_renew, next_publish) : next_renew;
      cv_.wait_until(lock, until, [&] {
        return stopping_ || !jobs_.empty() || !releases_.empty() || !leaving_.empty() || !adopted_.empty() ||
               !tasks_.empty();
      });
      jobs.swap(jobs_);
      tasks.swap(tasks_);
      // Taken together: a release is never run before a task queued before it.
      releases.swap(releases_);
      leaving.swap(leaving_);
      stopping = stopping_;
    }
    // Adopted leases first (they must be renewed, and released if they go
    // at once), then tasks (an acceptance must reach Redis before the
    // lease's release, or its slot would not cool), then releases: they make
    // room for the acquires behind them.
    take_adopted();
    for (auto& task : tasks) task(&store_);
    run_releases(std::move(releases), std::move(leaving));
    for (auto& job : jobs) {
      AcquireOutcome out;
      if (stopping) {
        out.error = "the cluster link is stopping";
      } else {
        try {
          out.result = store_.acquire(job.request);
          out.ok = true;
          redis_ok_ = true;
          pools_seen_.insert(job.request.lease.pool);
          if (options_.on_delay) options_.on_delay(job.request.lease.pool, out.result.delay);
          if (job.request.wait && out.result.outcome == AcquireResult::Outcome::pool_full)
            waiting_[job.request.lease.id] = job.request.lease.pool;
          else
            waiting_.erase(job.request.lease.id);
          if (out.result.outcome == AcquireResult::Outcome::granted ||
              out.result.outcome == AcquireResult::Outcome::already_held) {
            auto& l = job.request.lease;
            held_[l.id] = job.request;
            held_[l.id].force = true;  // from now on an open stream: re-registered past the limit if lost
            held_count_ = static_cast<int>(held_.size());
            out.lease.agent_ = weak_from_this();
            out.lease.pool_ = l.pool;
            out.lease.tenant_ = l.tenant;
            out.lease.id_ = l.id;
          }
        } catch (const RedisError& e) {
          redis_ok_ = false;
          out.error = e.what();
        }
      }
      if (out.ok) acquire_seconds_.observe(std::chrono::duration<double>(SteadyClock::now() - job.asked).count());
      asio::post(job.executor, [done = std::move(job.done), out = std::move(out)]() mutable { done(std::move(out)); });
    }
    if (stopping) break;
    if (SteadyClock::now() >= next_renew) {
      renew_all();
      next_renew = SteadyClock::now() + (redis_ok_ ? options_.renew_every : options_.reconnect_every);
    }
    if (options_.sessions_snapshot && SteadyClock::now() >= next_publish) {
      publish();
      next_publish = SteadyClock::now() + (redis_ok_ ? options_.publish_every : options_.reconnect_every);
    }
  }
  if (options_.sessions_snapshot) {
    try {
      store_.withdraw_sessions(options_.instance);  // out of the fleet view now, not at the expiry
    } catch (const RedisError&) {
    }
  }
  // Stopping: give back what is held, once, within the command timeout.
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, q] : held_)
      releases_.push_back(Release{q.lease.pool, q.lease.tenant, id, SteadyClock::now()});
    for (auto& [id, pool] : waiting_) leaving_.emplace_back(pool, id);
  }
  run_releases();
}

void Agent::run_releases() {
  std::deque<Release> todo;
  std::deque<std::pair<std::string, std::string>> leaving;
  {
    std::lock_guard lock(mutex_);
    todo.swap(releases_);
    leaving.swap(leaving_);
  }
  run_releases(std::move(todo), std::move(leaving));
}

void Agent::run_releases(std::deque<Release> todo, std::deque<std::pair<std::string, std::string>> leaving) {
  for (auto& [pool, id] : leaving) {
    waiting_.erase(id);
    try {
      store_.leave(pool, id);
    } catch (const RedisError&) {
      redis_ok_ = false;  // its place expires with its renewals
    }
  }
  std::deque<Release> retry;
  for (auto& r : todo) {
    held_.erase(r.id);
    try {
      store_.release(r.pool, r.tenant, r.id);
      redis_ok_ = true;
    } catch (const RedisError& e) {
      redis_ok_ = false;
      // Redis will drop it at its expiry anyway; until then keep trying.
      if (SteadyClock::now() < r.give_up) retry.push_back(std::move(r));
    }
  }
  held_count_ = static_cast<int>(held_.size());
  if (retry.empty()) return;
  std::lock_guard lock(mutex_);
  for (auto& r : retry) releases_.push_back(std::move(r));
}

void Agent::renew_all() {
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> by_pool;
  for (auto& [id, q] : held_) by_pool[q.lease.pool].emplace_back(id, q.lease.tenant);
  std::map<std::string, std::vector<std::string>> waiting_by_pool;
  for (auto& [id, pool] : waiting_) waiting_by_pool[pool].push_back(id);
  try {
    // A waiter whose place lapsed takes a new one at its next try.
    for (auto& [pool, ids] : waiting_by_pool)
      for (auto& id : store_.renew_waiting(pool, ids)) waiting_.erase(id);
    for (auto& [pool, leases] : by_pool) {
      auto missing = store_.renew(pool, leases);
      for (auto& id : missing) {
        auto it = held_.find(id);
        if (it == held_.end()) continue;
        store_.acquire(it->second);  // force: the stream is open
        ++reregistered_;
        spdlog::warn("cluster: lease {} was lost in Redis; registered again", id);
      }
    }
    if (by_pool.empty() && waiting_by_pool.empty() && (!options_.on_delay || pools_seen_.empty()))
      store_.ping();  // so redis_ok() follows the server
    // What the fleet learned meanwhile, for this instance's view of its pools.
    if (options_.on_delay)
      for (const auto& pool : pools_seen_) options_.on_delay(pool, store_.delay(pool, std::nullopt));
    redis_ok_ = true;
  } catch (const RedisError& e) {
    if (redis_ok_.exchange(false)) spdlog::warn("cluster: {}", e.what());
  }
}

void Agent::publish() {
  try {
    store_.publish_sessions(options_.instance, options_.sessions_snapshot());
    redis_ok_ = true;
  } catch (const RedisError& e) {
    if (redis_ok_.exchange(false)) spdlog::warn("cluster: {}", e.what());
  }
}

void Agent::subscribe() {
  lower_priority();
  const auto released = store_.released_channel();
  const auto end = store_.end_channel(options_.instance);
  while (!stop_subscriber_) {
    try {
      RedisConnection c(url_, options_.store.connection);
      auto r = c.command(options_.on_end ? std::vector<std::string>{"SUBSCRIBE", released, end}
                                         : std::vector<std::string>{"SUBSCRIBE", released});
      if (r.is_error()) throw RedisError("SUBSCRIBE refused: " + r.str);
      // Releases may have gone unheard while we were not subscribed.
      if (on_released_) on_released_("");
      while (!stop_subscriber_) {
        Reply msg;
        if (!c.read_push(msg, std::chrono::milliseconds(200))) continue;
        if (msg.type != Reply::Type::array || msg.elements.size() != 3 || msg.elements[0].str != "message") continue;
        if (msg.elements[1].str == end) {
          if (options_.on_end) options_.on_end(msg.elements[2].str);
        } else if (on_released_) {
          on_released_(msg.elements[2].str);
        }
      }
    } catch (const RedisError& e) {
      spdlog::debug("cluster: subscriber: {}", e.what());
      auto until = SteadyClock::now() + options_.reconnect_every;
      while (!stop_subscriber_ && SteadyClock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

}  // namespace sluice::cluster
