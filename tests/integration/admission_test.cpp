// Admission end to end, with the simulator as the judge: pool limits and the
// queue, chaos with lease accounting, upstream 429 forensics and adaptation,
// hygiene reaps, SIGTERM drain and SIGHUP reload.
#include <signal.h>

#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>

#include "child_process.hpp"
#include "sim_counts.hpp"
#include "stack.hpp"
#include "sluice_binary.hpp"

using namespace sluice;
using namespace sluice::testing;

namespace {

const std::string kListen = "/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000";

Stack::Tweak streaming_pool(int limit, double queue_seconds, std::function<void(config::PoolConfig&)> more = {}) {
  return [=](config::Config& c, Stack&) {
    c.pools = config::default_pools();
    for (auto& p : c.pools)
      if (p.name == "streaming") {
        p.limit = limit;
        p.queue_timeout = config::Seconds(queue_seconds);
        if (more) more(p);
      }
  };
}

// Each admission test runs with the gateway on one I/O thread and on two.
class Admission : public ::testing::TestWithParam<int> {
 protected:
  // The tweak, and the gateway's I/O threads set to the parameter.
  Stack::Tweak threaded(Stack::Tweak more = {}) const { return with_threads(GetParam(), std::move(more)); }
};

bool is_gateway_429(const websocket::response_type& r) {
  if (r.result_int() != 429) return false;
  auto v = boost::json::parse(r.body());
  return v.is_object() && v.as_object().contains("sluice");
}

}  // namespace

TEST_P(Admission, PoolLimitHoldsTheVendorBelowItsLimitAndQueuesTheRest) {
  constexpr int L = 3;
  sim::SimConfig sc;
  sc.default_limits[protocol::Family::streaming] = L;  // the vendor's real limit
  Stack s(sc, threaded(streaming_pool(L, 3.0)));
  std::vector<std::unique_ptr<Client>> clients(3 * L);
  // Thread i opens client i and is done with it before the test's thread
  // takes it over (open_order under the mutex, or the join). A jthread: a
  // failed assertion that leaves early joins instead of terminating.
  std::vector<std::jthread> threads;
  std::atomic<int> opened{0};
  std::vector<int> open_order;
  std::vector<char> refused(3 * L, 0);
  std::mutex m;
  for (int i = 0; i < 3 * L; ++i) {
    clients[i] = std::make_unique<Client>();
    threads.emplace_back([&, i] {
      if (!clients[i]->open(s.port(), kListen, "Token k")) {
        refused[i] = 1;
      } else {
        std::lock_guard l(m);
        open_order.push_back(i);
        ++opened;
      }
    });
  }
  // The first L are admitted; the others wait in the queue.
  ASSERT_TRUE(eventually([&] { return opened.load() == L && s.gateway().admission().status("streaming")->queued == 2 * L; }));
  std::vector<int> first;
  {
    std::lock_guard l(m);
    first = open_order;
  }
  // The first wave leaves: the next L are admitted from the queue.
  for (int i : first) {
    clients[i]->send_text(R"({"type":"CloseStream"})");
    EXPECT_EQ(clients[i]->read_until_close(), 1000);
  }
  ASSERT_TRUE(eventually([&] { return opened.load() == 2 * L; }));
  // The last L reach their deadline and get the gateway's 429.
  for (auto& t : threads) t.join();
  int gateway_429 = 0;
  for (int i = 0; i < 3 * L; ++i) {
    auto& c = clients[i];
    if (refused[i]) {
      EXPECT_TRUE(is_gateway_429(c->response)) << c->response.result_int() << " " << c->response.body();
      EXPECT_FALSE(c->response[http::field::retry_after].empty());
      auto sl = boost::json::parse(c->response.body()).as_object().at("sluice").as_object();
      EXPECT_EQ(sl.at("reason").as_string(), "queue_timeout");
      EXPECT_EQ(sl.at("pool").as_string(), "streaming");
      EXPECT_EQ(sl.at("limit").to_number<int>(), L);
      ++gateway_429;
    }
  }
  EXPECT_EQ(gateway_429, L);
  EXPECT_LE(sim_streaming(s, true), L) << "the vendor saw more than the pool's limit";
  EXPECT_EQ(sim_429s(s), 0) << "a client got the vendor's 429";
  EXPECT_EQ(s.gateway().events().count("queue_timeout"), static_cast<std::size_t>(L));
  for (int i = 0; i < 3 * L; ++i)
    if (!refused[i] && clients[i]->ws.is_open()) clients[i]->ws.close(websocket::close_code::normal);
  EXPECT_TRUE(eventually([&] { return s.gateway().admission().leases_in_use() == 0 && sim_streaming(s) == 0; }));
}

