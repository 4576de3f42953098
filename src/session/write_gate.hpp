#pragma once
// Serializes writers of one WebSocket leg (a pump and the session's control
// task) on the session's strand. Uncontended, acquire and release cost a flag
// test; a waiter parks on a timer that release cancels.
// Thread safety: use only from the strand that owns the leg.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace sluice::session {

class WriteGate {
 public:
  explicit WriteGate(boost::asio::any_io_executor ex) : wake_(ex) {}

  // The per-message path: takes a free gate without suspending.
  bool try_acquire() {
    if (busy_) return false;
    busy_ = true;
    return true;
  }

  boost::asio::awaitable<void> acquire() {
    while (busy_) {
      ++waiters_;
      wake_.expires_at(boost::asio::steady_timer::time_point::max());
      co_await wake_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
      --waiters_;
    }
    busy_ = true;
  }

  void release() {
    busy_ = false;
    if (waiters_ > 0) wake_.cancel();
  }

  bool busy() const { return busy_; }

 private:
  boost::asio::steady_timer wake_;
  bool busy_ = false;
  int waiters_ = 0;
};

}  // namespace sluice::session
