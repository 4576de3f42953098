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

// The fleet's release delay, shared by the scripts that use it (after
// SLUICE_LUA_NOW). Releases of streams the vendor had accepted: a sorted set,
// lease id -> release time, younger than kMaxDelay (30 s). Learned bounds: two
// sorted sets scored by when they were learned, members
// "<bound ms>:<learned ms>:<lease id>", kept 10 minutes (64 at most). The
// same rules as admission::ReleaseDelayEstimator (release_delay.hpp).
#define SLUICE_LUA_DELAY                                                                        \
  "local function bound_of(key, greatest)\n"                                                    \
  "  local best\n"                                                                              \
  "  for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, now - 600000, '+inf')) do\n"           \
  "    local v = tonumber(string.match(m, '^(%d+)'))\n"                                         \
  "    if v and (best == nil or (greatest and v > best) or (not greatest and v < best)) then\n"  \
  "      best = v\n"                                                                            \
  "    end\n"                                                                                   \
  "  end\n"                                                                                     \
  "  return best\n"                                                                             \
  "end\n"                                                                                       \
  "local function delay_in_force(configured, lokey, hikey)\n"                                   \
  "  local lo = bound_of(lokey, true)\n"                                                        \
  "  local hi = bound_of(hikey, false)\n"                                                       \
  "  if configured >= 0 then return configured, lo, hi end\n"                                   \
  "  if not lo then return 0, lo, hi end\n"                                                     \
  "  local est = lo + math.max(250, math.floor(lo / 10))\n"                                     \
  "  if hi and est > hi then est = math.max(hi, lo) end\n"                                      \
  "  return est, lo, hi\n"                                                                      \
  "end\n"                                                                                       \
  "local function cooling_of(relkey, delay)\n"                                                  \
  "  if delay <= 0 then return 0, -1 end\n"                                                     \
  "  local from = '(' .. (now - delay)\n"                                                       \
  "  local n = redis.call('ZCOUNT', relkey, from, '+inf')\n"                                    \
  "  local first = redis.call('ZRANGEBYSCORE', relkey, from, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)\n" \
  "  if first[2] then return n, tonumber(first[2]) + delay - now end\n"                         \
  "  return n, -1\n"                                                                            \
  "end\n"                                                                                       \
  "local function kth_release_age(relkey, k)\n"                                                 \
  "  if k < 1 then return nil end\n"                                                            \
  "  local r = redis.call('ZREVRANGE', relkey, k - 1, k - 1, 'WITHSCORES')\n"                   \
  "  if not r[2] then return nil end\n"                                                         \
  "  local age = now - tonumber(r[2])\n"                                                        \
  "  if age > 30000 then return nil end\n"                                                      \
  "  return age\n"                                                                              \
  "end\n"                                                                                       \
  "local function learn(addkey, dropkey, value, id, is_lower)\n"                                \
  "  for _, m in ipairs(redis.call('ZRANGE', dropkey, 0, -1)) do\n"                             \
  "    local v = tonumber(string.match(m, '^(%d+)'))\n"                                         \
  "    if v and ((is_lower and v <= value) or (not is_lower and v >= value)) then\n"             \
  "      redis.call('ZREM', dropkey, m)\n"                                                      \
  "    end\n"                                                                                   \
  "  end\n"                                                                                     \
  "  redis.call('ZADD', addkey, now, string.format('%d:%d:%s', value, now, id))\n"              \
  "  redis.call('ZREMRANGEBYSCORE', addkey, '-inf', now - 600000)\n"                            \
  "  redis.call('ZREMRANGEBYRANK', addkey, 0, -65)\n"                                           \
  "  redis.call('PEXPIRE', addkey, 600000)\n"                                                   \
  "end\n"