TEST_P(Admission, ChaosLeavesNoStrandedLease) {
  constexpr int L = 4;
  constexpr int kStreams = 120;
  constexpr int kWorkers = 12;
  sim::SimConfig sc;
  sc.default_limits[protocol::Family::streaming] = L;
  sc.faults.drop_probability = 0.5;  // per second of stream: 1011 mid-stream
  sc.faults.handshake_delay = std::chrono::milliseconds(20);
  Stack s(sc, threaded(streaming_pool(L, 1.0, [](config::PoolConfig& p) { p.max_queue = 4; })));
  std::atomic<bool> sampling{true};
  std::atomic<int> samples{0}, violations{0}, max_leases{0};
  std::thread sampler([&] {
    while (sampling) {
      auto [leases, legs] = s.gateway().admission().leases_and_legs();
      if (legs > leases || leases > L) ++violations;
      max_leases = std::max(max_leases.load(), leases);
      ++samples;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  std::mt19937 rng(7);
  std::atomic<int> kills{0}, clean{0}, close_stream{0}, refused{0}, abandoned{0}, dropped{0}, gateway_429{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, seed = rng()] {
      std::mt19937 r(seed);
      for (int i = 0; i < kStreams / kWorkers; ++i) {
        int action = static_cast<int>(r() % 6);
        if (action == 5) {  // abandon while queued (or just after the upgrade request)
          asio::io_context ioc;
          tcp::socket sock(ioc);
          sock.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), s.port()));
          std::string req = "GET " + kListen + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                            "Authorization: Token k\r\n\r\n";
          asio::write(sock, asio::buffer(req));
          std::this_thread::sleep_for(std::chrono::milliseconds(r() % 30));
          sock.set_option(asio::socket_base::linger(true, 0));
          sock.close();
          ++abandoned;
          continue;
        }
        Client c;
        std::string target = action == 4 ? "/v1/listen?encoding=bogus" : kListen;  // 4: refused by the vendor
        if (!c.open(s.port(), target, "Token k")) {
          if (is_gateway_429(c.response)) ++gateway_429;
          else ++refused;
          continue;
        }
        bool alive = true;
        // Some streams outlive the vendor's one-second drop roll.
        int frames = action >= 2 ? 24 + static_cast<int>(r() % 16) : 1 + static_cast<int>(r() % 16);
        for (int f = 0; f < frames && alive; ++f) {
          beast::error_code ec;
          c.ws.binary(true);
          c.ws.write(asio::buffer(linear16_silence(0.05)), ec);
          alive = !ec;
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        if (!alive) {
          ++dropped;
          continue;
        }
        beast::error_code ec;
        switch (action) {
          case 0:  // the client process dies: RST
            beast::get_lowest_layer(c.ws).socket().set_option(asio::socket_base::linger(true, 0));
            beast::get_lowest_layer(c.ws).socket().close();
            ++kills;
            break;
          case 1:
            c.ws.close(websocket::close_code::normal, ec);
            ++clean;
            break;
          default:
            c.ws.text(true);
            c.ws.write(asio::buffer(std::string(R"({"type":"CloseStream"})")), ec);
            if (c.read_until_close() == 1011) ++dropped;
            ++close_stream;
            break;
        }
      }
    });
  }
  for (auto& t : workers) t.join();
  bool drained = eventually([&] {
    auto [leases, legs] = s.gateway().admission().leases_and_legs();
    return leases == 0 && legs == 0 && sim_streaming(s) == 0 && s.registry().size() == 0;
  });
  sampling = false;
  sampler.join();
  auto [leases, legs] = s.gateway().admission().leases_and_legs();
  std::printf(
      "chaos: %d streams; faults: %d RST kills, %d clean closes, %d CloseStream, %d vendor refusals, %d queue "
      "abandonments, %d upstream drops seen; %d gateway 429s; vendor max concurrency %d (limit %d); %d samples, "
      "%d violations; stranded leases at the end: %d, legs %d, vendor open %d\n",
      kStreams, kills.load(), clean.load(), close_stream.load(), refused.load(), abandoned.load(), dropped.load(),
      gateway_429.load(), sim_streaming(s, true), L, samples.load(), violations.load(), leases, legs, sim_streaming(s));
  EXPECT_TRUE(drained);
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(leases, 0);
  EXPECT_EQ(legs, 0);
  EXPECT_EQ(sim_streaming(s), 0);
  EXPECT_LE(sim_streaming(s, true), L);
  EXPECT_EQ(sim_429s(s), 0);
  EXPECT_GT(samples.load(), 10);
}

