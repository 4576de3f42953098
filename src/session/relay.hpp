#pragma once
// The relay of one admitted stream: a frame-walking byte relay between the
// client's connection and the upstream's, after both handshakes.
//
// Each direction is one pump (a coroutine) that reads whatever bytes have
// arrived into its leg's buffer, walks the frame headers in them
// (FrameWalker), and writes the data frames on in one write, as they came: a
// client's frames still masked (valid toward the upstream, to which sluice is
// the client), an upstream's unmasked (as a server's frames toward the client
// must be). Only control frames (answered or passed on by the gateway itself)
// and the text messages the gateway reads (KeepAlive, CloseStream, Metadata,
// ...) are unmasked, into a copy. A third coroutine, control, wakes on the
// gateway's shared one-second tick (Ticker) for liveness pings, close
// deadlines and the pool's hygiene policy, and ends the stream on an
// operator's request.
//
// Thread safety: everything runs on the session's executor (a strand when the
// gateway runs several I/O threads). Invariant: each leg
// has exactly one reader (its pump) and one writer at a time (its WriteGate);
// a pump whose write ended inside a frame keeps the gate until the frame is
// complete, so frames the gateway injects (pong, ping, close, CloseStream)
// land between frames.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/json/object.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>
#include <cctype>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>

#include "config/config.hpp"
#include "events/event_log.hpp"
#include "net/pooled_read.hpp"
#include "net/read_buffer.hpp"
#include "protocol/endpoint.hpp"
#include "protocol/message.hpp"
#include "registry/registry.hpp"
#include "session/frame.hpp"
#include "session/resume.hpp"
#include "session/ticker.hpp"
#include "upstream/connector.hpp"
#include "session/write_gate.hpp"

namespace sluice::session {

namespace relay_detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

template <class S>
constexpr bool is_plain = std::is_same_v<S, tcp::socket>;

inline tcp::socket& socket_of(tcp::socket& s) { return s; }
inline tcp::socket& socket_of(beast::ssl_stream<beast::tcp_stream>& s) { return beast::get_lowest_layer(s).socket(); }

// Four random bytes for a frame the gateway sends to the upstream.
void random_mask(std::uint8_t* out);

// Close codes as numbers (RFC 6455 7.4.1).
constexpr std::uint16_t kNormal = 1000, kGoingAway = 1001, kProtocolError = 1002, kPolicy = 1008, kTooBig = 1009,
                        kInternal = 1011;

// A TLS leg's read buffer starts small and grows while reads fill it. (A
// plain leg borrows a net::ReadBuffer block per read instead.)
constexpr std::size_t kInitialBuffer = 1024;
constexpr std::size_t kMaxBuffer = 64 * 1024;

}  // namespace relay_detail

// What a resumable stream's relay needs (docs/resume.md).
struct ResumeSetup {
  config::ResumeConfig cfg;
  bool flux = false;                 // /v2/listen: Flux's counters and turns
  double bytes_per_second = 0;       // of the declared raw format
  std::uint32_t block = 1;           // bytes of one sample of every channel
  // Opens a new upstream connection with the stream's path, query and
  // credentials.
  std::function<boost::asio::awaitable<upstream::ConnectResult>()> reconnect;
};

template <class ClientStream, class UpstreamStream>
class Relay {
  using tcp = relay_detail::tcp;
  template <class S>
  static constexpr bool is_plain = relay_detail::is_plain<S>;

 public:
  Relay(ClientStream& client, UpstreamStream& upstream, std::string client_pending, std::string upstream_pending,
        registry::SessionEntry& entry, const config::RelayConfig& cfg, const config::PoolConfig& pool,
        events::EventLog& events, const registry::Registry& registry, config::Seconds upstream_liveness,
        Ticker& ticker)
      : client_(client, true, cfg.max_message_bytes, std::move(client_pending)),
        upstream_(upstream, false, cfg.max_message_bytes, std::move(upstream_pending)),
        entry_(entry),
        counters_(entry.counters()),
        cfg_(cfg),
        pool_(pool),
        events_(events),
        registry_(registry),
        client_liveness_ns_(to_ns(pool.liveness_timeout)),
        upstream_liveness_ns_(to_ns(upstream_liveness)),
        control_(std::make_shared<Control>(client.get_executor())),
        ticker_(ticker) {}

  boost::asio::awaitable<void> run() {
    auto weak = std::weak_ptr<Control>(control_);
    auto executor = client_.stream().get_executor();
    entry_.set_end_handler([weak, executor] {
      boost::asio::post(executor, [weak] {
        if (auto c = weak.lock()) {
          c->end_requested = true;
          c->timer.cancel();
        }
      });
    });
    // The control task wakes on the shared tick (see session/ticker.hpp).
    auto tick = ticker_.subscribe([weak, executor] {
      boost::asio::post(executor, [weak] {
        if (auto c = weak.lock()) c->timer.cancel();
      });
    });
    prepare(client_);
    prepare(upstream_);
    // One group of three (rather than nested `&&`): a frame and a spawn
    // fewer per stream.
    namespace asio = boost::asio;
    std::exception_ptr e1, e2, e3, e4;
    if (!resume_) {
      auto [order, a, b, c] = co_await asio::experimental::make_parallel_group(
                                  asio::co_spawn(executor, pump(client_, upstream_), asio::deferred),
                                  asio::co_spawn(executor, pump(upstream_, client_), asio::deferred),
                                  asio::co_spawn(executor, control(), asio::deferred))
                                  .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
      (void)order;
      e1 = a, e2 = b, e3 = c;
    } else {
      // A resumable stream has a fourth: the replay of buffered audio to a
      // new upstream.
      auto [order, a, b, c, d] = co_await asio::experimental::make_parallel_group(
                                     asio::co_spawn(executor, pump(client_, upstream_), asio::deferred),
                                     asio::co_spawn(executor, pump(upstream_, client_), asio::deferred),
                                     asio::co_spawn(executor, control(), asio::deferred),
                                     asio::co_spawn(executor, replayer(), asio::deferred))
                                     .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
      (void)order;
      e1 = a, e2 = b, e3 = c, e4 = d;
    }
    entry_.set_end_handler(nullptr);
    for (auto& e : {e1, e2, e3, e4})
      if (e) std::rethrow_exception(e);
  }

  // Called once, as soon as the upstream leg is closed (its lease returns).
  void on_upstream_gone(std::function<void()> fn) { upstream_gone_ = std::move(fn); }

