#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>

#include "admission/classifier.hpp"
#include "admission/controller.hpp"
#include "admission/release_delay.hpp"

#include <atomic>
#include <thread>
#include <vector>

using namespace sluice;
using namespace sluice::admission;

namespace {

config::PoolConfig pool(std::string name, int limit, double queue_seconds = 10, int max_queue = 100) {
  config::PoolConfig p;
  p.name = std::move(name);
  p.limit = limit;
  p.queue_timeout = config::Seconds(queue_seconds);
  p.max_queue = max_queue;
  return p;
}

// Runs ready handlers (no waiting on timers).
void settle(boost::asio::io_context& ioc) {
  for (int i = 0; i < 10; ++i) {
    ioc.restart();
    ioc.poll();
  }
}

// Runs the io_context until `done`, for at most `limit` (a generous while).
void run_until(boost::asio::io_context& ioc, const std::function<bool()>& done,
               std::chrono::milliseconds limit = std::chrono::milliseconds(20000)) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < end) {
    ioc.restart();
    if (ioc.run_for(std::chrono::milliseconds(1)) == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

struct Waiting {
  std::optional<AdmitResult> result;
};

// Starts waiting on a ticket; the result lands in the returned holder.
std::shared_ptr<Waiting> wait_on(boost::asio::io_context& ioc, Ticket ticket) {
  auto w = std::make_shared<Waiting>();
  auto t = std::make_shared<Ticket>(std::move(ticket));
  boost::asio::co_spawn(ioc, [t, w]() -> boost::asio::awaitable<void> { w->result = co_await t->wait(); },
                        boost::asio::detached);
  return w;
}

}  // namespace

TEST(Admission, AdmitsUpToTheLimitThenQueuesInOrder) {
  boost::asio::io_context ioc;
  Controller c({pool("p", 2)}, {}, {});
  auto a = c.enqueue("p", "t", ioc.get_executor());
  auto b = c.enqueue("p", "t", ioc.get_executor());
  ASSERT_TRUE(a.decided() && b.decided());
  auto la = a.take_result().lease;
  auto lb = b.take_result().lease;
  EXPECT_TRUE(la && lb);
  EXPECT_EQ(c.leases_in_use(), 2);
  auto w1 = wait_on(ioc, c.enqueue("p", "t", ioc.get_executor()));
  auto w2 = wait_on(ioc, c.enqueue("p", "t", ioc.get_executor()));
  settle(ioc);
  EXPECT_FALSE(w1->result);
  EXPECT_EQ(c.status("p")->queued, 2);
  la.release();
  run_until(ioc, [&] { return w1->result.has_value(); });
  ASSERT_TRUE(w1->result);
  EXPECT_TRUE(w1->result->lease);
  EXPECT_FALSE(w2->result);  // FIFO: the second waits on
  lb.release();
  run_until(ioc, [&] { return w2->result.has_value(); });
  EXPECT_TRUE(w2->result->lease);
  EXPECT_EQ(c.leases_in_use(), 2);
  w1->result->lease.release();
  w2->result->lease.release();
  EXPECT_EQ(c.leases_in_use(), 0);
}

TEST(Admission, LeaseReleasesExactlyOnce) {
  boost::asio::io_context ioc;
  Controller c({pool("p", 1)}, {}, {});
  auto l = c.enqueue("p", "t", ioc.get_executor()).take_result().lease;
  EXPECT_EQ(c.leases_in_use(), 1);
  Lease moved = std::move(l);
  l.release();  // moved-from: nothing
  EXPECT_EQ(c.leases_in_use(), 1);
  moved.release();
  moved.release();
  EXPECT_EQ(c.leases_in_use(), 0);
  { auto scoped = c.enqueue("p", "t", ioc.get_executor()).take_result().lease; EXPECT_EQ(c.leases_in_use(), 1); }
  EXPECT_EQ(c.leases_in_use(), 0);
}

TEST(Admission, QueueTimeoutAndQueueFull) {
  boost::asio::io_context ioc;
  Controller c({pool("p", 1, 0.05, 1)}, {}, {});
  auto held = c.enqueue("p", "t", ioc.get_executor()).take_result().lease;
  auto w = wait_on(ioc, c.enqueue("p", "t", ioc.get_executor()));
  auto full = c.enqueue("p", "t", ioc.get_executor());
  ASSERT_TRUE(full.decided());
  auto fr = full.take_result();
  EXPECT_EQ(fr.refusal, Refusal::queue_full);
  EXPECT_EQ(fr.queued, 1);
  run_until(ioc, [&] { return w->result.has_value(); });
  ASSERT_TRUE(w->result);
  EXPECT_EQ(w->result->refusal, Refusal::queue_timeout);
  EXPECT_GE(w->result->waited_seconds, 0.05);
  EXPECT_EQ(c.status("p")->queued, 0);
}

TEST(Admission, PriorityGoesFirstFifoWithin) {
  boost::asio::io_context ioc;
  config::Tenant vip;
  vip.name = "vip";
  vip.priority = 10;
  Controller c({pool("p", 1)}, {vip}, {});
  auto held = c.enqueue("p", "low", ioc.get_executor()).take_result().lease;
  auto low = wait_on(ioc, c.enqueue("p", "low", ioc.get_executor()));
  auto high = wait_on(ioc, c.enqueue("p", "vip", ioc.get_executor()));
  held.release();
  run_until(ioc, [&] { return high->result.has_value(); });
  EXPECT_TRUE(high->result && high->result->lease);
  EXPECT_FALSE(low->result);
  high->result->lease.release();
  run_until(ioc, [&] { return low->result.has_value(); });
  EXPECT_TRUE(low->result->lease);
}

TEST(Admission, TenantQuotaAndReservation) {
  boost::asio::io_context ioc;
  config::Tenant a, b;
  a.name = "a";
  a.quotas["p"] = {2, 0};
  b.name = "b";
  b.quotas["p"] = {0, 2};  // b keeps 2 of 4 for itself
  Controller c({pool("p", 4, 0)}, {a, b}, {});
  auto a1 = c.enqueue("p", "a", ioc.get_executor()).take_result();
  auto a2 = c.enqueue("p", "a", ioc.get_executor()).take_result();
  EXPECT_TRUE(a1.lease && a2.lease);
  auto a3 = c.enqueue("p", "a", ioc.get_executor()).take_result();
  EXPECT_EQ(a3.refusal, Refusal::tenant_quota);
  EXPECT_EQ(a3.tenant_max, 2);
  // "x" has no quota, but the 2 remaining slots are b's reservation.
  auto x = c.enqueue("p", "x", ioc.get_executor()).take_result();
  EXPECT_EQ(x.refusal, Refusal::queue_full);
  auto b1 = c.enqueue("p", "b", ioc.get_executor()).take_result();
  auto b2 = c.enqueue("p", "b", ioc.get_executor()).take_result();
  EXPECT_TRUE(b1.lease && b2.lease);
  EXPECT_EQ(c.status("p")->tenants_in_use.at("b"), 2);
}

TEST(Admission, AbandonLeavesTheQueueAtOnce) {
  boost::asio::io_context ioc;
  Controller c({pool("p", 1, 60)}, {}, {});
  auto held = c.enqueue("p", "t", ioc.get_executor()).take_result().lease;
  auto ticket = std::make_shared<Ticket>(c.enqueue("p", "t", ioc.get_executor()));
  auto w = std::make_shared<Waiting>();
  boost::asio::co_spawn(ioc, [ticket, w]() -> boost::asio::awaitable<void> { w->result = co_await ticket->wait(); },
                        boost::asio::detached);
  settle(ioc);
  EXPECT_EQ(c.status("p")->queued, 1);
  ticket->abandon();
  run_until(ioc, [&] { return w->result.has_value(); });
  EXPECT_EQ(w->result->refusal, Refusal::abandoned);
  EXPECT_EQ(c.status("p")->queued, 0);
  EXPECT_EQ(c.leases_in_use(), 1);
}

TEST(Admission, Upstream429NoReleaseExplainsLowersTheLimitAndAnAcceptanceRestoresIt) {
  boost::asio::io_context ioc;
  config::Retry429Config retry;
  retry.deadline = config::Seconds(60);
  Controller c({pool("p", 5, 0)}, {}, retry);  // no queue: a full pool refuses at once
  std::vector<Lease> open;
  for (int i = 0; i < 2; ++i) {
    open.push_back(c.enqueue("p", "t", ioc.get_executor()).take_result().lease);
    c.on_upstream_accepted(open.back());
  }
  auto probe = c.enqueue("p", "t", ioc.get_executor()).take_result().lease;
  // Nothing was released: others on the key hold the vendor's room.
  auto d = c.on_upstream_429(probe, 0);
  EXPECT_FALSE(d.explained);
  EXPECT_TRUE(d.retry);
  EXPECT_EQ(d.upstream_open, 2);
  EXPECT_EQ(d.gateway_in_use, 3);
  EXPECT_EQ(c.status("p")->effective_limit, 2);  // what the vendor holds open
  EXPECT_EQ(c.status("p")->upstream_429_total, 1);
  EXPECT_EQ(c.status("p")->release_delay_seconds, 0);  // nothing learned
  EXPECT_EQ(c.enqueue("p", "t", ioc.get_executor()).take_result().refusal, Refusal::queue_full);
  // The vendor accepts the retry: the limit is back at once, not a slot per interval.
  c.on_upstream_accepted(probe);
  EXPECT_EQ(c.status("p")->effective_limit, 5);
  EXPECT_EQ(c.status("p")->upstream_open, 3);
  EXPECT_TRUE(c.enqueue("p", "t", ioc.get_executor()).take_result().lease);
}

TEST(Admission, RetryBudgetStartsWhenTheLeaseIsGranted) {
  boost::asio::io_context ioc;
  config::Retry429Config retry;
  retry.initial_backoff = config::Seconds(0.01);
  retry.max_backoff = config::Seconds(0.01);
  retry.deadline = config::Seconds(0.3);
  Controller c({pool("p", 1, 10)}, {}, retry);
  auto first = c.enqueue("p", "t", ioc.get_executor()).take_result().lease;
  auto w = wait_on(ioc, c.enqueue("p", "t", ioc.get_executor()));
  // The request waits in the queue longer than the retry deadline.
  run_until(ioc, [&] { return false; }, std::chrono::milliseconds(500));
  ASSERT_FALSE(w->result);
  first.release();
  run_until(ioc, [&] { return w->result.has_value(); });
  ASSERT_TRUE(w->result && w->result->lease);
  EXPECT_GE(w->result->waited_seconds, 0.5);
  // Its budget starts now: the first refusal is retried.
  EXPECT_TRUE(c.on_upstream_429(w->result->lease, 0).retry);
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  auto d = c.on_upstream_429(w->result->lease, 1);
  EXPECT_FALSE(d.retry);
  EXPECT_EQ(d.refusal.refusal, Refusal::upstream_429);
  EXPECT_EQ(d.refusal.pool, "p");
  EXPECT_EQ(d.refusal.limit, 1);
  EXPECT_EQ(d.refusal.in_use, 1);
  EXPECT_EQ(c.status("p")->refused_total, 1);
}

TEST(Admission, AReleasedSlotCoolsForAConfiguredReleaseDelay) {
  boost::asio::io_context ioc;
  auto p = pool("p", 2, 10);
  p.release_delay = config::Seconds(0.4);
  Controller c({p}, {}, {}, ioc.get_executor());
  auto a = c.enqueue("p", "t", ioc.get_executor()).take_result().lease;
  auto b = c.enqueue("p", "t", ioc.get_executor()).take_result().lease;
  c.on_upstream_accepted(a);
  // A lease whose stream the vendor never accepted comes back at once.
  b.release();
  EXPECT_EQ(c.status("p")->cooling, 0);
  b = c.enqueue("p", "t", ioc.get_executor()).take_result().lease;
  ASSERT_TRUE(b);
  c.on_upstream_accepted(b);
  EXPECT_DOUBLE_EQ(c.status("p")->release_delay_seconds, 0.4);
  EXPECT_TRUE(c.status("p")->release_delay_configured);
  // One the vendor accepted cools: the waiter is admitted when the cooldown
  // ends, woken by the controller's timer with nothing else happening.
  auto released = SteadyClock::now();
  a.release();
  EXPECT_EQ(c.status("p")->in_use, 1);
  EXPECT_EQ(c.status("p")->cooling, 1);
  auto w = wait_on(ioc, c.enqueue("p", "t", ioc.get_executor()));
  settle(ioc);
  EXPECT_FALSE(w->result);
  EXPECT_EQ(c.status("p")->queued, 1);
  run_until(ioc, [&] { return w->result.has_value(); });
  auto admitted = SteadyClock::now();
  ASSERT_TRUE(w->result && w->result->lease);
  EXPECT_GE(admitted - released, std::chrono::milliseconds(400));
  EXPECT_LT(admitted - released, std::chrono::milliseconds(1400));
  EXPECT_EQ(c.status("p")->cooling, 0);
  EXPECT_EQ(c.status("p")->in_use, 2);
}

TEST(Admission, WithoutAControllerTimerAWaiterWakesItselfWhenACooldownEnds) {
  boost::asio::io_context ioc;
  auto p = pool("p", 1, 10);
  p.release_delay = config::Seconds(0.3);
  Controller c({p}, {}, {});
  auto a = c.enqueue("p", "t", ioc.get_executor()).take_result().lease;
  c.on_upstream_accepted(a);
  auto w = wait_on(ioc, c.enqueue("p", "t", ioc.get_executor()));
  settle(ioc);
  auto released = SteadyClock::now();
  a.release();
  settle(ioc);
  EXPECT_FALSE(w->result);
  run_until(ioc, [&] { return w->result.has_value(); });
  ASSERT_TRUE(w->result && w->result->lease);
  EXPECT_GE(SteadyClock::now() - released, std::chrono::milliseconds(300));
}

TEST(Admission, ARefusalReleasesExplainTeachesTheDelayAndKeepsTheLimit) {
  boost::asio::io_context ioc;
  config::Retry429Config retry;
  retry.initial_backoff = config::Seconds(0.05);
  retry.deadline = config::Seconds(60);
  Controller c({pool("p", 2, 10)}, {}, retry, ioc.get_executor());
  auto a = c.enqueue("p", "t", ioc.get_executor()).take_result().lease;
  auto b = c.enqueue("p", "t", ioc.get_executor()).take_result().lease;
  c.on_upstream_accepted(a);
  c.on_upstream_accepted(b);
  a.release();  // nothing learned yet: no cooldown
  EXPECT_EQ(c.status("p")->cooling, 0);
  auto n = c.enqueue("p", "t", ioc.get_executor()).take_result().lease;
  ASSERT_TRUE(n);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  // The vendor still counts a's stream: a lower bound of 200 ms.
  auto d = c.on_upstream_429(n, 0);
  EXPECT_TRUE(d.explained);
  EXPECT_TRUE(d.retry);
  EXPECT_LE(d.wait, std::chrono::milliseconds(75));  // probes again soon
  auto st = c.status("p");
  EXPECT_EQ(st->effective_limit, 2);  // an ordinary close never lowers it
  ASSERT_TRUE(st->release_delay_lower_seconds);
  EXPECT_GE(*st->release_delay_lower_seconds, 0.2);
  EXPECT_FALSE(st->release_delay_configured);
  // Estimate: the lower bound plus the margin (at least 250 ms).
  // (Both are whole nanoseconds in seconds: allow for the rounding of the sum.)
  EXPECT_GE(st->release_delay_seconds, *st->release_delay_lower_seconds + 0.25 - 1e-9);
  EXPECT_EQ(st->cooling, 1);  // a's slot cools under the learned delay
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // Accepted half a second after a's release: the delay is shorter than that.
  c.on_upstream_accepted(n);
  st = c.status("p");
  ASSERT_TRUE(st->release_delay_upper_seconds);
  EXPECT_GE(*st->release_delay_upper_seconds, 0.5);
  EXPECT_LE(st->release_delay_seconds, *st->release_delay_upper_seconds);
  EXPECT_GE(st->release_delay_seconds, *st->release_delay_lower_seconds);
}

TEST(Admission, ADestroyedTicketLeavesTheQueue) {
  boost::asio::io_context ioc;
  Controller c({pool("p", 1, 10)}, {}, {});
  auto held = c.enqueue("p", "t", ioc.get_executor()).take_result().lease;
  {
    auto ticket = c.enqueue("p", "t", ioc.get_executor());
    ASSERT_FALSE(ticket.decided());
    EXPECT_EQ(c.status("p")->queued, 1);
  }
  EXPECT_EQ(c.status("p")->queued, 0);
  // The slot is not granted to the gone waiter: the next request gets it.
  held.release();
  EXPECT_EQ(c.status("p")->in_use, 0);
  auto next = c.enqueue("p", "t", ioc.get_executor());
  ASSERT_TRUE(next.decided());
  EXPECT_TRUE(next.take_result().lease);
}

TEST(Admission, ATicketDestroyedAfterItsGrantGivesTheLeaseBack) {
  boost::asio::io_context ioc;
  Controller c({pool("p", 1, 10)}, {}, {});
  auto held = c.enqueue("p", "t", ioc.get_executor()).take_result().lease;
  auto ticket = std::make_unique<Ticket>(c.enqueue("p", "t", ioc.get_executor()));
  auto behind = wait_on(ioc, c.enqueue("p", "t", ioc.get_executor()));
  settle(ioc);
  held.release();  // granted to the first waiter, which never takes it
  EXPECT_EQ(c.status("p")->in_use, 1);
  ticket.reset();
  run_until(ioc, [&] { return behind->result.has_value(); });
  ASSERT_TRUE(behind->result && behind->result->lease);
  EXPECT_EQ(c.status("p")->in_use, 1);
  EXPECT_EQ(c.status("p")->queued, 0);
}

// As the gateway uses it with several I/O threads: requests from many
// strands at once, woken on their strands by releases on other threads,
// while another thread reads the pools' status.
TEST(Admission, ConcurrentRequestsFromManyStrandsNeverExceedTheLimit) {
  namespace asio = boost::asio;
  constexpr int kLimit = 3, kRequesters = 12, kRounds = 25;
  asio::io_context ioc(2);
  auto work = asio::make_work_guard(ioc);
  Controller c({pool("p", kLimit, 60, 1000)}, {}, {}, ioc.get_executor());
  std::atomic<int> holding{0}, max_holding{0}, refused{0}, finished{0};
  auto requester = [&](int i) -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer hold(ex);
    for (int k = 0; k < kRounds; ++k) {
      auto ticket = c.enqueue("p", "t" + std::to_string(i % 3), ex);
      AdmitResult r;
      if (ticket.decided()) r = ticket.take_result();
      else r = co_await ticket.wait();
      if (!r.lease) {
        ++refused;
        continue;
      }
      int now = ++holding;
      for (int m = max_holding.load(); now > m && !max_holding.compare_exchange_weak(m, now);) {
      }
      hold.expires_after(std::chrono::microseconds(100 * (k % 5)));
      co_await hold.async_wait(asio::use_awaitable);
      --holding;
      r.lease.release();
    }
    ++finished;
  };
  for (int i = 0; i < kRequesters; ++i) asio::co_spawn(asio::make_strand(ioc), requester(i), asio::detached);
  std::vector<std::thread> io;
  for (int t = 0; t < 2; ++t) io.emplace_back([&] { ioc.run(); });
  // The status as an operator reads it, meanwhile (bounded).
  int over = 0, reads = 0;
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (finished.load() < kRequesters && std::chrono::steady_clock::now() < end) {
    auto st = c.status("p");
    if (!st || st->in_use > kLimit || st->queued > kRequesters || c.leases_in_use() > kLimit) ++over;
    ++reads;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  work.reset();
  ioc.stop();
  for (auto& t : io) t.join();
  EXPECT_EQ(finished.load(), kRequesters) << "requests still waiting after 60 s";
  EXPECT_EQ(refused.load(), 0);
  EXPECT_LE(max_holding.load(), kLimit);
  EXPECT_EQ(max_holding.load(), kLimit) << "the requests never filled the pool: the test did not contend";
  EXPECT_EQ(over, 0) << "of " << reads << " status reads";
  EXPECT_EQ(c.leases_in_use(), 0);
  EXPECT_EQ(c.status("p")->queued, 0);
}

TEST(ReleaseDelay, BoundsFromRefusalsAndAcceptances) {
  using namespace std::chrono_literals;
  ReleaseDelayEstimator e(8);
  auto t0 = SteadyClock::now();
  EXPECT_EQ(e.estimate(t0), SteadyClock::duration::zero());
  EXPECT_FALSE(e.on_refusal(t0, 1));  // nothing released: no explanation
  e.note_release(t0);
  e.note_release(t0 + 1s);
  e.note_release(t0 + 2s);
  EXPECT_EQ(*e.release(1), t0 + 2s);
  EXPECT_EQ(*e.release(3), t0);
  EXPECT_FALSE(e.release(4));
  // A refusal at t0+3s while the vendor counts 2 released streams: the
  // second most recent (t0+1s) is still counted, the delay is over 2 s.
  EXPECT_EQ(*e.on_refusal(t0 + 3s, 2), 2s);
  EXPECT_EQ(*e.lower(t0 + 3s), 2s);
  // Lower bound plus a margin of max(250 ms, a tenth).
  EXPECT_EQ(e.estimate(t0 + 3s), 2s + 250ms);
  // An acceptance at t0+3.1s while at most 2 are counted: the third most
  // recent (t0) is no longer counted: the delay is under 3.1 s.
  EXPECT_EQ(*e.on_acceptance(t0 + 3100ms, 3), 3100ms);
  EXPECT_EQ(e.estimate(t0 + 3100ms), 2s + 250ms);
  // A higher lower bound, clamped under the upper bound.
  EXPECT_EQ(*e.on_refusal(t0 + 3s, 3), 3s);
  EXPECT_EQ(e.estimate(t0 + 3100ms), 3100ms);
  // A release older than the longest delay learned explains nothing.
  EXPECT_FALSE(e.on_refusal(t0 + 40s, 3));
  // Bounds are forgotten after the window.
  EXPECT_EQ(e.estimate(t0 + 3s + ReleaseDelayEstimator::kSampleWindow + 1s), SteadyClock::duration::zero());
}

TEST(ReleaseDelay, TheNewestBoundWinsOverOlderOnesItContradicts) {
  using namespace std::chrono_literals;
  ReleaseDelayEstimator e(8);
  auto t0 = SteadyClock::now();
  e.note_release(t0);
  EXPECT_TRUE(e.on_acceptance(t0 + 2s, 1));  // under 2 s
  EXPECT_TRUE(e.on_refusal(t0 + 1s, 1));     // over 1 s
  EXPECT_EQ(*e.upper(t0 + 2s), 2s);
  // The vendor now keeps streams longer: a refusal at 5 s drops the 2 s bound.
  e.note_release(t0 + 10s);
  EXPECT_TRUE(e.on_refusal(t0 + 15s, 1));
  EXPECT_FALSE(e.upper(t0 + 15s));
  EXPECT_EQ(*e.lower(t0 + 15s), 5s);
  EXPECT_EQ(e.estimate(t0 + 15s), 5s + 500ms);  // a tenth of 5 s is more than 250 ms
  // And shorter again: an acceptance at 3 s drops the lower bounds above it.
  e.note_release(t0 + 20s);
  EXPECT_TRUE(e.on_acceptance(t0 + 23s, 1));
  EXPECT_EQ(*e.lower(t0 + 23s), 1s);
  EXPECT_EQ(e.estimate(t0 + 23s), 1s + 250ms);
}

TEST(ReleaseDelay, CoolingCountsRecentReleasesAndNamesTheNextEnd) {
  using namespace std::chrono_literals;
  ReleaseDelayEstimator e(3);
  auto t0 = SteadyClock::now();
  for (int i = 0; i < 5; ++i) e.note_release(t0 + i * 100ms);  // the ring keeps the last 3
  EXPECT_FALSE(e.release(4));
  EXPECT_EQ(e.cooling(t0 + 450ms, 1s), 3);
  EXPECT_EQ(e.cooling(t0 + 1250ms, 1s), 2);  // t0+200ms has cooled
  EXPECT_EQ(*e.next_cooling_end(t0 + 1250ms, 1s), t0 + 1300ms);
  EXPECT_EQ(e.cooling(t0 + 2s, 1s), 0);
  EXPECT_FALSE(e.next_cooling_end(t0 + 2s, 1s));
  EXPECT_EQ(e.cooling(t0 + 450ms, SteadyClock::duration::zero()), 0);
}

TEST(Admission, SetLimitAdmitsWaitersAndCloseRefusesThem) {
  boost::asio::io_context ioc;
  Controller c({pool("p", 1)}, {}, {});
  auto held = c.enqueue("p", "t", ioc.get_executor()).take_result().lease;
  auto w = wait_on(ioc, c.enqueue("p", "t", ioc.get_executor()));
  auto w2 = wait_on(ioc, c.enqueue("p", "t", ioc.get_executor()));
  settle(ioc);
  EXPECT_TRUE(c.set_limit("p", 2));
  run_until(ioc, [&] { return w->result.has_value(); });
  EXPECT_TRUE(w->result->lease);
  c.close();
  run_until(ioc, [&] { return w2->result.has_value(); });
  EXPECT_EQ(w2->result->refusal, Refusal::shutting_down);
  EXPECT_EQ(c.enqueue("p", "t", ioc.get_executor()).take_result().refusal, Refusal::shutting_down);
  EXPECT_FALSE(c.set_limit("nope", 3));
}

TEST(Admission, LegsCountOnlyUnderALease) {
  boost::asio::io_context ioc;
  Controller c({pool("p", 2)}, {}, {});
  auto l = c.enqueue("p", "t", ioc.get_executor()).take_result().lease;
  {
    auto leg = l.open_leg();
    EXPECT_EQ(c.leases_and_legs(), std::make_pair(1, 1));
  }
  EXPECT_EQ(c.leases_and_legs(), std::make_pair(1, 0));
  l.release();
  EXPECT_EQ(c.leases_and_legs(), std::make_pair(0, 0));
}

TEST(Admission, ReconfigureKeepsLeasesAndUnknownPoolIsRefused) {
  boost::asio::io_context ioc;
  Controller c({pool("p", 1)}, {}, {});
  auto l = c.enqueue("p", "t", ioc.get_executor()).take_result().lease;
  c.reconfigure({pool("p", 3), pool("q", 1)}, {}, {});
  EXPECT_EQ(c.status("p")->in_use, 1);
  EXPECT_EQ(c.status("p")->limit, 3);
  EXPECT_TRUE(c.enqueue("q", "t", ioc.get_executor()).take_result().lease);
  EXPECT_EQ(c.enqueue("zzz", "t", ioc.get_executor()).take_result().refusal, Refusal::no_pool);
  c.reconfigure({pool("q", 1)}, {}, {});  // p removed: its lease still returns
  l.release();
  EXPECT_EQ(c.leases_in_use(), 0);
}

TEST(Classifier, OrderedRulesOnPathAndParameters) {
  config::PoolConfig nova_med = pool("medical", 5);
  nova_med.match.path = "/v1/listen";
  nova_med.match.params["model"] = "nova-3-medical*";
  config::PoolConfig listen = pool("streaming", 5);
  listen.match.path = "/v1/listen";
  config::PoolConfig flux = pool("flux", 5);
  flux.match.path = "/v2/listen";
  Classifier c({nova_med, listen, flux});
  EXPECT_EQ(c.classify("/v1/listen", {{"model", "nova-3-medical"}}).value_or(""), "medical");
  EXPECT_EQ(c.classify("/v1/listen", {{"model", "nova-3"}}).value_or(""), "streaming");
  EXPECT_EQ(c.classify("/v1/listen", {}).value_or(""), "streaming");
  EXPECT_EQ(c.classify("/v2/listen", {{"model", "flux-general-en"}}).value_or(""), "flux");
  EXPECT_FALSE(c.classify("/v1/speak", {}));
  EXPECT_TRUE(pattern_matches("nova*", "nova-2"));
  EXPECT_FALSE(pattern_matches("nova", "nova-2"));
}