TEST_P(Admission, Upstream429IsRecordedRetriedAndTheLimitAdapts) {
  sim::SimConfig sc;
  sc.default_limits[protocol::Family::streaming] = 2;  // the vendor's true limit
  Stack s(sc, threaded([](config::Config& c, Stack& st) {
    streaming_pool(5, 10.0)(c, st);
    c.upstream.retry_429.initial_backoff = config::Seconds(0.05);
    c.upstream.retry_429.max_backoff = config::Seconds(0.2);
    c.upstream.retry_429.deadline = config::Seconds(20);
  }));
  // Traffic outside the gateway holds one of the vendor's two slots.
  Client outside;
  auto sim_port = s.sim().endpoint().port();
  ASSERT_TRUE(outside.open(sim_port, kListen, "Token k"));
  Client g1;
  ASSERT_TRUE(g1.open(s.port(), kListen, "Token k"));
  g1.send_binary(linear16_silence(0.2));
  // The second stream through the gateway meets the vendor's 429.
  Client g2;
  std::jthread t([&] { g2.open(s.port(), kListen, "Token k"); });
  ASSERT_TRUE(eventually([&] { return s.gateway().events().count("upstream_429") > 0; }));
  auto ev = s.gateway().events().list({.type = "upstream_429"}).front();
  EXPECT_EQ(ev.fields.at("pool").as_string(), "streaming");
  EXPECT_EQ(ev.fields.at("upstream_open").to_number<int>(), 1);
  auto sessions = ev.fields.at("sessions").as_array();
  bool found_g1 = false;
  for (auto& sess : sessions)
    if (auto* rid = sess.as_object().if_contains("request_id"); rid && rid->is_string() && rid->as_string() == g1.response["dg-request-id"])
      found_g1 = true;
  EXPECT_TRUE(found_g1) << boost::json::serialize(ev.fields);
  EXPECT_EQ(s.gateway().admission().status("streaming")->effective_limit, 1);
  // The outside stream leaves: the retry gets through, and no client saw a 429.
  outside.ws.close(websocket::close_code::normal);
  t.join();
  EXPECT_FALSE(g2.error) << g2.response.result_int();
  // The lowered limit climbs back to the configured one.
  EXPECT_TRUE(eventually([&] { return s.gateway().admission().status("streaming")->effective_limit == 5; }));
  // The API shows the events.
  auto res = admin_call(s.admin_port(), http::verb::get, "/api/v1/events?type=upstream_429");
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_GE(boost::json::parse(res.body()).as_object().at("count").to_number<int>(), 1);
  g1.ws.close(websocket::close_code::normal);
  g2.ws.close(websocket::close_code::normal);
  EXPECT_TRUE(eventually([&] { return s.gateway().admission().leases_in_use() == 0; }));
}