  // Makes the stream resumable: an abnormal end of the upstream leg while
  // the client is still there reconnects and replays (docs/resume.md).
  void enable_resume(ResumeSetup setup) {
    resume_ = std::make_unique<ResumeState>(std::move(setup), client_.stream().get_executor());
  }

  // How the stream ended, for the summary line and the history.
  const std::string& reap_reason() const { return reap_reason_; }
  std::string closed_by = "unknown";
  int close_code = 0;
  std::string close_reason;

 private:
  static constexpr auto use_tuple = boost::asio::as_tuple(boost::asio::use_awaitable);

  static std::int64_t to_ns(config::Seconds s) { return static_cast<std::int64_t>(s.count() * 1e9); }

  struct Control {
    explicit Control(boost::asio::any_io_executor ex) : timer(ex) {}
    boost::asio::steady_timer timer;
    bool end_requested = false;
  };

  // One side's connection and what the relay knows about it.
  template <class Stream>
  struct Leg {
    Leg(Stream& s, bool is_client, std::uint64_t max_message, std::string first_bytes)
        : socket(&s), gate(s.get_executor()), walker(is_client, max_message), client(is_client),
          pending(std::move(first_bytes)) {}
    Stream* socket;        // the connection (replaced when a resumed upstream reconnects)
    Stream& stream() const { return *socket; }
    WriteGate gate;        // writers of this leg
    FrameWalker walker;    // frames arriving from this leg
    const bool client;     // the client's leg: frames from it are masked, frames to it are not
    std::string pending;   // bytes that arrived with the handshake
    // The read buffer, owned by this leg's pump. A TLS leg keeps it, and
    // [0, carry) holds the start of a frame header left from the last read. A
    // plain leg holds it only while it handles what a read brought (see
    // net/pooled_read.hpp); between reads the carried bytes wait in
    // `carry_bytes`.
    net::ReadBuffer buf;
    std::size_t carry = 0;
    std::array<std::uint8_t, kMaxFrameHeader> carry_bytes{};
    std::optional<net::PooledReader> reader;  // a plain leg's reads (set by prepare)
    bool close_queued = false;    // a close frame is waiting for the gate
    bool close_sent = false;      // a close frame was written to this leg
    bool close_received = false;  // this leg's close frame arrived
    bool handshake_done = false;  // both close frames passed: the TCP connection may end
    bool in_close_frame = false;  // its pump is handling this leg's close frame
    bool parsing = true;          // false after a protocol error: the rest is discarded
    bool cut = false;             // the socket was closed by the gateway
    bool timed_out = false;       // ... because the leg fell silent
    bool done = false;            // its pump has ended
    bool mid_frame = false;       // the pump writing to it holds its gate inside a frame
    std::int64_t last_read_ns = 0;   // these four: steady (registry::mono_ns)
    std::int64_t ping_sent_ns = 0;   // 0: no ping outstanding
    std::int64_t close_sent_ns = 0;
    std::int64_t write_since_ns = 0;  // a blocked write to it in progress since
  };

  template <class Stream>
  void prepare(Leg<Stream>& leg) {
    leg.last_read_ns = registry::mono_ns();
    if constexpr (is_plain<Stream>) {
      boost::system::error_code ignored;
      leg.stream().non_blocking(true, ignored);  // for writes that never wait
      leg.reader.emplace(leg.stream());
    }
  }

  // Closes a leg's socket: its reader and any writer end at once.
  template <class Stream>
  void cut(Leg<Stream>& leg) {
    if (leg.cut) return;
    leg.cut = true;
    if (leg.mid_frame) {
      // The pump writing to it held the gate inside a frame: nothing more goes out.
      leg.mid_frame = false;
      leg.gate.release();
    }
    boost::system::error_code ignored;
    auto& s = relay_detail::socket_of(leg.stream());
    s.shutdown(tcp::socket::shutdown_both, ignored);
    s.close(ignored);
  }

  void note_close(std::string side, const ClosePayload& cp) {
    if (closed_by != "unknown") return;
    closed_by = std::move(side);
    close_code = cp.has_code ? cp.code : 0;
    close_reason = cp.reason;
  }

  static ClosePayload make_close(std::uint16_t code, std::string reason) {
    ClosePayload cp;
    cp.has_code = true;
    cp.code = code;
    cp.reason = std::move(reason);
    return cp;
  }

  // A frame the gateway itself sends on a leg: masked toward the upstream.
  template <class Stream>
  static std::string own_frame(const Leg<Stream>& leg, std::uint8_t op, std::string_view payload) {
    std::string out;
    if (leg.client) {
      append_frame(out, op, payload);
    } else {
      std::uint8_t mask[4];
      relay_detail::random_mask(mask);
      append_frame(out, op, payload, mask);
    }
    return out;
  }

