#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include <cmath>

#include "admin/metrics.hpp"
#include "admission/controller.hpp"
#include "config/config.hpp"
#include "events/event_log.hpp"
#include "exposition_check.hpp"
#include "registry/registry.hpp"

using namespace sluice;
using sluice::testing::check_exposition;
using sluice::testing::ParsedSample;
using sluice::testing::sample_value;

namespace {

config::PoolConfig pool(std::string name, int limit, int max_queue = 0) {
  config::PoolConfig p;
  p.name = std::move(name);
  p.limit = limit;
  p.max_queue = max_queue;
  p.queue_timeout = config::Seconds(max_queue ? 10 : 0);
  return p;
}

registry::SessionInfo info(registry::Registry& r, std::string pool, std::string tenant) {
  registry::SessionInfo i;
  i.id = r.next_id();
  i.pool = std::move(pool);
  i.tenant = std::move(tenant);
  i.accepted = registry::wall_now();
  i.accepted_mono = registry::mono_ns();
  i.audio_bytes_per_second = 32000;
  return i;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += s + "\n";
  return out;
}

}  // namespace

TEST(Metrics, LabelValuesEscapeBackslashQuoteAndNewline) {
  EXPECT_EQ(admin::escape_label_value("plain"), "plain");
  EXPECT_EQ(admin::escape_label_value("a\"b"), "a\\\"b");
  EXPECT_EQ(admin::escape_label_value("a\\b"), "a\\\\b");
  EXPECT_EQ(admin::escape_label_value("a\nb"), "a\\nb");
  EXPECT_EQ(admin::escape_label_value("\\\"\n"), "\\\\\\\"\\n");
}

TEST(Metrics, CheckerRejectsWhatIsNotValid) {
  // The checker itself: each of these breaks one rule.
  EXPECT_FALSE(check_exposition("x 1\n").empty()) << "no TYPE/HELP";
  EXPECT_FALSE(check_exposition("# HELP x h\n# TYPE x gauge\nx{a=\"b\"} 1\nx{a=\"b\"} 2\n").empty()) << "duplicate";
  EXPECT_FALSE(check_exposition("# HELP x h\n# TYPE x gauge\nx{a=\"b\\q\"} 1\n").empty()) << "bad escape";
  EXPECT_FALSE(check_exposition("# HELP x h\n# TYPE x gauge\nx{a=\"b\"c\"} 1\n").empty()) << "raw quote";
  EXPECT_FALSE(check_exposition("# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
                                "h_sum 1\nh_count 1\n")
                   .empty())
      << "not cumulative";
  EXPECT_FALSE(check_exposition("# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n").empty())
      << "no +Inf";
  EXPECT_FALSE(check_exposition("# HELP h h\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n").empty())
      << "no _sum";
  EXPECT_FALSE(check_exposition("# HELP x h\n# TYPE x gauge\nx 1\n# HELP y h\n# TYPE y gauge\ny 1\nx{a=\"1\"} 1\n").empty())
      << "family split";
  EXPECT_TRUE(check_exposition("# HELP x a \\\\ b\n# TYPE x gauge\nx{a=\"q\\\"\\n\\\\\"} 1.5e-06\n").empty());
}

