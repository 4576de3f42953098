#pragma once
// Reading a TCP socket the way an event-driven proxy does, into a buffer
// taken only when there are bytes to read.
//
// 1. The buffer. The read holds no buffer while it waits: a ReadBuffer block
// is taken from the thread's cache when the socket is readable, right before
// recv(), and handed to the caller with the bytes; the block goes back to the
// cache if recv() finds nothing after all. `prefix` bytes (the start of a
// frame header left over from the last read) are copied in front of them.
//
// 2. No failed recv(). A read that returned fewer bytes than it asked for has
// drained the socket, so the next read waits for epoll to report the socket
// readable instead of trying it first.
//
// Asio's own async_read_some tries every read at once ("speculatively")
// unless the previous one saw the end of the stream. On a socket that carries
// one small message at a time (an audio frame every 20 ms), that attempt
// fails with EAGAIN almost every time: one wasted recv() per message and
// direction. This operation is Asio's receive operation with one rule
// changed: a short read reports reactor_op::done_and_exhausted, on which the
// reactor skips the speculative attempt until the descriptor's next readiness
// event. No data can be missed: a readiness event that arrives while no read
// is queued re-enables the speculative attempt (epoll_reactor::
// descriptor_state::perform_io), both under the descriptor's lock.
//
// Cancellation: socket-wide only (cancel() or close() abort the read with
// operation_aborted); per-operation cancellation slots are not connected.
// Thread safety: as for async_read_some on the same socket.
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/detail/bind_handler.hpp>
#include <boost/asio/detail/fenced_block.hpp>
#include <boost/asio/detail/handler_alloc_helpers.hpp>
#include <boost/asio/detail/handler_cont_helpers.hpp>
#include <boost/asio/detail/handler_work.hpp>
#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/detail/socket_ops.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/query.hpp>

#include "net/read_buffer.hpp"

#include <cstddef>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <utility>

#if !defined(BOOST_ASIO_HAS_EPOLL) || defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT)
#error "net/pooled_read.hpp needs Asio's epoll reactor"
#endif

namespace sluice::net {

namespace pooled_read_detail {

namespace ad = boost::asio::detail;
using tcp = boost::asio::ip::tcp;

// The most bytes a read carries in front of what it reads (a frame header
// is at most 14 bytes).
constexpr std::size_t kMaxPrefix = 16;

// The socket's reactor registration, which basic_socket keeps protected.
struct SocketAccess : tcp::socket {
  static auto& implementation(tcp::socket& s) { return (s.*(&SocketAccess::impl_)).get_implementation(); }
};

template <class Handler, class IoExecutor>
class RecvOp : public ad::reactor_op {
 public:
  BOOST_ASIO_DEFINE_HANDLER_PTR(RecvOp);

  RecvOp(ad::socket_type socket, ReadBuffer* slot, const std::uint8_t* prefix, std::size_t prefix_size,
         Handler& handler, const IoExecutor& io_ex)
      : ad::reactor_op(boost::system::error_code(), &RecvOp::do_perform, &RecvOp::do_complete),
        socket_(socket),
        slot_(slot),
        prefix_size_(prefix_size),
        handler_(std::move(handler)),
        work_(handler_, io_ex) {
    std::memcpy(prefix_, prefix, prefix_size);
  }

  static status do_perform(ad::reactor_op* base) {
    auto* o = static_cast<RecvOp*>(base);
    if (!o->block_) {
      o->block_ = ReadBuffer::block();
      std::memcpy(o->block_.data(), o->prefix_, o->prefix_size_);
    }
    if (!ad::socket_ops::non_blocking_recv1(o->socket_, o->block_.data() + o->prefix_size_,
                                            o->block_.size() - o->prefix_size_, 0, true, o->ec_,
                                            o->bytes_transferred_)) {
      o->block_.reset();  // EAGAIN: wait for readiness without the block
      return not_done;
    }
    // The rule that differs from Asio's: a short read drained the socket.
    if (o->ec_ || o->bytes_transferred_ < o->block_.size() - o->prefix_size_) return done_and_exhausted;
    return done;
  }

