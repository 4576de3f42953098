// The vendor's release delay, end to end: the simulator keeps counting closed
// streams (stale accounting), the gateway learns how long from the 429s it
// meets, holds released slots for that long, and no client ever sees the
// vendor's 429.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <mutex>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "stack.hpp"

using namespace sluice;
using namespace sluice::testing;
using namespace std::chrono_literals;

namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
const std::string kFlux = "/v2/listen?model=flux-general-en&encoding=linear16&sample_rate=16000";
const std::string kListen = "/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000";

double secs(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

// One client stream, run on a Fleet's thread: it opens, then reads (answering
// pings) until the connection ends.
struct Stream {
  enum State { connecting, open, refused, ended };
  std::optional<websocket::stream<beast::tcp_stream>> ws;
  std::atomic<int> state{connecting};
  SteadyClock::time_point opened_at{};  // written before state becomes open
  unsigned status = 0;                  // a refusal's status and body, written before state becomes refused
  std::string body;
};

class Fleet {
 public:
  Fleet() : thread_([this] { ioc_.run(); }) {}
  ~Fleet() {
    work_.reset();
    ioc_.stop();
    thread_.join();
  }

  std::shared_ptr<Stream> open(unsigned short port, const std::string& target) {
    auto st = std::make_shared<Stream>();
    asio::co_spawn(ioc_, run(st, port, target), asio::detached);
    return st;
  }
  void close(const std::shared_ptr<Stream>& st) {
    asio::post(ioc_, [st] {
      if (st->ws && st->ws->is_open()) st->ws->async_close(websocket::close_code::normal, [st](beast::error_code) {});
    });
  }

 private:
  static asio::awaitable<void> run(std::shared_ptr<Stream> st, unsigned short port, std::string target) {
    st->ws.emplace(co_await asio::this_coro::executor);
    auto& ws = *st->ws;
    auto [cec] = co_await beast::get_lowest_layer(ws).async_connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), use_tuple);
    if (cec) {
      st->state = Stream::refused;
      co_return;
    }
    websocket::stream_base::timeout t{};
    t.handshake_timeout = std::chrono::seconds(120);
    t.idle_timeout = websocket::stream_base::none();
    t.keep_alive_pings = false;
    ws.set_option(t);
    ws.set_option(websocket::stream_base::decorator(
        [](websocket::request_type& req) { req.set(http::field::authorization, "Token k"); }));
    websocket::response_type res;
    auto [hec] = co_await ws.async_handshake(res, "127.0.0.1:" + std::to_string(port), target, use_tuple);
    if (hec) {
      st->status = res.result_int();
      st->body = res.body();
      st->state = Stream::refused;
      co_return;
    }
    st->opened_at = SteadyClock::now();
    st->state = Stream::open;
    beast::flat_buffer b;
    for (;;) {
      b.clear();
      auto [rec, n] = co_await ws.async_read(b, use_tuple);
      (void)n;
      if (rec) break;
    }
    st->state = Stream::ended;
  }

  asio::io_context ioc_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{asio::make_work_guard(ioc_)};
  std::thread thread_;
};

int count_state(const std::vector<std::shared_ptr<Stream>>& v, int state) {
  return static_cast<int>(std::count_if(v.begin(), v.end(), [&](const auto& s) { return s->state == state; }));
}

// A client that completes the WebSocket handshake and then goes silent: it
// reads nothing and answers no ping (a stopped process, as far as the
// gateway can tell).
struct SilentClient {
  asio::io_context ioc;
  tcp::socket sock{ioc};
  bool open(unsigned short port, const std::string& target) {
    sock.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    std::string req = "GET " + target +
                      " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                      "Authorization: Token k\r\n\r\n";
    asio::write(sock, asio::buffer(req));
    asio::streambuf buf;
    asio::read_until(sock, buf, "\r\n\r\n");
    std::string head(asio::buffers_begin(buf.data()), asio::buffers_end(buf.data()));
    return head.starts_with("HTTP/1.1 101");
  }
};

// Samples the gateway every 5 ms: when each reap event appeared, and when the
// pool's upstream-open count fell (a lease of an accepted stream returned).
class Sampler {
 public:
  Sampler(Stack& s, std::string pool) : s_(s), pool_(std::move(pool)), thread_([this] { loop(); }) {}
  ~Sampler() { stop(); }
  void stop() {
    running_ = false;
    if (thread_.joinable()) thread_.join();
  }
  std::vector<SteadyClock::time_point> reaps() {
    std::lock_guard l(m_);
    return reaps_;
  }
  std::vector<SteadyClock::time_point> releases() {
    std::lock_guard l(m_);
    return releases_;
  }

