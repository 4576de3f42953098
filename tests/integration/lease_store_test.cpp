// The fleet's leases on a real Redis server (scripts/test-redis.sh): limits,
// quotas and reservations hold atomically across connections; leases that
// are not renewed expire; renewals keep them and report lost ones; releases
// are published; a server that forgot the scripts is handled.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "cluster/lease_store.hpp"
#include "redis_test_env.hpp"

using namespace sluice::cluster;
using namespace std::chrono_literals;

namespace {

LeaseStore make_store(const std::string& url, const std::string& prefix, std::chrono::milliseconds ttl = 6000ms) {
  LeaseStore::Options o;
  o.prefix = prefix;
  o.ttl = ttl;
  return LeaseStore(parse_redis_url(url), o);
}

AcquireRequest request(const std::string& id, const std::string& tenant, int limit, const std::string& pool = "p") {
  AcquireRequest q;
  q.lease.id = id;
  q.lease.instance = "i1";
  q.lease.session = id;
  q.lease.tenant = tenant;
  q.lease.pool = pool;
  q.lease.request_id = "req-" + id;
  q.lease.opened_ms = 1700000000000;
  q.limit = limit;
  return q;
}

}  // namespace

TEST(LeaseStore, GrantsUpToTheLimitAndReleaseMakesRoom) {
  SLUICE_REQUIRE_REDIS(url);
  auto s = make_store(url, unique_redis_prefix());
  for (int i = 0; i < 3; ++i) {
    auto r = s.acquire(request("a" + std::to_string(i), "t", 3));
    EXPECT_EQ(r.outcome, AcquireResult::Outcome::granted);
    EXPECT_EQ(r.in_use, i + 1);
  }
  auto full = s.acquire(request("a3", "t", 3));
  EXPECT_EQ(full.outcome, AcquireResult::Outcome::pool_full);
  EXPECT_EQ(full.in_use, 3);
  // The same lease again is not a second slot.
  EXPECT_EQ(s.acquire(request("a1", "t", 3)).outcome, AcquireResult::Outcome::already_held);
  EXPECT_EQ(s.count("p"), 3);
  EXPECT_TRUE(s.release("p", "t", "a1"));
  EXPECT_FALSE(s.release("p", "t", "a1")) << "a second release finds nothing";
  EXPECT_EQ(s.count("p"), 2);
  EXPECT_EQ(s.acquire(request("a3", "t", 3)).outcome, AcquireResult::Outcome::granted);
  // Other pools are counted apart.
  EXPECT_EQ(s.acquire(request("b0", "t", 1, "other")).outcome, AcquireResult::Outcome::granted);
  EXPECT_EQ(s.count("p"), 3);
  EXPECT_EQ(s.count("other"), 1);
}

TEST(LeaseStore, QuotasAndOthersReservationsAreNotOurs) {
  SLUICE_REQUIRE_REDIS(url);
  auto s = make_store(url, unique_redis_prefix());
  // Tenant quota 2.
  auto q = request("x0", "small", 10);
  q.tenant_max = 2;
  EXPECT_TRUE(s.acquire(q).granted());
  q.lease.id = "x1";
  EXPECT_TRUE(s.acquire(q).granted());
  q.lease.id = "x2";
  auto r = s.acquire(q);
  EXPECT_EQ(r.outcome, AcquireResult::Outcome::tenant_full);
  EXPECT_EQ(r.tenant_in_use, 2);
  // Limit 5, 2 in use, tenant "vip" reserves 2 and uses none: "big" may take
  // one more only (2 + 1 + 2 <= 5).
  auto b = request("y0", "big", 5);
  b.reservations = {{"vip", 2}};
  EXPECT_TRUE(s.acquire(b).granted());
  b.lease.id = "y1";
  EXPECT_EQ(s.acquire(b).outcome, AcquireResult::Outcome::pool_full);
  // vip uses its reservation.
  auto v = request("v0", "vip", 5);
  v.reservations = {{"vip", 2}};  // its own reservation is not held against it
  EXPECT_TRUE(s.acquire(v).granted());
  auto c = request("v1", "vip", 5);
  EXPECT_TRUE(s.acquire(c).granted());
  EXPECT_EQ(s.count("p"), 5);
}

