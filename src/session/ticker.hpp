#pragma once
// One clock for every open stream's housekeeping (liveness pings, close
// deadlines, the pools' hygiene policies): a single timer that fires once a
// period while anyone is subscribed, instead of a timer per stream. With
// thousands of streams, per-stream timers meant a timer interrupt and a
// timerfd update per stream per second; the ticker costs a few of each.
//
// Subscribers are spread over kSlots slots, and the timer fires kSlots times
// a period, each time calling one slot's subscribers: every subscriber still
// ticks once a period, but the work of a tick is never the whole population's
// at once. (All of 1000 streams' housekeeping in one burst held up every
// frame arriving during it, which showed in the relay's 99th percentile.)
//
// Thread safety: subscribe, and a Subscription's destruction, from any
// thread. Callbacks run on the ticker's strand and must only hand work to
// their own executor (post), never block.
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace sluice::session {

class Ticker : public std::enable_shared_from_this<Ticker> {
 public:
  static std::shared_ptr<Ticker> create(boost::asio::io_context& ioc,
                                        std::chrono::milliseconds period = std::chrono::seconds(1));

  // Unsubscribes when destroyed.
  class Subscription {
   public:
    Subscription() = default;
    Subscription(Subscription&& o) noexcept;
    Subscription& operator=(Subscription&& o) noexcept;
    ~Subscription();
    void reset();

   private:
    friend class Ticker;
    Subscription(std::weak_ptr<Ticker> t, std::uint64_t id) : ticker_(std::move(t)), id_(id) {}
    std::weak_ptr<Ticker> ticker_;
    std::uint64_t id_ = 0;
  };

  static constexpr std::size_t kSlots = 20;

  // `on_tick` runs once a period, starting within one period.
  Subscription subscribe(std::function<void()> on_tick);
  std::size_t subscribers() const;

 private:
  Ticker(boost::asio::io_context& ioc, std::chrono::milliseconds period);
  void unsubscribe(std::uint64_t id);
  void arm();  // on the strand
  void fire(const boost::system::error_code& ec);

  const std::chrono::milliseconds period_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::steady_timer timer_;
  mutable std::mutex mutex_;
  // Subscriber `id` is in slot id % kSlots. Guarded by mutex_, as are the next three.
  std::array<std::unordered_map<std::uint64_t, std::function<void()>>, kSlots> slots_;
  std::size_t count_ = 0;
  std::uint64_t next_id_ = 1;
  bool armed_ = false;  // a wait is pending or about to be
  std::size_t next_slot_ = 0;  // the slot the next firing calls (on the strand)
};

}  // namespace sluice::session