TEST_P(Admission, IdleStreamIsReapedWithItsFinalsDelivered) {
  sim::SimConfig sc;
  sc.inactivity_timeout = std::chrono::seconds(60);
  Stack s(sc, threaded(streaming_pool(5, 1.0, [](config::PoolConfig& p) { p.idle_close_after = config::Seconds(1); })));
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k"));
  c.send_binary(linear16_silence(0.5));
  c.send_text(R"({"type":"KeepAlive"})");  // keeps the vendor happy, is not audio
  auto meta = c.read_until_type("Metadata");
  ASSERT_TRUE(meta) << c.error.message();
  EXPECT_DOUBLE_EQ(meta->at("duration").to_number<double>(), 0.5);
  EXPECT_EQ(c.read_until_close(), 1000);
  auto reaps = s.gateway().events().list({.type = "reap"});
  ASSERT_EQ(reaps.size(), 1u);
  EXPECT_EQ(reaps[0].fields.at("reason").as_string(), "idle");
  EXPECT_TRUE(eventually([&] { return s.gateway().admission().leases_in_use() == 0; }));
}

TEST_P(Admission, MaxDurationIsReapedWithItsFinalsDelivered) {
  Stack s({}, threaded(streaming_pool(5, 1.0, [](config::PoolConfig& p) { p.max_duration = config::Seconds(1); })));
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k"));
  // This thread alone drives the websocket, with asynchronous operations on
  // the client's own io_context: a frame every 100 ms until the Metadata
  // arrives, and reads until the close (a read and a write may be
  // outstanding together; Beast serializes the close it answers).
  const std::string chunk = linear16_silence(0.1);
  asio::steady_timer pace(c.ioc);
  beast::flat_buffer buf;
  std::optional<boost::json::object> meta;
  bool closed = false;
  std::function<void()> feed = [&] {
    if (meta || closed) return;
    c.ws.binary(true);
    c.ws.async_write(asio::buffer(chunk), [&](beast::error_code ec, std::size_t) {
      if (ec) return;
      pace.expires_after(std::chrono::milliseconds(100));
      pace.async_wait([&](beast::error_code wec) {
        if (!wec) feed();
      });
    });
  };
  std::function<void()> read_next = [&] {
    c.ws.async_read(buf, [&](beast::error_code ec, std::size_t) {
      if (ec) {
        c.error = ec;
        closed = true;
        pace.cancel();
        return;
      }
      if (c.ws.got_text() && !meta) {
        auto v = boost::json::parse(beast::buffers_to_string(buf.data()));
        if (v.is_object() && v.as_object().contains("type") && v.as_object().at("type").as_string() == "Metadata")
          meta = v.as_object();
      }
      buf.consume(buf.size());
      read_next();
    });
  };
  feed();
  read_next();
  c.ioc.run_for(std::chrono::seconds(20));  // returns once the stream is closed
  EXPECT_TRUE(closed) << "the stream was not closed within 20 s";
  if (!closed) {
    beast::get_lowest_layer(c.ws).close();
    c.ioc.restart();
    c.ioc.run_for(std::chrono::seconds(5));
  }
  EXPECT_TRUE(meta);
  auto reaps = s.gateway().events().list({.type = "reap"});
  ASSERT_EQ(reaps.size(), 1u);
  EXPECT_EQ(reaps[0].fields.at("reason").as_string(), "max_duration");
  EXPECT_TRUE(eventually([&] { return s.gateway().admission().leases_in_use() == 0; }));
}

TEST_P(Admission, StoppedClientProcessIsReapedAsHalfOpen) {
  sim::SimConfig sc;
  sc.inactivity_timeout = std::chrono::seconds(60);
  Stack s(sc, threaded(streaming_pool(5, 1.0, [](config::PoolConfig& p) { p.liveness_timeout = config::Seconds(1); })));
  auto url = "ws://127.0.0.1:" + std::to_string(s.port()) + kListen;
  ChildProcess client({SLUICE_BINARY, "loadgen", "--url", url, "--streams", "1", "--frame-bytes", "3200",
                       "--interval-ms", "100", "--duration", "60", "--key", "k"});
  ASSERT_TRUE(eventually([&] {
    auto l = s.registry().list({.state = "open"});
    return l.size() == 1 && l[0]->counters().audio_messages.load() > 2;
  }));
  kill(client.pid(), SIGSTOP);
  ASSERT_TRUE(eventually([&] { return s.gateway().events().count("reap") == 1; }));
  EXPECT_EQ(s.gateway().events().list({.type = "reap"})[0].fields.at("reason").as_string(), "half_open");
  EXPECT_TRUE(eventually([&] { return s.gateway().admission().leases_in_use() == 0 && sim_streaming(s) == 0; }));
  kill(client.pid(), SIGCONT);
  client.stop(SIGKILL);
}

