#pragma once
// Reading a TCP socket the way an event-driven proxy does: a read that
// returned fewer bytes than it asked for has drained the socket, so the next
// read waits for epoll to report the socket readable instead of trying it
// first.
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

#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>

#if !defined(BOOST_ASIO_HAS_EPOLL) || defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT)
#error "net/exhausting_read.hpp needs Asio's epoll reactor"
#endif

namespace sluice::net {

namespace exhausting_detail {

namespace ad = boost::asio::detail;
using tcp = boost::asio::ip::tcp;

// The socket's reactor registration, which basic_socket keeps protected.
struct SocketAccess : tcp::socket {
  static auto& implementation(tcp::socket& s) { return (s.*(&SocketAccess::impl_)).get_implementation(); }
};

template <class Handler, class IoExecutor>
class RecvOp : public ad::reactor_op {
 public:
  BOOST_ASIO_DEFINE_HANDLER_PTR(RecvOp);

  RecvOp(ad::socket_type socket, boost::asio::mutable_buffer buffer, Handler& handler, const IoExecutor& io_ex)
      : ad::reactor_op(boost::system::error_code(), &RecvOp::do_perform, &RecvOp::do_complete),
        socket_(socket),
        buffer_(buffer),
        handler_(std::move(handler)),
        work_(handler_, io_ex) {}

  static status do_perform(ad::reactor_op* base) {
    auto* o = static_cast<RecvOp*>(base);
    if (!ad::socket_ops::non_blocking_recv1(o->socket_, o->buffer_.data(), o->buffer_.size(), 0, true, o->ec_,
                                            o->bytes_transferred_))
      return not_done;  // EAGAIN: wait for readiness
    // The rule that differs from Asio's: a short read drained the socket.
    if (o->ec_ || o->bytes_transferred_ < o->buffer_.size()) return done_and_exhausted;
    return done;
  }

  static void do_complete(void* owner, ad::operation* base, const boost::system::error_code&, std::size_t) {
    auto* o = static_cast<RecvOp*>(base);
    ptr p = {std::addressof(o->handler_), o, o};
    ad::handler_work<Handler, IoExecutor> w(std::move(o->work_));
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
  boost::asio::mutable_buffer buffer_;
  Handler handler_;
  ad::handler_work<Handler, IoExecutor> work_;
};

}  // namespace exhausting_detail

// Reads some bytes into `buffer` (which must not be empty) like
// socket.async_read_some, with the exhaustion rule above. Completion
// signature: void(error_code, std::size_t).
template <class Token>
auto async_read_exhausting(boost::asio::ip::tcp::socket& socket, boost::asio::mutable_buffer buffer, Token&& token) {
  return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
      [](auto handler, boost::asio::ip::tcp::socket* s, boost::asio::mutable_buffer b) {
        namespace ad = boost::asio::detail;
        using Handler = std::decay_t<decltype(handler)>;
        using Executor = boost::asio::ip::tcp::socket::executor_type;
        using Op = exhausting_detail::RecvOp<Handler, Executor>;
        auto& impl = exhausting_detail::SocketAccess::implementation(*s);
        auto& reactor = boost::asio::use_service<ad::reactor>(
            boost::asio::query(s->get_executor(), boost::asio::execution::context));
        const bool is_continuation = boost_asio_handler_cont_helpers::is_continuation(handler);
        typename Op::ptr p = {std::addressof(handler), Op::ptr::allocate(handler), nullptr};
        p.p = new (p.v) Op(impl.socket_, b, handler, s->get_executor());
        if (!(impl.state_ & ad::socket_ops::non_blocking) &&
            !ad::socket_ops::set_internal_non_blocking(impl.socket_, impl.state_, true, p.p->ec_)) {
          reactor.post_immediate_completion(p.p, is_continuation);
        } else {
          reactor.start_op(ad::reactor::read_op, impl.socket_, impl.reactor_data_, p.p, is_continuation, true);
        }
        p.v = p.p = nullptr;
      },
      token, &socket, buffer);
}

}  // namespace sluice::net
