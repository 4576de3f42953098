#include <gtest/gtest.h>

#include "config/config.hpp"
#include "protocol/credential.hpp"

using namespace sluice::config;

namespace {
// Expects parse_config to fail naming `key`, with `fragment` in the message.
void expect_error(const std::string& yaml, const std::string& key, const std::string& fragment) {
  try {
    parse_config(yaml);
    FAIL() << "accepted: " << yaml;
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), key) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}
}  // namespace

TEST(Config, EmptyFileGivesDefaults) {
  auto c = parse_config("");
  EXPECT_EQ(c.listen, "127.0.0.1:8080");
  EXPECT_EQ(c.admin.listen, "127.0.0.1:9090");
  EXPECT_EQ(c.upstream.effective_url(), "wss://api.deepgram.com");
  EXPECT_EQ(c.upstream.effective_agent_url(), "wss://agent.deepgram.com");
  EXPECT_FALSE(c.upstream.url);
  EXPECT_TRUE(c.pass_through());
  EXPECT_EQ(c.relay.max_message_bytes, 4u * 1024 * 1024);
  EXPECT_DOUBLE_EQ(c.store.query_timeout.count(), 30);
}

TEST(Config, ParsesEveryOption) {
  auto hash = sluice::protocol::key_hash("k1");
  auto c = parse_config(R"(
listen: 0.0.0.0:8443
threads: 2
tls: {cert: /tmp/c.pem, key: /tmp/k.pem}
admin: {listen: "127.0.0.1:9191", token: t0k}
upstream:
  url: ws://127.0.0.1:8081
  agent_url: ws://127.0.0.1:8082/base
  api_key: dg-secret
  connect_timeout: 2500ms
  verify_tls: false
client: {handshake_timeout: 3s, header_limit: 8192}
tenants:
  - name: acme
    keys: [")" + hash + R"("]
relay: {max_message_bytes: 64KiB, ping_interval: 20s, close_timeout: 4s, close_grace: 2s, idle_after: 1m}
log: {level: debug}
store: {query_timeout: 2m}
)");
  EXPECT_EQ(c.listen, "0.0.0.0:8443");
  EXPECT_EQ(c.threads, 2);
  EXPECT_TRUE(c.tls.enabled());
  EXPECT_EQ(c.admin.token, "t0k");
  EXPECT_EQ(c.upstream.effective_agent_url(), "ws://127.0.0.1:8082/base");
  EXPECT_DOUBLE_EQ(c.upstream.connect_timeout.count(), 2.5);
  EXPECT_FALSE(c.upstream.verify_tls);
  EXPECT_DOUBLE_EQ(c.client.handshake_timeout.count(), 3);
  ASSERT_EQ(c.tenants.size(), 1u);
  EXPECT_EQ(c.tenants[0].key_hashes[0], hash);
  EXPECT_FALSE(c.pass_through());
  EXPECT_EQ(c.relay.max_message_bytes, 65536u);
  EXPECT_DOUBLE_EQ(c.relay.idle_after.count(), 60);
  EXPECT_EQ(c.log.level, "debug");
  EXPECT_DOUBLE_EQ(c.store.query_timeout.count(), 120);
}

TEST(Config, ErrorsNameTheKey) {
  expect_error("listen: nowhere", "listen", "HOST:PORT");
  expect_error("lisen: 127.0.0.1:1", "lisen", "unknown key");
  expect_error("relay: {ping_intervall: 3s}", "relay.ping_intervall", "unknown key");
  expect_error("relay: {ping_interval: soon}", "relay.ping_interval", "duration");
  expect_error("store: {query_timeout: -1s}", "store.query_timeout", "duration");
  expect_error("relay: {max_message_bytes: -5}", "relay.max_message_bytes", "size");
  expect_error("threads: many", "threads", "integer");
  expect_error("threads: 0", "threads", "between");
  expect_error("upstream: {url: https://api.deepgram.com}", "upstream.url", "ws://");
  expect_error("upstream: {verify_tls: maybe}", "upstream.verify_tls", "true or false");
  expect_error("tls: {cert: /tmp/c.pem}", "tls.key", "together");
  expect_error("tenants: [{name: a, keys: [plainkey]}]", "tenants[0].keys[0]", "sha256:");
  expect_error("tenants: [{keys: [x]}]", "tenants[0].name", "required");
  expect_error("log: {level: loud}", "log.level", "expected one of");
  expect_error("admin: [1, 2]", "admin", "mapping");
  expect_error("listen: [", "<file>", "YAML");
}