  static void do_complete(void* owner, ad::operation* base, const boost::system::error_code&, std::size_t) {
    auto* o = static_cast<RecvOp*>(base);
    ptr p = {std::addressof(o->handler_), o, o};
    ad::handler_work<Handler, IoExecutor> w(std::move(o->work_));
    // The block goes to its reader's slot before the upcall: while the read
    // is pending, nothing else uses the slot.
    if (owner) *o->slot_ = std::move(o->block_);
    // The handler is moved out so that the operation's memory is freed
    // before the upcall (the handler may start the next read).
    ad::binder2<Handler, boost::system::error_code, std::size_t> handler(o->handler_, o->ec_, o->bytes_transferred_);
    p.h = std::addressof(handler.handler_);
    p.reset();
    if (owner) {
      ad::fenced_block b(ad::fenced_block::half);
      w.complete(handler, handler.handler_);
    }
  }

 private:
  ad::socket_type socket_;
  ReadBuffer* slot_;
  ReadBuffer block_;
  std::uint8_t prefix_[kMaxPrefix];  // the carried bytes, copied: the caller's may change
  std::size_t prefix_size_;
  Handler handler_;
  ad::handler_work<Handler, IoExecutor> work_;
};

}  // namespace pooled_read_detail

// Reads a plain TCP socket with the rules above. Holds the socket and its
// reactor (looked up once: Asio's service lookup takes a lock).
class PooledReader {
 public:
  explicit PooledReader(boost::asio::ip::tcp::socket& socket)
      : socket_(socket),
        reactor_(boost::asio::use_service<boost::asio::detail::reactor>(
            boost::asio::query(socket.get_executor(), boost::asio::execution::context))) {}

  // Reads some bytes. On completion `slot` holds a block starting with the
  // `prefix_size` (at most 16) bytes of `prefix`, followed by the bytes read;
  // the handler gets the number of bytes read (after the prefix). `slot` must
  // stay valid, and untouched, until then. Completion signature:
  // void(error_code, std::size_t).
  static constexpr std::size_t kMaxPrefix = pooled_read_detail::kMaxPrefix;

  template <class Token>
  auto async_read(ReadBuffer& slot, const std::uint8_t* prefix, std::size_t prefix_size, Token&& token) {
    if (prefix_size > kMaxPrefix) throw std::length_error("PooledReader: prefix longer than 16 bytes");
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, ReadBuffer* slot, const std::uint8_t* prefix, std::size_t prefix_size) {
          namespace ad = boost::asio::detail;
          using Handler = std::decay_t<decltype(handler)>;
          using Executor = boost::asio::ip::tcp::socket::executor_type;
          using Op = pooled_read_detail::RecvOp<Handler, Executor>;
          auto& impl = pooled_read_detail::SocketAccess::implementation(socket_);
          const bool is_continuation = boost_asio_handler_cont_helpers::is_continuation(handler);
          typename Op::ptr p = {std::addressof(handler), Op::ptr::allocate(handler), nullptr};
          p.p = new (p.v) Op(impl.socket_, slot, prefix, prefix_size, handler, socket_.get_executor());
          if (!(impl.state_ & ad::socket_ops::non_blocking) &&
              !ad::socket_ops::set_internal_non_blocking(impl.socket_, impl.state_, true, p.p->ec_)) {
            reactor_.post_immediate_completion(p.p, is_continuation);
          } else {
            reactor_.start_op(ad::reactor::read_op, impl.socket_, impl.reactor_data_, p.p, is_continuation, true);
          }
          p.v = p.p = nullptr;
        },
        token, &slot, prefix, prefix_size);
  }

 private:
  boost::asio::ip::tcp::socket& socket_;
  boost::asio::detail::reactor& reactor_;
};

}  // namespace sluice::net
