// GET /metrics end to end: a queued stream's wait lands in the histogram, a
// refusal and a reap are counted with their reasons, relayed bytes grow and
// never go back, idle and KeepAlive-only streams show, pool and tenant names
// with quotes and newlines stay valid, and the whole exposition passes the
// strict checker (and `promtool check metrics` when it is installed).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "../unit/exposition_check.hpp"
#include "stack.hpp"

using namespace sluice;
using namespace sluice::testing;

namespace {

const std::string kListen = "/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000";
const std::string kPool = "stream\"ing\\pool";  // a hostile pool name (a newline is a config error)
const std::string kTenant = "acme \"west\"";          // and tenant name
const std::string kKey = "sluice-test-key-metrics";

struct Scrape {
  std::string text;
  std::vector<ParsedSample> samples;
  double value(const std::string& name, const std::map<std::string, std::string>& labels = {}) const {
    return sample_value(samples, name, labels);
  }
};

Scrape scrape(unsigned short admin_port) {
  Scrape s;
  auto res = admin_call(admin_port, http::verb::get, "/metrics", "");
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res[http::field::content_type], "text/plain; version=0.0.4");
  s.text = res.body();
  auto problems = check_exposition(s.text, &s.samples);
  std::string all;
  for (const auto& p : problems) all += p + "\n";
  EXPECT_TRUE(problems.empty()) << all << "\n" << s.text;
  return s;
}

// `promtool check metrics` on the text, when promtool is installed (the
// prometheus package; scripts/install-deps.sh installs it).
void promtool_check(const std::string& text) {
  if (!std::filesystem::exists("/usr/bin/promtool")) return;
  auto path = std::filesystem::temp_directory_path() / ("sluice-metrics-" + std::to_string(::getpid()) + ".txt");
  std::ofstream(path) << text;
  auto cmd = "/usr/bin/promtool check metrics < " + path.string() + " 2>&1";
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[512];
  while (auto n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int rc = ::pclose(p);
  std::filesystem::remove(path);
  // promtool's lint also reports style (e.g. a counter not ending in _total):
  // any output is a finding.
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "") << out;
}

}  // namespace

