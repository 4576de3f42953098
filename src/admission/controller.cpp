#include "admission/controller.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <boost/asio/strand.hpp>

#include <algorithm>
#include <cmath>
#include <list>
#include <mutex>
#include <random>

namespace sluice::admission {

namespace asio = boost::asio;

// One pool's live state. Guarded by ControllerState::mutex.
struct Pool {
  config::PoolConfig config;
  int effective_limit = 0;
  int in_use = 0;
  std::map<std::string, int> tenant_in_use;
  std::list<std::shared_ptr<Waiter>> queue;  // priority order, FIFO within a priority
  int upstream_open = 0;  // leases whose stream the vendor accepted
  ReleaseDelayEstimator releases;
  long long admitted_total = 0;
  long long refused_total = 0;
  long long upstream_429_total = 0;
  std::map<std::string, long long> refused_by_reason;
  util::Histogram queue_wait{util::kQueueWaitBuckets};
  util::Histogram upstream_handshake{util::kHandshakeBuckets};

  void refused(Refusal r) { refused(refusal_name(r)); }
  void refused(std::string_view reason) {
    ++refused_total;
    ++refused_by_reason[std::string(reason)];
  }

  // Cluster mode: the fleet learns the release delay and cools every
  // instance's releases (cluster/fleet_delay.hpp); this is its delay and
  // bounds as Redis last gave them. The pool's own estimator then learns
  // nothing, and its releases (still noted, for the count shown) do not hold
  // up admission here: the fleet's lease already counted them.
  std::optional<cluster::FleetDelay> fleet;

  // The release delay in force: configured, or learned (by the fleet in
  // cluster mode).
  SteadyClock::duration delay(SteadyClock::time_point now) const {
    if (config.release_delay) return std::chrono::duration_cast<SteadyClock::duration>(*config.release_delay);
    if (fleet) return std::chrono::duration_cast<SteadyClock::duration>(fleet->delay);
    return releases.estimate(now);
  }
  // This instance's released slots still cooling.
  int cooling(SteadyClock::time_point now) const { return releases.cooling(now, delay(now)); }
  // Those that hold up admission here: none in cluster mode.
  int admission_cooling(SteadyClock::time_point now) const { return fleet ? 0 : cooling(now); }
  std::optional<SteadyClock::time_point> next_cooling_end(SteadyClock::time_point now) const {
    if (fleet) return std::nullopt;
    return releases.next_cooling_end(now, delay(now));
  }
  std::optional<SteadyClock::duration> lower_bound(SteadyClock::time_point now) const {
    if (fleet) return fleet->lower ? std::optional<SteadyClock::duration>(*fleet->lower) : std::nullopt;
    return releases.lower(now);
  }
  std::optional<SteadyClock::duration> upper_bound(SteadyClock::time_point now) const {
    if (fleet) return fleet->upper ? std::optional<SteadyClock::duration>(*fleet->upper) : std::nullopt;
    return releases.upper(now);
  }
  void set_capacity() { releases.set_capacity(static_cast<std::size_t>(config.limit) * 2 + 16); }
};

struct Waiter {
  Waiter(asio::any_io_executor ex, std::string t, int prio) : timer(ex), tenant(std::move(t)), priority(prio) {}
  asio::steady_timer timer;  // touched only on its executor
  std::string tenant;
  int priority;
  SteadyClock::time_point arrived = SteadyClock::now();
  SteadyClock::time_point deadline;
  std::shared_ptr<Pool> pool;
  // Guarded by ControllerState::mutex:
  SteadyClock::time_point granted_at{};
  bool done = false;  // its result was taken, or its Ticket is gone
  bool granted = false;
  bool refused = false;  // shutdown
  bool abandoned = false;
  bool quota_blocked = false;
};

struct TenantPolicy {
  int priority = 0;
  std::map<std::string, config::TenantQuota> quotas;
};

struct ControllerState : std::enable_shared_from_this<ControllerState> {
  std::mutex mutex;
  std::map<std::string, std::shared_ptr<Pool>> pools;  // guarded by mutex
  std::map<std::string, TenantPolicy> tenants;         // guarded by mutex
  config::Retry429Config retry;                        // guarded by mutex
  bool closed = false;                                 // guarded by mutex
  bool shared_limit = false;                           // guarded by mutex; cluster mode
  int leases = 0;  // held in all pools, including removed ones; guarded by mutex
  int legs = 0;    // upstream legs connecting or open; guarded by mutex
  long long no_pool_refused = 0;  // guarded by mutex
  std::map<std::string, long long, std::less<>> unpooled_refused;  // by reason, guarded by mutex
  std::minstd_rand rng{std::random_device{}()};  // retry jitter; guarded by mutex
  // The cooldown timer: used only on `timer_strand`; `armed_for` (guarded by
  // mutex) is when it should fire, unset when it need not.
  std::optional<asio::any_io_executor> timer_strand;
  std::unique_ptr<asio::steady_timer> timer;
  std::optional<SteadyClock::time_point> armed_for;