TEST(LeaseStore, AnUnrenewedLeaseExpiresAndARenewedOneStays) {
  SLUICE_REQUIRE_REDIS(url);
  auto prefix = unique_redis_prefix();
  auto s = make_store(url, prefix, 400ms);
  ASSERT_TRUE(s.acquire(request("kept", "t", 2)).granted());
  ASSERT_TRUE(s.acquire(request("crashed", "t", 2)).granted());
  EXPECT_EQ(s.acquire(request("late", "t", 2)).outcome, AcquireResult::Outcome::pool_full);
  // Renew "kept" every 100 ms; "crashed" has no owner left.
  auto start = std::chrono::steady_clock::now();
  bool crashed_gone = false;
  while (std::chrono::steady_clock::now() - start < 3s) {
    EXPECT_TRUE(s.renew("p", {{"kept", "t"}}).empty()) << "a renewed lease was lost";
    if (s.count("p") == 1) {
      crashed_gone = true;
      break;
    }
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(crashed_gone) << "the unrenewed lease never expired";
  auto holders = s.holders("p");
  ASSERT_EQ(holders.size(), 1u);
  EXPECT_EQ(holders[0].id, "kept");
  // Its slot went back to the pool.
  EXPECT_TRUE(s.acquire(request("late", "t", 2)).granted());
  // A renewal of a lease Redis no longer holds reports it.
  auto missing = s.renew("p", {{"kept", "t"}, {"crashed", "t"}});
  EXPECT_EQ(missing, std::vector<std::string>{"crashed"});
}

// The release delay is the fleet's: an accepted lease's release cools for
// every instance, a 429 that a release explains teaches a lower bound, an
// acceptance an upper one, and one that nothing explains lowers the limit
// until the next acceptance.
TEST(LeaseStore, AcceptedReleasesCoolInTheFleetAndItLearnsTheDelay) {
  SLUICE_REQUIRE_REDIS(url);
  auto s = make_store(url, unique_redis_prefix());
  using Outcome = AcquireResult::Outcome;
  ASSERT_TRUE(s.acquire(request("a", "t", 2)).granted());
  ASSERT_TRUE(s.acquire(request("b", "t", 2)).granted());
  auto acc = s.accepted("p", "a", 2, std::nullopt);
  EXPECT_FALSE(acc.restored);
  EXPECT_EQ(acc.delay.delay, 0ms) << "nothing learned yet";
  EXPECT_FALSE(acc.delay.lower);
  s.accepted("p", "b", 2, std::nullopt);
  // Nothing learned: a released slot admits again at once.
  s.release("p", "t", "a");
  ASSERT_TRUE(s.acquire(request("c", "t", 2)).granted());
  // The vendor refuses c: it still counts a (n = 2, k = 2 + 1 - 2 = 1: the
  // most recent release), so a lower bound is learned, and the limit stays.
  auto v = s.refused("p", "c", 2, 10min, std::nullopt);
  EXPECT_TRUE(v.explained);
  ASSERT_TRUE(v.release_age);
  EXPECT_LT(*v.release_age, 5000ms);
  EXPECT_EQ(v.effective_limit, 2);
  EXPECT_EQ(v.in_use, 2);
  ASSERT_TRUE(v.delay.lower);
  EXPECT_EQ(*v.delay.lower, *v.release_age);
  EXPECT_EQ(v.delay.delay, *v.delay.lower + std::max<std::chrono::milliseconds>(250ms, *v.delay.lower / 10));
  EXPECT_FALSE(s.lowered_limit("p"));
  // b goes: its slot cools for the learned delay, for every instance: with c
  // held and a and b cooling, a new stream waits, and is told when to ask.
  s.release("p", "t", "b");
  auto d = request("d", "t", 2);
  auto r = s.acquire(d);
  ASSERT_EQ(r.outcome, Outcome::pool_full);
  EXPECT_GE(r.delay.cooling, 1);
  EXPECT_EQ(r.delay.delay, v.delay.delay);
  ASSERT_TRUE(r.next_expiry);
  EXPECT_LE(*r.next_expiry, r.delay.delay);
  // A configured delay of 0 never cools.
  auto z = request("z", "t", 2);
  z.release_delay = 0ms;
  auto rz = s.acquire(z);
  EXPECT_EQ(rz.delay.cooling, 0);
  EXPECT_TRUE(rz.granted());
  s.release("p", "t", "z");  // never accepted: it does not cool
  // Once b has cooled, d gets in.
  const auto start = std::chrono::steady_clock::now();
  while (!s.acquire(d).granted() && std::chrono::steady_clock::now() - start < 10s) std::this_thread::sleep_for(20ms);
  EXPECT_EQ(s.count("p"), 2) << "b never cooled";
  // The vendor accepts d with u = 0 other accepted streams (c never was):
  // it counts at most 1 released one, so the 2nd most recent release (a)
  // no longer counts: an upper bound.
  auto ad = s.accepted("p", "d", 2, std::nullopt);
  ASSERT_TRUE(ad.delay.upper);
  EXPECT_GE(*ad.delay.upper, r.delay.delay - 50ms);
  EXPECT_TRUE(ad.delay.lower) << "the upper bound is above the lower one: both stay";
  // The fleet reads the same delay.
  auto fd = s.delay("p", std::nullopt);
  EXPECT_EQ(fd.delay, ad.delay.delay);
  EXPECT_EQ(s.delay("p", 1500ms).delay, 1500ms) << "a configured delay is the one in force";

  // A refusal nothing released explains: the fleet's limit falls to its
  // other leases until the vendor accepts a stream again.
  auto s2 = make_store(url, unique_redis_prefix());
  ASSERT_TRUE(s2.acquire(request("x", "t", 3)).granted());
  ASSERT_TRUE(s2.acquire(request("y", "t", 3)).granted());
  s2.accepted("p", "x", 3, std::nullopt);
  auto u = s2.refused("p", "y", 3, 10min, std::nullopt);
  EXPECT_FALSE(u.explained);
  EXPECT_FALSE(u.release_age);
  EXPECT_EQ(u.effective_limit, 1);
  EXPECT_EQ(s2.lowered_limit("p"), 1);
  EXPECT_EQ(s2.acquire(request("w", "t", 3)).limit, 1);
  auto back = s2.accepted("p", "y", 3, std::nullopt);
  EXPECT_TRUE(back.restored);
  EXPECT_FALSE(s2.lowered_limit("p"));
}

TEST(LeaseStore, LostLeasesAreReRegisteredPastTheLimitWithForce) {
  SLUICE_REQUIRE_REDIS(url);
  auto s = make_store(url, unique_redis_prefix());
  ASSERT_TRUE(s.acquire(request("a", "t", 1)).granted());
  auto q = request("b", "t", 1);
  EXPECT_FALSE(s.acquire(q).granted());
  q.force = true;  // an open stream the fleet lost count of
  auto r = s.acquire(q);
  EXPECT_EQ(r.outcome, AcquireResult::Outcome::granted);
  EXPECT_EQ(r.in_use, 2);
  EXPECT_EQ(s.acquire(request("c", "t", 2)).outcome, AcquireResult::Outcome::pool_full)
      << "the over-count holds new streams back until it drains";
}

TEST(LeaseStore, HoldersCarryTheirOwnersFields) {
  SLUICE_REQUIRE_REDIS(url);
  auto s = make_store(url, unique_redis_prefix());
  auto q = request("inst-a/17", "acme", 3);
  q.lease.instance = "inst-a";
  q.lease.session = "17";
  ASSERT_TRUE(s.acquire(q).granted());
  auto h = s.holders("p");
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h[0].id, "inst-a/17");
  EXPECT_EQ(h[0].instance, "inst-a");
  EXPECT_EQ(h[0].session, "17");
  EXPECT_EQ(h[0].tenant, "acme");
  EXPECT_EQ(h[0].pool, "p");
  EXPECT_EQ(h[0].request_id, "req-inst-a/17");
  EXPECT_EQ(h[0].opened_ms, 1700000000000);
  s.release("p", "acme", "inst-a/17");
  EXPECT_TRUE(s.holders("p").empty());
}

