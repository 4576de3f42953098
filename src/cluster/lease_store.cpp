#include "cluster/lease_store.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace sluice::cluster {

namespace {

// Every script reads the time from the Redis server, so the instances'
// clocks never decide an expiry.
#define SLUICE_LUA_NOW                              \
  "local t = redis.call('TIME')\n"                  \
  "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

// KEYS[1] pool set, KEYS[2] tenant set, KEYS[3] lease hash, KEYS[4] the
// wait list (id -> order), KEYS[5] the wait list's expiries, KEYS[6] the
// fleet's lowered effective limit (absent: none), KEYS[7..] the sets of other
// tenants with a reservation.
// ARGV[1] id, [2] ttl ms, [3] limit, [4] tenant max (0: none), [5] held
// aside, [6] force ("1"), [7] wait ("1": stay on the wait list when refused),
// [8] priority, [9] n field pairs, [10 .. 9+2n] the pairs, then one
// reservation per KEYS[6..].
// Returns {outcome, in use, tenant in use, soonest, limit}: outcome 1
// granted, 2 already held, 0 pool full (or others are ahead on the wait
// list), -1 tenant full; soonest, when 0: ms until the soonest lease or
// wait-list place expires (-1: none); limit: the one applied, ARGV[3] or the
// fleet's lowered effective limit when lower.
constexpr const char* kAcquire = SLUICE_LUA_NOW R"(
local id = ARGV[1]
for i = 1, #KEYS do
  if i < 3 or i > 6 then redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now) end
end
local limit = tonumber(ARGV[3])
local lowered = redis.call('GET', KEYS[6])
if lowered and tonumber(lowered) < limit then limit = tonumber(lowered) end
-- Waiters whose instance stopped renewing them leave the order.
local gone = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)
for _, w in ipairs(gone) do redis.call('ZREM', KEYS[4], w) end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
local tn = redis.call('ZCARD', KEYS[2])
if redis.call('ZSCORE', KEYS[1], id) then return {2, n, tn, -1, limit} end
local nf = tonumber(ARGV[9])
if ARGV[6] ~= '1' then
  local tmax = tonumber(ARGV[4])
  if tmax > 0 and tn + 1 > tmax then
    -- Blocked by its own quota: it holds up nobody behind it.
    redis.call('ZREM', KEYS[4], id)
    redis.call('ZREM', KEYS[5], id)
    return {-1, n, tn, -1, limit}
  end
  local reserved = 0
  for i = 7, #KEYS do
    local r = tonumber(ARGV[9 + 2 * nf + i - 6]) - redis.call('ZCARD', KEYS[i])
    if r > 0 then reserved = reserved + r end
  end
  local room = limit - n - tonumber(ARGV[5]) - reserved
  -- Its place: higher priority first, then the earlier arrival.
  local listed = redis.call('ZSCORE', KEYS[4], id)
  if not listed then redis.call('ZADD', KEYS[4], -tonumber(ARGV[8]) * 1e13 + now, id) end
  local ahead = redis.call('ZRANK', KEYS[4], id)
  if ahead >= room then
    if ARGV[7] == '1' then
      redis.call('ZADD', KEYS[5], now + tonumber(ARGV[2]), id)
    elseif not listed then
      redis.call('ZREM', KEYS[4], id)
    end
    -- When the soonest lease or place ahead lapses unless renewed: a crashed
    -- instance's capacity returns then, and nothing is published.
    local soonest = -1
    for _, k in ipairs({KEYS[1], KEYS[5]}) do
      local first = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
      if first[2] then
        local left = tonumber(first[2]) - now
        if soonest < 0 or left < soonest then soonest = left end
      end
    end
    return {0, n, tn, soonest, limit}
  end
  redis.call('ZREM', KEYS[4], id)
  redis.call('ZREM', KEYS[5], id)
end
local exp = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], exp, id)
redis.call('ZADD', KEYS[2], exp, id)
redis.call('DEL', KEYS[3])
if nf > 0 then redis.call('HSET', KEYS[3], unpack(ARGV, 10, 9 + 2 * nf)) end
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return {1, n + 1, tn + 1, -1, limit}
)";

// KEYS[1] pool set, KEYS[2] the fleet's lowered effective limit. ARGV[1]
// how long a lowering lasts unless an acceptance restores the limit first
// (ms). An upstream 429 that nothing released explains: the vendor holds
// fewer of the fleet's streams than the limit allows, so the fleet admits no
// more than it holds, the refused one aside (at least 1). Never raises it.
// Returns the lowered limit.
constexpr const char* kLower = SLUICE_LUA_NOW R"(
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1]) - 1
if n < 1 then n = 1 end
local cur = redis.call('GET', KEYS[2])
if not cur or tonumber(cur) > n then
  redis.call('SET', KEYS[2], n, 'PX', ARGV[1])
  return n