  const config::TenantQuota* quota(const std::string& tenant, const std::string& pool) const {
    auto t = tenants.find(tenant);
    if (t == tenants.end()) return nullptr;
    auto q = t->second.quotas.find(pool);
    return q == t->second.quotas.end() ? nullptr : &q->second;
  }

  // Capacity other tenants reserved and are not using.
  int reserved_by_others(const Pool& p, const std::string& tenant) const {
    int sum = 0;
    for (const auto& [name, policy] : tenants) {
      if (name == tenant) continue;
      auto q = policy.quotas.find(p.config.name);
      if (q == policy.quotas.end()) continue;
      auto used = p.tenant_in_use.count(name) ? p.tenant_in_use.at(name) : 0;
      sum += std::max(0, q->second.reserved - used);
    }
    return sum;
  }

  enum class Check { ok, pool_full, quota };
  // `cooling`: the pool's released slots still cooling.
  Check can_admit(const Pool& p, const std::string& tenant, int cooling) const {
    auto used = p.tenant_in_use.count(tenant) ? p.tenant_in_use.at(tenant) : 0;
    const auto* q = quota(tenant, p.config.name);
    if (q && q->max > 0 && used >= q->max) return Check::quota;
    // Room others reserved and do not use is not ours to take, nor is a
    // slot the vendor may still count.
    if (p.in_use + cooling + 1 + reserved_by_others(p, tenant) <= p.effective_limit) return Check::ok;
    return Check::pool_full;
  }

  void take(Pool& p, const std::string& tenant) {
    ++p.in_use;
    ++leases;
    ++p.tenant_in_use[tenant];
    ++p.admitted_total;
  }

  void give_back(Pool& p, const std::string& tenant) {
    --p.in_use;
    --leases;
    auto it = p.tenant_in_use.find(tenant);
    if (it != p.tenant_in_use.end() && --it->second == 0) p.tenant_in_use.erase(it);
  }

  // Admits waiters that now fit, in queue order; a waiter blocked by its
  // tenant's quota does not hold up the ones behind it. Returns those to wake.
  std::vector<std::shared_ptr<Waiter>> grant(Pool& p) {
    std::vector<std::shared_ptr<Waiter>> wake;
    if (p.queue.empty()) return wake;
    auto now = SteadyClock::now();
    const int cooling = p.admission_cooling(now);
    for (auto it = p.queue.begin(); it != p.queue.end();) {
      auto& w = *it;
      auto check = can_admit(p, w->tenant, cooling);
      if (check == Check::ok) {
        take(p, w->tenant);
        p.queue_wait.observe(std::chrono::duration<double>(now - w->arrived).count());
        w->granted = true;
        w->granted_at = now;
        wake.push_back(w);
        it = p.queue.erase(it);
        continue;
      }
      // Not this one; one behind may still fit (another tenant's
      // reservation or quota can block only some).
      w->quota_blocked = check == Check::quota;
      ++it;
    }
    return wake;
  }