namespace {
// A gateway process with its config in a file, relaying to `s`'s simulator.
std::string write_config(const std::string& name, int streaming_limit, int threads) {
  auto dir = std::filesystem::temp_directory_path() / "sluice-admission-test";
  std::filesystem::create_directories(dir);
  auto file = (dir / name).string();
  std::ofstream f(file);
  f << "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n  token: t\n"
    << "pools:\n  - name: streaming\n    match: {path: /v1/listen}\n    limit: " << streaming_limit
    << "\n    queue_timeout: 300ms\n"
    << "relay: {close_grace: 2s}\nthreads: " << threads << "\n";
  return file;
}
// The gateway process (`sluice serve`) with `threads:` 1 and 2 in its file.
class GatewayProcess : public ::testing::TestWithParam<int> {
 protected:
  std::string config_name(const std::string& base) const {
    return base + "-" + std::to_string(GetParam()) + ".yaml";
  }
};
}  // namespace

TEST_P(GatewayProcess, SigtermDeliversFinalMetadataBeforeExit) {
  Stack s;
  auto file = write_config(config_name("drain"), 5, GetParam());
  ChildProcess gw({SLUICE_BINARY, "serve", "--config", file, "--upstream", "ws://" + net::to_string(s.sim().endpoint()),
                   "--drain-seconds", "0.3", "--admin-token-file", "/tmp/sluice-test-admin.token"});
  auto port = static_cast<unsigned short>(std::stoi(gw.wait_for_line(R"(listening on 127\.0\.0\.1:(\d+) admin)")[1]));
  Client a, b;
  ASSERT_TRUE(a.open(port, kListen, "Token k"));
  ASSERT_TRUE(b.open(port, kListen, "Token k"));
  a.send_binary(linear16_silence(0.4));
  b.send_binary(linear16_silence(0.6));
  ASSERT_TRUE(eventually([&] { return sim_streaming(s) == 2; }));
  kill(gw.pid(), SIGTERM);
  auto ma = a.read_until_type("Metadata");
  auto mb = b.read_until_type("Metadata");
  ASSERT_TRUE(ma && mb);
  EXPECT_DOUBLE_EQ(ma->at("duration").to_number<double>(), 0.4);
  EXPECT_DOUBLE_EQ(mb->at("duration").to_number<double>(), 0.6);
  EXPECT_EQ(a.read_until_close(), 1000);
  EXPECT_EQ(b.read_until_close(), 1000);
  int status = gw.stop(0);  // wait for it to exit on its own
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_TRUE(eventually([&] { return sim_streaming(s) == 0; }));
}

