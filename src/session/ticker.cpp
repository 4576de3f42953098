#include "session/ticker.hpp"

#include <boost/asio/post.hpp>

namespace sluice::session {

std::shared_ptr<Ticker> Ticker::create(boost::asio::io_context& ioc, std::chrono::milliseconds period) {
  return std::shared_ptr<Ticker>(new Ticker(ioc, period));
}

Ticker::Ticker(boost::asio::io_context& ioc, std::chrono::milliseconds period)
    : period_(period), strand_(boost::asio::make_strand(ioc)), timer_(strand_) {}

Ticker::Subscription::Subscription(Subscription&& o) noexcept
    : ticker_(std::move(o.ticker_)), id_(std::exchange(o.id_, 0)) {}

Ticker::Subscription& Ticker::Subscription::operator=(Subscription&& o) noexcept {
  if (this != &o) {
    reset();
    ticker_ = std::move(o.ticker_);
    id_ = std::exchange(o.id_, 0);
  }
  return *this;
}

Ticker::Subscription::~Subscription() { reset(); }

void Ticker::Subscription::reset() {
  if (id_ == 0) return;
  if (auto t = ticker_.lock()) t->unsubscribe(id_);
  id_ = 0;
  ticker_.reset();
}

Ticker::Subscription Ticker::subscribe(std::function<void()> on_tick) {
  std::uint64_t id;
  bool start = false;
  {
    std::lock_guard lock(mutex_);
    id = next_id_++;
    slots_[id % kSlots].emplace(id, std::move(on_tick));
    ++count_;
    if (!armed_) start = armed_ = true;
  }
  if (start) boost::asio::post(strand_, [self = shared_from_this()] { self->arm(); });
  return Subscription(weak_from_this(), id);
}

std::size_t Ticker::subscribers() const {
  std::lock_guard lock(mutex_);
  return count_;
}

void Ticker::unsubscribe(std::uint64_t id) {
  bool none;
  {
    std::lock_guard lock(mutex_);
    count_ -= slots_[id % kSlots].erase(id);
    none = count_ == 0;
  }
  // Nobody left: the timer goes, so that an idle io_context can return.
  if (none)
    boost::asio::post(strand_, [self = shared_from_this()] {
      std::lock_guard lock(self->mutex_);
      if (self->count_ == 0) self->timer_.cancel();
    });
}

void Ticker::arm() {
  timer_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(period_) / kSlots);
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) { self->fire(ec); });
}

void Ticker::fire(const boost::system::error_code& ec) {
  {
    std::lock_guard lock(mutex_);
    if (count_ == 0) {
      armed_ = false;
      return;
    }
    if (!ec) {
      for (auto& [id, on_tick] : slots_[next_slot_]) on_tick();
      next_slot_ = (next_slot_ + 1) % kSlots;
    }
  }
  arm();
}

}  // namespace sluice::session