// KEYS[1] pool set, KEYS[2] tenant set, KEYS[3] lease hash, KEYS[4] the
// wait list (id -> order), KEYS[5] the wait list's expiries, KEYS[6] the
// fleet's lowered effective limit (absent: none), KEYS[7] the leases whose
// stream the vendor accepted, KEYS[8] the releases, KEYS[9] and KEYS[10] the
// lower and upper bounds of the release delay, KEYS[11..] the sets of other
// tenants with a reservation.
// ARGV[1] id, [2] ttl ms, [3] limit, [4] tenant max (0: none), [5] the
// configured release delay in ms (-1: the fleet's learned one), [6] force
// ("1"; "2": and the vendor accepted its stream), [7] wait ("1": stay on the
// wait list when refused), [8] priority, [9] n field pairs, [10 .. 9+2n] the
// pairs, then one reservation per KEYS[11..].
// Returns {outcome, in use, tenant in use, soonest, limit, cooling, delay,
// lower, upper}: outcome 1 granted, 2 already held, 0 pool full (or others
// are ahead on the wait list), -1 tenant full; soonest, when 0: ms until the
// soonest lease or wait-list place expires or cooling slot cools (-1: none);
// limit: the one applied, ARGV[3] or the fleet's lowered effective limit when
// lower; cooling: the fleet's released slots still cooling; delay: the release
// delay in force (ms); lower, upper: the fleet's learned bounds (-1: none).
constexpr const char* kAcquire = SLUICE_LUA_NOW SLUICE_LUA_DELAY R"(
local id = ARGV[1]
for i = 1, #KEYS do
  if i < 3 or i == 7 or i > 10 then redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now) end
end
local limit = tonumber(ARGV[3])
local lowered = redis.call('GET', KEYS[6])
if lowered and tonumber(lowered) < limit then limit = tonumber(lowered) end
local delay, lo, hi = delay_in_force(tonumber(ARGV[5]), KEYS[9], KEYS[10])
local cooling, cooled_in = cooling_of(KEYS[8], delay)
local function reply(outcome, n, tn, soonest)
  return {outcome, n, tn, soonest, limit, cooling, delay, lo or -1, hi or -1}
end
-- Waiters whose instance stopped renewing them leave the order.
local gone = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)
for _, w in ipairs(gone) do redis.call('ZREM', KEYS[4], w) end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
local tn = redis.call('ZCARD', KEYS[2])
if redis.call('ZSCORE', KEYS[1], id) then return reply(2, n, tn, -1) end
local nf = tonumber(ARGV[9])
if ARGV[6] == '0' then
  local tmax = tonumber(ARGV[4])
  if tmax > 0 and tn + 1 > tmax then
    -- Blocked by its own quota: it holds up nobody behind it.
    redis.call('ZREM', KEYS[4], id)
    redis.call('ZREM', KEYS[5], id)
    return reply(-1, n, tn, -1)
  end
  local reserved = 0
  for i = 11, #KEYS do
    local r = tonumber(ARGV[9 + 2 * nf + i - 10]) - redis.call('ZCARD', KEYS[i])
    if r > 0 then reserved = reserved + r end
  end
  local room = limit - n - cooling - reserved
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
    -- When the soonest lease or place ahead lapses unless renewed (a crashed
    -- instance's capacity returns then, and nothing is published), or the
    -- first cooling slot cools (nothing is published either).
    local soonest = cooled_in
    for _, k in ipairs({KEYS[1], KEYS[5]}) do
      local first = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
      if first[2] then
        local left = tonumber(first[2]) - now
        if soonest < 0 or left < soonest then soonest = left end
      end
    end
    return reply(0, n, tn, soonest)
  end
  redis.call('ZREM', KEYS[4], id)
  redis.call('ZREM', KEYS[5], id)
end
local exp = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], exp, id)
redis.call('ZADD', KEYS[2], exp, id)
if ARGV[6] == '2' then redis.call('ZADD', KEYS[7], exp, id) end
redis.call('DEL', KEYS[3])
if nf > 0 then redis.call('HSET', KEYS[3], unpack(ARGV, 10, 9 + 2 * nf)) end
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return reply(1, n + 1, tn + 1, -1)
)";