end
return tonumber(cur)
)";

// KEYS[1] the fleet's lowered effective limit. ARGV[1] the release channel,
// ARGV[2] the pool. The vendor accepted a stream: the limit is the pool's
// again, and waiters anywhere may have room (published). Returns 1 when it
// was lowered.
constexpr const char* kRestore = R"(
if redis.call('DEL', KEYS[1]) == 1 then
  redis.call('PUBLISH', ARGV[1], ARGV[2])
  return 1
end
return 0
)";

// KEYS[1] the wait list, KEYS[2] its expiries. ARGV[1] ttl ms, ARGV[2..]
// ids: still waiting. Returns the ids no longer listed.
constexpr const char* kRenewWaiting = SLUICE_LUA_NOW R"(
local missing = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), ARGV[i])
  else
    missing[#missing + 1] = ARGV[i]
  end
end
return missing
)";

// KEYS[1] the wait list, KEYS[2] its expiries; ARGV[1] the id, [2] the
// channel, [3] the pool. Leaving the list may let the next one in: published.
constexpr const char* kLeave = R"(
local n = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if n > 0 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return n
)";

// KEYS[1] pool set, then per lease i: KEYS[2i] its tenant set, KEYS[2i+1]
// its hash. ARGV[1] ttl ms, ARGV[1+i] lease i's id. Returns the ids no
// longer held.
constexpr const char* kRenew = SLUICE_LUA_NOW R"(
local exp = now + tonumber(ARGV[1])
local missing = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local k = 2 * (i - 1)
  local s = redis.call('ZSCORE', KEYS[1], id)
  if s and tonumber(s) > now then
    redis.call('ZADD', KEYS[1], exp, id)
    redis.call('ZADD', KEYS[k], exp, id)
    redis.call('PEXPIRE', KEYS[k + 1], ARGV[1])
  else
    missing[#missing + 1] = id
  end
end
return missing
)";

// KEYS[1] pool set, KEYS[2] tenant set, KEYS[3] hash. ARGV[1] id, [2] the
// channel, [3] the pool's name. Returns 1 when the lease was held.
constexpr const char* kRelease = R"(
local n = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return n
)";

// KEYS[1] pool set. The live leases.
constexpr const char* kCount = SLUICE_LUA_NOW R"(
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
)";

// KEYS[1] pool set; ARGV[1] the prefix of the lease hashes' keys. Each live
// lease: {id, HGETALL of its hash}, in order of expiry.
constexpr const char* kHolders = SLUICE_LUA_NOW R"(
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
local out = {}
for i, id in ipairs(ids) do
  out[i] = {id, redis.call('HGETALL', ARGV[1] .. id)}
end
return out
)";

#undef SLUICE_LUA_NOW

}  // namespace

LeaseStore::LeaseStore(RedisUrl url, Options options)
    : url_(std::move(url)),
      options_(std::move(options)),
      acquire_{kAcquire, {}},
      renew_{kRenew, {}},
      release_{kRelease, {}},
      count_{kCount, {}},
      holders_{kHolders, {}},
      renew_waiting_{kRenewWaiting, {}},
      leave_{kLeave, {}},
      lower_{kLower, {}},
      restore_{kRestore, {}} {
  if (options_.ttl.count() <= 0) throw RedisError("cluster: the lease expiry must be positive");
}

LeaseStore::~LeaseStore() = default;

std::string LeaseStore::released_channel() const { return options_.prefix + ":released"; }
std::string LeaseStore::end_channel(const std::string& instance) const {
  return fmt::format("{}:end:{}", options_.prefix, instance);
}
std::string LeaseStore::instances_key() const { return options_.prefix + ":instances"; }
std::string LeaseStore::sessions_key(const std::string& instance) const {
  return fmt::format("{}:sessions:{}", options_.prefix, instance);
}
std::string LeaseStore::pool_key(const std::string& pool) const {
  return fmt::format("{}:{{{}}}:leases", options_.prefix, pool);
}
std::string LeaseStore::tenant_key(const std::string& pool, const std::string& tenant) const {
  return fmt::format("{}:{{{}}}:tenant:{}", options_.prefix, pool, tenant);
}
std::string LeaseStore::waiting_key(const std::string& pool) const {
  return fmt::format("{}:{{{}}}:waiting", options_.prefix, pool);
}
std::string LeaseStore::waiting_expiry_key(const std::string& pool) const {
  return fmt::format("{}:{{{}}}:waiting:expiry", options_.prefix, pool);
}
std::string LeaseStore::effective_key(const std::string& pool) const {
  return fmt::format("{}:{{{}}}:effective", options_.prefix, pool);
}
std::string LeaseStore::lease_key(const std::string& pool, const std::string& id) const {
  return fmt::format("{}:{{{}}}:lease:{}", options_.prefix, pool, id);
}

