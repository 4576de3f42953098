// Every way a stream can end, on plain and on TLS legs: the gateway sees the
// end at once, returns the stream's lease and closes the vendor's stream. The
// ping interval, the close timeout, the close grace and the liveness timeout
// are 60 s here, so only an ending the relay saw can pass the bound.
//
// Plain: client -> gateway -> simulator.
// TLS:   client =TLS=> gateway =wss=> gateway B (terminates TLS) -> simulator,
//        so both legs of the gateway under test are TLS.
// Each with the gateway under test on one I/O thread and on two.
#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <cstdio>
#include <random>
#include <string>
#include <sys/socket.h>
#include <tuple>

#include "session/frame.hpp"
#include "stack.hpp"
#include "test_cert.hpp"

using namespace sluice;
using namespace sluice::testing;

namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr auto kFar = std::chrono::seconds(60);
// Far below every timeout above: an ending that was not seen cannot pass.
constexpr auto kBound = std::chrono::seconds(3);
const std::string kListen = "/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000&channels=1";

void far_timeouts(config::Config& c) {
  c.relay.ping_interval = kFar;
  c.relay.close_timeout = kFar;
  c.relay.close_grace = kFar;
  c.upstream.retry_429.deadline = std::chrono::seconds(0);
  if (c.pools.empty()) c.pools = config::default_pools();
  for (auto& p : c.pools) p.liveness_timeout = kFar;
}

// A frame as a client sends it: masked, unless `masked` is false.
std::string client_frame(std::uint8_t op, std::string_view payload, bool masked = true) {
  std::string out;
  const std::uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
  session::append_frame(out, op, payload, masked ? mask : nullptr);
  return out;
}

std::string close_frame(std::uint16_t code) {
  session::ClosePayload cp;
  cp.has_code = true;
  cp.code = code;
  return client_frame(session::opcode::close, session::close_payload(cp));
}

// The close code of the first close frame in bytes a server sent (unmasked
// frames), or -1.
int server_close_code(const std::string& bytes) {
  std::size_t at = 0;
  while (at + 2 <= bytes.size()) {
    auto op = static_cast<std::uint8_t>(bytes[at]) & 0x0f;
    std::uint64_t len = static_cast<std::uint8_t>(bytes[at + 1]) & 0x7f;
    std::size_t hdr = 2;
    if (len == 126 || len == 127) {
      std::size_t n = len == 126 ? 2 : 8;
      if (at + 2 + n > bytes.size()) return -1;
      len = 0;
      for (std::size_t i = 0; i < n; ++i) len = (len << 8) | static_cast<std::uint8_t>(bytes[at + 2 + i]);
      hdr += n;
    }
    if (at + hdr + len > bytes.size()) return -1;
    if (op == session::opcode::close)
      return len >= 2 ? (static_cast<std::uint8_t>(bytes[at + hdr]) << 8) | static_cast<std::uint8_t>(bytes[at + hdr + 1])
                      : 1005;
    at += hdr + len;
  }
  return -1;
}

// The gateway under test, its upstream side and the simulator.
class Topology {
 public:
  Topology(bool tls, int threads, const Stack::Tweak& tweak) : tls_(tls) {
    if (!tls) {
      gw_ = std::make_unique<Stack>(sim::SimConfig{}, [&](config::Config& c, Stack& s) {
        far_timeouts(c);
        c.threads = threads;
        if (tweak) tweak(c, s);
      });
      return;
    }
    cert_ = std::make_unique<TestCert>();
    vendor_ = std::make_unique<Stack>(sim::SimConfig{}, [&](config::Config& c, Stack&) {
      far_timeouts(c);
      c.tls.cert_file = cert_->cert;
      c.tls.key_file = cert_->key;
    });
    gw_ = std::make_unique<Stack>(sim::SimConfig{}, [&](config::Config& c, Stack& s) {
      far_timeouts(c);
      c.threads = threads;
      c.tls.cert_file = cert_->cert;
      c.tls.key_file = cert_->key;
      c.upstream.url = "wss://127.0.0.1:" + std::to_string(vendor_->port());
      c.upstream.ca_file = cert_->cert;
      if (tweak) tweak(c, s);
    });
  }