  // When the next cooldown of a pool with waiters ends.
  std::optional<SteadyClock::time_point> next_wake(SteadyClock::time_point now) const {
    std::optional<SteadyClock::time_point> out;
    for (const auto& [name, p] : pools) {
      if (p->queue.empty()) continue;
      auto e = p->next_cooling_end(now);
      if (e && (!out || *e < *out)) out = e;
    }
    return out;
  }
};

namespace {

void wake_all(const std::vector<std::shared_ptr<Waiter>>& waiters) {
  for (const auto& w : waiters) asio::post(w->timer.get_executor(), [w] { w->timer.cancel(); });
}

void schedule_wake(const std::shared_ptr<ControllerState>& s);

// A cooldown ended: admit the waiters that now fit, then wait for the next.
void on_cooldown_end(const std::shared_ptr<ControllerState>& s) {
  std::vector<std::shared_ptr<Waiter>> wake;
  {
    std::lock_guard lock(s->mutex);
    s->armed_for.reset();
    for (auto& [name, p] : s->pools) {
      auto w = s->grant(*p);
      wake.insert(wake.end(), w.begin(), w.end());
    }
  }
  wake_all(wake);
  schedule_wake(s);
}

// On the timer's strand: arms the timer for `armed_for`.
void arm(const std::shared_ptr<ControllerState>& s) {
  std::optional<SteadyClock::time_point> at;
  {
    std::lock_guard lock(s->mutex);
    at = s->armed_for;
  }
  if (!at) return;
  s->timer->expires_at(*at);
  s->timer->async_wait([weak = std::weak_ptr<ControllerState>(s)](boost::system::error_code ec) {
    if (ec) return;  // re-armed or destroyed
    if (auto st = weak.lock()) on_cooldown_end(st);
  });
}

// Makes sure the timer fires when the next cooldown of a pool with waiters
// ends. Call without the mutex held.
void schedule_wake(const std::shared_ptr<ControllerState>& s) {
  if (!s->timer) return;
  {
    std::lock_guard lock(s->mutex);
    auto next = s->next_wake(SteadyClock::now());
    if (!next || (s->armed_for && *s->armed_for <= *next)) return;
    s->armed_for = next;
  }
  asio::post(*s->timer_strand, [weak = std::weak_ptr<ControllerState>(s)] {
    if (auto st = weak.lock()) arm(st);
  });
}

std::shared_ptr<Pool> make_pool(const config::PoolConfig& c) {
  auto p = std::make_shared<Pool>();
  p->config = c;
  p->effective_limit = c.limit;
  p->set_capacity();
  return p;
}

double seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

AdmitResult describe(const ControllerState& s, const Pool& p, const std::string& tenant, Refusal r) {
  AdmitResult out;
  auto now = SteadyClock::now();
  out.refusal = r;
  out.pool = p.config.name;
  out.limit = p.config.limit;
  out.effective_limit = p.effective_limit;
  out.in_use = p.in_use;
  out.queued = static_cast<int>(p.queue.size());
  out.cooling = p.cooling(now);
  out.release_delay_seconds = seconds(p.delay(now));
  out.tenant_in_use = p.tenant_in_use.count(tenant) ? p.tenant_in_use.at(tenant) : 0;
  if (const auto* q = s.quota(tenant, p.config.name)) out.tenant_max = q->max;
  return out;
}

}  // namespace

std::string_view refusal_name(Refusal r) {
  switch (r) {
    case Refusal::none: return "none";
    case Refusal::no_pool: return "no_pool";
    case Refusal::queue_full: return "queue_full";
    case Refusal::queue_timeout: return "queue_timeout";
    case Refusal::tenant_quota: return "tenant_quota";
    case Refusal::shutting_down: return "shutting_down";
    case Refusal::abandoned: return "abandoned";
    case Refusal::upstream_429: return "upstream_429";
    case Refusal::cluster_unavailable: return "cluster_unavailable";
  }
  return "unknown";
}

Lease& Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    release();
    state_ = std::move(o.state_);
    pool_ = std::move(o.pool_);
    tenant_ = std::move(o.tenant_);
    granted_at_ = o.granted_at_;
    upstream_open_ = std::exchange(o.upstream_open_, false);
    fleet_ = std::move(o.fleet_);
  }
  return *this;
}

