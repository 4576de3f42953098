#pragma once
// The connections a simulator has open, so that stop() can reach each one.
// A connection registers a stop function that lives in its own coroutine
// frame; stop_all() runs it on the connection's strand, where the coroutine
// itself runs, so the function never races the connection's I/O.
// Thread safety: add, stop_all and Registration's destructor may be called
// from any thread.
#include <boost/asio/any_io_executor.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

namespace sluice::sim {

class ConnectionSet : public std::enable_shared_from_this<ConnectionSet> {
 public:
  using StopFn = std::function<void()>;

  class Registration {
   public:
    Registration(Registration&& other) noexcept
        : owner_(std::move(other.owner_)), id_(other.id_) {}
    Registration& operator=(Registration&&) = delete;
    ~Registration();

   private:
    friend class ConnectionSet;
    Registration(std::shared_ptr<ConnectionSet> owner, std::uint64_t id)
        : owner_(std::move(owner)), id_(id) {}
    std::shared_ptr<ConnectionSet> owner_;
    std::uint64_t id_;
  };

  // `stop` must stay valid until the Registration is destroyed, and both
  // must be used only on `strand`. nullopt once stop_all() has run.
  std::optional<Registration> add(boost::asio::any_io_executor strand, const StopFn* stop);

  // Refuses new registrations and runs every registered stop function on
  // its connection's strand.
  void stop_all();

  std::size_t size() const;

 private:
  struct Entry {
    boost::asio::any_io_executor strand;
    const StopFn* stop;
  };
  void remove(std::uint64_t id);

  mutable std::mutex mutex_;
  bool stopped_ = false;                   // guarded by mutex_
  std::uint64_t next_id_ = 1;              // guarded by mutex_
  std::map<std::uint64_t, Entry> entries_; // guarded by mutex_
};

}  // namespace sluice::sim