// Found by the fuzz target `config`: keys YAML allows but a configuration
// cannot have. A list or mapping as a key threw yaml-cpp's own exception
// (YAML::TypedBadConversion) instead of a ConfigError; an empty key gave an
// error whose key was empty, and a key with a NUL an error whose what() ended
// inside the key. (A null key read as "null"; it is now refused as
// not a plain key too.)
TEST(Config, KeysThatAreNotWordsAreConfigErrors) {
  expect_error("? [a]\n: 1\n", "<root>", "plain key");
  expect_error("~: 1\n", "<root>", "plain key");
  expect_error("pools:\n  - name: a\n    match: {params: {[x]: y}}\n", "pools[0].match.params", "plain key");
  expect_error("tenants:\n  - name: t\n    quotas: {[p]: {max: 1}}\n", "tenants[0].quotas", "plain key");
  expect_error(std::string("\"a\\0b\": 1\n"), "<root>", "plain key");  // a key error's what() would stop at the NUL
  expect_error("\"\": 1\n", "\"\"", "unknown key");
  expect_error("relay: {\"\": 1}\n", "relay.\"\"", "unknown key");
}

// Found with the fuzz target `config`'s oracle: values that loaded but no
// clock or counter can hold. 1e300s became an infinite deadline (and undefined
// behaviour where it was converted to nanoseconds); 17179869184GiB (2^64
// bytes) wrapped around to a message limit of 0 bytes.
TEST(Config, DurationsAndSizesHaveBounds) {
  expect_error("client: {handshake_timeout: 1e300s}", "client.handshake_timeout", "at most");
  expect_error("drain_timeout: 36526d", "drain_timeout", "at most");
  EXPECT_DOUBLE_EQ(parse_duration("k", "36525d").count(), 36525.0 * 86400);
  expect_error("relay: {max_message_bytes: 17179869184GiB}", "relay.max_message_bytes", "at most");
  expect_error("relay: {max_message_bytes: 1125899906842625}", "relay.max_message_bytes", "at most");
  EXPECT_EQ(parse_config("relay: {max_message_bytes: 1048576GiB}").relay.max_message_bytes, 1ull << 50);
}

TEST(Config, DuplicateTenantsAndKeysAreRejected) {
  auto h = sluice::protocol::key_hash("k");
  expect_error("tenants: [{name: a, keys: [" + h + "]}, {name: a, keys: [" + sluice::protocol::key_hash("j") + "]}]",
               "tenants[1].name", "duplicate");
  expect_error("tenants: [{name: a, keys: [" + h + "]}, {name: b, keys: [" + h + "]}]", "tenants[1].keys",
               "twice");
}