RedisConnection& LeaseStore::connection() {
  if (!conn_ || conn_->broken()) {
    conn_.reset();
    conn_ = std::make_unique<RedisConnection>(url_, options_.connection);
  }
  return *conn_;
}

Reply LeaseStore::eval(Script& script, const std::vector<std::string>& keys, const std::vector<std::string>& args) {
  auto& c = connection();
  auto call = [&](const std::string& sha) {
    std::vector<std::string> cmd{"EVALSHA", sha, std::to_string(keys.size())};
    cmd.insert(cmd.end(), keys.begin(), keys.end());
    cmd.insert(cmd.end(), args.begin(), args.end());
    return c.command(cmd);
  };
  if (!script.sha.empty()) {
    auto r = call(script.sha);
    if (!r.is_error()) return r;
    if (!r.str.starts_with("NOSCRIPT")) throw RedisError(fmt::format("redis {}: script failed: {}", c.address(), r.str));
  }
  script.sha = c.checked({"SCRIPT", "LOAD", script.source}).str;
  auto r = call(script.sha);
  if (r.is_error()) throw RedisError(fmt::format("redis {}: script failed: {}", c.address(), r.str));
  return r;
}

AcquireResult LeaseStore::acquire(const AcquireRequest& q) {
  const auto& l = q.lease;
  std::vector<std::string> keys{pool_key(l.pool), tenant_key(l.pool, l.tenant), lease_key(l.pool, l.id),
                                waiting_key(l.pool), waiting_expiry_key(l.pool), effective_key(l.pool)};
  std::vector<std::string> fields{"instance",   l.instance,   "session",   l.session,
                                  "tenant",     l.tenant,     "pool",      l.pool,
                                  "request_id", l.request_id, "opened_ms", std::to_string(l.opened_ms)};
  std::vector<std::string> args{l.id,
                                std::to_string(options_.ttl.count()),
                                std::to_string(q.limit),
                                std::to_string(q.tenant_max),
                                std::to_string(q.held_aside),
                                q.force ? "1" : "0",
                                q.wait ? "1" : "0",
                                std::to_string(std::clamp(q.priority, -100, 100)),
                                std::to_string(fields.size() / 2)};
  args.insert(args.end(), fields.begin(), fields.end());
  for (const auto& [tenant, reserved] : q.reservations) {
    if (tenant == l.tenant) continue;
    keys.push_back(tenant_key(l.pool, tenant));
    args.push_back(std::to_string(reserved));
  }
  auto r = eval(acquire_, keys, args);
  if (r.type != Reply::Type::array || r.elements.size() < 3) throw RedisError("redis: unexpected reply to acquire");
  AcquireResult out;
  switch (r.elements[0].as_integer()) {
    case 1: out.outcome = AcquireResult::Outcome::granted; break;
    case 2: out.outcome = AcquireResult::Outcome::already_held; break;
    case -1: out.outcome = AcquireResult::Outcome::tenant_full; break;
    default: out.outcome = AcquireResult::Outcome::pool_full; break;
  }
  out.in_use = static_cast<int>(r.elements[1].as_integer());
  out.tenant_in_use = static_cast<int>(r.elements[2].as_integer());
  if (r.elements.size() > 3) {
    auto ms = r.elements[3].as_integer();
    if (ms >= 0) out.next_expiry = std::chrono::milliseconds(ms);
  }
  out.limit = r.elements.size() > 4 ? static_cast<int>(r.elements[4].as_integer()) : q.limit;
  return out;
}

int LeaseStore::lower_limit(const std::string& pool, std::chrono::milliseconds lasts) {
  return static_cast<int>(eval(lower_, {pool_key(pool), effective_key(pool)}, {std::to_string(lasts.count())}).as_integer());
}

bool LeaseStore::restore_limit(const std::string& pool) {
  return eval(restore_, {effective_key(pool)}, {released_channel(), pool}).as_integer() == 1;
}

std::optional<int> LeaseStore::lowered_limit(const std::string& pool) {
  auto r = connection().checked({"GET", effective_key(pool)});
  if (r.type != Reply::Type::string) return std::nullopt;
  return std::stoi(r.str);
}

std::vector<std::string> LeaseStore::renew(const std::string& pool,
                                           const std::vector<std::pair<std::string, std::string>>& leases) {
  if (leases.empty()) return {};
  std::vector<std::string> keys{pool_key(pool)};
  std::vector<std::string> args{std::to_string(options_.ttl.count())};
  for (const auto& [id, tenant] : leases) {
    keys.push_back(tenant_key(pool, tenant));
    keys.push_back(lease_key(pool, id));
    args.push_back(id);
  }
  auto r = eval(renew_, keys, args);
  std::vector<std::string> missing;
  for (auto& e : r.elements) missing.push_back(std::move(e.str));
  return missing;
}

