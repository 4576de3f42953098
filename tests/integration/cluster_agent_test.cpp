// The instance's link to the fleet's leases, on a real Redis server: leases
// come back when their FleetLease goes, stay while renewed, are registered
// again when Redis loses them, releases anywhere wake every instance, and a
// Redis that cannot be reached is an answer, not a hang.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "cluster/agent.hpp"
#include "redis_test_env.hpp"

using namespace sluice::cluster;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

Agent::Options options(const std::string& prefix, const std::string& instance, std::chrono::milliseconds ttl = 6000ms,
                       std::chrono::milliseconds renew = 2000ms) {
  Agent::Options o;
  o.store.prefix = prefix;
  o.store.ttl = ttl;
  o.instance = instance;
  o.renew_every = renew;
  o.reconnect_every = 100ms;
  return o;
}

AcquireRequest request(const std::string& instance, int n, int limit, const std::string& pool = "p") {
  AcquireRequest q;
  q.lease.id = instance + "/" + std::to_string(n);
  q.lease.instance = instance;
  q.lease.session = std::to_string(n);
  q.lease.tenant = "t";
  q.lease.pool = pool;
  q.limit = limit;
  return q;
}

// Runs an acquire through an io_context, as a session would. The context
// outlives every agent, as a gateway's does: the agent's worker may still be
// returning from its post() when the outcome has already run here.
AcquireOutcome acquire(Agent& a, AcquireRequest q) {
  static asio::io_context ioc;
  ioc.restart();
  std::optional<AcquireOutcome> out;
  asio::co_spawn(ioc, [&]() -> asio::awaitable<void> { out = co_await a.acquire(std::move(q)); }, asio::detached);
  ioc.run_for(5s);
  if (!out) {
    AcquireOutcome none;
    none.error = "no outcome within 5 s";
    return none;
  }
  return std::move(*out);
}

}  // namespace

TEST(ClusterAgent, AFleetLeaseHoldsItsSlotUntilItGoes) {
  SLUICE_REQUIRE_REDIS(url);
  auto prefix = unique_redis_prefix();
  LeaseStore probe(parse_redis_url(url), {.prefix = prefix});
  auto a = Agent::start(parse_redis_url(url), options(prefix, "A"), {});
  auto first = acquire(*a, request("A", 1, 1));
  ASSERT_TRUE(first.ok) << first.error;
  ASSERT_TRUE(first.result.granted());
  ASSERT_TRUE(first.lease);
  EXPECT_EQ(a->held(), 1);
  auto second = acquire(*a, request("A", 2, 1));
  ASSERT_TRUE(second.ok) << second.error;
  EXPECT_EQ(second.result.outcome, AcquireResult::Outcome::pool_full);
  EXPECT_FALSE(second.lease);
  EXPECT_EQ(probe.count("p"), 1);
  first.lease.release();
  EXPECT_TRUE(poll_until([&] { return probe.count("p") == 0 && a->held() == 0; }));
  // An outcome nobody takes gives its lease back as it goes.
  { auto dropped = acquire(*a, request("A", 3, 1)); }
  EXPECT_TRUE(poll_until([&] { return probe.count("p") == 0; }));
}

TEST(ClusterAgent, RenewalKeepsALeasePastItsExpiryAndStoppingReleasesIt) {
  SLUICE_REQUIRE_REDIS(url);
  auto prefix = unique_redis_prefix();
  LeaseStore probe(parse_redis_url(url), {.prefix = prefix});
  auto a = Agent::start(parse_redis_url(url), options(prefix, "A", 500ms, 100ms), {});
  auto out = acquire(*a, request("A", 1, 5));
  ASSERT_TRUE(out.lease) << out.error;
  // Three expiries later it is still there.
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(probe.count("p"), 1);
  // Stopping gives back what the instance holds (its FleetLease now finds no agent).
  a->stop();
  EXPECT_EQ(probe.count("p"), 0);
}

TEST(ClusterAgent, LeasesRedisLostAreRegisteredAgain) {
  SLUICE_REQUIRE_REDIS(url);
  auto prefix = unique_redis_prefix();
  LeaseStore probe(parse_redis_url(url), {.prefix = prefix});
  auto a = Agent::start(parse_redis_url(url), options(prefix, "A", 2000ms, 100ms), {});
  auto one = acquire(*a, request("A", 1, 2));
  auto two = acquire(*a, request("A", 2, 2));
  ASSERT_TRUE(one.lease && two.lease);
  // As a Redis restarted without its data would.
  RedisConnection admin(parse_redis_url(url), {});
  admin.checked({"DEL", probe.pool_key("p"), probe.tenant_key("p", "t"), probe.lease_key("p", "A/1"),
                 probe.lease_key("p", "A/2")});
  EXPECT_EQ(probe.count("p"), 0);
  EXPECT_TRUE(poll_until([&] { return probe.count("p") == 2; })) << "the open streams were not registered again";
  EXPECT_EQ(a->reregistered(), 2);
  auto holders = probe.holders("p");
  ASSERT_EQ(holders.size(), 2u);
  EXPECT_EQ(holders[0].instance, "A");
}

TEST(ClusterAgent, AReleaseAnywhereWakesEveryInstance) {
  SLUICE_REQUIRE_REDIS(url);
  auto prefix = unique_redis_prefix();
  std::mutex m;
  std::multiset<std::string> heard_by_b;
  std::atomic<int> resubscribed{0};
  auto a = Agent::start(parse_redis_url(url), options(prefix, "A"), {});
  auto b = Agent::start(parse_redis_url(url), options(prefix, "B"), [&](const std::string& pool) {
    if (pool.empty()) {
      ++resubscribed;
      return;
    }
    std::lock_guard l(m);
    heard_by_b.insert(pool);
  });
  ASSERT_TRUE(poll_until([&] { return resubscribed.load() == 1; })) << "B never subscribed";
  auto out = acquire(*a, request("A", 1, 1, "flux"));
  ASSERT_TRUE(out.lease) << out.error;
  out.lease.release();
  EXPECT_TRUE(poll_until([&] {
    std::lock_guard l(m);
    return heard_by_b.count("flux") == 1;
  }));
}

TEST(ClusterAgent, AnUnreachableRedisIsAnAnswerNotAHang) {
  // No server needed: nothing listens on port 1.
  auto a = Agent::start(parse_redis_url("redis://:hidden-pw-42@127.0.0.1:1/0"), options(unique_redis_prefix(), "A"),
                        {});
  auto out = acquire(*a, request("A", 1, 1));
  EXPECT_FALSE(out.ok);
  EXPECT_FALSE(out.lease);
  EXPECT_NE(out.error.find("cannot connect"), std::string::npos) << out.error;
  EXPECT_EQ(out.error.find("hidden-pw-42"), std::string::npos) << out.error;
  EXPECT_FALSE(a->redis_ok());
}
