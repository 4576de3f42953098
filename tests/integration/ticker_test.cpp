// The shared housekeeping clock: every subscriber is called each period, an
// unsubscribed one no more, and with nobody left the timer goes so that an
// idle io_context returns.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <memory>
#include <numeric>
#include <optional>
#include <vector>

#include "session/ticker.hpp"

namespace {

using sluice::session::Ticker;
using namespace std::chrono_literals;

// Runs until `pred` or a generous bound (a hang fails instead of blocking).
template <class Pred>
bool run_until(boost::asio::io_context& ioc, Pred pred) {
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!pred() && std::chrono::steady_clock::now() < deadline) {
    ioc.restart();
    ioc.run_for(10ms);
  }
  return pred();
}

TEST(Ticker, CallsEverySubscriberEachPeriodUntilItUnsubscribes) {
  boost::asio::io_context ioc;
  auto ticker = Ticker::create(ioc, 10ms);
  int a = 0, b = 0;
  auto sa = ticker->subscribe([&] { ++a; });
  std::optional<Ticker::Subscription> sb = ticker->subscribe([&] { ++b; });
  EXPECT_EQ(ticker->subscribers(), 2u);
  ASSERT_TRUE(run_until(ioc, [&] { return a >= 3 && b >= 3; }));
  sb.reset();
  EXPECT_EQ(ticker->subscribers(), 1u);
  int b_then = b, a_then = a;
  ASSERT_TRUE(run_until(ioc, [&] { return a >= a_then + 3; }));
  EXPECT_EQ(b, b_then);  // no call after unsubscribing
}

TEST(Ticker, WithNobodySubscribedTheIoContextRunsOut) {
  boost::asio::io_context ioc;
  auto ticker = Ticker::create(ioc, 10ms);
  int ticks = 0;
  {
    auto s = ticker->subscribe([&] { ++ticks; });
    ASSERT_TRUE(run_until(ioc, [&] { return ticks >= 2; }));
  }
  // The last subscription is gone: run() returns once the timer is cancelled.
  ioc.restart();
  ioc.run_for(20s);
  EXPECT_TRUE(ioc.stopped()) << "the ticker kept the io_context alive";
  // Subscribing again restarts it.
  int again = 0;
  auto s = ticker->subscribe([&] { ++again; });
  ASSERT_TRUE(run_until(ioc, [&] { return again >= 2; }));
}

// The subscribers are spread over the period: a firing calls one slot's
// (here 2 of 40), and kSlots firings call each subscriber exactly once.
TEST(Ticker, EachFiringCallsOneSlotAndAPeriodCallsEveryoneOnce) {
  boost::asio::io_context ioc;
  auto ticker = Ticker::create(ioc, 40ms);
  const int n = 2 * static_cast<int>(Ticker::kSlots);
  std::vector<int> ticks(static_cast<std::size_t>(n), 0);
  std::vector<Ticker::Subscription> subs;
  for (int i = 0; i < n; ++i) subs.push_back(ticker->subscribe([&ticks, i] { ++ticks[static_cast<std::size_t>(i)]; }));
  auto total = [&] { return std::accumulate(ticks.begin(), ticks.end(), 0); };
  std::vector<int> per_firing;
  auto bound = std::chrono::steady_clock::now() + 20s;
  while (per_firing.size() < Ticker::kSlots && std::chrono::steady_clock::now() < bound) {
    int before = total();
    ioc.run_one_for(1s);
    if (int called = total() - before; called > 0) per_firing.push_back(called);
  }
  ASSERT_EQ(per_firing.size(), Ticker::kSlots);
  EXPECT_EQ(per_firing, std::vector<int>(Ticker::kSlots, 2));
  EXPECT_EQ(ticks, std::vector<int>(static_cast<std::size_t>(n), 1));
}

// A subscription may outlive its ticker (a session ending after the gateway's
// io_context is gone): the ticker and its callbacks go with the io_context,
// not with the last subscription, and unsubscribing then touches nothing.
// The first two are checked here; that the reset reads no freed memory is
// checked by the AddressSanitizer build (scripts/sanitize.sh runs this test).
TEST(Ticker, ASubscriptionOutlivingItsTickerIsHarmless) {
  std::optional<Ticker::Subscription> s;
  std::weak_ptr<Ticker> weak;
  auto callback_state = std::make_shared<int>(0);
  {
    boost::asio::io_context ioc;
    auto ticker = Ticker::create(ioc, 10ms);
    weak = ticker;
    s = ticker->subscribe([callback_state] { ++*callback_state; });
    // Armed and ticking: its pending wait holds the ticker.
    ASSERT_TRUE(run_until(ioc, [&] { return *callback_state >= 2; }));
    EXPECT_EQ(callback_state.use_count(), 2);  // here and in the ticker
  }
  EXPECT_TRUE(weak.expired()) << "the subscription kept its ticker alive after the io_context";
  EXPECT_EQ(callback_state.use_count(), 1) << "the ticker's callback outlived it";
  s.reset();  // the ticker is gone: nothing to do, nothing touched
  EXPECT_TRUE(weak.expired());
}

}  // namespace