 private:
  void loop() {
    std::size_t reaps_seen = 0;
    int open = -1;
    while (running_) {
      auto now = SteadyClock::now();
      auto r = s_.gateway().events().count("reap");
      auto st = s_.gateway().admission().status(pool_);
      {
        std::lock_guard l(m_);
        for (; reaps_seen < r; ++reaps_seen) reaps_.push_back(now);
        if (st && open >= 0)
          for (int i = st->upstream_open; i < open; ++i) releases_.push_back(now);
      }
      if (st) open = st->upstream_open;
      std::this_thread::sleep_for(5ms);
    }
  }
  Stack& s_;
  std::string pool_;
  std::atomic<bool> running_{true};
  std::mutex m_;
  std::vector<SteadyClock::time_point> reaps_, releases_;
  std::thread thread_;
};

const sim::SimFamilyCounts& sim_family(const sim::SimStats& st, protocol::Family f) {
  static const sim::SimFamilyCounts none;
  auto p = st.projects.find("default");
  if (p == st.projects.end()) return none;
  auto it = p->second.find(f);
  return it == p->second.end() ? none : it->second;
}

// Every refusal a client saw must be the gateway's own (a `sluice` object).
void expect_only_gateway_refusals(const std::vector<std::shared_ptr<Stream>>& streams) {
  for (const auto& st : streams) {
    if (st->state != Stream::refused) continue;
    EXPECT_EQ(st->status, 429u) << st->body;
    boost::system::error_code ec;
    auto v = boost::json::parse(st->body, ec);
    EXPECT_TRUE(!ec && v.is_object() && v.as_object().contains("sluice")) << "the vendor's refusal reached a client: "
                                                                           << st->body;
  }
}

class ReleaseDelayTest : public StackTest {};

}  // namespace