void Lease::release() {
  fleet_.release();
  if (!pool_) return;
  std::vector<std::shared_ptr<Waiter>> wake;
  {
    std::lock_guard lock(state_->mutex);
    state_->give_back(*pool_, tenant_);
    if (upstream_open_) {
      // The vendor counted this stream: its slot cools before it admits another.
      --pool_->upstream_open;
      pool_->releases.note_release(SteadyClock::now());
    }
    wake = state_->grant(*pool_);
    if (upstream_open_ && !state_->timer) {
      // No controller timer: the waiters re-arm for the new cooldown's end.
      for (const auto& w : pool_->queue) wake.push_back(w);
    }
  }
  wake_all(wake);
  schedule_wake(state_);
  upstream_open_ = false;
  pool_.reset();
  state_.reset();
}

const std::string& Lease::pool_name() const {
  static const std::string none;
  return pool_ ? pool_->config.name : none;
}

Ticket::Ticket(Ticket&& o) noexcept
    : state_(std::move(o.state_)),
      waiter_(std::move(o.waiter_)),
      immediate_(std::move(o.immediate_)),
      decided_(o.decided_) {}

Ticket& Ticket::operator=(Ticket&& o) noexcept {
  if (this != &o) {
    Ticket gone(std::move(*this));  // leaves its queue as it goes
    state_ = std::move(o.state_);
    waiter_ = std::move(o.waiter_);
    immediate_ = std::move(o.immediate_);
    decided_ = o.decided_;
  }
  return *this;
}

Ticket::~Ticket() {
  if (!waiter_ || !state_) return;
  Lease orphan;  // a lease granted to this ticket and never taken goes back (outside the lock)
  {
    std::lock_guard lock(state_->mutex);
    if (!waiter_->done) {
      waiter_->done = true;
      waiter_->abandoned = true;
      if (waiter_->granted)
        orphan = Lease(state_, waiter_->pool, waiter_->tenant, waiter_->granted_at);
      else
        waiter_->pool->queue.remove(waiter_);
    }
  }
  waiter_->timer.cancel();  // on the owner's executor
}

bool Ticket::decided() const { return decided_; }

AdmitResult Ticket::take_result() { return std::move(immediate_); }

void Ticket::abandon() {
  if (!waiter_) return;
  {
    std::lock_guard lock(state_->mutex);
    waiter_->abandoned = true;
  }
  waiter_->timer.cancel();
}

asio::awaitable<AdmitResult> Ticket::wait() {
  auto w = waiter_;
  auto state = state_;
  for (;;) {
    auto until = w->deadline;
    if (!state->timer) {
      // No controller timer: wake when the pool's next cooldown ends.
      std::lock_guard lock(state->mutex);
      if (auto e = w->pool->next_cooling_end(SteadyClock::now()); e && *e < until) until = *e;
    }
    w->timer.expires_at(until);
    co_await w->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    std::vector<std::shared_ptr<Waiter>> wake;
    AdmitResult result;
    {
      std::lock_guard lock(state->mutex);
      auto& p = *w->pool;
      if (!w->granted && !w->refused && !w->abandoned) wake = state->grant(p);  // a cooldown may have ended
      std::erase(wake, w);
      bool timed_out = SteadyClock::now() >= w->deadline;
      if (w->granted) {
        w->done = true;
        result = describe(*state, p, w->tenant, Refusal::none);
        result.lease = Lease(state, w->pool, w->tenant, w->granted_at);
      } else if (w->refused || w->abandoned || timed_out) {
        w->done = true;
        p.queue.remove(w);
        Refusal r = w->refused     ? Refusal::shutting_down
                    : w->abandoned ? Refusal::abandoned
                    : w->quota_blocked ? Refusal::tenant_quota
                                       : Refusal::queue_timeout;
        p.refused(r);
        result = describe(*state, p, w->tenant, r);
        result.blocked_by_quota = w->quota_blocked;
      } else {
        wake_all(wake);
        continue;  // woken early for nothing: wait on
      }
    }
    wake_all(wake);
    result.waited_seconds = std::chrono::duration<double>(SteadyClock::now() - w->arrived).count();
    if (result.lease && w->abandoned) {
      // Granted and abandoned at once: the lease goes straight back.
      result.lease.release();
      result.refusal = Refusal::abandoned;
    }
    co_return result;
  }
}

