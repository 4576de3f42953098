// sluice_relay_floor: the least a proxy can do, as a yardstick for bench/run.
//
// Each accepted TCP connection gets its own upstream connection, and bytes are
// copied both ways until either side ends. No HTTP, no WebSocket, no
// bookkeeping: the WebSocket handshake and every frame pass through untouched,
// as through nginx or HAProxy after an upgrade. What such a relay costs per
// frame is the kernel's price for the system calls it makes, so it shows what
// any proxy design built on those calls can reach on this machine.
//
// Two engines, one thread each:
//   epoll  level-triggered epoll; one recv() per readiness and one send() per
//          received chunk: the calls sluice and nginx make per frame.
//   uring  io_uring: a multishot receive per socket into a ring of provided
//          buffers, sends queued and submitted together, one io_uring_enter()
//          per loop turn for everything that happened since the last.
//
// Bounded: it serves until SIGINT/SIGTERM. Sends assume loopback peers that
// keep up (a send that would block waits for the socket, stalling the loop);
// that holds for the bench's real-time loads and keeps the code short.
#include <CLI/CLI.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "net/listener.hpp"

namespace {

volatile std::sig_atomic_t g_stop = 0;

[[noreturn]] void fail(const char* what, int err = errno) {
  throw std::system_error(err, std::generic_category(), what);
}

sockaddr_in to_sockaddr(const sluice::net::tcp::endpoint& ep) {
  if (!ep.address().is_v4()) throw std::invalid_argument("IPv4 addresses only");
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(ep.port());
  sa.sin_addr.s_addr = htonl(ep.address().to_v4().to_uint());
  return sa;
}

int listen_on(const sockaddr_in& sa) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail("socket");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) < 0) fail("bind");
  if (::listen(fd, 4096) < 0) fail("listen");
  return fd;
}

// Blocking connect (loopback completes at once), then TCP_NODELAY as every
// proxy in the bench sets it.
int connect_to(const sockaddr_in& sa) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail("socket");
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) < 0) {
    int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

void no_delay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Writes all of [p, p+n) to a non-blocking socket, waiting for room if the
// socket is full. False when the peer is gone.
bool send_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w > 0) {
      p += w;
      n -= static_cast<size_t>(w);
    } else if (w < 0 && errno == EAGAIN) {
      pollfd pfd{fd, POLLOUT, 0};
      ::poll(&pfd, 1, 1000);
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else {
      return false;
    }
  }
  return true;
}

// --- epoll ---------------------------------------------------------------

int run_epoll(int listener, const sockaddr_in& upstream) {
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) fail("epoll_create1");
  // data.u64: ~0 for the listener, else fd << 32 | peer fd.
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = ~std::uint64_t{0};
  ::epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
  auto watch = [&](int fd, int peer) {
    epoll_event e{};
    e.events = EPOLLIN | EPOLLRDHUP;
    e.data.u64 = (std::uint64_t(std::uint32_t(fd)) << 32) | std::uint32_t(peer);
    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
  };
  std::vector<char> buf(16384);
  std::vector<epoll_event> events(512);
  std::vector<int> closed;  // in this batch: later events for them are stale
  while (!g_stop) {
    int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 500);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("epoll_wait");
    closed.clear();
    for (int i = 0; i < n; ++i) {
      std::uint64_t tag = events[i].data.u64;
      if (tag == ~std::uint64_t{0}) {
        // One connection per readiness (level-triggered: the rest come on
        // the next turns), interleaved with the open streams' frames.
        int c = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) continue;
        int u = connect_to(upstream);
        if (u < 0) {
          ::close(c);
          continue;
        }
        ::fcntl(u, F_SETFL, ::fcntl(u, F_GETFL) | O_NONBLOCK);
        no_delay(c);
        no_delay(u);
        watch(c, u);
        watch(u, c);
        continue;
      }
      int fd = static_cast<int>(tag >> 32);
      int peer = static_cast<int>(tag & 0xffffffffu);
      if (std::find(closed.begin(), closed.end(), fd) != closed.end()) continue;
      ssize_t r = ::recv(fd, buf.data(), buf.size(), 0);
      if (r > 0 && send_all(peer, buf.data(), static_cast<size_t>(r))) continue;
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      ::close(fd);  // closing removes both from the epoll set
      ::close(peer);
      closed.push_back(fd);
      closed.push_back(peer);
    }
  }
  ::close(ep);
  return 0;
}

// --- io_uring --------------------------------------------------------------

constexpr unsigned kBufSize = 4096;   // one frame of the bench's loads and more
constexpr unsigned kBufCount = 4096;  // a power of two: the ring's size
constexpr int kGroup = 0;

enum Op : std::uint64_t { kAccept = 1, kRecv = 2, kSend = 3 };