TEST(Metrics, WholeExpositionIsValidWithHostilePoolAndTenantNames) {
  boost::asio::io_context ioc;
  const std::string odd = "we\"ird\\pool\nname";
  admission::Controller ctl({pool(odd, 1), pool("batch", 1, 5)}, {}, {}, ioc.get_executor());
  registry::Registry reg(std::chrono::milliseconds(1));
  events::EventLog events;
  admin::EventCounters counters;
  events.subscribe([&](const events::Event& e) { counters.observe(e); });

  // One admitted at once (a queue wait of 0), one refused (queue_full), one
  // with no pool.
  auto t1 = ctl.enqueue(odd, "ten\"ant", ioc.get_executor());
  ASSERT_TRUE(t1.decided());
  auto r1 = t1.take_result();
  ASSERT_TRUE(r1.lease);
  ctl.on_upstream_accepted(r1.lease);
  auto t2 = ctl.enqueue(odd, "other", ioc.get_executor());
  ASSERT_TRUE(t2.decided());
  EXPECT_EQ(t2.take_result().refusal, admission::Refusal::queue_full);
  auto t3 = ctl.enqueue("nowhere", "x", ioc.get_executor());
  EXPECT_EQ(t3.take_result().refusal, admission::Refusal::no_pool);

  // A live stream with traffic and one that ended.
  auto live = reg.add(info(reg, odd, "ten\"ant"));
  live->counters().client_bytes = 1000;
  live->counters().upstream_bytes = 200;
  live->counters().audio_bytes = 64000;
  live->counters().upstream_open_ns = registry::mono_ns() - 5'000'000'000;
  live->set_state(registry::SessionState::open);
  {
    auto gone = reg.add(info(reg, odd, "other"));
    gone->counters().client_bytes = 500;
    gone->counters().upstream_bytes = 50;
    gone->counters().audio_bytes = 16000;
    gone->counters().upstream_open_ns = registry::mono_ns() - 3'000'000'000;
    gone->counters().closed_ns = registry::mono_ns();
  }
  boost::json::object reap;
  reap["pool"] = odd;
  reap["reason"] = "idle";
  events.record("reap", reap);

  for (bool per_tenant : {false, true}) {
    admin::MetricsOptions opt;
    opt.per_tenant = per_tenant;
    opt.events = &counters;
    auto text = admin::render_metrics(reg, ctl, nullptr, opt);
    std::vector<ParsedSample> s;
    auto problems = check_exposition(text, &s);
    EXPECT_TRUE(problems.empty()) << join(problems) << "\n" << text;

    EXPECT_EQ(sample_value(s, "sluice_refusals_total", {{"pool", odd}, {"reason", "queue_full"}}), 1);
    EXPECT_EQ(sample_value(s, "sluice_refusals_total", {{"pool", ""}, {"reason", "no_pool"}}), 1);
    EXPECT_EQ(sample_value(s, "sluice_refusals_total", {{"pool", "batch"}, {"reason", "queue_timeout"}}), 0);
    EXPECT_EQ(sample_value(s, "sluice_reaps_total", {{"pool", odd}, {"reason", "idle"}}), 1);
    EXPECT_EQ(sample_value(s, "sluice_reaps_total", {{"pool", "batch"}, {"reason", "max_duration"}}), 0);
    EXPECT_EQ(sample_value(s, "sluice_queue_wait_seconds_count", {{"pool", odd}}), 1);
    EXPECT_EQ(sample_value(s, "sluice_queue_wait_seconds_bucket", {{"pool", odd}, {"le", "0.001"}}), 1);
    EXPECT_EQ(sample_value(s, "sluice_upstream_handshake_seconds_count", {{"pool", odd}}), 1);
    EXPECT_EQ(sample_value(s, "sluice_stream_duration_seconds_count", {{"pool", odd}}), 1);
    EXPECT_EQ(sample_value(s, "sluice_stream_duration_seconds_bucket", {{"pool", odd}, {"le", "1"}}), 0);
    EXPECT_EQ(sample_value(s, "sluice_stream_duration_seconds_bucket", {{"pool", odd}, {"le", "5"}}), 1);
    EXPECT_NEAR(sample_value(s, "sluice_stream_duration_seconds_sum", {{"pool", odd}}), 3.0, 0.1);
    EXPECT_EQ(sample_value(s, "sluice_relayed_bytes_total", {{"pool", odd}, {"direction", "client_to_upstream"}}), 1500);
    EXPECT_EQ(sample_value(s, "sluice_relayed_bytes_total", {{"pool", odd}, {"direction", "upstream_to_client"}}), 250);
    EXPECT_DOUBLE_EQ(sample_value(s, "sluice_audio_seconds_total", {{"pool", odd}}), 2.5);
    EXPECT_EQ(sample_value(s, "sluice_streams_open", {{"pool", odd}}), 1);
    EXPECT_EQ(sample_value(s, "sluice_streams_idle", {{"pool", odd}}), 1);
    EXPECT_EQ(sample_value(s, "sluice_streams_keep_alive_only", {{"pool", odd}}), 0);
    const ParsedSample* build = nullptr;
    for (const auto& x : s)
      if (x.name == "sluice_build_info") build = &x;
    ASSERT_NE(build, nullptr);
    EXPECT_EQ(build->value, 1);
    EXPECT_EQ(build->labels.at("version"), SLUICE_VERSION);
    EXPECT_EQ(build->labels.at("commit"), build_commit());
    EXPECT_GT(sample_value(s, "process_open_fds"), 0);
    EXPECT_GT(sample_value(s, "process_resident_memory_bytes"), 0);
    EXPECT_GT(sample_value(s, "process_start_time_seconds"), 1.6e9);
    EXPECT_FALSE(std::isnan(sample_value(s, "process_cpu_seconds_total")));
    double tenant = sample_value(s, "sluice_tenant_in_use", {{"pool", odd}, {"tenant", "ten\"ant"}});
    if (per_tenant)
      EXPECT_EQ(tenant, 1);
    else
      EXPECT_TRUE(std::isnan(tenant)) << "tenant series without admin.metrics.per_tenant";
    EXPECT_EQ(text.find("ten\"ant"), std::string::npos) << "an unescaped quote in the exposition";
  }
}