TEST(LeaseStore, AReleaseIsPublishedToSubscribers) {
  SLUICE_REQUIRE_REDIS(url);
  auto s = make_store(url, unique_redis_prefix());
  RedisConnection sub(parse_redis_url(url), {});
  auto r = sub.command({"SUBSCRIBE", s.released_channel()});
  ASSERT_EQ(r.type, Reply::Type::array);
  ASSERT_TRUE(s.acquire(request("a", "t", 1, "pool-x")).granted());
  s.release("pool-x", "t", "a");
  Reply msg;
  ASSERT_TRUE(sub.read_push(msg, 3000ms)) << "no message within 3 s";
  ASSERT_EQ(msg.elements.size(), 3u);
  EXPECT_EQ(msg.elements[0].str, "message");
  EXPECT_EQ(msg.elements[1].str, s.released_channel());
  EXPECT_EQ(msg.elements[2].str, "pool-x");
  EXPECT_FALSE(sub.read_push(msg, 50ms)) << "one release, one message";
}

TEST(LeaseStore, AServerThatForgotTheScriptsIsHandled) {
  SLUICE_REQUIRE_REDIS(url);
  auto s = make_store(url, unique_redis_prefix());
  ASSERT_TRUE(s.acquire(request("a", "t", 3)).granted());
  RedisConnection admin(parse_redis_url(url), {});
  admin.checked({"SCRIPT", "FLUSH"});  // as after a restart
  EXPECT_TRUE(s.acquire(request("b", "t", 3)).granted());
  EXPECT_EQ(s.count("p"), 2);
}