TEST_P(GatewayProcess, SighupChangesALimitWithoutDroppingAStream) {
  Stack s;
  auto file = write_config(config_name("reload"), 1, GetParam());
  ChildProcess gw({SLUICE_BINARY, "serve", "--config", file, "--upstream", "ws://" + net::to_string(s.sim().endpoint()),
                   "--admin-token-file", "/tmp/sluice-test-admin.token"});
  auto m = gw.wait_for_line(R"(listening on 127\.0\.0\.1:(\d+) admin 127\.0\.0\.1:(\d+))");
  auto port = static_cast<unsigned short>(std::stoi(m[1]));
  auto admin_port = static_cast<unsigned short>(std::stoi(m[2]));
  Client a;
  ASSERT_TRUE(a.open(port, kListen, "Token k"));
  Client refused;
  EXPECT_FALSE(refused.open(port, kListen, "Token k"));  // limit 1: queued, then 429
  EXPECT_EQ(refused.response.result_int(), 429u);
  write_config(config_name("reload"), 2, GetParam());
  kill(gw.pid(), SIGHUP);
  ASSERT_TRUE(eventually([&] {
    auto res = admin_call(admin_port, http::verb::get, "/api/v1/pools/streaming", "t");
    return res.result_int() == 200 && boost::json::parse(res.body()).as_object().at("limit").to_number<int>() == 2;
  }));
  Client b;
  EXPECT_TRUE(b.open(port, kListen, "Token k"));
  // The first stream lived through the reload.
  a.send_binary(linear16_silence(0.3));
  a.send_text(R"({"type":"CloseStream"})");
  auto meta = a.read_until_type("Metadata");
  ASSERT_TRUE(meta);
  EXPECT_DOUBLE_EQ(meta->at("duration").to_number<double>(), 0.3);
  // A bad file is refused and the running configuration stays.
  {
    std::ofstream f(file);
    f << "pools: [{name: streaming, limit: zero}]\n";
  }
  kill(gw.pid(), SIGHUP);
  ASSERT_TRUE(eventually([&] {
    auto res = admin_call(admin_port, http::verb::get, "/api/v1/events?type=config_reload_refused", "t");
    return boost::json::parse(res.body()).as_object().at("count").to_number<int>() == 1;
  }));
  auto pools = admin_call(admin_port, http::verb::get, "/api/v1/pools/streaming", "t");
  EXPECT_EQ(boost::json::parse(pools.body()).as_object().at("limit").to_number<int>(), 2);
  b.ws.close(websocket::close_code::normal);
}

TEST_P(Admission, PoolsApiShowsAndChangesLimits) {
  Stack s({}, threaded(streaming_pool(2, 0.2)));
  Client a;
  ASSERT_TRUE(a.open(s.port(), kListen, "Token k"));
  auto res = admin_call(s.admin_port(), http::verb::get, "/api/v1/pools");
  ASSERT_EQ(res.result_int(), 200u);
  // Numbers as people write them: 0.2, not 2E-1.
  EXPECT_NE(res.body().find("\"queue_timeout_seconds\":0.2"), std::string::npos) << res.body();
  EXPECT_EQ(res.body().find("E-1"), std::string::npos) << res.body();
  auto pools = boost::json::parse(res.body()).as_object().at("pools").as_array();
  bool seen = false;
  for (auto& p : pools) {
    auto& o = p.as_object();
    if (o.at("name").as_string() != "streaming") continue;
    seen = true;
    EXPECT_EQ(o.at("limit").to_number<int>(), 2);
    EXPECT_EQ(o.at("in_use").to_number<int>(), 1);
    EXPECT_EQ(o.at("tenants").as_object().at("fp:" + protocol::fingerprint("k")).to_number<int>(), 1);
  }
  EXPECT_TRUE(seen);
  // PUT changes the limit live.
  asio::io_context ioc;
  beast::tcp_stream st(ioc);
  st.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), s.admin_port()));
  http::request<http::string_body> put{http::verb::put, "/api/v1/pools/streaming", 11};
  put.set(http::field::host, "x");
  put.set(http::field::authorization, "Bearer admin-secret");
  put.body() = R"({"limit": 1})";
  put.prepare_payload();
  http::write(st, put);
  beast::flat_buffer buf;
  http::response<http::string_body> pr;
  http::read(st, buf, pr);
  EXPECT_EQ(pr.result_int(), 200u) << pr.body();
  Client b;
  EXPECT_FALSE(b.open(s.port(), kListen, "Token k"));
  EXPECT_TRUE(is_gateway_429(b.response));
  EXPECT_EQ(admin_call(s.admin_port(), http::verb::get, "/api/v1/pools/nope").result_int(), 404u);
  a.ws.close(websocket::close_code::normal);
}

INSTANTIATE_TEST_SUITE_P(Threads, Admission, kIoThreads, io_threads_name);
INSTANTIATE_TEST_SUITE_P(Threads, GatewayProcess, kIoThreads, io_threads_name);
