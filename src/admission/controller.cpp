#include "admission/controller.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <list>
#include <mutex>

namespace sluice::admission {

namespace asio = boost::asio;

// One pool's live state. Guarded by ControllerState::mutex.
struct Pool {
  config::PoolConfig config;
  int effective_limit = 0;
  int in_use = 0;
  std::map<std::string, int> tenant_in_use;
  std::list<std::shared_ptr<Waiter>> queue;  // priority order, FIFO within a priority
  SteadyClock::time_point last_limit_change{};
  long long admitted_total = 0;
  long long refused_total = 0;
  long long upstream_429_total = 0;
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

struct ControllerState {
  std::mutex mutex;
  std::map<std::string, std::shared_ptr<Pool>> pools;  // guarded by mutex
  std::map<std::string, TenantPolicy> tenants;         // guarded by mutex
  config::Retry429Config retry;                        // guarded by mutex
  bool closed = false;                                 // guarded by mutex
  int leases = 0;  // held in all pools, including removed ones; guarded by mutex
  int legs = 0;    // upstream legs connecting or open; guarded by mutex

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
  Check can_admit(const Pool& p, const std::string& tenant) const {
    auto used = p.tenant_in_use.count(tenant) ? p.tenant_in_use.at(tenant) : 0;
    const auto* q = quota(tenant, p.config.name);
    if (q && q->max > 0 && used >= q->max) return Check::quota;
    // Room others reserved and do not use is not ours to take.
    if (p.in_use + 1 + reserved_by_others(p, tenant) <= p.effective_limit) return Check::ok;
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
    for (auto it = p.queue.begin(); it != p.queue.end();) {
      auto& w = *it;
      auto check = can_admit(p, w->tenant);
      if (check == Check::ok) {
        take(p, w->tenant);
        w->granted = true;
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
};

namespace {

void wake_all(const std::vector<std::shared_ptr<Waiter>>& waiters) {
  for (const auto& w : waiters) asio::post(w->timer.get_executor(), [w] { w->timer.cancel(); });
}

std::shared_ptr<Pool> make_pool(const config::PoolConfig& c) {
  auto p = std::make_shared<Pool>();
  p->config = c;
  p->effective_limit = c.limit;
  return p;
}

AdmitResult describe(const ControllerState& s, const Pool& p, const std::string& tenant, Refusal r) {
  AdmitResult out;
  out.refusal = r;
  out.pool = p.config.name;
  out.limit = p.config.limit;
  out.effective_limit = p.effective_limit;
  out.in_use = p.in_use;
  out.queued = static_cast<int>(p.queue.size());
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
  }
  return "unknown";
}

Lease& Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    release();
    state_ = std::move(o.state_);
    pool_ = std::move(o.pool_);
    tenant_ = std::move(o.tenant_);
  }
  return *this;
}

void Lease::release() {
  if (!pool_) return;
  std::vector<std::shared_ptr<Waiter>> wake;
  {
    std::lock_guard lock(state_->mutex);
    state_->give_back(*pool_, tenant_);
    wake = state_->grant(*pool_);
  }
  wake_all(wake);
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
        orphan = Lease(state_, waiter_->pool, waiter_->tenant);
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
    w->timer.expires_at(w->deadline);
    co_await w->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    std::vector<std::shared_ptr<Waiter>> wake;
    AdmitResult result;
    {
      std::lock_guard lock(state->mutex);
      auto& p = *w->pool;
      bool timed_out = SteadyClock::now() >= w->deadline;
      if (w->granted) {
        w->done = true;
        result = describe(*state, p, w->tenant, Refusal::none);
        result.lease = Lease(state, w->pool, w->tenant);
      } else if (w->refused || w->abandoned || timed_out) {
        w->done = true;
        p.queue.remove(w);
        Refusal r = w->refused     ? Refusal::shutting_down
                    : w->abandoned ? Refusal::abandoned
                    : w->quota_blocked ? Refusal::tenant_quota
                                       : Refusal::queue_timeout;
        ++p.refused_total;
        result = describe(*state, p, w->tenant, r);
        result.blocked_by_quota = w->quota_blocked;
      } else {
        continue;  // woken early for nothing: wait on
      }
    }
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
                       config::Retry429Config retry)
    : state_(std::make_shared<ControllerState>()) {
  reconfigure(pools, tenants, retry);
}

Controller::~Controller() = default;

Ticket Controller::enqueue(const std::string& pool_name, const std::string& tenant, asio::any_io_executor executor) {
  Ticket t;
  t.state_ = state_;
  std::lock_guard lock(state_->mutex);
  auto it = state_->pools.find(pool_name);
  if (it == state_->pools.end()) {
    t.decided_ = true;
    t.immediate_.refusal = Refusal::no_pool;
    t.immediate_.pool = pool_name;
    return t;
  }
  auto& p = *it->second;
  if (state_->closed) {
    t.decided_ = true;
    t.immediate_ = describe(*state_, p, tenant, Refusal::shutting_down);
    return t;
  }
  int priority = state_->tenants.count(tenant) ? state_->tenants.at(tenant).priority : 0;
  // Admit at once only when nobody of equal or higher priority is waiting
  // for room (FIFO within a priority).
  bool others_first = std::any_of(p.queue.begin(), p.queue.end(), [&](const std::shared_ptr<Waiter>& w) {
    return w->priority >= priority && !w->quota_blocked;
  });
  auto check = state_->can_admit(p, tenant);
  if (check == ControllerState::Check::ok && !others_first) {
    state_->take(p, tenant);
    t.decided_ = true;
    t.immediate_ = describe(*state_, p, tenant, Refusal::none);
    t.immediate_.lease = Lease(state_, it->second, tenant);
    return t;
  }
  if (static_cast<int>(p.queue.size()) >= p.config.max_queue || p.config.queue_timeout <= config::Seconds(0)) {
    ++p.refused_total;
    t.decided_ = true;
    t.immediate_ = describe(*state_, p, tenant,
                            check == ControllerState::Check::quota ? Refusal::tenant_quota : Refusal::queue_full);
    t.immediate_.blocked_by_quota = check == ControllerState::Check::quota;
    return t;
  }
  auto w = std::make_shared<Waiter>(executor, tenant, priority);
  w->deadline = w->arrived + std::chrono::duration_cast<SteadyClock::duration>(p.config.queue_timeout);
  w->pool = it->second;
  w->quota_blocked = check == ControllerState::Check::quota;
  auto pos = std::find_if(p.queue.begin(), p.queue.end(),
                          [&](const std::shared_ptr<Waiter>& o) { return o->priority < priority; });
  p.queue.insert(pos, w);
  t.waiter_ = w;
  return t;
}

void Controller::on_upstream_429(const std::string& pool, int accepted) {
  std::lock_guard lock(state_->mutex);
  auto it = state_->pools.find(pool);
  if (it == state_->pools.end()) return;
  auto& p = *it->second;
  ++p.upstream_429_total;
  p.effective_limit = std::clamp(accepted, 1, p.effective_limit);
  p.last_limit_change = SteadyClock::now();
}

void Controller::recover(SteadyClock::time_point now) {
  std::vector<std::shared_ptr<Waiter>> wake;
  {
    std::lock_guard lock(state_->mutex);
    auto interval = std::chrono::duration_cast<SteadyClock::duration>(state_->retry.recovery_interval);
    for (auto& [name, p] : state_->pools) {
      if (p->effective_limit >= p->config.limit || now - p->last_limit_change < interval) continue;
      ++p->effective_limit;
      p->last_limit_change = now;
      auto w = state_->grant(*p);
      wake.insert(wake.end(), w.begin(), w.end());
    }
  }
  wake_all(wake);
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
        if (limit_changed || p->effective_limit > c.limit) p->effective_limit = c.limit;
        next[c.name] = p;
      } else {
        next[c.name] = make_pool(c);
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
    p.last_limit_change = SteadyClock::now();
    wake = state_->grant(p);
  }
  wake_all(wake);
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

std::optional<config::PoolConfig> Controller::pool_config(const std::string& pool) const {
  std::lock_guard lock(state_->mutex);
  auto it = state_->pools.find(pool);
  if (it == state_->pools.end()) return std::nullopt;
  return it->second->config;
}

}  // namespace sluice::admission