// The stale-vendor story at test scale: flux limit 20 at the vendor and in
// the pool, 30 clients, 5 of which stop answering and are reaped; the vendor
// keeps counting each closed stream for 3 s.
TEST_F(ReleaseDelayTest, StaleVendorDelayIsLearnedAndNoClientSeesTheVendors429) {
  constexpr int L = 20;
  constexpr double kStale = 3.0;
  sim::SimConfig sc;
  sc.default_limits[protocol::Family::flux] = L;
  sc.faults.stale_accounting = std::chrono::milliseconds(static_cast<int>(kStale * 1000));
  sc.inactivity_timeout = 600s;  // streams without audio stay open
  auto& s = start(sc, [](config::Config& c, Stack&) {
    c.pools = config::default_pools();
    for (auto& p : c.pools)
      if (p.name == "flux") {
        p.limit = L;
        p.queue_timeout = config::Seconds(120);  // unrelated timeouts far away
        p.liveness_timeout = config::Seconds(2);
      }
    c.upstream.retry_429.initial_backoff = config::Seconds(0.1);
    c.upstream.retry_429.max_backoff = config::Seconds(1);
    c.upstream.retry_429.deadline = config::Seconds(60);
  });
  auto& admission = s.gateway().admission();
  Sampler sampler(s, "flux");
  Fleet fleet;
  std::vector<std::shared_ptr<Stream>> early, late;

  // 15 clients that stay (they read, so they answer the gateway's pings).
  for (int i = 0; i < L - 5; ++i) early.push_back(fleet.open(s.port(), kFlux));
  ASSERT_TRUE(eventually([&] { return count_state(early, Stream::open) == L - 5; }));
  // 5 that go silent right after their handshake, then 10 more that queue.
  std::vector<std::unique_ptr<SilentClient>> silent;
  for (int i = 0; i < 5; ++i) {
    silent.push_back(std::make_unique<SilentClient>());
    ASSERT_TRUE(silent.back()->open(s.port(), kFlux));
  }
  for (int i = 0; i < 10; ++i) late.push_back(fleet.open(s.port(), kFlux));
  ASSERT_TRUE(eventually([&] { return admission.status("flux")->queued == 10; }));
  ASSERT_EQ(s.gateway().events().count("reap"), 0u) << "the silent clients were reaped before the queue formed";
  EXPECT_EQ(admission.status("flux")->release_delay_seconds, 0);  // nothing learned yet

  // Phase 1: the silent clients are reaped; their slots go to 5 queued
  // clients, whom the vendor refuses until it stops counting the reaped
  // streams; the gateway retries, learns the delay, and the clients get in.
  ASSERT_TRUE(eventually([&] { return count_state(late, Stream::open) == 5; }, 30s));
  ASSERT_EQ(s.gateway().events().count("reap"), 5u);
  for (const auto& r : s.gateway().events().list({.type = "reap"})) EXPECT_EQ(r.fields.at("reason").as_string(), "half_open");
  auto learned = *admission.status("flux");
  ASSERT_FALSE(learned.release_delay_configured);
  ASSERT_TRUE(learned.release_delay_lower_seconds);
  const double delay = learned.release_delay_seconds;
  EXPECT_NEAR(delay, kStale, 1.0);
  EXPECT_EQ(learned.effective_limit, L) << "a stale count lowered the limit";
  // Give the sampler a beat, then take phase 1's figures.
  std::this_thread::sleep_for(50ms);
  auto reaps = sampler.reaps();
  auto releases = sampler.releases();
  ASSERT_EQ(reaps.size(), 5u);
  ASSERT_EQ(releases.size(), 5u);
  std::vector<SteadyClock::time_point> phase1;
  for (auto& st : late)
    if (st->state == Stream::open) phase1.push_back(st->opened_at);
  std::sort(phase1.begin(), phase1.end());
  double worst_release = 0, worst_admit1 = 0;
  for (std::size_t i = 0; i < 5; ++i) {
    worst_release = std::max(worst_release, secs(releases[i] - reaps[i]));
    worst_admit1 = std::max(worst_admit1, secs(phase1[i] - reaps[i]));
  }
  EXPECT_LE(worst_release, 1.0) << "a reaped stream's lease came back late";
  EXPECT_LE(worst_admit1, delay + 1.0) << "a queued client waited longer than the learned delay plus 1 s";
  const auto vendor_429s_phase1 = sim_family(s.sim().stats(), protocol::Family::flux).refused_429;
  EXPECT_GT(vendor_429s_phase1, 0) << "the vendor never refused: nothing was learned from it";
  auto events429 = s.gateway().events().list({.type = "upstream_429"});
  ASSERT_FALSE(events429.empty());
  for (const auto& e : events429) {
    EXPECT_TRUE(e.fields.contains("release_delay_seconds"));
    EXPECT_TRUE(e.fields.at("explained_by_releases").as_bool()) << boost::json::serialize(e.fields);
  }

  // Phase 2: five clients leave in the ordinary way. Their slots cool for the
  // learned delay, the last 5 queued clients get them then, and the vendor
  // refuses nobody.
  for (int i = 0; i < 5; ++i) fleet.close(early[i]);
  ASSERT_TRUE(eventually([&] { return count_state(late, Stream::open) == 10; }, 30s));
  std::this_thread::sleep_for(50ms);
  releases = sampler.releases();
  ASSERT_EQ(releases.size(), 10u);
  std::vector<SteadyClock::time_point> phase2;
  for (auto& st : late)
    if (st->state == Stream::open && std::find(phase1.begin(), phase1.end(), st->opened_at) == phase1.end())
      phase2.push_back(st->opened_at);
  std::sort(phase2.begin(), phase2.end());
  ASSERT_EQ(phase2.size(), 5u);
  double min_admit2 = 1e9, max_admit2 = 0;
  for (std::size_t i = 0; i < 5; ++i) {
    auto d = secs(phase2[i] - releases[5 + i]);
    min_admit2 = std::min(min_admit2, d);
    max_admit2 = std::max(max_admit2, d);
  }
  const double delay2 = admission.status("flux")->release_delay_seconds;
  EXPECT_GE(min_admit2, delay2 - 0.05) << "a slot admitted a stream before its cooldown ended";
  EXPECT_LE(max_admit2, delay2 + 1.0);
  EXPECT_EQ(sim_family(s.sim().stats(), protocol::Family::flux).refused_429, vendor_429s_phase1)
      << "the vendor refused a stream admitted after the cooldown";
  EXPECT_LE(sim_family(s.sim().stats(), protocol::Family::flux).max_open, L);

  // No client saw the vendor's 429; none was refused at all.
  expect_only_gateway_refusals(early);
  expect_only_gateway_refusals(late);
  EXPECT_EQ(count_state(early, Stream::refused) + count_state(late, Stream::refused), 0);

  // The learned delay is shown in the API and the metrics.
  auto res = admin_call(s.admin_port(), http::verb::get, "/api/v1/pools/flux");
  ASSERT_EQ(res.result_int(), 200u);
  auto pool = boost::json::parse(res.body()).as_object();
  EXPECT_EQ(pool.at("release_delay_source").as_string(), "learned");
  EXPECT_NEAR(pool.at("release_delay_seconds").to_number<double>(), kStale, 1.0);
  auto metrics = admin_call(s.admin_port(), http::verb::get, "/metrics", "").body();
  EXPECT_NE(metrics.find("sluice_pool_release_delay_seconds{pool=\"flux\"}"), std::string::npos);

  std::printf(
      "release delay: vendor stale %.1f s, learned %.3f s (bounds %.3f..%s s), %lld vendor 429s while learning, "
      "0 after; reap -> lease back at most %.0f ms; queued clients admitted at most %.3f s after a reap; after an "
      "ordinary close %.3f..%.3f s\n",
      kStale, delay, *learned.release_delay_lower_seconds,
      learned.release_delay_upper_seconds ? std::to_string(*learned.release_delay_upper_seconds).c_str() : "-",
      static_cast<long long>(vendor_429s_phase1), worst_release * 1000, worst_admit1, min_admit2, max_admit2);

  sampler.stop();
  for (auto& st : early) fleet.close(st);
  for (auto& st : late) fleet.close(st);
  silent.clear();
  EXPECT_TRUE(eventually([&] {
    return count_state(early, Stream::open) + count_state(late, Stream::open) == 0 && admission.leases_in_use() == 0;
  }));
}