Controller::Controller(const std::vector<config::PoolConfig>& pools, const std::vector<config::Tenant>& tenants,
                       config::Retry429Config retry, asio::any_io_executor timers)
    : state_(std::make_shared<ControllerState>()) {
  if (timers) {
    state_->timer_strand = asio::make_strand(timers);
    state_->timer = std::make_unique<asio::steady_timer>(*state_->timer_strand);
  }
  reconfigure(pools, tenants, retry);
}

// The timer's handlers hold the state weakly: the timer goes with the state,
// which leases and tickets may keep a while longer.
Controller::~Controller() = default;

Ticket Controller::enqueue(const std::string& pool_name, const std::string& tenant, asio::any_io_executor executor) {
  Ticket t;
  t.state_ = state_;
  enqueue_locked(t, pool_name, tenant, std::move(executor));
  if (t.waiter_) schedule_wake(state_);  // it may wait for a cooldown to end
  return t;
}

void Controller::enqueue_locked(Ticket& t, const std::string& pool_name, const std::string& tenant,
                                asio::any_io_executor executor) {
  std::lock_guard lock(state_->mutex);
  auto it = state_->pools.find(pool_name);
  if (it == state_->pools.end()) {
    ++state_->no_pool_refused;
    t.decided_ = true;
    t.immediate_.refusal = Refusal::no_pool;
    t.immediate_.pool = pool_name;
    return;
  }
  auto& p = *it->second;
  if (state_->closed) {
    p.refused(Refusal::shutting_down);
    t.decided_ = true;
    t.immediate_ = describe(*state_, p, tenant, Refusal::shutting_down);
    return;
  }
  int priority = state_->tenants.count(tenant) ? state_->tenants.at(tenant).priority : 0;
  // Admit at once only when nobody of equal or higher priority is waiting
  // for room (FIFO within a priority).
  bool others_first = std::any_of(p.queue.begin(), p.queue.end(), [&](const std::shared_ptr<Waiter>& w) {
    return w->priority >= priority && !w->quota_blocked;
  });
  auto now = SteadyClock::now();
  auto check = state_->can_admit(p, tenant, p.admission_cooling(now));
  if (check == ControllerState::Check::ok && !others_first) {
    state_->take(p, tenant);
    p.queue_wait.observe(0);
    t.decided_ = true;
    t.immediate_ = describe(*state_, p, tenant, Refusal::none);
    t.immediate_.lease = Lease(state_, it->second, tenant, now);
    return;
  }
  if (static_cast<int>(p.queue.size()) >= p.config.max_queue || p.config.queue_timeout <= config::Seconds(0)) {
    const auto r = check == ControllerState::Check::quota ? Refusal::tenant_quota : Refusal::queue_full;
    p.refused(r);
    t.decided_ = true;
    t.immediate_ = describe(*state_, p, tenant, r);
    t.immediate_.blocked_by_quota = check == ControllerState::Check::quota;
    return;
  }
  auto w = std::make_shared<Waiter>(executor, tenant, priority);
  w->deadline = w->arrived + std::chrono::duration_cast<SteadyClock::duration>(p.config.queue_timeout);
  w->pool = it->second;
  w->quota_blocked = check == ControllerState::Check::quota;
  auto pos = std::find_if(p.queue.begin(), p.queue.end(),
                          [&](const std::shared_ptr<Waiter>& o) { return o->priority < priority; });
  p.queue.insert(pos, w);
  t.waiter_ = w;
  return;
}

namespace {
// A uniformly random factor in [lo, hi).
double jitter(std::minstd_rand& rng, double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }
}  // namespace