  // Writes a frame of the gateway's own through the leg's gate. With
  // `may_wait` false (the control task, which must never stall behind a peer
  // that stopped reading), the gate must be free and a plain socket must take
  // the frame at once, else the leg is cut.
  template <class Stream>
  boost::asio::awaitable<void> send_own(Leg<Stream>& leg, std::string frame, bool may_wait = true) {
    if (leg.cut) co_return;
    if (!leg.gate.try_acquire()) {
      if (!may_wait) {
        cut(leg);
        co_return;
      }
      co_await leg.gate.acquire();
    }
    std::size_t done = 0;
    boost::system::error_code ec;
    if constexpr (is_plain<Stream>) {
      if (!leg.cut) done = leg.stream().write_some(boost::asio::buffer(frame), ec);
      if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) ec = {};
      if (!ec && done < frame.size() && !may_wait) ec = boost::asio::error::would_block;
    }
    if (!ec && done < frame.size() && !leg.cut) {
      auto [wec, n] = co_await boost::asio::async_write(leg.stream(), boost::asio::buffer(frame.data() + done, frame.size() - done),
                                                        use_tuple);
      (void)n;
      ec = wec;
    }
    leg.gate.release();
    if (ec) cut(leg);
  }

  // Sends a close frame on a leg once; no data frame follows it.
  template <class Stream>
  boost::asio::awaitable<void> close_leg(Leg<Stream>& leg, ClosePayload cp, bool may_wait = true) {
    if (leg.close_queued || leg.cut) co_return;
    leg.close_queued = true;
    auto frame = own_frame(leg, opcode::close, close_payload(cp));
    if (!leg.gate.try_acquire()) {
      if (!may_wait) {
        cut(leg);
        co_return;
      }
      co_await leg.gate.acquire();
    }
    leg.close_sent = true;
    leg.close_sent_ns = registry::mono_ns();
    leg.gate.release();  // free: send_own takes it again without waiting
    co_await send_own(leg, std::move(frame), may_wait);
    if (leg.client) client_handshake_done();
  }

  std::string too_big_text() const {
    return fmt::format("sluice: message larger than {} bytes", cfg_.max_message_bytes);
  }

  // Writing [p, p + n) of `from`'s buffer to `to`. A plain socket is written
  // without waiting when it takes the bytes at once (the usual case); what it
  // does not take is written asynchronously, and `from` reads nothing more
  // meanwhile (backpressure). The gate stays held if the bytes end inside a
  // frame.
  //
  // The usual case costs no coroutine frame: the pump calls write_now(), and
  // co_awaits forward() only when the gate is someone else's or bytes are
  // left; forward() then waits for the gate, writes the rest, and ends the
  // write through finish_write() as write_now's caller does.
  struct Sent {
    std::size_t done = 0;
    boost::system::error_code ec;
  };

  // Takes `to`'s gate if it is free (or this pump holds it inside a frame)
  // and writes what a plain socket takes at once. False: the gate is another
  // writer's, and nothing was written.
  template <class To>
  bool write_now(Leg<To>& to, const std::uint8_t* p, std::size_t n, Sent& s) {
    if (!to.mid_frame && !to.gate.try_acquire()) return false;
    to.mid_frame = false;
    if constexpr (is_plain<To>) {
      s.done = to.stream().write_some(boost::asio::buffer(p, n), s.ec);
      if (s.ec == boost::asio::error::would_block || s.ec == boost::asio::error::try_again) s.ec = {};
    }
    return true;
  }

  // Ends a write that holds the gate: a failed leg is cut (its own reader
  // reports why); otherwise the gate is released, or kept inside a frame.
  template <class To>
  void finish_write(Leg<To>& to, bool mid_frame, const boost::system::error_code& ec) {
    if (ec || to.cut) {
      to.gate.release();
      cut(to);
      return;
    }
    if (mid_frame) to.mid_frame = true;
    else to.gate.release();
  }

  template <class To>
  boost::asio::awaitable<void> forward(Leg<To>& to, const std::uint8_t* p, std::size_t n, bool mid_frame, bool have_gate,
                                       Sent s) {
    if (!have_gate) {
      co_await to.gate.acquire();
      if (resume_ && !to.client && resume_->holding()) {
        // The upstream was replaced while this write waited: its bytes are
        // in the replay buffer, and the replay sends them in their place.
        to.gate.release();
        co_return;
      }
      to.mid_frame = false;
      if constexpr (is_plain<To>) {
        if (!to.cut) {
          s.done = to.stream().write_some(boost::asio::buffer(p, n), s.ec);
          if (s.ec == boost::asio::error::would_block || s.ec == boost::asio::error::try_again) s.ec = {};
        }
      }
    }
    if (!s.ec && s.done < n && !to.cut) {
      to.write_since_ns = registry::mono_ns();
      auto [wec, wn] =
          co_await boost::asio::async_write(to.stream(), boost::asio::buffer(p + s.done, n - s.done), use_tuple);
      (void)wn;
      to.write_since_ns = 0;
      s.ec = wec;
    }
    finish_write(to, mid_frame, s.ec);
  }

  // Per message, from the client: counters and the sniffed type of text.
  void on_client_message(bool text, std::uint64_t size, std::string_view sniffed) {
    auto now = registry::mono_ns();
    registry::bump(counters_.client_messages, std::uint64_t{1});
    registry::bump(counters_.client_bytes, size);
    if (!text) {
      registry::bump(counters_.audio_messages, std::uint64_t{1});
      registry::bump(counters_.audio_bytes, size);
      registry::note_audio(counters_, now);
      return;
    }
    counters_.last_text_ns.store(now, std::memory_order_relaxed);
    switch (protocol::classify(protocol::sniff_type(sniffed))) {
      case protocol::MessageType::keep_alive:
        registry::bump(counters_.keep_alive, std::uint64_t{1});
        counters_.last_keep_alive_ns.store(now, std::memory_order_relaxed);
        break;
      case protocol::MessageType::finalize:
        registry::bump(counters_.finalize, std::uint64_t{1});
        break;
      case protocol::MessageType::close_stream:
        registry::bump(counters_.close_stream, std::uint64_t{1});
        entry_.set_state(registry::SessionState::closing);
        break;
      default:
        break;
    }
  }

  // Per message, from the upstream: counters, and Metadata/Connected read.
  void on_upstream_message(bool text, std::uint64_t size, std::string_view sniffed) {
    auto now = registry::mono_ns();
    registry::bump(counters_.upstream_messages, std::uint64_t{1});
    registry::bump(counters_.upstream_bytes, size);
    counters_.last_upstream_ns.store(now, std::memory_order_relaxed);
    std::optional<double> resumed_duration;
    std::string type_name = text ? protocol::sniff_type(sniffed) : std::string();
    if (resume_) {
      if (!read_for_resume(text, size, sniffed, type_name)) return;  // withheld
      resumed_duration = resume_->timeline.metadata_duration();
    }
    if (!text) return;
    auto type = protocol::classify(type_name);
    if (type != protocol::MessageType::metadata && type != protocol::MessageType::connected) return;
    if (auto s = protocol::read_summary(sniffed)) {
      if (!s->request_id.empty() && entry_.request_id().empty()) entry_.set_request_id(s->request_id);
      if (type == protocol::MessageType::metadata)
        entry_.set_upstream_summary(resumed_duration ? resumed_duration : s->duration, s->channels);
    }
  }

  // Makes room for a read in `leg`'s buffer: allocated on first use, doubled
  // while reads fill it, up to kMaxBuffer.
  template <class Stream>
  static void reserve(Leg<Stream>& leg, std::size_t want) {
    if (leg.buf && leg.buf.size() >= want) return;
    resize(leg, std::max(want, !leg.buf ? relay_detail::kInitialBuffer : leg.buf.size() * 2));
  }
  template <class Stream>
  static void resize(Leg<Stream>& leg, std::size_t size) {
    auto fresh = net::ReadBuffer::sized(size);
    if (leg.carry) std::memcpy(fresh.data(), leg.buf.data(), leg.carry);
    leg.buf = std::move(fresh);
  }

  // Ends a TLS leg's session with close_notify (bounded by close_timeout: see
  // check_leg).
  template <class Stream>
  boost::asio::awaitable<void> tls_shutdown(Leg<Stream>& leg) {
    if (!leg.gate.try_acquire()) co_await leg.gate.acquire();
    if (!leg.cut) co_await leg.stream().async_shutdown(use_tuple);
    leg.gate.release();
  }

  // Reads `from` and writes its data frames to `to` until `from` is closed.
  template <class From, class To>
  boost::asio::awaitable<void> pump(Leg<From>& from, Leg<To>& to) {
    for (;;) {
      // 1. Read what has arrived, after a header carried from the last read.
      std::size_t n = 0;
      boost::system::error_code ec;
      if (!from.pending.empty()) {
        reserve(from, from.carry + from.pending.size());
        std::memcpy(from.buf.data() + from.carry, from.pending.data(), from.pending.size());
        n = from.pending.size();
        std::string().swap(from.pending);
      } else if constexpr (is_plain<From>) {
        // A block is taken when bytes are there, after the carried ones.
        from.buf.reset();
        auto [rec, rn] = co_await from.reader->async_read(from.buf, from.carry_bytes.data(), from.carry, use_tuple);
        ec = rec;
        n = rn;
      } else {
        reserve(from, from.carry + 1);
        auto [rec, rn] = co_await from.stream().async_read_some(
            boost::asio::buffer(from.buf.data() + from.carry, from.buf.size() - from.carry), use_tuple);
        ec = rec;
        n = rn;
      }
      if constexpr (!is_plain<From>) {
        if (ec == boost::asio::error::operation_aborted && from.handshake_done && !from.cut) {
          // The client's close was answered from the other pump: close_notify.
          co_await tls_shutdown(from);
          break;
        }
      }
      if (ec) {
        if (!from.client && resume_ && !(from.close_received && from.close_sent)) {
          // (A named reason: GCC 12 destroys a conditional's temporary twice in a co_await.)
          std::string reason = "connection lost: " + ec.message();
          if (from.timed_out) reason = "no answer to pings";
          bool resumed = co_await resume_upstream(std::move(reason), 0);
          if (resumed) continue;  // a new upstream: read it
        }
        // A frame cut short cannot be finished on the other leg: cut it too.
        if (to.mid_frame) cut(to);
        co_await leg_lost(from, to, ec);
        break;
      }
      auto now = registry::mono_ns();
      from.last_read_ns = now;
      from.ping_sent_ns = 0;
      auto total = from.carry + n;
      if (!from.parsing || from.close_received) {
        from.carry = 0;  // after the close (or a protocol error): discarded
        continue;
      }
      auto* bytes = from.buf.data();

      // 2. Walk the frames; keep the data frames in place.
      auto r = from.client
                   ? from.walker.walk(bytes, total,
                                      [this](bool t, std::uint64_t s, std::string_view v) { on_client_message(t, s, v); })
                   : from.walker.walk(bytes, total, [this](bool t, std::uint64_t s, std::string_view v) {
                       on_upstream_message(t, s, v);
                     });

      // 3. Write them on, unless that leg is closing or gone. A resumable
      // stream keeps the client's frames for a replay; while a new upstream
      // is being connected or replayed to, they wait there. A resumed
      // stream's upstream messages go on rewritten (resume_->rewritten).
      if (resume_ && from.client && r.forward > 0) keep_for_replay(bytes, r.forward);
      if (resume_ && !from.client && resume_->timeline.was_resumed()) {
        if (!resume_->rewritten.empty() && !to.close_sent && !to.cut)
          co_await send_own(to, std::exchange(resume_->rewritten, {}));
        resume_->rewritten.clear();
      } else if (r.forward > 0 && !to.close_sent && !to.cut && !(resume_ && from.client && resume_->holding())) {
        Sent sent;
        bool have_gate = write_now(to, bytes, r.forward, sent);
        if (have_gate && (sent.ec || sent.done == r.forward)) finish_write(to, r.mid_frame, sent.ec);
        else co_await forward(to, bytes, r.forward, r.mid_frame, have_gate, sent);
      }

      // 4. Keep the start of an incomplete header for the next read.
      from.carry = total - r.carry_from;
      if constexpr (is_plain<From>) {
        if (from.carry) std::memcpy(from.carry_bytes.data(), bytes + r.carry_from, from.carry);
        from.buf.reset();  // the bytes are on their way: the block goes back
      } else {
        if (from.carry) std::memmove(bytes, bytes + r.carry_from, from.carry);
        bool filled = total == from.buf.size();
        if (filled && from.buf.size() < relay_detail::kMaxBuffer) reserve(from, from.buf.size() * 2);
        else if (from.buf.size() > relay_detail::kInitialBuffer && total < from.buf.size() / 4)
          resize(from, from.buf.size() / 2);  // a burst is over: give half back
      }

      // 5. Control frames.
      if (from.walker.ping_pending) {
        from.walker.ping_pending = false;
        auto payload = std::move(from.walker.ping_payload);
        if (!from.close_sent) co_await send_own(from, own_frame(from, opcode::pong, payload));
      }
      from.walker.pong_seen = false;
      if (r.too_big) co_await on_too_big(from, to);
      if (r.stop == WalkStop::close && !from.client && resume_ && !from.walker.close_malformed &&
          resumable_close(from.walker.close)) {
        auto cp = from.walker.close;
        std::string reason = fmt::format("closed with {} {}", cp.code, cp.reason);
        bool resumed = co_await resume_upstream(std::move(reason), cp.code);
        if (resumed) continue;
        from.walker.close = cp;
      }
      if (r.stop == WalkStop::close) {
        from.in_close_frame = true;
        co_await on_close_frame(from, to);
        from.in_close_frame = false;
        if constexpr (!is_plain<From>) {
          // TLS: end the session with close_notify both ways, then go.
          if (from.close_sent && !from.cut) {
            co_await tls_shutdown(from);
            break;
          }
        }
      } else if (r.stop == WalkStop::protocol_error) {
        co_await on_protocol_error(from, to);
      }
    }
    from.done = true;
    if (!from.client) {
      // The upstream leg is closed (or failed): its socket goes now, and with it the lease.
      cut(from);
      if (upstream_gone_) std::exchange(upstream_gone_, nullptr)();
    } else {
      cut(from);
    }
    if (++pumps_done_ == 2) {
      control_->timer.cancel();
      if (resume_) {
        resume_->wake.cancel();
        resume_->pace.cancel();
      }
    }
  }

  // A close frame from `from`: pass it on with its code and reason exactly
  // (or none), and complete the handshake on `from`. The upstream's close is
  // answered at once, so the vendor can end the connection (and the stream's
  // lease) without waiting for the client. A client's close is answered with
  // the upstream's answer when it comes, so whatever the vendor sends before
  // its answer (final results) still reaches the client; it is answered at
  // once only when the upstream leg can no longer answer.
  template <class From, class To>
  boost::asio::awaitable<void> on_close_frame(Leg<From>& from, Leg<To>& to) {
    from.close_received = true;
    from.carry = 0;
    auto cp = from.walker.close;
    if (from.walker.close_malformed) {
      note_close(from.client ? "client" : "upstream", make_close(relay_detail::kProtocolError, "bad close frame"));
      co_await close_leg(from, make_close(relay_detail::kProtocolError, "sluice: bad close frame"));
      co_await close_leg(to, make_close(from.client ? relay_detail::kGoingAway : relay_detail::kInternal,
                                        from.client ? "client connection lost" : "sluice: upstream connection lost"));
    } else {
      note_close(from.client ? "client" : "upstream", cp);
      co_await close_leg(to, cp);  // passed on, or the answer to `to`'s own close
      if (!from.client || to.cut || to.done || to.close_received) co_await close_leg(from, cp);
    }
    client_handshake_done();
  }

  // Once the client's close handshake is complete, the server ends the TCP
  // connection first: a plain leg is shut down for sending at once; a TLS
  // leg's pump sends close_notify (its pending read is cancelled to wake it).
  void client_handshake_done() {
    auto& c = client_;
    if (!c.close_received || !c.close_sent || c.cut || c.handshake_done) return;
    c.handshake_done = true;
    boost::system::error_code ignored;
    if constexpr (is_plain<ClientStream>) {
      relay_detail::socket_of(c.stream()).shutdown(tcp::socket::shutdown_send, ignored);
    } else {
      if (!c.in_close_frame) relay_detail::socket_of(c.stream()).cancel(ignored);
    }
  }

  template <class From, class To>
  boost::asio::awaitable<void> on_too_big(Leg<From>& from, Leg<To>& to) {
    auto reason = make_close(relay_detail::kTooBig, too_big_text());
    note_close("gateway", reason);
    co_await close_leg(from, reason);
    if (from.client) co_await close_leg(to, make_close(relay_detail::kGoingAway, "client message too big"));
    else co_await close_leg(to, reason);
  }

  template <class From, class To>
  boost::asio::awaitable<void> on_protocol_error(Leg<From>& from, Leg<To>& to) {
    spdlog::debug("[S{}] protocol error from the {}: {}", entry_.info().id, from.client ? "client" : "upstream",
                  from.walker.error());
    if (closed_by == "unknown") {
      closed_by = from.client ? "client" : "upstream";
      close_code = relay_detail::kProtocolError;
      close_reason = std::string("protocol error: ") + from.walker.error();
    }
    from.parsing = false;
    from.carry = 0;
    co_await close_leg(from, make_close(relay_detail::kProtocolError, std::string("sluice: ") + from.walker.error()));
    // The connection is failed (RFC 6455 7.1.7): what follows is not read as
    // frames. A client is told so by our end of the TCP connection.
    if (from.client && is_plain<From>) {
      boost::system::error_code ignored;
      relay_detail::socket_of(from.stream()).shutdown(tcp::socket::shutdown_send, ignored);
    } else {
      cut(from);
    }
    if (from.client) co_await close_leg(to, make_close(relay_detail::kGoingAway, "client connection lost"));
    else co_await close_leg(to, make_close(relay_detail::kInternal, "sluice: upstream connection lost"));
  }

  // `from` ended without (or after) its close handshake: a reset, EOF, a
  // timeout, or the gateway cut it.
  template <class From, class To>
  boost::asio::awaitable<void> leg_lost(Leg<From>& from, Leg<To>& to, const boost::system::error_code& ec) {
    bool orderly = from.close_received && from.close_sent;
    if (orderly) co_return;
    std::string why = from.timed_out ? std::string("timeout") : ec.message();
    if (from.client) {
      if (from.timed_out) reap("half_open", "no pong from the client within the liveness timeout");
      if (closed_by == "unknown") {
        closed_by = "client";
        close_reason = "connection lost: " + why;
      }
      co_await close_leg(to, make_close(relay_detail::kGoingAway, "client connection lost"));
    } else {
      if (closed_by == "unknown") {
        closed_by = "upstream";
        close_code = relay_detail::kInternal;
        close_reason = "connection lost: " + why;
      }
      co_await close_leg(to, make_close(relay_detail::kInternal, "sluice: upstream connection lost"));
    }
  }

  // Records a reap (hygiene) once.
  void reap(std::string_view reason, std::string_view detail) {
    if (!reap_reason_.empty()) return;
    reap_reason_ = std::string(reason);
    auto now = registry::mono_ns();
    boost::json::object ev;
    ev["session_id"] = entry_.info().id;
    ev["tenant"] = entry_.info().tenant;
    ev["pool"] = entry_.info().pool;
    ev["request_id"] = entry_.request_id();
    ev["reason"] = reason;
    ev["detail"] = detail;
    ev["age_seconds"] = entry_.info().age_seconds(now);
    ev["idle_seconds"] = registry::Registry::idle_seconds(entry_, now);
    ev["keep_alive_only"] = registry_.keep_alive_only(entry_, now);
    events_.record("reap", std::move(ev));
    spdlog::info("[S{}] reaped ({}): {}", entry_.info().id, reason, detail);
  }

  // Liveness of one leg, once a tick: ping a peer silent for half its
  // liveness timeout; cut one silent for all of it that left the ping
  // unanswered; cut a leg whose close handshake outlived close_timeout.
  // A leg whose pump is blocked writing to the other (backpressure) is not
  // being read: its silence is the other leg's doing.
  template <class Stream, class Other>
  boost::asio::awaitable<void> check_leg(Leg<Stream>& leg, const Leg<Other>& other, std::int64_t now,
                                         std::int64_t liveness) {
    if (leg.done || leg.cut) co_return;
    if (leg.close_sent && now - leg.close_sent_ns >= to_ns(cfg_.close_timeout)) {
      cut(leg);
      co_return;
    }
    if (liveness <= 0 || leg.close_sent || leg.close_received) co_return;
    if (other.write_since_ns) {
      leg.last_read_ns = now;
      co_return;
    }
    auto silent = now - leg.last_read_ns;
    if (silent >= liveness && leg.ping_sent_ns != 0 && now - leg.ping_sent_ns >= liveness / 2) {
      // Silent for the whole timeout, and our ping unanswered: dead.
      leg.timed_out = true;
      cut(leg);
    } else if (silent >= liveness / 2 && leg.ping_sent_ns == 0 && !leg.gate.busy()) {
      leg.ping_sent_ns = now;
      co_await send_own(leg, own_frame(leg, opcode::ping, {}), false);
    }
  }

  // Ends the stream when asked (an operator's DELETE, a drain) or when the
  // pool's hygiene policy says so: sends the endpoint's close message upstream
  // so the final results reach the client, then, if the stream is still open
  // after the grace period, closes both legs. A client that stopped reading
  // is cut at once. Also drives both legs' liveness.
  boost::asio::awaitable<void> control() {
    bool ending = false;
    std::int64_t ending_since = 0;
    const auto grace_ns = to_ns(cfg_.close_grace);
    while (pumps_done_ < 2) {
      // Until the next tick (or an end request, or the pumps' end).
      control_->timer.expires_at(boost::asio::steady_timer::time_point::max());
      co_await control_->timer.async_wait(use_tuple);
      if (pumps_done_ == 2) break;
      auto now = registry::mono_ns();
      co_await check_leg(client_, upstream_, now, client_liveness_ns_);
      co_await check_leg(upstream_, client_, now, upstream_liveness_ns_);
      if (pumps_done_ == 2) break;
      if (!ending) {
        auto age = entry_.info().age_seconds(now);
        auto idle = registry::Registry::idle_seconds(entry_, now);
        if (client_.write_since_ns && now - client_.write_since_ns >= client_liveness_ns_ && !client_.cut) {
          // The client stopped reading: nothing can be delivered to it.
          reap("half_open", "the client read nothing within the liveness timeout");
          note_close("gateway", make_close(relay_detail::kPolicy, "client stopped reading"));
          cut(client_);
          co_await close_leg(upstream_, make_close(relay_detail::kGoingAway, "client stopped reading"), false);
          continue;
        }
        bool end = control_->end_requested;
        if (!end && pool_.idle_close_after.count() > 0 && idle >= pool_.idle_close_after.count()) {
          reap("idle", fmt::format("no audio for {:.0f} s", idle));
          end = true;
        }
        if (!end && pool_.max_duration.count() > 0 && age >= pool_.max_duration.count()) {
          reap("max_duration", fmt::format("open for {:.0f} s", age));
          end = true;
        }
        if (!end) continue;
        if (upstream_.gate.busy()) continue;  // a frame is in flight: next tick
        ending = true;
        ending_ = true;
        ending_since = now;
        entry_.set_state(registry::SessionState::closing);
        auto msg = protocol::close_message(entry_.info().endpoint);
        if (!msg.empty() && !upstream_.close_sent)
          co_await send_own(upstream_, own_frame(upstream_, opcode::text, msg), false);
        if (!msg.empty()) continue;
      } else if (now - ending_since < grace_ns) {
        continue;
      }
      // Grace is over (or there is no close message): close both legs. A leg
      // whose writer is stuck behind a reader that stopped reading is cut.
      std::string why = reap_reason_.empty() ? "session ended by operator" : "session reaped: " + reap_reason_;
      auto cp = make_close(relay_detail::kNormal, "sluice: " + why);
      note_close("gateway", cp);
      co_await close_leg(client_, cp, false);
      co_await close_leg(upstream_, cp, false);
      ending_since = std::numeric_limits<std::int64_t>::max() / 2;  // closed: wait for the pumps
    }
  }

  // ---- Resume (docs/resume.md) ----

  struct ResumeState {
    ResumeState(ResumeSetup s, boost::asio::any_io_executor ex)
        : setup(std::move(s)), log(setup.bytes_per_second, setup.block, setup.flux), timeline(setup.flux), wake(ex),
          pace(ex) {}
    ResumeSetup setup;
    AudioLog log;                 // the client's frames since the finalized point
    Timeline timeline;            // the upstream's messages onto the client's timeline
    bool gap = false;             // the upstream is gone; a new one is being connected
    bool replaying = false;       // a new upstream gets the buffered audio
    std::uint64_t cursor = 0;     // the replay's next log offset
    std::string head;             // the replay's first frame, when cut at the finalized point
    std::string rewritten;        // rewritten upstream messages, framed, to write to the client
    int generation = 0;           // upstream connections after the first
    boost::asio::steady_timer wake;  // the replayer waits for work
    boost::asio::steady_timer pace;  // and paces the replay
    std::unique_ptr<UpstreamStream> current;                // the connection after a resume
    std::vector<std::unique_ptr<UpstreamStream>> retired;   // connections a later resume replaced
    bool holding() const { return gap || replaying; }
  };

  // The client's forwarded bytes (whole data frames, in order) are kept for
  // a replay, within the buffer's bound; frames not yet replayed stay.
  void keep_for_replay(const std::uint8_t* p, std::size_t n) {
    auto& rs = *resume_;
    rs.log.append(p, n);
    auto cap = rs.log.audio_bytes(rs.setup.cfg.buffer.count());
    rs.log.trim(cap, rs.replaying ? rs.cursor : rs.log.end());
  }

  // Reads an upstream message for the timeline; after a resume, queues it
  // rewritten (or as it is) for the client. False: withheld.
  bool read_for_resume(bool text, std::uint64_t size, std::string_view sniffed, std::string_view type) {
    auto& rs = *resume_;
    bool resumed = rs.timeline.was_resumed();
    if (!text) return !resumed;  // no binary messages on the listen endpoints: not passed once rewriting
    if (size > sniffed.size()) {
      // Longer than the walker keeps: read only before a resume.
      if (resumed) spdlog::warn("[S{}] an upstream message of {} bytes after a resume was not passed on", entry_.info().id, size);
      return !resumed;
    }
    std::string out;
    auto action = rs.timeline.read(sniffed, out, type);
    rs.log.release_until(rs.log.audio_bytes(rs.timeline.finalized()), rs.replaying ? rs.cursor : rs.log.end());
    if (!resumed) return true;
    if (action == Timeline::Action::drop) return false;
    append_frame(rs.rewritten, opcode::text, action == Timeline::Action::replace ? std::string_view(out) : sniffed);
    return true;
  }

  // Close codes after which a stream is resumed: the vendor's internal
  // errors (1011, but not NET-0001, its inactivity timeout), going away,
  // restarts and overload. A normal close, a policy or protocol close and
  // the application's codes are the stream's end.
  static bool resumable_close(const ClosePayload& cp) {
    if (!cp.has_code) return false;
    // NET-0001 (Deepgram's reason ends "See https://dpgr.am/net0001").
    std::string reason = cp.reason;
    for (auto& ch : reason) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (reason.find("net0001") != std::string::npos || reason.find("net-0001") != std::string::npos) return false;
    return cp.code == relay_detail::kGoingAway || cp.code == relay_detail::kInternal || cp.code == 1012 ||
           cp.code == 1013 || cp.code == 1014;
  }

  // The client is still there and nothing is ending the stream. (A client's
  // CloseStream does not end it: the vendor answers it with its final
  // results and a normal close, which is never resumed; a drop before that
  // answer is resumed, and the CloseStream replayed with the audio before it.)
  bool client_still_there() const {
    const auto& c = client_;
    return !c.close_received && !c.close_sent && !c.cut && !c.done && !ending_ && !control_->end_requested &&
           reap_reason_.empty();
  }

  void resume_event(std::string_view outcome, const std::string& reason, int code, int attempts,
                    std::int64_t gap_ns, double replay, double lost, double offset, const std::string& old_id,
                    const std::string& new_id, std::string detail = {}) {
    boost::json::object ev;
    ev["session_id"] = entry_.info().id;
    ev["tenant"] = entry_.info().tenant;
    ev["pool"] = entry_.info().pool;
    ev["path"] = protocol::endpoint_path(entry_.info().endpoint);
    ev["outcome"] = outcome;
    ev["reason"] = reason;
    ev["close_code"] = code ? boost::json::value(code) : boost::json::value(nullptr);
    ev["attempts"] = attempts;
    ev["resume"] = resume_->generation + (outcome == "resumed" ? 0 : 1);
    ev["gap_ms"] = static_cast<double>(gap_ns / 1000) / 1000;
    ev["replay_seconds"] = std::round(replay * 1000) / 1000;
    ev["lost_seconds"] = std::round(lost * 1000) / 1000;
    ev["offset_seconds"] = std::round(offset * 1000) / 1000;
    ev["old_request_id"] = old_id.empty() ? boost::json::value(nullptr) : boost::json::value(old_id);
    ev["new_request_id"] = new_id.empty() ? boost::json::value(nullptr) : boost::json::value(new_id);
    if (!detail.empty()) ev["detail"] = detail;
    events_.record("resume", std::move(ev));
    spdlog::info("[S{}] upstream resume {}: {} (attempts {}, gap {:.0f} ms, replay {:.2f} s, lost {:.2f} s{}{})",
                 entry_.info().id, outcome, reason, attempts, static_cast<double>(gap_ns) / 1e6, replay, lost,
                 detail.empty() ? "" : "; ", detail);
  }

  // The upstream leg ended abnormally (`reason`; `code` its close code, 0
  // for a lost connection): reconnects under the same lease and starts the
  // replay. False: not resumed (the end is passed on as it would have been).
  boost::asio::awaitable<bool> resume_upstream(std::string reason, int code) {
    auto& rs = *resume_;
    auto& up = upstream_;
    if (!client_still_there()) co_return false;
    auto ids = entry_.upstream_request_ids();
    auto old_id = ids.empty() ? std::string() : ids.back();
    const auto started = registry::mono_ns();
    if (rs.generation >= rs.setup.cfg.max_resumes) {
      resume_event("failed", reason, code, 0, 0, 0, 0, 0, old_id, {},
                   fmt::format("the stream was resumed {} times (max_resumes)", rs.generation));
      co_return false;
    }
    if (client_.mid_frame) {
      // Part of an upstream message reached the client: nothing can follow it.
      resume_event("failed", reason, code, 0, 0, 0, 0, 0, old_id, {}, "the client had part of a message");
      co_return false;
    }
    rs.gap = true;
    rs.replaying = false;
    rs.head.clear();
    cut(up);
    // No writer of the old connection is left once its gate is ours.
    if (!up.gate.try_acquire()) co_await up.gate.acquire();
    boost::asio::steady_timer timer(client_.stream().get_executor());
    auto backoff = rs.setup.cfg.backoff;
    upstream::ConnectResult conn;
    std::string outcome = "exhausted", detail;
    int attempt = 0;
    while (attempt < rs.setup.cfg.max_attempts) {
      if (attempt > 0) {
        timer.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(backoff));
        co_await timer.async_wait(use_tuple);
        backoff = std::min(backoff * 2, rs.setup.cfg.max_backoff);
      }
      if (!client_still_there()) {
        outcome = "client_gone";
        break;
      }
      ++attempt;
      conn = co_await rs.setup.reconnect();
      if (!client_still_there()) {
        outcome = "client_gone";
        break;
      }
      if (conn.ok() && !std::holds_alternative<std::unique_ptr<UpstreamStream>>(conn.stream)) {
        detail = "the upstream's scheme changed";
        break;
      }
      if (conn.ok()) {
        outcome = "resumed";
        break;
      }
      if (conn.refusal) {
        detail = fmt::format("attempt {}: HTTP {}", attempt, conn.refusal->status);
        if (!conn.refusal->dg_error.empty()) detail += " " + conn.refusal->dg_error;
        if (conn.refusal->status >= 400 && conn.refusal->status < 500 && conn.refusal->status != 429) {
          outcome = "refused";  // the vendor refuses the request itself: trying again cannot help
          break;
        }
      } else {
        detail = fmt::format("attempt {}: {}", attempt, conn.timed_out ? "timed out" : conn.error.message());
      }
    }
    if (outcome != "resumed") {
      up.gate.release();
      rs.gap = false;
      if (conn.ok()) {
        std::visit([](auto& st) {
          boost::system::error_code ignored;
          if (st) relay_detail::socket_of(*st).close(ignored);
        }, conn.stream);
      }
      resume_event(outcome, reason, code, attempt, registry::mono_ns() - started, 0, 0, 0, old_id, {}, detail);
      co_return false;
    }
    // The new connection replaces the old one.
    if (rs.current) rs.retired.push_back(std::move(rs.current));
    rs.current = std::move(std::get<std::unique_ptr<UpstreamStream>>(conn.stream));
    renew_leg(up, *rs.current, std::move(conn.pending));
    ++rs.generation;
    entry_.add_upstream_request_id(conn.request_id);
    // The replay starts at the finalized point (a frame cut there if need
    // be), or at the oldest audio kept when the buffer overflowed.
    auto finalized = rs.log.audio_bytes(rs.timeline.finalized());
    std::uint64_t next = 0;
    auto start = rs.log.replay_start(finalized, rs.head, next);
    rs.cursor = next;
    double offset = rs.log.seconds(start);
    double lost = start > finalized ? rs.log.seconds(start - finalized) : 0;
    double replay = rs.log.seconds(rs.log.audio_end() - start);
    rs.timeline.resumed(offset);
    // Flux: the client's Configure messages released with the finalized
    // audio go first, so the new connection runs with the same thresholds;
    // their answers are not the client's to see.
    if (!rs.log.kept_configures().empty()) {
      std::string configures;
      for (const auto& c : rs.log.kept_configures()) configures += c;
      rs.head.insert(0, configures);
      rs.timeline.withhold_configure_answers(static_cast<int>(rs.log.kept_configures().size()));
    }
    rs.gap = false;
    rs.replaying = true;
    up.gate.release();
    rs.wake.cancel();
    resume_event("resumed", reason, code, attempt, registry::mono_ns() - started, replay, lost, offset, old_id,
                 conn.request_id, detail);
    co_return true;
  }

  // A leg gets a new connection: its reader, walker and state start afresh.
  template <class Stream>
  void renew_leg(Leg<Stream>& leg, Stream& s, std::string pending) {
    leg.socket = &s;
    std::destroy_at(&leg.walker);
    std::construct_at(&leg.walker, leg.client, cfg_.max_message_bytes);
    leg.pending = std::move(pending);
    leg.buf = {};
    leg.carry = 0;
    leg.reader.reset();
    leg.close_queued = leg.close_sent = leg.close_received = leg.handshake_done = leg.in_close_frame = false;
    leg.parsing = true;
    leg.cut = leg.timed_out = leg.done = leg.mid_frame = false;
    leg.ping_sent_ns = leg.close_sent_ns = leg.write_since_ns = 0;
    prepare(leg);
  }

  // Sends the buffered audio to a new upstream, at most replay_speed times
  // faster than real time, then lets the live audio through.
  boost::asio::awaitable<void> replayer() {
    auto& rs = *resume_;
    while (pumps_done_ < 2) {
      if (!rs.replaying) {
        rs.wake.expires_at(boost::asio::steady_timer::time_point::max());
        co_await rs.wake.async_wait(use_tuple);
        continue;
      }
      co_await replay();
    }
  }

  boost::asio::awaitable<void> replay() {
    auto& rs = *resume_;
    auto& up = upstream_;
    const int generation = rs.generation;
    const auto started = std::chrono::steady_clock::now();
    const double speed = rs.setup.cfg.replay_speed;
    const auto chunk_audio = std::max<std::uint64_t>(1, rs.log.audio_bytes(0.1));  // 100 ms a write
    double sent = 0;  // seconds of audio
    auto stopped = [&] { return pumps_done_ == 2 || rs.generation != generation || up.cut || up.close_queued; };
    for (;;) {
      if (stopped()) {
        if (up.mid_frame) cut(up);  // a frame cut short cannot be finished
        break;
      }
      // The gate: still ours when the last write ended inside a frame (a
      // frame still arriving from the client), as for a pump's own write.
      if (up.mid_frame) up.mid_frame = false;
      else if (!up.gate.try_acquire()) co_await up.gate.acquire();
      if (stopped()) {
        up.gate.release();
        break;
      }
      if (rs.head.empty() && rs.cursor >= rs.log.end()) {
        // Caught up: the live audio goes straight on (checked and switched
        // in one step: no frame slips between). A frame still arriving is
        // continued by the client's pump, which keeps the gate.
        rs.replaying = false;
        if (rs.log.ends_mid_frame()) up.mid_frame = true;
        else up.gate.release();
        co_return;
      }
      std::string chunk;
      std::uint64_t audio = 0;
      bool inside_frame = false;
      if (!rs.head.empty()) {
        chunk = std::exchange(rs.head, {});
        audio = chunk_audio;
      } else {
        std::uint64_t next = 0;
        chunk = rs.log.copy(rs.cursor, chunk_audio, next, audio);
        rs.cursor = next;
        inside_frame = next == rs.log.end() && rs.log.ends_mid_frame();
      }
      auto [ec, n] = co_await boost::asio::async_write(up.stream(), boost::asio::buffer(chunk), use_tuple);
      (void)n;
      if (ec || up.cut) {
        up.gate.release();
        cut(up);
        break;
      }
      if (inside_frame) up.mid_frame = true;  // nothing else may be written until the frame is complete
      else up.gate.release();
      sent += rs.log.seconds(audio);
      auto due = started + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                               std::chrono::duration<double>(sent / speed));
      if (due > std::chrono::steady_clock::now()) {
        rs.pace.expires_at(due);
        co_await rs.pace.async_wait(use_tuple);
      }
    }
    if (rs.generation == generation) rs.replaying = false;
  }

  std::unique_ptr<ResumeState> resume_;
  bool ending_ = false;  // the control task is ending the stream

  Leg<ClientStream> client_;
  Leg<UpstreamStream> upstream_;
  registry::SessionEntry& entry_;
  registry::SessionCounters& counters_;
  const config::RelayConfig& cfg_;
  const config::PoolConfig& pool_;
  events::EventLog& events_;
  const registry::Registry& registry_;
  const std::int64_t client_liveness_ns_;
  const std::int64_t upstream_liveness_ns_;
  std::function<void()> upstream_gone_;
  std::string reap_reason_;  // set when the gateway ends the stream for hygiene
  std::shared_ptr<Control> control_;
  Ticker& ticker_;
  int pumps_done_ = 0;
};

}  // namespace sluice::session