TEST(Metrics, RelayedBytesStayMonotonicAsStreamsEnd) {
  boost::asio::io_context ioc;
  admission::Controller ctl({pool("p", 4)}, {}, {}, ioc.get_executor());
  registry::Registry reg;
  auto bytes = [&] {
    auto t = reg.traffic();
    return t.count("p") ? t.at("p").client_bytes : 0;
  };
  std::uint64_t last = 0;
  for (int i = 0; i < 50; ++i) {
    auto a = reg.add(info(reg, "p", "t"));
    for (int k = 0; k < 3; ++k) {
      registry::bump(a->counters().client_bytes, std::uint64_t{10});
      auto now = bytes();
      EXPECT_GE(now, last);
      last = now;
    }
  }
  EXPECT_EQ(bytes(), 1500u);
}

TEST(Config, AdminMetricsPerTenant) {
  EXPECT_FALSE(config::parse_config("").admin.metrics_per_tenant);
  EXPECT_TRUE(config::parse_config("admin:\n  metrics:\n    per_tenant: true\n").admin.metrics_per_tenant);
  try {
    config::parse_config("admin:\n  metrics:\n    per_tenant: maybe\n");
    FAIL() << "no error";
  } catch (const config::ConfigError& e) {
    EXPECT_EQ(e.key(), "admin.metrics.per_tenant");
    EXPECT_EQ(e.line(), 3);
  }
  try {
    config::parse_config("admin:\n  metrics:\n    per_pool: true\n");
    FAIL() << "no error";
  } catch (const config::ConfigError& e) {
    EXPECT_EQ(e.key(), "admin.metrics.per_pool");
    EXPECT_EQ(e.line(), 3);
  }
}

TEST(Config, PoolAndTenantNamesWithoutControlCharacters) {
  // A newline in a name would break the dg-error header of a refusal.
  try {
    config::parse_config("pools:\n  - {name: \"a\\nb\", limit: 1}\n");
    FAIL() << "no error";
  } catch (const config::ConfigError& e) {
    EXPECT_EQ(e.key(), "pools[0].name");
  }
  try {
    config::parse_config("tenants:\n  - {name: \"t\\tx\"}\n");
    FAIL() << "no error";
  } catch (const config::ConfigError& e) {
    EXPECT_EQ(e.key(), "tenants[0].name");
  }
  // Quotes and backslashes are fine (escaped in /metrics).
  EXPECT_NO_THROW(config::parse_config("pools:\n  - {name: 'we\"ird\\pool', limit: 1}\n"));
}