FleetTerms Controller::fleet_terms(const std::string& pool, const std::string& tenant) const {
  FleetTerms out;
  std::lock_guard lock(state_->mutex);
  auto it = state_->pools.find(pool);
  if (it == state_->pools.end()) return out;
  const auto& p = *it->second;
  out.found = true;
  out.effective_limit = p.effective_limit;
  out.limit = p.config.limit;
  if (p.config.release_delay)
    out.release_delay = std::chrono::duration_cast<std::chrono::milliseconds>(*p.config.release_delay);
  out.queue_timeout = p.config.queue_timeout;
  out.max_queue = p.config.max_queue;
  out.closed = state_->closed;
  if (auto t = state_->tenants.find(tenant); t != state_->tenants.end()) out.priority = t->second.priority;
  if (const auto* q = state_->quota(tenant, pool)) out.tenant_max = q->max;
  for (const auto& [name, policy] : state_->tenants) {
    auto q = policy.quotas.find(pool);
    if (q != policy.quotas.end() && q->second.reserved > 0) out.reservations.emplace_back(name, q->second.reserved);
  }
  return out;
}

Upstream429Decision Controller::on_upstream_429(const Lease& lease, int attempt, const cluster::RefusalVerdict* fleet) {
  Upstream429Decision d;
  if (!lease) return d;
  {
    std::lock_guard lock(state_->mutex);
    auto& p = *lease.pool_;
    const auto now = SteadyClock::now();
    ++p.upstream_429_total;
    // When the k-th most recent release would stop being counted (the
    // vendor frees the slot then), if known.
    std::optional<SteadyClock::duration> release_age;
    if (fleet) {
      // Cluster mode: the fleet judged it, from every instance's releases.
      p.fleet = fleet->delay;
      d.explained = fleet->explained;
      if (fleet->release_age) release_age = *fleet->release_age;
    } else {
      // Were the vendor's limit the effective one and nobody else on the key,
      // it counts at least k of the streams the pool released (the leases held
      // without an open stream, this one excluded, may be counted too).
      const int k = p.effective_limit + 1 - p.in_use;
      std::optional<SteadyClock::duration> bound;
      if (k >= 1 && !p.fleet) bound = p.releases.on_refusal(now, k);
      d.explained = bound.has_value();
      if (auto rk = p.releases.release(k); d.explained && rk) release_age = now - *rk;
      if (!d.explained && !state_->shared_limit) {
        // Nothing the gateway released explains it: the vendor holds fewer of
        // ours than the limit allows. Admit no more than it holds open.
        p.effective_limit = std::clamp(p.upstream_open, 1, p.effective_limit);
      }
    }
    const auto& retry = state_->retry;
    const auto initial = std::chrono::duration_cast<SteadyClock::duration>(retry.initial_backoff);
    const auto max_backoff = std::chrono::duration_cast<SteadyClock::duration>(retry.max_backoff);
    if (d.explained) {
      // The vendor frees the slot once the k-th most recent release is as old
      // as the delay: wait for that when the delay is bounded above, else
      // probe again soon (each refusal raises the lower bound).
      std::optional<SteadyClock::duration> upper = p.upper_bound(now);
      if (p.config.release_delay) upper = std::chrono::duration_cast<SteadyClock::duration>(*p.config.release_delay);
      if (upper && release_age && *upper > *release_age)
        d.wait = (*upper - *release_age) +
                 std::chrono::duration_cast<SteadyClock::duration>(initial * jitter(state_->rng, 0.0, 1.0));
      else
        d.wait = std::chrono::duration_cast<SteadyClock::duration>(initial * jitter(state_->rng, 0.5, 1.5));
      d.wait = std::min(d.wait, max_backoff);
    } else {
      auto backoff = std::min(seconds(max_backoff), seconds(initial) * std::pow(2.0, attempt));
      d.wait = std::chrono::duration_cast<SteadyClock::duration>(
          std::chrono::duration<double>(backoff * jitter(state_->rng, 0.5, 1.5)));
    }
    const auto budget_end = lease.granted_at_ + std::chrono::duration_cast<SteadyClock::duration>(retry.deadline);
    d.retry = now + d.wait < budget_end;
    d.gateway_in_use = p.in_use;
    d.upstream_open = p.upstream_open;
    d.cooling = fleet ? fleet->delay.cooling : p.cooling(now);
    d.limit = p.config.limit;
    d.effective_limit = fleet ? std::min(p.effective_limit, fleet->effective_limit) : p.effective_limit;
    d.release_delay_seconds = seconds(p.delay(now));
    if (!d.retry) {
      p.refused(Refusal::upstream_429);
      d.refusal = describe(*state_, p, lease.tenant_, Refusal::upstream_429);
    }
  }
  schedule_wake(state_);
  return d;
}

