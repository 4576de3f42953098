// The frame-walking relay on real sockets: fragmented and large messages
// byte-exact, control frames between fragments, pings in both directions,
// close codes, and frames a relay must refuse.
#include <random>

#include "stack.hpp"

using namespace sluice;
using namespace sluice::testing;

namespace {

const std::string kListen = "/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000&channels=1";

// Through the test upstream unless a test says otherwise; with one I/O thread
// and with two.
class GatewayRelay : public ThreadedStackTest {
 protected:
  Stack& start(const Stack::Tweak& tweak = via_test_upstream()) { return ThreadedStackTest::start({}, tweak); }
};

std::string random_bytes(std::mt19937& rng, std::size_t n) {
  std::string s(n, '\0');
  for (auto& ch : s) ch = static_cast<char>(rng() & 0xff);
  return s;
}

// Sends `data` as one message in fragments of `piece` bytes, with a ping
// between the first two fragments.
void send_fragmented(Client& c, bool text, const std::string& data, std::size_t piece) {
  c.ws.auto_fragment(false);
  if (text) c.ws.text(true);
  else c.ws.binary(true);
  std::size_t at = 0;
  bool pinged = false;
  while (at < data.size()) {
    auto n = std::min(piece, data.size() - at);
    bool fin = at + n == data.size();
    c.ws.write_some(fin, asio::buffer(data.data() + at, n));
    at += n;
    if (!pinged && !fin) {
      c.ws.ping("between fragments");
      pinged = true;
    }
  }
}

}  // namespace

TEST_P(GatewayRelay, FragmentedMessagesArriveWholeAndByteExactWithPingsBetweenFragments) {
  auto& s = start();
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k")) << c.error.message();
  int pongs = 0;
  c.ws.control_callback([&](websocket::frame_type kind, beast::string_view payload) {
    if (kind == websocket::frame_type::pong && payload == "between fragments") ++pongs;
  });
  std::mt19937 rng(3);
  std::vector<Received> sent;
  for (int i = 0; i < 20; ++i) {
    bool text = i % 3 == 0;
    std::string data = text ? std::string(R"({"type":"Note","n":")") + std::string(1000 + i * 37, 'q') + "\"}"
                            : random_bytes(rng, 5000 + i * 101);
    send_fragmented(c, text, data, 1 + (i * 97) % 700);
    sent.push_back({text, data});
    // One at a time, so that no two pings arrive together (the gateway may
    // answer only the latest of several, as RFC 6455 5.5.3 allows).
    auto m = c.read();
    ASSERT_TRUE(m) << "closed at message " << i << ": " << c.error.message();
    EXPECT_EQ(m->text, text) << i;
    ASSERT_EQ(m->data, data) << "message " << i << " differs";
  }
  EXPECT_EQ(pongs, 20);  // every ping answered by the gateway
  auto got = s.test_upstream().received();
  ASSERT_EQ(got.size(), sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(got[i].data, sent[i].data) << i;
  auto e = s.registry().list();
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0]->counters().client_messages.load(), 20u);
  EXPECT_EQ(e[0]->counters().upstream_messages.load(), 20u);
  c.ws.close(websocket::close_code::normal);
}

TEST_P(GatewayRelay, LargeMessagesPassByteExactBothWays) {
  auto& s = start();
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k"));
  std::mt19937 rng(11);
  for (std::size_t size : {65535u, 65536u, 1u << 20, 3u << 20}) {
    auto data = random_bytes(rng, size);
    c.send_binary(data);
    auto m = c.read();
    ASSERT_TRUE(m) << c.error.message();
    EXPECT_FALSE(m->text);
    ASSERT_EQ(m->data.size(), size);
    EXPECT_EQ(m->data, data);
  }
  auto e = s.registry().list();
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0]->counters().audio_bytes.load(), 65535u + 65536u + (1u << 20) + (3u << 20));
  EXPECT_EQ(e[0]->counters().audio_messages.load(), 4u);
  c.ws.close(websocket::close_code::normal);
}