TEST(Metrics, QueueWaitRefusalReapBytesAndEscapingEndToEnd) {
  sim::SimConfig sc;
  sc.inactivity_timeout = std::chrono::seconds(60);
  Stack s(sc, with_tenant(kTenant, kKey, [](config::Config& c, Stack&) {
    c.admin.metrics_per_tenant = true;
    c.relay.idle_after = config::Seconds(0.2);
    c.pools = config::default_pools();
    for (auto& p : c.pools)
      if (p.name == "streaming") {
        p.name = kPool;
        p.limit = 1;
        p.max_queue = 1;
        p.queue_timeout = config::Seconds(10);
        p.idle_close_after = config::Seconds(2.5);
      }
  }));
  const std::map<std::string, std::string> pool{{"pool", kPool}};
  auto start = scrape(s.admin_port());
  EXPECT_EQ(start.value("sluice_queue_wait_seconds_count", pool), 0);
  EXPECT_EQ(start.value("sluice_relayed_bytes_total", {{"pool", kPool}, {"direction", "client_to_upstream"}}), 0);
  promtool_check(start.text);

  // A holds the pool's one slot and sends half a second of audio.
  Client a;
  ASSERT_TRUE(a.open(s.port(), kListen, "Token " + kKey)) << a.response.result_int() << " " << a.response.body();
  a.send_binary(linear16_silence(0.5));
  double live_bytes = 0;
  ASSERT_TRUE(eventually([&] {
    live_bytes = scrape(s.admin_port()).value("sluice_relayed_bytes_total",
                                               {{"pool", kPool}, {"direction", "client_to_upstream"}});
    return live_bytes >= 16000;
  })) << "an open stream's bytes are counted at scrape time";

  // B waits in the queue; C finds the queue full and is refused.
  Client b;
  std::atomic<bool> b_open{false};
  std::jthread b_thread([&] { b_open = b.open(s.port(), kListen, "Token " + kKey); });
  ASSERT_TRUE(eventually([&] { return s.gateway().admission().status(kPool)->queued == 1; }));
  Client c;
  EXPECT_FALSE(c.open(s.port(), kListen, "Token " + kKey));
  EXPECT_EQ(c.response.result_int(), 429);
  {
    auto m = scrape(s.admin_port());
    EXPECT_EQ(m.value("sluice_refusals_total", {{"pool", kPool}, {"reason", "queue_full"}}), 1);
    EXPECT_EQ(m.value("sluice_pool_queued", pool), 1);
    EXPECT_EQ(m.value("sluice_tenant_in_use", {{"pool", kPool}, {"tenant", kTenant}}), 1);
  }

  // A leaves after B has waited at least 0.3 s: B is admitted.
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  a.send_text(R"({"type":"CloseStream"})");
  EXPECT_EQ(a.read_until_close(), 1000);
  b_thread.join();
  ASSERT_TRUE(b_open.load()) << b.response.result_int() << " " << b.response.body();
  {
    auto m = scrape(s.admin_port());
    EXPECT_EQ(m.value("sluice_queue_wait_seconds_count", pool), 2);
    EXPECT_GE(m.value("sluice_queue_wait_seconds_sum", pool), 0.3);
    // A at once (bucket 0.001), B after 0.3 s or more (above 0.25).
    EXPECT_EQ(m.value("sluice_queue_wait_seconds_bucket", {{"pool", kPool}, {"le", "0.001"}}), 1);
    EXPECT_EQ(m.value("sluice_queue_wait_seconds_bucket", {{"pool", kPool}, {"le", "0.25"}}), 1);
    EXPECT_EQ(m.value("sluice_queue_wait_seconds_bucket", {{"pool", kPool}, {"le", "+Inf"}}), 2);
    EXPECT_EQ(m.value("sluice_upstream_handshake_seconds_count", pool), 2);
    // A has ended: its bytes moved to the ended totals, none lost.
    EXPECT_TRUE(eventually([&] {
      return scrape(s.admin_port()).value("sluice_stream_duration_seconds_count", pool) == 1;
    }));
    EXPECT_GE(scrape(s.admin_port()).value("sluice_relayed_bytes_total",
                                           {{"pool", kPool}, {"direction", "client_to_upstream"}}),
              live_bytes);
    EXPECT_GE(scrape(s.admin_port()).value("sluice_audio_seconds_total", pool), 0.5);
  }

  // B sends only a KeepAlive: idle, KeepAlive-only, then reaped as idle.
  b.send_text(R"({"type":"KeepAlive"})");
  EXPECT_TRUE(eventually([&] {
    auto m = scrape(s.admin_port());
    return m.value("sluice_streams_idle", pool) == 1 && m.value("sluice_streams_keep_alive_only", pool) == 1;
  }));
  EXPECT_EQ(b.read_until_close(), 1000);
  EXPECT_TRUE(eventually([&] {
    return scrape(s.admin_port()).value("sluice_reaps_total", {{"pool", kPool}, {"reason", "idle"}}) == 1;
  }));
  auto end = scrape(s.admin_port());
  EXPECT_EQ(end.value("sluice_reaps_total", {{"pool", kPool}, {"reason", "max_duration"}}), 0);
  EXPECT_EQ(end.value("sluice_streams_idle", pool), 0);
  EXPECT_EQ(end.text.find("sluice_build_info{version=\"" SLUICE_VERSION "\",commit=\""), end.text.find("sluice_build_info{"));
  EXPECT_NE(end.text.find("sluice_build_info{"), std::string::npos);
  EXPECT_GT(end.value("process_open_fds"), 0);
  EXPECT_EQ(end.text.find("sluice-test-key-metrics"), std::string::npos) << "a key in /metrics";
  EXPECT_EQ(end.text.find("admin-secret"), std::string::npos) << "the admin token in /metrics";
  EXPECT_EQ(end.text.find("sim-key"), std::string::npos) << "the upstream key in /metrics";
  promtool_check(end.text);
}