TEST(LeaseStore, ConcurrentInstancesNeverExceedTheLimit) {
  SLUICE_REQUIRE_REDIS(url);
  // Three stores, each on its own connection and thread, as three instances:
  // every grant is counted up, every release down; the count never passes
  // the limit.
  constexpr int L = 4;
  constexpr int kRounds = 300;
  auto prefix = unique_redis_prefix();
  std::atomic<int> held{0}, max_held{0}, granted{0};
  std::vector<std::jthread> threads;
  for (int inst = 0; inst < 3; ++inst) {
    threads.emplace_back([&, inst] {
      auto s = make_store(url, prefix);
      for (int i = 0; i < kRounds; ++i) {
        auto id = std::to_string(inst) + "/" + std::to_string(i);
        if (!s.acquire(request(id, "t" + std::to_string(inst), L)).granted()) continue;
        int now = ++held;
        int m = max_held.load();
        while (now > m && !max_held.compare_exchange_weak(m, now)) {
        }
        ++granted;
        --held;  // before the release: the count may only over-state
        s.release("p", "t" + std::to_string(inst), id);
      }
    });
  }
  threads.clear();
  EXPECT_LE(max_held.load(), L);
  EXPECT_GT(granted.load(), 3 * kRounds / 2) << "most rounds should find room";
  auto s = make_store(url, prefix);
  EXPECT_EQ(s.count("p"), 0);
}

TEST(LeaseStore, ErrorsNameTheServerButNeverThePassword) {
  SLUICE_REQUIRE_REDIS(url);
  auto parsed = parse_redis_url(url);
  parsed.password = "not-the-password-xyz";
  parsed.redacted = "redis://:***@" + parsed.host + ":" + std::to_string(parsed.port) + "/0";
  try {
    RedisConnection c(parsed, {});
    FAIL() << "a wrong password was accepted";
  } catch (const RedisError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("authentication failed"), std::string::npos) << m;
    EXPECT_EQ(m.find("not-the-password-xyz"), std::string::npos) << m;
  }
  // Nothing listens on port 1.
  auto closed = parse_redis_url("redis://:secret-abc@127.0.0.1:1/0");
  try {
    RedisConnection c(closed, {});
    FAIL() << "connected to a closed port";
  } catch (const RedisError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("cannot connect"), std::string::npos) << m;
    EXPECT_EQ(m.find("secret-abc"), std::string::npos) << m;
  }
}
