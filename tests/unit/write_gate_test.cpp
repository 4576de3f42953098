// WriteGate: writers that find the gate taken park until it is handed to
// them, in the order they came, and are not resumed before. Driven one
// handler at a time on an io_context of the test's own (no sockets).
#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>

#include <exception>
#include <optional>
#include <string>

#include "session/write_gate.hpp"

namespace {

namespace asio = boost::asio;
using sluice::session::WriteGate;

// Runs ready handlers one at a time, at most `bound`; returns how many ran.
// With nothing but the gate's waiters on the io_context, every handler run
// while the gate is held is a waiter being resumed.
int drain(asio::io_context& ioc, int bound = 1000) {
  ioc.restart();
  int n = 0;
  while (n < bound && ioc.poll_one() > 0) ++n;
  return n;
}

// Takes the gate, holds it across a suspension (as a pump whose write did
// not complete at once), and gives it back. Logs "<name>+" and "<name>-".
asio::awaitable<void> writer(WriteGate& gate, std::string& log, char name) {
  co_await gate.acquire();
  log += name;
  log += '+';
  co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
  log += name;
  log += '-';
  gate.release();
}

TEST(WriteGate, UncontendedIsAFlag) {
  asio::io_context ioc;
  WriteGate gate(ioc.get_executor());
  EXPECT_FALSE(gate.busy());
  EXPECT_TRUE(gate.try_acquire());
  EXPECT_TRUE(gate.busy());
  EXPECT_FALSE(gate.try_acquire());
  gate.release();
  EXPECT_FALSE(gate.busy());
  EXPECT_TRUE(gate.try_acquire());
  gate.release();
  // acquire() on a free gate completes without a handler of its own.
  std::string log;
  asio::co_spawn(ioc, writer(gate, log, 'a'), asio::detached);
  drain(ioc);
  EXPECT_EQ(log, "a+a-");
  EXPECT_FALSE(gate.busy());
}

TEST(WriteGate, TwoWaitersParkUntilReleaseAndAreGrantedInOrder) {
  asio::io_context ioc;
  WriteGate gate(ioc.get_executor());
  ASSERT_TRUE(gate.try_acquire());  // the holder
  std::string log;
  // The first waiter alone: what starting a coroutine and parking it costs.
  asio::co_spawn(ioc, writer(gate, log, 'a'), asio::detached);
  const int start_a = drain(ioc);
  ASSERT_LT(start_a, 1000);
  // The second waiter: the same cost, and nothing more may run while the gate
  // is held. Every further handler is a waiter woken for nothing.
  asio::co_spawn(ioc, writer(gate, log, 'b'), asio::detached);
  const int start_b = drain(ioc);
  const int spurious = start_b - start_a;
  EXPECT_EQ(spurious, 0) << "waiters resumed " << spurious << " times while the gate was held (bound 1000)";
  EXPECT_EQ(log, "");
  EXPECT_TRUE(gate.busy());
  // Release hands the gate to the first waiter: nobody takes it in between.
  gate.release();
  EXPECT_TRUE(gate.busy());
  EXPECT_FALSE(gate.try_acquire());
  drain(ioc);
  EXPECT_EQ(log, "a+a-b+b-");
  EXPECT_FALSE(gate.busy());
}

TEST(WriteGate, WaitersAreGrantedFirstComeFirstServed) {
  asio::io_context ioc;
  WriteGate gate(ioc.get_executor());
  ASSERT_TRUE(gate.try_acquire());
  std::string log;
  for (char name : std::string("cab")) {
    asio::co_spawn(ioc, writer(gate, log, name), asio::detached);
    ASSERT_LT(drain(ioc), 1000);
  }
  EXPECT_EQ(log, "");
  gate.release();
  ASSERT_LT(drain(ioc), 1000);
  EXPECT_EQ(log, "c+c-a+a-b+b-");
  EXPECT_FALSE(gate.busy());
}

TEST(WriteGate, ACancelledWaiterLeavesTheQueue) {
  asio::io_context ioc;
  WriteGate gate(ioc.get_executor());
  ASSERT_TRUE(gate.try_acquire());
  std::string log;
  asio::cancellation_signal cancel_a;
  std::exception_ptr a_error;
  asio::co_spawn(ioc, writer(gate, log, 'a'),
                 asio::bind_cancellation_slot(cancel_a.slot(), [&](std::exception_ptr e) { a_error = e; }));
  asio::co_spawn(ioc, writer(gate, log, 'b'), asio::detached);
  ASSERT_LT(drain(ioc), 1000);
  cancel_a.emit(asio::cancellation_type::terminal);
  ASSERT_LT(drain(ioc), 1000);
  ASSERT_TRUE(a_error);
  try {
    std::rethrow_exception(a_error);
  } catch (const boost::system::system_error& e) {
    EXPECT_EQ(e.code(), asio::error::operation_aborted);
  }
  EXPECT_TRUE(gate.busy());  // still the holder's
  gate.release();
  ASSERT_LT(drain(ioc), 1000);
  EXPECT_EQ(log, "b+b-");
  EXPECT_FALSE(gate.busy());
}

TEST(WriteGate, AWaiterDestroyedAfterTheHandOffPassesTheGateOn) {
  std::optional<asio::io_context> ioc(std::in_place);
  WriteGate gate(ioc->get_executor());
  ASSERT_TRUE(gate.try_acquire());
  std::string log;
  asio::co_spawn(*ioc, writer(gate, log, 'a'), asio::detached);
  asio::co_spawn(*ioc, writer(gate, log, 'b'), asio::detached);
  ASSERT_LT(drain(*ioc), 1000);
  gate.release();  // handed to a, which is not resumed yet
  EXPECT_TRUE(gate.busy());
  ioc.reset();  // both coroutines are destroyed where they wait
  EXPECT_EQ(log, "");
  EXPECT_FALSE(gate.busy()) << "the gate stayed taken by a waiter that is gone";
}

}  // namespace