TEST(Metrics, TenantSeriesOnlyWhenSwitchedOn) {
  Stack s({}, with_tenant(kTenant, kKey));
  Client a;
  ASSERT_TRUE(a.open(s.port(), kListen, "Token " + kKey));
  auto m = scrape(s.admin_port());
  EXPECT_EQ(m.text.find("sluice_tenant_in_use"), std::string::npos);
  EXPECT_EQ(m.text.find("acme"), std::string::npos) << "a tenant name without admin.metrics.per_tenant";
  a.send_text(R"({"type":"CloseStream"})");
  EXPECT_EQ(a.read_until_close(), 1000);
}

// Refusals outside admission: before a pool is chosen (pool "") by what was
// wrong with the request, and after admission by how the vendor failed.
TEST(Metrics, RefusalsBeforeAPoolAndUpstreamFailuresByReason) {
  Stack s({}, with_tenant("acme", kKey, via_test_upstream()));
  auto unpooled = [&](const std::string& reason) {
    return scrape(s.admin_port()).value("sluice_refusals_total", {{"pool", ""}, {"reason", reason}});
  };
  for (const char* r : {"unauthorized", "not_found", "upgrade_required", "bad_request", "no_pool"})
    EXPECT_EQ(unpooled(r), 0) << r << ": listed at 0 before it happens";

  Client no_key;
  EXPECT_FALSE(no_key.open(s.port(), kListen, ""));
  EXPECT_EQ(no_key.response.result_int(), 401);
  Client wrong_key;
  EXPECT_FALSE(wrong_key.open(s.port(), kListen, "Token not-a-key"));
  EXPECT_EQ(wrong_key.response.result_int(), 401);
  EXPECT_EQ(unpooled("unauthorized"), 2);

  Client unknown_path;
  EXPECT_FALSE(unknown_path.open(s.port(), "/v9/nothing", "Token " + kKey));
  EXPECT_EQ(unknown_path.response.result_int(), 404);
  EXPECT_EQ(unpooled("not_found"), 1);

  // A plain GET (no upgrade) on the gateway's port.
  auto plain = admin_call(s.port(), http::verb::get, kListen, "");
  EXPECT_EQ(plain.result_int(), 426);
  EXPECT_EQ(unpooled("upgrade_required"), 1);

  // The vendor refuses the admitted stream: counted in its pool.
  Client refused;
  EXPECT_FALSE(refused.open(s.port(), kListen + "&refuse=503", "Token " + kKey));
  EXPECT_EQ(refused.response.result_int(), 503);
  auto m = scrape(s.admin_port());
  EXPECT_EQ(m.value("sluice_refusals_total", {{"pool", "streaming"}, {"reason", "upstream_error"}}), 1);
  EXPECT_EQ(m.value("sluice_refusals_total", {{"pool", "streaming"}, {"reason", "upstream_unreachable"}}), 0);
  EXPECT_EQ(m.value("sluice_pool_refused_total", {{"pool", "streaming"}}), 1);
  EXPECT_EQ(unpooled("unauthorized"), 2) << "nothing counted twice";
}

TEST(Metrics, AnUnreachableUpstreamIsCountedInItsPool) {
  Stack s({}, with_tenant("acme", kKey, [](config::Config& c, Stack&) { c.upstream.url = "ws://127.0.0.1:1"; }));
  Client a;
  EXPECT_FALSE(a.open(s.port(), kListen, "Token " + kKey));
  EXPECT_EQ(a.response.result_int(), 502);
  EXPECT_TRUE(eventually([&] {
    return scrape(s.admin_port()).value("sluice_refusals_total",
                                        {{"pool", "streaming"}, {"reason", "upstream_unreachable"}}) == 1;
  }));
}