// KEYS[1] pool set, KEYS[2] the fleet's lowered effective limit, KEYS[3] the
// releases, KEYS[4] and KEYS[5] the lower and upper bounds of the release
// delay. ARGV[1] the refused stream's lease id, [2] the pool's limit, [3] how
// long a lowering lasts unless an acceptance restores the limit first (ms),
// [4] the configured release delay (ms; -1: learned).
// The vendor refused a stream of the pool with 429 while its lease was held.
// With effective limit E and n leases (the refused one included), the vendor
// holds at most n - 1 other streams of the fleet, so it still counts at least
// k = E + 1 - n released ones: the k-th most recent release is still counted,
// and the delay is longer than its age (a lower bound). No such release
// younger than 30 s: nothing released explains it, and the fleet admits no
// more than it holds, the refused one aside (at least 1; never raised).
// Returns {explained, release age (-1), effective limit, n, delay, lower,
// upper, cooling}.
constexpr const char* kRefused = SLUICE_LUA_NOW SLUICE_LUA_DELAY R"(
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
local limit = tonumber(ARGV[2])
local lowered = redis.call('GET', KEYS[2])
if lowered and tonumber(lowered) < limit then limit = tonumber(lowered) end
local age = kth_release_age(KEYS[3], limit + 1 - n)
if age then
  learn(KEYS[4], KEYS[5], age, ARGV[1], true)
else
  local m = n - 1
  if m < 1 then m = 1 end
  if m < limit then
    redis.call('SET', KEYS[2], m, 'PX', ARGV[3])
    limit = m
  end
end
local delay, lo, hi = delay_in_force(tonumber(ARGV[4]), KEYS[4], KEYS[5])
local cooling = cooling_of(KEYS[3], delay)
return {age and 1 or 0, age or -1, limit, n, delay, lo or -1, hi or -1, cooling}
)";

// KEYS[1] pool set, KEYS[2] the accepted leases, KEYS[3] the releases,
// KEYS[4] and KEYS[5] the bounds, KEYS[6] the fleet's lowered effective limit.
// ARGV[1] the lease id, [2] the pool's limit, [3] the release channel, [4] the
// pool, [5] the configured release delay (ms; -1: learned).
// The vendor accepted the lease's stream: its release will cool. The vendor
// counted at most limit - 1 streams: the u others it had accepted and still
// holds, and at most limit - 1 - u released ones, so the (limit - u)-th most
// recent release is no longer counted and the delay is shorter than its age
// (an upper bound). A lowered limit is the pool's again, and waiters anywhere
// may have room (published).
// Returns {restored, delay, lower, upper, cooling}.
constexpr const char* kAccepted = SLUICE_LUA_NOW SLUICE_LUA_DELAY R"(
local restored = 0
if redis.call('DEL', KEYS[6]) == 1 then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
  restored = 1
end
local exp = redis.call('ZSCORE', KEYS[1], ARGV[1])
if exp and not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local u = redis.call('ZCARD', KEYS[2])
  redis.call('ZADD', KEYS[2], exp, ARGV[1])
  local age = kth_release_age(KEYS[3], tonumber(ARGV[2]) - u)
  if age then learn(KEYS[5], KEYS[4], age, ARGV[1], false) end
end
local delay, lo, hi = delay_in_force(tonumber(ARGV[5]), KEYS[4], KEYS[5])
local cooling = cooling_of(KEYS[3], delay)
return {restored, delay, lo or -1, hi or -1, cooling}
)";

// KEYS[1] the releases, KEYS[2] and KEYS[3] the bounds. ARGV[1] the
// configured release delay (ms; -1: learned). Returns {delay, lower, upper,
// cooling}.
constexpr const char* kDelay = SLUICE_LUA_NOW SLUICE_LUA_DELAY R"(
local delay, lo, hi = delay_in_force(tonumber(ARGV[1]), KEYS[2], KEYS[3])
local cooling = cooling_of(KEYS[1], delay)
return {delay, lo or -1, hi or -1, cooling}
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