// user_data: op << 60 | side << 59 | bid << 32 | connection index
std::uint64_t tag(Op op, unsigned conn, unsigned side = 0, unsigned bid = 0) {
  return (std::uint64_t(op) << 60) | (std::uint64_t(side) << 59) | (std::uint64_t(bid) << 32) | conn;
}

struct Side {
  int fd = -1;
  bool recv_armed = false;
  // Received buffers waiting to be sent on to the *other* side, in order;
  // one send in flight per socket keeps them in order.
  std::deque<std::pair<unsigned, unsigned>> queued;  // (bid, length)
  unsigned sent = 0;                                 // of queued.front(), when in flight
  bool sending = false;
};

struct Conn {
  Side side[2];  // 0: client, 1: upstream
  bool ending = false;
  int ops = 0;  // operations in flight
};

class Uring {
 public:
  Uring(int listener, const sockaddr_in& upstream) : listener_(listener), upstream_(upstream) {
    io_uring_params p{};
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    if (int e = io_uring_queue_init_params(4096, &ring_, &p); e < 0) {
      p = {};
      if (e = io_uring_queue_init_params(4096, &ring_, &p); e < 0) fail("io_uring_queue_init", -e);
    }
    size_t ring_bytes = kBufCount * sizeof(io_uring_buf);
    void* mem = ::mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) fail("mmap");
    br_ = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_ring_init(br_);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uint64_t>(br_);
    reg.ring_entries = kBufCount;
    reg.bgid = kGroup;
    if (int e = io_uring_register_buf_ring(&ring_, &reg, 0); e < 0) fail("io_uring_register_buf_ring", -e);
    bufs_.resize(std::size_t(kBufCount) * kBufSize);
    for (unsigned b = 0; b < kBufCount; ++b) give_back(b);
    io_uring_buf_ring_advance(br_, static_cast<int>(returned_));
    returned_ = 0;
  }

  int run() {
    arm_accept();
    __kernel_timespec tick{0, 500'000'000};
    while (!g_stop) {
      io_uring_cqe* cqe = nullptr;
      int e = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &tick, nullptr);
      if (e < 0 && e != -ETIME && e != -EINTR) fail("io_uring_submit_and_wait", -e);
      unsigned head, seen = 0;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        handle(cqe->user_data, cqe->res, cqe->flags);
      }
      io_uring_cq_advance(&ring_, seen);
      if (returned_ > 0) {
        io_uring_buf_ring_advance(br_, static_cast<int>(returned_));
        returned_ = 0;
      }
    }
    return 0;
  }

 private:
  io_uring_sqe* sqe() {
    io_uring_sqe* s = io_uring_get_sqe(&ring_);
    if (!s) {
      io_uring_submit(&ring_);
      s = io_uring_get_sqe(&ring_);
    }
    if (!s) fail("io_uring_get_sqe", EBUSY);
    return s;
  }

  void give_back(unsigned bid) {
    io_uring_buf_ring_add(br_, bufs_.data() + std::size_t(bid) * kBufSize, kBufSize, static_cast<unsigned short>(bid),
                          io_uring_buf_ring_mask(kBufCount), static_cast<int>(returned_));
    ++returned_;
  }

  void arm_accept() {
    io_uring_sqe* s = sqe();
    io_uring_prep_multishot_accept(s, listener_, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, tag(kAccept, 0));
  }

  void arm_recv(unsigned c, unsigned side) {
    Conn& k = conns_[c];
    io_uring_sqe* s = sqe();
    io_uring_prep_recv_multishot(s, k.side[side].fd, nullptr, 0, 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = kGroup;
    io_uring_sqe_set_data64(s, tag(kRecv, c, side));
    k.side[side].recv_armed = true;
    ++k.ops;
  }

  // Sends the front of `from`'s queue to the other side.
  void send_front(unsigned c, unsigned from) {
    Conn& k = conns_[c];
    Side& s = k.side[from];
    auto [bid, len] = s.queued.front();
    io_uring_sqe* q = sqe();
    io_uring_prep_send(q, k.side[1 - from].fd, bufs_.data() + std::size_t(bid) * kBufSize + s.sent, len - s.sent,
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data64(q, tag(kSend, c, from, bid));
    s.sending = true;
    ++k.ops;
  }

  void end(unsigned c) {
    Conn& k = conns_[c];
    if (!k.ending) {
      k.ending = true;
      // Wakes the pending receives, which then complete with 0 and stop.
      ::shutdown(k.side[0].fd, SHUT_RDWR);
      ::shutdown(k.side[1].fd, SHUT_RDWR);
      // Buffers waiting to be sent go back now; one in flight goes back when
      // its send completes.
      for (Side& s : k.side) {
        std::size_t keep = s.sending ? 1 : 0;
        while (s.queued.size() > keep) {
          give_back(s.queued.back().first);
          s.queued.pop_back();
        }
      }
    }
    if (k.ops == 0) {
      ::close(k.side[0].fd);
      ::close(k.side[1].fd);
      k = Conn{};
      free_.push_back(c);
    }
  }

  void handle(std::uint64_t data, int res, unsigned flags) {
    Op op = static_cast<Op>(data >> 60);
    unsigned side = static_cast<unsigned>((data >> 59) & 1u);
    unsigned bid = static_cast<unsigned>((data >> 32) & 0x7ffffffu);
    unsigned c = static_cast<unsigned>(data & 0xffffffffu);
    if (op == kAccept) {
      if (!(flags & IORING_CQE_F_MORE)) arm_accept();
      if (res >= 0) open(res);
      return;
    }
    Conn& k = conns_[c];
    Side& s = k.side[side];
    if (op == kRecv) {
      bool more = flags & IORING_CQE_F_MORE;
      if (!more) {
        s.recv_armed = false;
        --k.ops;
      }
      if (res > 0) {
        unsigned b = flags >> IORING_CQE_BUFFER_SHIFT;
        if (k.ending) {
          give_back(b);
        } else {
          s.queued.emplace_back(b, static_cast<unsigned>(res));
          if (!s.sending) send_front(c, side);
        }
        if (!more && !k.ending) arm_recv(c, side);
      } else if (res == -ENOBUFS && !k.ending) {
        if (!more) arm_recv(c, side);
      } else {
        end(c);
        return;
      }
      if (k.ending) end(c);
      return;
    }
    // kSend
    --k.ops;
    s.sending = false;
    if (k.ending || res <= 0) {
      if (!s.queued.empty()) {
        give_back(s.queued.front().first);
        s.queued.pop_front();
      }
      for (auto& q : s.queued) give_back(q.first);
      s.queued.clear();
      s.sent = 0;
      end(c);
      return;
    }
    auto& front = s.queued.front();
    s.sent += static_cast<unsigned>(res);
    if (s.sent < front.second) {
      send_front(c, side);  // the rest of a partial send
      return;
    }
    give_back(bid);
    s.queued.pop_front();
    s.sent = 0;
    if (!s.queued.empty()) send_front(c, side);
  }

  void open(int client) {
    int u = connect_to(upstream_);
    if (u < 0) {
      ::close(client);
      return;
    }
    no_delay(client);
    no_delay(u);
    unsigned c;
    if (!free_.empty()) {
      c = free_.back();
      free_.pop_back();
    } else {
      c = static_cast<unsigned>(conns_.size());
      conns_.emplace_back();
    }
    Conn& k = conns_[c];
    k.side[0].fd = client;
    k.side[1].fd = u;
    arm_recv(c, 0);
    arm_recv(c, 1);
  }

  int listener_;
  sockaddr_in upstream_;
  io_uring ring_{};
  io_uring_buf_ring* br_ = nullptr;
  std::vector<char> bufs_;
  unsigned returned_ = 0;  // buffers added to the ring since its last advance
  std::deque<Conn> conns_;  // stable addresses; indices are reused
  std::vector<unsigned> free_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "A bare TCP relay: the floor under any proxy's cost per frame on this machine. "
      "bench/run runs it as the targets floor-epoll and floor-uring; see docs/benchmarks.md."};
  std::string engine = "epoll", listen_text, upstream_text;
  app.add_option("--engine", engine, "epoll or uring")->check(CLI::IsMember({"epoll", "uring"}));
  app.add_option("--listen", listen_text, "HOST:PORT to accept on (IPv4)")->required();
  app.add_option("--upstream", upstream_text, "HOST:PORT every connection is relayed to (IPv4)")->required();
  CLI11_PARSE(app, argc, argv);
  try {
    sockaddr_in listen_sa = to_sockaddr(sluice::net::parse_endpoint(listen_text));
    sockaddr_in upstream_sa = to_sockaddr(sluice::net::parse_endpoint(upstream_text));
    struct sigaction sa{};
    sa.sa_handler = [](int) { g_stop = 1; };
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    int listener = listen_on(listen_sa);
    std::fprintf(stderr, "sluice_relay_floor: %s engine on %s, relaying to %s\n", engine.c_str(), listen_text.c_str(),
                 upstream_text.c_str());
    if (engine == "epoll") {
      ::fcntl(listener, F_SETFL, ::fcntl(listener, F_GETFL) | O_NONBLOCK);
      return run_epoll(listener, upstream_sa);
    }
    Uring u(listener, upstream_sa);
    return u.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice_relay_floor: %s\n", e.what());
    return 1;
  }
}