TEST(Config, EnvironmentOverrides) {
  auto c = parse_config("listen: 127.0.0.1:1000");
  static std::map<std::string, std::string> env{{"DEEPGRAM_API_KEY", "dg"},
                                                {"SLUICE_LISTEN", "127.0.0.1:2000"},
                                                {"SLUICE_ADMIN_TOKEN", "adm"},
                                                {"SLUICE_UPSTREAM_URL", "ws://127.0.0.1:3000"}};
  apply_environment(c, [](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
  EXPECT_EQ(c.listen, "127.0.0.1:2000");
  EXPECT_EQ(c.upstream.api_key, "dg");
  EXPECT_EQ(c.admin.token, "adm");
  EXPECT_EQ(c.upstream.effective_url(), "ws://127.0.0.1:3000");
  // The agent follows a configured upstream unless set apart.
  EXPECT_EQ(c.upstream.effective_agent_url(), "ws://127.0.0.1:3000");
}

TEST(Config, Durations) {
  EXPECT_DOUBLE_EQ(parse_duration("k", "250ms").count(), 0.25);
  EXPECT_DOUBLE_EQ(parse_duration("k", "10s").count(), 10);
  EXPECT_DOUBLE_EQ(parse_duration("k", "2m").count(), 120);
  EXPECT_DOUBLE_EQ(parse_duration("k", "1h").count(), 3600);
  EXPECT_DOUBLE_EQ(parse_duration("k", "1.5").count(), 1.5);
  EXPECT_THROW(parse_duration("k", ""), ConfigError);
  EXPECT_THROW(parse_duration("k", "ms"), ConfigError);
  EXPECT_THROW(parse_duration("k", "-1s"), ConfigError);
  // The grammar the command line and the history's relative times share
  // (util/duration.hpp): sums of number-unit pairs, weeks, exponents.
  EXPECT_DOUBLE_EQ(parse_duration("k", "1h30m").count(), 5400);
  EXPECT_DOUBLE_EQ(parse_duration("k", "1m500ms").count(), 60.5);
  EXPECT_DOUBLE_EQ(parse_duration("k", "2w").count(), 14 * 86400);
  EXPECT_DOUBLE_EQ(parse_duration("k", "1e3").count(), 1000);
  EXPECT_DOUBLE_EQ(parse_duration("k", "0").count(), 0);
  for (const char* bad : {"1.5.5s", ".5s", "5.s", "1h 30m", "1x", "1hh", "s", "1e", "1es", "+1s", "inf", "nan", "1h30"})
    EXPECT_THROW(parse_duration("k", bad), ConfigError) << bad;
  expect_error("drain_timeout: 1e400s", "drain_timeout", "at most");
  expect_error("drain_timeout: 36525d1s", "drain_timeout", "at most");
}

TEST(Config, ShippedExampleParses) {
  auto c = load_config_file(std::string(SLUICE_SOURCE_DIR) + "/config/sluice.example.yaml");
  EXPECT_EQ(c.listen, "127.0.0.1:8080");
  EXPECT_TRUE(c.pass_through());
  EXPECT_FALSE(c.tls.enabled());
}

TEST(Config, PoolReleaseDelay) {
  auto c = parse_config(
      "pools:\n"
      "  - {name: a, release_delay: 3s}\n"
      "  - {name: b, release_delay: 250ms}\n"
      "  - {name: c, release_delay: learn}\n"
      "  - {name: d}\n"
      "  - {name: e, release_delay: 0s}\n");
  ASSERT_EQ(c.pools.size(), 5u);
  ASSERT_TRUE(c.pools[0].release_delay);
  EXPECT_DOUBLE_EQ(c.pools[0].release_delay->count(), 3.0);
  EXPECT_DOUBLE_EQ(c.pools[1].release_delay->count(), 0.25);
  EXPECT_FALSE(c.pools[2].release_delay);  // learned
  EXPECT_FALSE(c.pools[3].release_delay);  // learned
  ASSERT_TRUE(c.pools[4].release_delay);
  EXPECT_DOUBLE_EQ(c.pools[4].release_delay->count(), 0.0);
  expect_error("pools: [{name: a, release_delay: soon}]", "pools[0].release_delay", "'learn'");
  expect_error("pools: [{name: a, release_delay: -2s}]", "pools[0].release_delay", "duration");
  expect_error("pools: [{name: a, release_delay: 11m}]", "pools[0].release_delay", "at most 10m");
  // The retired recovery rule's key still loads (ignored), but must be a duration.
  EXPECT_NO_THROW(parse_config("upstream: {retry_429: {recovery_interval: 30s}}"));
  expect_error("upstream: {retry_429: {recovery_interval: never}}", "upstream.retry_429.recovery_interval", "duration");
}