TEST_P(GatewayRelay, FragmentedMessageOverTheLimitClosesWith1009) {
  auto& s = start(via_test_upstream([](config::Config& c, Stack&) { c.relay.max_message_bytes = 10000; }));
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k"));
  send_fragmented(c, false, std::string(9000, 'a'), 3000);  // under: relayed
  ASSERT_TRUE(c.read());
  send_fragmented(c, false, std::string(12000, 'a'), 3000);  // over in its fourth fragment
  EXPECT_EQ(c.read_until_close(), static_cast<int>(websocket::close_code::too_big));
  EXPECT_TRUE(eventually([&] { return s.test_upstream().close_code() != -1; }));
  EXPECT_EQ(s.test_upstream().close_code(), static_cast<int>(websocket::close_code::going_away));
}

TEST_P(GatewayRelay, ClientCloseWithoutStatusReachesTheUpstreamWithoutStatus) {
  auto& s = start();
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k"));
  c.send_text("hello");
  ASSERT_TRUE(c.read());
  c.ws.close(websocket::close_reason{});
  ASSERT_TRUE(eventually([&] { return s.test_upstream().close_code() != -1; }));
  EXPECT_EQ(s.test_upstream().close_code(), static_cast<int>(websocket::close_code::none));
}

TEST_P(GatewayRelay, SilentClientIsPingedAndKeptWhileItAnswers) {
  auto& s = start(via_test_upstream([](config::Config& c, Stack&) {
    for (auto& p : c.pools) p.liveness_timeout = config::Seconds(1);
    if (c.pools.empty()) {
      c.pools = config::default_pools();
      for (auto& p : c.pools) p.liveness_timeout = config::Seconds(1);
    }
  }));
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k"));
  int pings = 0;
  c.ws.control_callback([&](websocket::frame_type kind, beast::string_view) {
    if (kind == websocket::frame_type::ping) ++pings;
  });
  // Read (answering pings) for 3.5 s of silence, then send: still relayed.
  beast::flat_buffer b;
  std::optional<beast::error_code> read_ec;
  c.ws.async_read(b, [&](beast::error_code ec, std::size_t) { read_ec = ec; });
  asio::steady_timer t(c.ioc, std::chrono::milliseconds(3500));
  std::string msg = "still here";
  t.async_wait([&](beast::error_code) {
    c.ws.text(true);
    c.ws.async_write(asio::buffer(msg), [](beast::error_code, std::size_t) {});
  });
  c.ioc.run_for(std::chrono::seconds(10));
  ASSERT_TRUE(read_ec.has_value());
  EXPECT_FALSE(*read_ec) << read_ec->message();
  EXPECT_EQ(beast::buffers_to_string(b.data()), msg);
  EXPECT_GE(pings, 2);
  EXPECT_EQ(s.gateway().events().count("reap"), 0u);
  c.ioc.restart();
  c.ws.close(websocket::close_code::normal);
}

TEST_P(GatewayRelay, UnmaskedClientFrameIsAProtocolError) {
  auto& s = start();
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k"));
  // A frame as a server would send it (no mask), written under Beast's feet.
  const unsigned char frame[] = {0x82, 0x03, 'a', 'b', 'c'};
  asio::write(beast::get_lowest_layer(c.ws).socket(), asio::buffer(frame));
  EXPECT_EQ(c.read_until_close(), static_cast<int>(websocket::close_code::protocol_error));
  EXPECT_TRUE(eventually([&] { return s.test_upstream().close_code() != -1; }));
  EXPECT_EQ(s.test_upstream().close_code(), static_cast<int>(websocket::close_code::going_away));
  EXPECT_TRUE(s.test_upstream().received().empty());
}

INSTANTIATE_TEST_SUITE_P(Threads, GatewayRelay, kIoThreads, io_threads_name);
