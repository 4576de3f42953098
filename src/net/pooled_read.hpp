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
// 2. No failed recv(), and no end of stream missed. A read that returned
// fewer bytes than it asked for has drained the socket's data, so the next
// read could wait for epoll to report the socket readable instead of trying
// it first. But a short read says nothing about what follows the data: a FIN
// or a reset that arrived in the same readiness event as the last bytes
// produces no further event (Asio registers edge-triggered), so a reader that
// waits for one never sees the end: the stream holds its vendor slot until
// some timeout. So the read asks the kernel what is left: the socket has
// TCP_INQ on, and each recvmsg() returns, as a control message, the bytes
// still queued, or 1 when the peer's FIN is queued behind them (Linux,
// tcp_inq_hint). A reset is not counted there; it shows in the readiness
// event that woke the read (EPOLLERR/EPOLLHUP, which epoll always reports),
// which the descriptor's reactor state still holds while the read runs. The
// read reports reactor_op::done_and_exhausted (the reactor then skips the
// speculative attempt until the descriptor's next readiness event) only when
// both say nothing is left; otherwise the next read tries at once and sees
// the data, the EOF or the error. Where TCP_INQ cannot be set, every read is
// followed by an attempt, as Asio's own async_read_some does.
//
// Asio's own async_read_some tries every read at once ("speculatively")
// unless the previous one saw the end of the stream. On a socket that carries
// one small message at a time (an audio frame every 20 ms), that attempt
// fails with EAGAIN almost every time: one wasted recv() per message and
// direction. This operation is Asio's receive operation with that rule
// changed. A readiness event that arrives while no read is queued re-enables
// the speculative attempt (epoll_reactor::descriptor_state::perform_io), both
// under the descriptor's lock, so bytes arriving after a read are seen too.
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

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
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

// The epoll events of the descriptor's current (or last) readiness event.
// Asio keeps them in the descriptor state's task_result_ (a protected member
// of its operation base, reached here through a derived accessor) from the
// moment epoll_wait reports them until the next report; a read performed by
// the reactor runs in between.
//
// The load is not synchronized with the store, and cannot be: the reactor
// thread that harvests an event stores the field without a lock
// (epoll_reactor::run), and Asio's own reader copies it under the
// scheduler's lock, which an operation cannot reach. With two I/O threads,
// another thread may harvest a later event for the same descriptor while this
// read runs. The field is one aligned word, stored whole, so the load sees the
// events that woke this read or those of a later readiness event of the same
// socket, which describe it no less currently (after a reset, no later event
// comes without the error bits). ThreadSanitizer reports that pair on every
// two-thread run, so this one load is left uninstrumented under it
// (SLUICE_TSAN_UNCHECKED_LOAD; out of line there, so the attribute holds);
// in other builds the macro is empty and the code the same.
#if defined(__SANITIZE_THREAD__)
#define SLUICE_TSAN_UNCHECKED_LOAD __attribute__((noinline, no_sanitize("thread")))
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SLUICE_TSAN_UNCHECKED_LOAD __attribute__((noinline, no_sanitize("thread")))
#endif
#endif
#ifndef SLUICE_TSAN_UNCHECKED_LOAD
#define SLUICE_TSAN_UNCHECKED_LOAD
#endif
struct EventsAccess : ad::scheduler_operation {
  SLUICE_TSAN_UNCHECKED_LOAD static unsigned events(ad::scheduler_operation* op) {
    return static_cast<unsigned>(op->*(&EventsAccess::task_result_));
  }
};
inline unsigned ready_events(ad::epoll_reactor::per_descriptor_data d) {
  // descriptor_state derives privately from its operation base: a C-style
  // cast is the conversion the language allows to an inaccessible base.
  return d ? EventsAccess::events((ad::scheduler_operation*)d) : 0u;  // NOLINT
}

template <class Handler, class IoExecutor>
class RecvOp : public ad::reactor_op {
 public:
  BOOST_ASIO_DEFINE_HANDLER_PTR(RecvOp);

  RecvOp(ad::socket_type socket, ad::epoll_reactor::per_descriptor_data descriptor, bool inq, ReadBuffer* slot,
         const std::uint8_t* prefix, std::size_t prefix_size, Handler& handler, const IoExecutor& io_ex)
      : ad::reactor_op(boost::system::error_code(), &RecvOp::do_perform, &RecvOp::do_complete),
        socket_(socket),
        descriptor_(descriptor),
        inq_(inq),
        slot_(slot),
        prefix_size_(prefix_size),
        handler_(std::move(handler)),
        work_(handler_, io_ex) {
    // No prefix may come as (nullptr, 0): memcpy from a null pointer is
    // undefined even for no bytes.
    if (prefix_size) std::memcpy(prefix_, prefix, prefix_size);
  }

  static status do_perform(ad::reactor_op* base) {
    auto* o = static_cast<RecvOp*>(base);
    if (!o->block_) {
      o->block_ = ReadBuffer::block();
      std::memcpy(o->block_.data(), o->prefix_, o->prefix_size_);
    }
    const std::size_t want = o->block_.size() - o->prefix_size_;
    iovec iov{o->block_.data() + o->prefix_size_, want};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (o->inq_) {
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
    }
    ssize_t n;
    do n = ::recvmsg(o->socket_, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      o->block_.reset();  // wait for readiness without the block
      return not_done;
    }
    if (n < 0) {
      o->ec_ = boost::system::error_code(errno, boost::asio::error::get_system_category());
      return done;
    }
    if (n == 0) {
      o->ec_ = boost::asio::error::eof;
      return done;
    }
    o->bytes_transferred_ = static_cast<std::size_t>(n);
    if (o->bytes_transferred_ == want || !o->inq_) return done;
    // A short read: exhausted only if nothing (no bytes, no FIN, no reset)
    // is left behind it.
    int left = 1;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
      if (c->cmsg_level == IPPROTO_TCP && c->cmsg_type == TCP_CM_INQ) std::memcpy(&left, CMSG_DATA(c), sizeof left);
    if (left != 0 || (ready_events(o->descriptor_) & (EPOLLERR | EPOLLHUP))) return done;
    return done_and_exhausted;
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
  ad::epoll_reactor::per_descriptor_data descriptor_;
  bool inq_;  // the socket reports what is left after each read (TCP_INQ)
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
            boost::asio::query(socket.get_executor(), boost::asio::execution::context))) {
    int on = 1;
    inq_ = ::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_INQ, &on, sizeof on) == 0;
  }

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
          p.p = new (p.v) Op(impl.socket_, impl.reactor_data_, inq_, slot, prefix, prefix_size, handler,
                             socket_.get_executor());
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
  bool inq_ = false;
};

}  // namespace sluice::net