  bool tls() const { return tls_; }
  Stack& gateway() { return *gw_; }
  const std::string& ca_file() const { return cert_->cert; }

  // Streams the vendor counts open.
  int vendor_open() {
    int n = 0;
    auto& sim = tls_ ? vendor_->sim() : gw_->sim();
    for (auto& [project, families] : sim.stats().projects)
      for (auto& [family, counts] : families) n += counts.open;
    return n;
  }
  // Leases held by the gateway under test (and, over TLS, by the gateway B
  // that plays its vendor).
  int leases() {
    int n = gw_->gateway().admission().leases_in_use();
    if (vendor_) n += vendor_->gateway().admission().leases_in_use();
    return n;
  }

  // Waits (bounded) until no lease is held and the vendor counts no stream;
  // returns how long that took from `since`, or a negative number. The time
  // the lease alone took is kept in lease_ms.
  double released_after(SteadyClock::time_point since) {
    lease_ms = -1;
    bool ok = eventually(
        [&] {
          if (lease_ms < 0 && leases() == 0)
            lease_ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - since).count();
          return lease_ms >= 0 && vendor_open() == 0;
        },
        std::chrono::seconds(20));
    if (!ok) return -1;
    return std::chrono::duration<double, std::milli>(SteadyClock::now() - since).count();
  }
  double lease_ms = -1;

 private:
  bool tls_;
  std::unique_ptr<TestCert> cert_;
  std::unique_ptr<Stack> vendor_;
  std::unique_ptr<Stack> gw_;
};

// A client that does the WebSocket handshake with Beast, then writes raw
// bytes on the connection (frames of its choosing, a FIN, a reset) and reads
// what the gateway sends back.
class RawClient {
 public:
  using Plain = websocket::stream<beast::tcp_stream>;
  using Tls = websocket::stream<beast::ssl_stream<beast::tcp_stream>>;