// KEYS[1] pool set, KEYS[2] the accepted leases, then per lease i:
// KEYS[2i+1] its tenant set, KEYS[2i+2] its hash. ARGV[1] ttl ms, ARGV[1+i]
// lease i's id. Returns the ids no longer held.
constexpr const char* kRenew = SLUICE_LUA_NOW R"(
local exp = now + tonumber(ARGV[1])
local missing = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local k = 2 * i - 1
  local s = redis.call('ZSCORE', KEYS[1], id)
  if s and tonumber(s) > now then
    redis.call('ZADD', KEYS[1], exp, id)
    redis.call('ZADD', KEYS[2], 'XX', exp, id)
    redis.call('ZADD', KEYS[k], exp, id)
    redis.call('PEXPIRE', KEYS[k + 1], ARGV[1])
  else
    missing[#missing + 1] = id
  end
end
return missing
)";

// KEYS[1] pool set, KEYS[2] tenant set, KEYS[3] hash, KEYS[4] the accepted
// leases, KEYS[5] the releases. ARGV[1] id, [2] the channel, [3] the pool's
// name. A lease whose stream the vendor accepted joins the releases: its
// slot cools for the release delay in force (kept 10 minutes, the longest
// delay configured, and 4096 at most). Returns 1 when the lease was held.
constexpr const char* kRelease = SLUICE_LUA_NOW R"(
local n = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
if redis.call('ZREM', KEYS[4], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[5], now, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - 600000)
  redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -4097)
  redis.call('PEXPIRE', KEYS[5], 600000)