void Controller::on_upstream_accepted(Lease& lease) {
  if (!lease || lease.upstream_open_) return;
  std::vector<std::shared_ptr<Waiter>> wake;
  {
    std::lock_guard lock(state_->mutex);
    auto& p = *lease.pool_;
    // The vendor counted at most limit-1 others: our upstream_open streams
    // and at most limit-1-upstream_open released ones.
    const int k = p.config.limit - p.upstream_open;
    const auto now = SteadyClock::now();
    p.upstream_handshake.observe(std::chrono::duration<double>(now - lease.granted_at_).count());
    if (k >= 1 && !p.fleet) p.releases.on_acceptance(now, k);  // in cluster mode the fleet learns
    ++p.upstream_open;
    lease.upstream_open_ = true;
    // The vendor accepts again: a lowered limit is restored at once (a
    // refusal that nothing released explains lowers it again).
    p.effective_limit = p.config.limit;
    wake = state_->grant(p);  // the limit rose, or the delay fell
  }
  wake_all(wake);
  schedule_wake(state_);
}

void Controller::reconfigure(const std::vector<config::PoolConfig>& pools, const std::vector<config::Tenant>& tenants,
                             config::Retry429Config retry) {
  std::vector<std::shared_ptr<Waiter>> wake;
  {
    std::lock_guard lock(state_->mutex);
    state_->retry = retry;
    state_->tenants.clear();
    for (const auto& t : tenants) state_->tenants[t.name] = TenantPolicy{t.priority, t.quotas};
    std::map<std::string, std::shared_ptr<Pool>> next;
    for (const auto& c : pools) {
      auto old = state_->pools.find(c.name);
      if (old != state_->pools.end()) {
        auto p = old->second;
        bool limit_changed = p->config.limit != c.limit;
        p->config = c;
        p->set_capacity();
        if (limit_changed || p->effective_limit > c.limit) p->effective_limit = c.limit;
        next[c.name] = p;
      } else {
        next[c.name] = make_pool(c);
        if (state_->shared_limit) next[c.name]->fleet.emplace();
      }
    }
    // Waiters of removed pools are refused; their leases return to the old pool.
    for (auto& [name, p] : state_->pools) {
      if (next.count(name)) continue;
      for (auto& w : p->queue) {
        w->refused = true;
        wake.push_back(w);
      }
      p->queue.clear();
    }
    state_->pools = std::move(next);
    for (auto& [name, p] : state_->pools) {
      auto w = state_->grant(*p);
      wake.insert(wake.end(), w.begin(), w.end());
    }
  }
  wake_all(wake);
  schedule_wake(state_);
}

bool Controller::set_limit(const std::string& pool, int limit) {
  std::vector<std::shared_ptr<Waiter>> wake;
  {
    std::lock_guard lock(state_->mutex);
    auto it = state_->pools.find(pool);
    if (it == state_->pools.end()) return false;
    auto& p = *it->second;
    p.config.limit = limit;
    p.effective_limit = limit;
    p.set_capacity();
    wake = state_->grant(p);
  }
  wake_all(wake);
  schedule_wake(state_);
  return true;
}

void Controller::close() {
  std::vector<std::shared_ptr<Waiter>> wake;
  {
    std::lock_guard lock(state_->mutex);
    state_->closed = true;
    for (auto& [name, p] : state_->pools)
      for (auto& w : p->queue) {
        w->refused = true;
        wake.push_back(w);
      }
  }
  wake_all(wake);
}