// A configured release_delay: a released slot admits nobody for that long,
// and a vendor that counts closed streams for a little less never refuses.
TEST_F(ReleaseDelayTest, ConfiguredReleaseDelayHoldsAReleasedSlot) {
  sim::SimConfig sc;
  sc.default_limits[protocol::Family::streaming] = 2;
  sc.faults.stale_accounting = 1000ms;
  sc.inactivity_timeout = 600s;
  auto& s = start(sc, [](config::Config& c, Stack&) {
    c.pools = config::default_pools();
    for (auto& p : c.pools)
      if (p.name == "streaming") {
        p.limit = 2;
        p.queue_timeout = config::Seconds(60);
        p.release_delay = config::Seconds(1.5);
      }
  });
  Fleet fleet;
  auto a = fleet.open(s.port(), kListen);
  auto b = fleet.open(s.port(), kListen);
  ASSERT_TRUE(eventually([&] { return a->state == Stream::open && b->state == Stream::open; }));
  auto c = fleet.open(s.port(), kListen);
  ASSERT_TRUE(eventually([&] { return s.gateway().admission().status("streaming")->queued == 1; }));
  fleet.close(a);
  ASSERT_TRUE(eventually([&] { return s.gateway().admission().status("streaming")->cooling == 1; }));
  auto released = SteadyClock::now();
  ASSERT_TRUE(eventually([&] { return c->state != Stream::connecting; }));
  ASSERT_EQ(c->state, Stream::open) << c->status << " " << c->body;
  auto waited = secs(c->opened_at - released);
  EXPECT_GE(waited, 1.5 - 0.05);  // `released` was seen up to a poll after the release
  EXPECT_LE(waited, 2.5);
  auto st = s.gateway().admission().status("streaming");
  EXPECT_TRUE(st->release_delay_configured);
  EXPECT_DOUBLE_EQ(st->release_delay_seconds, 1.5);
  EXPECT_EQ(sim_family(s.sim().stats(), protocol::Family::streaming).refused_429, 0);
  auto pool = boost::json::parse(admin_call(s.admin_port(), http::verb::get, "/api/v1/pools/streaming").body()).as_object();
  EXPECT_EQ(pool.at("release_delay_source").as_string(), "configured");
  std::printf("configured release delay 1.5 s: the queued client got the slot %.3f s after the release\n", waited);
  fleet.close(b);
  fleet.close(c);
  EXPECT_TRUE(eventually([&] { return s.gateway().admission().leases_in_use() == 0; }));
}
