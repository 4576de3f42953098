#pragma once
// Serializes writers of one WebSocket leg (a pump and the session's control
// task) on the session's strand. Uncontended, acquire and release cost a flag
// test. A writer that finds the gate taken parks on a timer of its own, linked
// into the gate's FIFO queue; release() hands the gate straight to the first
// waiter (the gate stays taken, so nobody slips in between) and cancels that
// waiter's timer, which is the only thing that wakes it: a waiter is resumed
// once, when it owns the gate.
// A waiter whose coroutine is destroyed leaves the queue (and passes the gate
// on if it had been handed the gate but not resumed yet). A waiter whose
// coroutine is cancelled leaves the queue and acquire() throws
// operation_aborted.
// Thread safety: use only from the strand that owns the leg.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

namespace sluice::session {

class WriteGate {
 public:
  explicit WriteGate(boost::asio::any_io_executor ex) : ex_(std::move(ex)) {}
  WriteGate(const WriteGate&) = delete;
  WriteGate& operator=(const WriteGate&) = delete;
  // Waiters still parked (their coroutines not destroyed yet) are detached:
  // they stay parked and touch the gate no more.
  ~WriteGate() {
    for (Waiter* w = head_; w; w = w->next) w->gate = nullptr;
    if (handed_) handed_->gate = nullptr;
  }

  // The per-message path: takes a free gate without suspending.
  bool try_acquire() {
    if (busy_) return false;
    busy_ = true;
    return true;
  }

  boost::asio::awaitable<void> acquire() {
    if (!busy_) {
      busy_ = true;
      co_return;
    }
    Waiter w(*this);
    co_await w.timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    if (!w.granted) {
      // Not a hand-off: the waiting coroutine was cancelled. ~Waiter unlinks.
      throw boost::system::system_error(boost::asio::error::operation_aborted, "WriteGate::acquire");
    }
    handed_ = nullptr;
    w.gate = nullptr;  // the caller owns the gate now and releases it
  }

  // Frees the gate, or hands it to the first waiter.
  void release() {
    if (!head_) {
      busy_ = false;
      return;
    }
    Waiter* w = head_;
    unlink(w);
    w->granted = true;
    handed_ = w;
    w->timer.cancel();  // resumes it through its executor, never inline
  }

  bool busy() const { return busy_; }

 private:
  // Lives in the waiting coroutine's frame.
  struct Waiter {
    explicit Waiter(WriteGate& g) : gate(&g), timer(g.ex_, boost::asio::steady_timer::time_point::max()) {
      prev = g.tail_;
      if (g.tail_) g.tail_->next = this;
      else g.head_ = this;
      g.tail_ = this;
    }
    Waiter(const Waiter&) = delete;
    Waiter& operator=(const Waiter&) = delete;
    ~Waiter() {
      if (!gate) return;
      if (granted) {
        // Handed the gate, never resumed: pass it on.
        gate->handed_ = nullptr;
        gate->release();
        return;
      }
      gate->unlink(this);
    }

    WriteGate* gate;  // null once detached
    Waiter* prev = nullptr;
    Waiter* next = nullptr;
    boost::asio::steady_timer timer;
    bool granted = false;  // release() handed it the gate (it is out of the queue)
  };

  void unlink(Waiter* w) {
    if (w->prev) w->prev->next = w->next;
    else head_ = w->next;
    if (w->next) w->next->prev = w->prev;
    else tail_ = w->prev;
    w->prev = w->next = nullptr;
  }

  boost::asio::any_io_executor ex_;
  Waiter* head_ = nullptr;
  Waiter* tail_ = nullptr;
  Waiter* handed_ = nullptr;  // granted the gate, not resumed yet
  bool busy_ = false;
};

}  // namespace sluice::session