namespace {
PoolStatus to_status(const Pool& p) {
  PoolStatus s;
  auto now = SteadyClock::now();
  s.upstream_open = p.upstream_open;
  s.cooling = p.cooling(now);
  s.release_delay_seconds = seconds(p.delay(now));
  s.release_delay_configured = p.config.release_delay.has_value();
  s.resume_enabled = p.config.resume.enabled;
  if (auto lo = p.lower_bound(now)) s.release_delay_lower_seconds = seconds(*lo);
  if (auto hi = p.upper_bound(now)) s.release_delay_upper_seconds = seconds(*hi);
  s.name = p.config.name;
  s.limit = p.config.limit;
  s.effective_limit = p.effective_limit;
  s.in_use = p.in_use;
  s.queued = static_cast<int>(p.queue.size());
  s.tenants_in_use = p.tenant_in_use;
  s.config = p.config;
  s.admitted_total = p.admitted_total;
  s.refused_total = p.refused_total;
  s.upstream_429_total = p.upstream_429_total;
  s.refused_by_reason = p.refused_by_reason;
  s.queue_wait = p.queue_wait.snapshot();
  s.upstream_handshake = p.upstream_handshake.snapshot();
  return s;
}
}  // namespace

std::vector<PoolStatus> Controller::status() const {
  std::lock_guard lock(state_->mutex);
  std::vector<PoolStatus> out;
  for (const auto& [name, p] : state_->pools) out.push_back(to_status(*p));
  return out;
}

std::optional<PoolStatus> Controller::status(const std::string& pool) const {
  std::lock_guard lock(state_->mutex);
  auto it = state_->pools.find(pool);
  if (it == state_->pools.end()) return std::nullopt;
  return to_status(*it->second);
}

LegToken Lease::open_leg() {
  std::lock_guard lock(state_->mutex);
  ++state_->legs;
  return LegToken(state_);
}

LegToken& LegToken::operator=(LegToken&& o) noexcept {
  if (this != &o) {
    reset();
    state_ = std::move(o.state_);
  }
  return *this;
}

void LegToken::reset() {
  if (!state_) return;
  {
    std::lock_guard lock(state_->mutex);
    --state_->legs;
  }
  state_.reset();
}

std::pair<int, int> Controller::leases_and_legs() const {
  std::lock_guard lock(state_->mutex);
  return {state_->leases, state_->legs};
}

int Controller::leases_in_use() const {
  std::lock_guard lock(state_->mutex);
  return state_->leases;
}

long long Controller::no_pool_refused() const {
  std::lock_guard lock(state_->mutex);
  return state_->no_pool_refused;
}

void Controller::count_refusal(const std::string& pool, std::string_view reason) {
  std::lock_guard lock(state_->mutex);
  auto it = pool.empty() ? state_->pools.end() : state_->pools.find(pool);
  if (it != state_->pools.end()) {
    it->second->refused(reason);
    return;
  }
  auto r = state_->unpooled_refused.find(reason);
  if (r == state_->unpooled_refused.end()) r = state_->unpooled_refused.emplace(std::string(reason), 0).first;
  ++r->second;
}

void Controller::share_with_fleet(bool shared) {
  std::lock_guard lock(state_->mutex);
  state_->shared_limit = shared;
  for (auto& [name, p] : state_->pools) {
    if (shared && !p->fleet) p->fleet.emplace();
    if (!shared) p->fleet.reset();
  }
}

void Controller::note_fleet_delay(const std::string& pool, const cluster::FleetDelay& delay) {
  std::lock_guard lock(state_->mutex);
  auto it = state_->pools.find(pool);
  if (it == state_->pools.end() || !it->second->fleet) return;
  it->second->fleet = delay;
}

AdmitResult Controller::refuse(const std::string& pool, const std::string& tenant, Refusal r) {
  std::lock_guard lock(state_->mutex);
  auto it = state_->pools.find(pool);
  if (it == state_->pools.end()) {
    AdmitResult out;
    out.refusal = r;
    out.pool = pool;
    return out;
  }
  it->second->refused(r);
  return describe(*state_, *it->second, tenant, r);
}

std::map<std::string, long long> Controller::unpooled_refusals() const {
  std::lock_guard lock(state_->mutex);
  std::map<std::string, long long> out(state_->unpooled_refused.begin(), state_->unpooled_refused.end());
  out["no_pool"] += state_->no_pool_refused;
  return out;
}

std::optional<config::PoolConfig> Controller::pool_config(const std::string& pool) const {
  std::lock_guard lock(state_->mutex);
  auto it = state_->pools.find(pool);
  if (it == state_->pools.end()) return std::nullopt;
  return it->second->config;
}

}  // namespace sluice::admission