end
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
#undef SLUICE_LUA_DELAY

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
      refused_{kRefused, {}},
      accepted_{kAccepted, {}},
      delay_{kDelay, {}} {
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
// P:{pool}:<what>: the pool's name is the hash tag, so its keys share a slot.
std::string LeaseStore::pool_scoped(const std::string& pool, std::string_view what) const {
  return fmt::format("{}:{{{}}}:{}", options_.prefix, pool, what);
}
std::string LeaseStore::pool_key(const std::string& pool) const { return pool_scoped(pool, "leases"); }
std::string LeaseStore::tenant_key(const std::string& pool, const std::string& tenant) const {
  return pool_scoped(pool, "tenant:" + tenant);
}
std::string LeaseStore::waiting_key(const std::string& pool) const { return pool_scoped(pool, "waiting"); }
std::string LeaseStore::waiting_expiry_key(const std::string& pool) const { return pool_scoped(pool, "waiting:expiry"); }
std::string LeaseStore::effective_key(const std::string& pool) const { return pool_scoped(pool, "effective"); }
std::string LeaseStore::accepted_key(const std::string& pool) const { return pool_scoped(pool, "accepted"); }
std::string LeaseStore::released_key(const std::string& pool) const { return pool_scoped(pool, "released"); }
std::string LeaseStore::delay_lower_key(const std::string& pool) const { return pool_scoped(pool, "delay:lower"); }
std::string LeaseStore::delay_upper_key(const std::string& pool) const { return pool_scoped(pool, "delay:upper"); }
std::string LeaseStore::lease_key(const std::string& pool, const std::string& id) const {
  return pool_scoped(pool, "lease:" + id);
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

namespace {

std::string delay_arg(const std::optional<std::chrono::milliseconds>& configured) {
  return configured ? std::to_string(std::max<long long>(0, configured->count())) : "-1";
}

std::optional<std::chrono::milliseconds> optional_ms(const Reply& r) {
  auto v = r.as_integer();
  if (v < 0) return std::nullopt;
  return std::chrono::milliseconds(v);
}

// {delay, lower, upper, cooling} from `at` on.
FleetDelay delay_from(const Reply& r, std::size_t at) {
  FleetDelay d;
  if (r.elements.size() < at + 4) throw RedisError("redis: unexpected reply about the release delay");
  d.delay = std::chrono::milliseconds(std::max<long long>(0, r.elements[at].as_integer()));
  d.lower = optional_ms(r.elements[at + 1]);
  d.upper = optional_ms(r.elements[at + 2]);
  d.cooling = static_cast<int>(r.elements[at + 3].as_integer());
  return d;
}

}  // namespace

AcquireResult LeaseStore::acquire(const AcquireRequest& q) {
  const auto& l = q.lease;
  std::vector<std::string> keys{pool_key(l.pool),         tenant_key(l.pool, l.tenant), lease_key(l.pool, l.id),
                                waiting_key(l.pool),      waiting_expiry_key(l.pool),   effective_key(l.pool),
                                accepted_key(l.pool),     released_key(l.pool),         delay_lower_key(l.pool),
                                delay_upper_key(l.pool)};
  std::vector<std::string> fields{"instance",   l.instance,   "session",   l.session,
                                  "tenant",     l.tenant,     "pool",      l.pool,
                                  "request_id", l.request_id, "opened_ms", std::to_string(l.opened_ms)};
  std::vector<std::string> args{l.id,
                                std::to_string(options_.ttl.count()),
                                std::to_string(q.limit),
                                std::to_string(q.tenant_max),
                                delay_arg(q.release_delay),
                                q.force ? (q.accepted ? "2" : "1") : "0",
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
  if (r.elements.size() >= 9) {
    out.delay.cooling = static_cast<int>(r.elements[5].as_integer());
    out.delay.delay = std::chrono::milliseconds(std::max<long long>(0, r.elements[6].as_integer()));
    out.delay.lower = optional_ms(r.elements[7]);
    out.delay.upper = optional_ms(r.elements[8]);
  }
  return out;
}

RefusalVerdict LeaseStore::refused(const std::string& pool, const std::string& id, int limit,
                                   std::chrono::milliseconds lasts,
                                   std::optional<std::chrono::milliseconds> release_delay) {
  auto r = eval(refused_,
                {pool_key(pool), effective_key(pool), released_key(pool), delay_lower_key(pool), delay_upper_key(pool)},
                {id, std::to_string(limit), std::to_string(lasts.count()), delay_arg(release_delay)});
  if (r.type != Reply::Type::array || r.elements.size() < 8) throw RedisError("redis: unexpected reply to refused");
  RefusalVerdict v;
  v.explained = r.elements[0].as_integer() == 1;
  v.release_age = optional_ms(r.elements[1]);
  v.effective_limit = static_cast<int>(r.elements[2].as_integer());
  v.in_use = static_cast<int>(r.elements[3].as_integer());
  v.delay = delay_from(r, 4);
  return v;
}

LeaseStore::Accepted LeaseStore::accepted(const std::string& pool, const std::string& id, int limit,
                                          std::optional<std::chrono::milliseconds> release_delay) {
  auto r = eval(accepted_,
                {pool_key(pool), accepted_key(pool), released_key(pool), delay_lower_key(pool), delay_upper_key(pool),
                 effective_key(pool)},
                {id, std::to_string(limit), released_channel(), pool, delay_arg(release_delay)});
  if (r.type != Reply::Type::array || r.elements.size() < 5) throw RedisError("redis: unexpected reply to accepted");
  Accepted out;
  out.restored = r.elements[0].as_integer() == 1;
  out.delay = delay_from(r, 1);
  return out;
}

FleetDelay LeaseStore::delay(const std::string& pool, std::optional<std::chrono::milliseconds> release_delay) {
  auto r = eval(delay_, {released_key(pool), delay_lower_key(pool), delay_upper_key(pool)}, {delay_arg(release_delay)});
  if (r.type != Reply::Type::array) throw RedisError("redis: unexpected reply about the release delay");
  return delay_from(r, 0);
}

std::optional<int> LeaseStore::lowered_limit(const std::string& pool) {
  auto r = connection().checked({"GET", effective_key(pool)});
  if (r.type != Reply::Type::string) return std::nullopt;
  return std::stoi(r.str);
}

std::vector<std::string> LeaseStore::renew(const std::string& pool,
                                           const std::vector<std::pair<std::string, std::string>>& leases) {
  if (leases.empty()) return {};
  std::vector<std::string> keys{pool_key(pool), accepted_key(pool)};
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
  auto r = eval(release_,
                {pool_key(pool), tenant_key(pool, tenant), lease_key(pool, id), accepted_key(pool), released_key(pool)},
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