bool LeaseStore::release(const std::string& pool, const std::string& tenant, const std::string& id) {
  auto r = eval(release_, {pool_key(pool), tenant_key(pool, tenant), lease_key(pool, id)},
                {id, released_channel(), pool});
  return r.as_integer() == 1;
}

int LeaseStore::count(const std::string& pool) {
  return static_cast<int>(eval(count_, {pool_key(pool)}, {}).as_integer());
}

std::vector<std::string> LeaseStore::renew_waiting(const std::string& pool, const std::vector<std::string>& ids) {
  if (ids.empty()) return {};
  std::vector<std::string> args{std::to_string(options_.ttl.count())};
  args.insert(args.end(), ids.begin(), ids.end());
  auto r = eval(renew_waiting_, {waiting_key(pool), waiting_expiry_key(pool)}, args);
  std::vector<std::string> missing;
  for (auto& e : r.elements) missing.push_back(std::move(e.str));
  return missing;
}

bool LeaseStore::leave(const std::string& pool, const std::string& id) {
  return eval(leave_, {waiting_key(pool), waiting_expiry_key(pool)}, {id, released_channel(), pool}).as_integer() == 1;
}

int LeaseStore::waiting(const std::string& pool) {
  return static_cast<int>(connection().checked({"ZCARD", waiting_key(pool)}).as_integer());
}

void LeaseStore::ping() { connection().checked({"PING"}); }

void LeaseStore::publish_sessions(const std::string& instance, const std::string& sessions_json) {
  auto replies = connection().pipeline({{"SET", sessions_key(instance), sessions_json, "PX", std::to_string(options_.ttl.count())},
                                        {"SADD", instances_key(), instance}});
  for (auto& r : replies)
    if (r.type == Reply::Type::error) throw RedisError("cluster: Redis refused to store the sessions: " + r.str);
}

void LeaseStore::withdraw_sessions(const std::string& instance) {
  connection().pipeline({{"DEL", sessions_key(instance)}, {"SREM", instances_key(), instance}});
}

std::vector<LeaseStore::Published> LeaseStore::fleet_sessions() {
  auto& c = connection();
  auto members = c.checked({"SMEMBERS", instances_key()});
  std::vector<std::vector<std::string>> reads;
  std::vector<std::string> names;
  for (auto& m : members.elements) {
    names.push_back(m.str);
    reads.push_back({"GET", sessions_key(m.str)});
    reads.push_back({"PTTL", sessions_key(m.str)});
  }
  std::vector<Published> out;
  if (names.empty()) return out;
  auto replies = c.pipeline(reads);
  std::vector<std::vector<std::string>> gone;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto& body = replies[2 * i];
    if (body.type == Reply::Type::error) throw RedisError("cluster: Redis refused a read of the sessions: " + body.str);
    if (body.type != Reply::Type::string) {
      // Expired: that instance stopped publishing (stopped, or killed).
      gone.push_back({"SREM", instances_key(), names[i]});
      continue;
    }
    Published p;
    p.instance = names[i];
    p.sessions_json = body.str;
    const auto& ttl = replies[2 * i + 1];
    if (ttl.type == Reply::Type::integer && ttl.integer >= 0)
      p.age_ms = std::max<long long>(0, options_.ttl.count() - ttl.integer);
    out.push_back(std::move(p));
  }
  if (!gone.empty()) c.pipeline(gone);
  std::sort(out.begin(), out.end(), [](const Published& a, const Published& b) { return a.instance < b.instance; });
  return out;
}

long long LeaseStore::end_session(const std::string& instance, const std::string& id) {
  return connection().checked({"PUBLISH", end_channel(instance), id}).as_integer();
}

std::vector<LeaseRecord> LeaseStore::holders(const std::string& pool) {
  auto r = eval(holders_, {pool_key(pool)}, {lease_key(pool, "")});
  std::vector<LeaseRecord> out;
  for (auto& e : r.elements) {
    if (e.elements.size() != 2) continue;
    LeaseRecord rec;
    rec.id = e.elements[0].str;
    auto& f = e.elements[1].elements;
    for (std::size_t i = 0; i + 1 < f.size(); i += 2) {
      const auto& k = f[i].str;
      auto& v = f[i + 1].str;
      if (k == "instance") rec.instance = v;
      else if (k == "session") rec.session = v;
      else if (k == "tenant") rec.tenant = v;
      else if (k == "pool") rec.pool = v;
      else if (k == "request_id") rec.request_id = v;
      else if (k == "opened_ms") rec.opened_ms = f[i + 1].as_integer();
    }
    out.push_back(std::move(rec));
  }
  return out;
}

}  // namespace sluice::cluster