  explicit RawClient(Topology& t) : RawClient(t.gateway().port(), kListen, t.tls() ? t.ca_file() : "") {}
  // Over TLS when `ca_file` (the gateway's certificate) is set.
  RawClient(unsigned short port, const std::string& target, const std::string& ca_file)
      : ssl_(asio::ssl::context::tls_client) {
    auto ep = tcp::endpoint(asio::ip::make_address("127.0.0.1"), port);
    auto decorate = [] {
      return websocket::stream_base::decorator(
          [](websocket::request_type& r) { r.set(http::field::authorization, "Token k"); });
    };
    websocket::response_type res;
    if (!ca_file.empty()) {
      ssl_.load_verify_file(ca_file);
      ssl_.set_verify_mode(asio::ssl::verify_peer);
      tls_ = std::make_unique<Tls>(ioc_, ssl_);
      beast::get_lowest_layer(*tls_).connect(ep);
      tls_->next_layer().handshake(asio::ssl::stream_base::client);
      tls_->set_option(decorate());
      tls_->handshake(res, "127.0.0.1", target, error);
    } else {
      plain_ = std::make_unique<Plain>(ioc_);
      beast::get_lowest_layer(*plain_).connect(ep);
      plain_->set_option(decorate());
      plain_->handshake(res, "127.0.0.1", target, error);
    }
    timeval tv{20, 0};  // a bound on every read below
    ::setsockopt(socket().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  tcp::socket& socket() {
    return tls_ ? beast::get_lowest_layer(*tls_).socket() : beast::get_lowest_layer(*plain_).socket();
  }
  void write(const std::string& bytes) {
    if (tls_) asio::write(tls_->next_layer(), asio::buffer(bytes));
    else asio::write(beast::get_lowest_layer(*plain_), asio::buffer(bytes));
  }
  void send_audio(double seconds) { write(client_frame(session::opcode::binary, linear16_silence(seconds))); }
  // FIN (without close_notify on TLS) right after whatever was written.
  void fin() {
    boost::system::error_code ignored;
    socket().shutdown(tcp::socket::shutdown_send, ignored);
  }
  void reset() {
    boost::system::error_code ignored;
    socket().set_option(asio::socket_base::linger(true, 0), ignored);
    socket().close(ignored);
  }
  // Everything the gateway sends until it ends the connection (or 20 s). A
  // close frame from the gateway is answered, as a client does.
  std::string read_to_end() {
    std::string out;
    char buf[4096];
    bool answered = false;
    for (;;) {
      boost::system::error_code ec;
      std::size_t n = tls_ ? tls_->next_layer().read_some(asio::buffer(buf), ec)
                           : beast::get_lowest_layer(*plain_).socket().read_some(asio::buffer(buf), ec);
      out.append(buf, n);
      if (!answered && server_close_code(out) > 0) {
        answered = true;
        boost::system::error_code ignored;
        auto code = server_close_code(out);
        auto frame = close_frame(code == 1005 ? 1000 : static_cast<std::uint16_t>(code));
        if (tls_) asio::write(tls_->next_layer(), asio::buffer(frame), ignored);
        else asio::write(beast::get_lowest_layer(*plain_), asio::buffer(frame), ignored);
      }
      if (ec) return out;
    }
  }

  beast::error_code error;

 private:
  asio::io_context ioc_;
  asio::ssl::context ssl_;
  std::unique_ptr<Plain> plain_;
  std::unique_ptr<Tls> tls_;
};

// The parameter: TLS legs or plain ones, the gateway's I/O threads, and
// resume (docs/resume.md) on or off for its pools: every ending here is one a
// resumable stream must end the same way (none of them is a vendor's drop).
class Endings : public ::testing::TestWithParam<std::tuple<bool, int, bool>> {
 protected:
  bool tls() const { return std::get<0>(GetParam()); }
  int threads() const { return std::get<1>(GetParam()); }
  bool resume() const { return std::get<2>(GetParam()); }
  Topology& start(const Stack::Tweak& tweak = {}) {
    topology_ = std::make_unique<Topology>(tls(), threads(), [this, tweak](config::Config& c, Stack& s) {
      if (resume())
        for (auto& p : c.pools) p.resume.enabled = true;
      if (tweak) tweak(c, s);
    });
    return *topology_;
  }
  // Opens a stream, streams a little audio, and waits until the vendor counts it.
  std::unique_ptr<RawClient> open_stream(Topology& t, double audio = 0.2) {
    auto c = std::make_unique<RawClient>(t);
    EXPECT_FALSE(c->error) << c->error.message();
    if (audio > 0) c->send_audio(audio);
    EXPECT_TRUE(eventually([&] { return t.vendor_open() == 1 && t.leases() >= 1; }));
    return c;
  }
  // Checks and reports the time from the end to the release.
  void expect_prompt(const char* ending, double ms) {
    ASSERT_GE(ms, 0) << ending << ": lease or vendor stream still held after 20 s";
    std::printf("[ending] %-24s %-5s %d thread(s)%s: lease back after %6.1f ms, vendor stream closed after %6.1f ms\n",
                ending, tls() ? "tls" : "plain", threads(), resume() ? ", resume on" : "", topology_->lease_ms, ms);
    RecordProperty(std::string(ending) + (tls() ? ".tls_ms" : ".plain_ms"), static_cast<int>(ms));
    const double bound_ms = std::chrono::duration<double, std::milli>(kBound).count();
    EXPECT_LT(ms, bound_ms) << ending;
  }
  // The moment an event of `type` is first seen (polled, bounded).
  SteadyClock::time_point when_event(Topology& t, const std::string& type) {
    EXPECT_TRUE(eventually([&] { return t.gateway().gateway().events().count(type) > 0; }, std::chrono::seconds(20)));
    return SteadyClock::now();
  }

  std::unique_ptr<Topology> topology_;
};

}  // namespace

TEST_P(Endings, ClientCloseFrame) {
  auto& t = start();
  auto c = open_stream(t);
  auto t0 = SteadyClock::now();
  c->write(close_frame(1000));
  expect_prompt("client close frame", t.released_after(t0));
  // The vendor's answer reaches the client as the answer to its close.
  EXPECT_EQ(server_close_code(c->read_to_end()), 1000);
}

TEST_P(Endings, ClientFinRightAfterData) {
  auto& t = start();
  auto c = open_stream(t);
  auto t0 = SteadyClock::now();
  c->send_audio(0.02);
  c->fin();
  expect_prompt("client FIN after data", t.released_after(t0));
}

TEST_P(Endings, ClientResetRightAfterData) {
  auto& t = start();
  auto c = open_stream(t);
  auto t0 = SteadyClock::now();
  c->send_audio(0.02);
  c->reset();
  expect_prompt("client RST after data", t.released_after(t0));
}

TEST_P(Endings, VendorClosesFirstAfterCloseStream) {
  auto& t = start();
  auto c = open_stream(t);
  auto t0 = SteadyClock::now();
  c->write(client_frame(session::opcode::text, R"({"type":"CloseStream"})"));
  expect_prompt("vendor close and FIN", t.released_after(t0));
  auto bytes = c->read_to_end();
  EXPECT_NE(bytes.find("Metadata"), std::string::npos) << "the final results did not reach the client";
  EXPECT_EQ(server_close_code(bytes), 1000);
}

TEST_P(Endings, ProtocolError1002) {
  auto& t = start();
  auto c = open_stream(t);
  auto t0 = SteadyClock::now();
  c->write(client_frame(session::opcode::binary, "unmasked", false));
  expect_prompt("protocol error 1002", t.released_after(t0));
  EXPECT_EQ(server_close_code(c->read_to_end()), 1002);
}

TEST_P(Endings, InvalidUtf8ClosedByTheVendorWith1007) {
  auto& t = start();
  auto c = open_stream(t);
  auto t0 = SteadyClock::now();
  c->write(client_frame(session::opcode::text, "\xff\xfe not utf-8"));
  expect_prompt("vendor close 1007", t.released_after(t0));
  EXPECT_EQ(server_close_code(c->read_to_end()), 1007);
}

TEST_P(Endings, MessageTooBig1009) {
  auto& t = start([](config::Config& c, Stack&) { c.relay.max_message_bytes = 64 * 1024; });
  auto c = open_stream(t);
  auto t0 = SteadyClock::now();
  c->send_audio(4.0);  // 128 KB in one message
  expect_prompt("message too big 1009", t.released_after(t0));
  EXPECT_EQ(server_close_code(c->read_to_end()), 1009);
}

TEST_P(Endings, ReapedIdle) {
  auto& t = start([](config::Config& c, Stack&) {
    for (auto& p : c.pools) p.idle_close_after = std::chrono::seconds(1);
  });
  auto c = open_stream(t);
  expect_prompt("reap idle", t.released_after(when_event(t, "reap")));
}

TEST_P(Endings, ReapedHalfOpen) {
  auto& t = start([](config::Config& c, Stack&) {
    for (auto& p : c.pools) p.liveness_timeout = std::chrono::seconds(2);
  });
  auto c = open_stream(t);
  // The client goes silent: it reads nothing and answers no ping.
  expect_prompt("reap half-open", t.released_after(when_event(t, "reap")));
}

TEST_P(Endings, ReapedAtMaxDuration) {
  auto& t = start([](config::Config& c, Stack&) {
    for (auto& p : c.pools) p.max_duration = std::chrono::seconds(1);
  });
  auto c = open_stream(t);
  expect_prompt("reap max duration", t.released_after(when_event(t, "reap")));
}

TEST_P(Endings, OperatorDelete) {
  auto& t = start();
  auto c = open_stream(t);
  auto id = t.gateway().registry().list().front()->info().id;
  auto t0 = SteadyClock::now();
  auto res = admin_call(t.gateway().admin_port(), http::verb::delete_, "/api/v1/sessions/" + std::to_string(id));
  EXPECT_EQ(res.result_int(), 202u) << res.body();
  expect_prompt("operator DELETE", t.released_after(t0));
  EXPECT_EQ(server_close_code(c->read_to_end()), 1000);
}

TEST_P(Endings, Drain) {
  auto& t = start();
  auto c = open_stream(t);
  auto t0 = SteadyClock::now();
  t.gateway().on_io([&] { t.gateway().gateway().end_all_sessions(); });
  expect_prompt("drain", t.released_after(t0));
}

// The client's close goes upstream at once, and the client is answered with
// the upstream's answer, after what the upstream sent before it.
TEST(EndingsRelay, WhatTheUpstreamSendsBeforeItsCloseAnswerReachesTheClient) {
  Stack s({}, via_test_upstream([](config::Config& c, Stack&) { far_timeouts(c); }));
  RawClient c(s.port(), kListen + "&late_close=1", "");
  ASSERT_FALSE(c.error) << c.error.message();
  c.write(close_frame(1000));
  auto bytes = c.read_to_end();
  auto words = bytes.find("final words");
  ASSERT_NE(words, std::string::npos) << "the upstream's last message did not reach the client";
  EXPECT_EQ(server_close_code(bytes), 1000);
  EXPECT_NE(bytes.find("vendor answer", words), std::string::npos) << "the client was not answered with the upstream's answer";
  EXPECT_TRUE(eventually([&] { return s.gateway().admission().leases_in_use() == 0 && s.test_upstream().open == 0; }));
}

// An operator's end request for a stream that is still connecting is not
// lost: the stream ends as soon as it opens.
TEST(EndingsRelay, EndRequestedWhileConnectingEndsTheStreamOnceOpen) {
  sim::SimConfig sc;
  sc.faults.handshake_delay = std::chrono::milliseconds(300);
  Stack s(sc, [](config::Config& c, Stack&) { far_timeouts(c); });
  std::thread opener([&] {
    // Beast's client: what follows the 101 at once (the results and the
    // close) may arrive with it, in the handshake's buffer.
    Client c;
    EXPECT_TRUE(c.open(s.port(), kListen, "Token k")) << c.error.message();
    EXPECT_EQ(c.read_until_close(), 1000);
  });
  ASSERT_TRUE(eventually([&] { return s.registry().size() == 1; }));
  auto id = s.registry().list().front()->info().id;
  auto res = admin_call(s.admin_port(), http::verb::delete_, "/api/v1/sessions/" + std::to_string(id));
  EXPECT_EQ(res.result_int(), 202u) << res.body();
  EXPECT_NE(res.body().find("closing_when_open"), std::string::npos) << res.body();
  auto t0 = SteadyClock::now();
  opener.join();
  EXPECT_LT(std::chrono::duration<double>(SteadyClock::now() - t0).count(), 3.0);
  EXPECT_TRUE(eventually([&] { return s.gateway().admission().leases_in_use() == 0; }));
}

INSTANTIATE_TEST_SUITE_P(Legs, Endings,
                         ::testing::Combine(::testing::Values(false, true), ::testing::Values(1, 2),
                                            ::testing::Values(false, true)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) ? "Tls" : "Plain") + "_Threads" +
                                  std::to_string(std::get<1>(info.param)) +
                                  (std::get<2>(info.param) ? "_Resume" : "");
                         });
