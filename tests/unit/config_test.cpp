#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include "../integration/temp_dir.hpp"
#include "config/config.hpp"
#include "protocol/credential.hpp"

using namespace sluice::config;
using sluice::testing::TempDir;

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
  // The configuration `cmake --install` puts in /etc/sluice.
  auto installed = load_config_file(std::string(SLUICE_SOURCE_DIR) + "/deploy/sluice.yaml");
  EXPECT_EQ(installed.admin.listen, "127.0.0.1:9090");
  EXPECT_EQ(installed.store.effective_url(), "/var/lib/sluice/history.db");
  EXPECT_EQ(installed.upstream.effective_url(), "wss://api.deepgram.com");
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

namespace {
// A fake environment for parse_config and apply_environment.
std::map<std::string, std::string>& fake_env() {
  static std::map<std::string, std::string> env;
  return env;
}
const char* fake_getenv(const char* name) {
  auto it = fake_env().find(name);
  return it == fake_env().end() ? nullptr : it->second.c_str();
}

ConfigError error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e;
  }
  ADD_FAILURE() << "no ConfigError";
  return ConfigError("", "");
}

}  // namespace

TEST(ConfigInterpolation, VariablesDefaultsAndDollars) {
  fake_env() = {{"PORT", "8443"}, {"EMPTY", ""}, {"HOST", "0.0.0.0"}};
  auto c = parse_config(
      "listen: ${HOST}:${PORT}\n"
      "admin: {listen: \"127.0.0.1:${ADMIN_PORT:-9191}\"}\n"
      "store: {data_dir: \"${EMPTY:-/var/lib/sluice}\", instance: \"a$$b$c ${EMPTY}x $\"}\n",
      fake_getenv);
  EXPECT_EQ(c.listen, "0.0.0.0:8443");
  EXPECT_EQ(c.admin.listen, "127.0.0.1:9191");  // unset: the default
  EXPECT_EQ(c.store.data_dir, "/var/lib/sluice");  // empty: the default
  EXPECT_EQ(c.store.instance, "a$b$c x $");  // $$ is one $, a $ before anything but { or $ stays, ${EMPTY} is empty
  // Values only: the result is never read as YAML, and keys are not interpolated.
  fake_env() = {{"V", "a: b\nc"}};
  EXPECT_EQ(parse_config("store: {instance: \"${V}\"}", fake_getenv).store.instance, "a: b\nc");
  expect_error("${V}: 1", "${V}", "unknown key");
}

TEST(ConfigInterpolation, AnUnsetVariableIsAnErrorNamingItAndItsLine) {
  fake_env() = {};
  auto e = error_of([] { parse_config("log:\n  level: info\n  format: ${SLUICE_TEST_FORMAT}\n", fake_getenv); });
  EXPECT_EQ(e.key(), "log.format");
  EXPECT_EQ(e.line(), 3);
  EXPECT_STREQ(e.what(),
               "line 3: log.format: environment variable SLUICE_TEST_FORMAT is not set (${SLUICE_TEST_FORMAT:-default} "
               "gives a default)");
  e = error_of([] { parse_config("\nlisten: \"${1X}\"\n", fake_getenv); });
  EXPECT_EQ(e.line(), 2);
  EXPECT_NE(std::string(e.what()).find("NAME of letters"), std::string::npos) << e.what();
  e = error_of([] { parse_config("listen: \"${X\"\n", fake_getenv); });
  EXPECT_NE(std::string(e.what()).find("without its '}'"), std::string::npos) << e.what();
}

TEST(ConfigSecrets, ReadFromFilesNamedByTheFileKeys) {
  TempDir t;
  auto key = t.write("dg", "dg-secret-1\n");
  auto token = t.write("token", "adm-secret\r\n");
  auto url = t.write("url", "postgres://u:pw@127.0.0.1/db");
  fake_env() = {{"SECRETS", t.dir.string()}};
  auto c = parse_config("upstream: {api_key_file: " + key +
                            "}\nadmin: {token_file: \"${SECRETS}/token\"}\nstore: {url_file: " + url + "}\n",
                        fake_getenv);
  EXPECT_EQ(c.upstream.api_key, "dg-secret-1");  // the trailing newline is not part of it
  EXPECT_EQ(c.admin.token, "adm-secret");
  EXPECT_EQ(c.store.url, "postgres://u:pw@127.0.0.1/db");
}

TEST(ConfigSecrets, ErrorsNameTheKeyAndPathButNeverTheSecret) {
  TempDir t;
  auto key = t.write("dg", "dg-secret-2\n");
  auto empty = t.write("empty", "\n");
  auto unreadable = (t.dir / "missing").string();
  auto e = error_of([&] { parse_config("upstream:\n  api_key: dg-secret-3\n  api_key_file: " + key + "\n"); });
  EXPECT_EQ(e.key(), "upstream.api_key_file");
  EXPECT_EQ(e.line(), 3);
  EXPECT_NE(std::string(e.what()).find("not both"), std::string::npos) << e.what();
  EXPECT_EQ(std::string(e.what()).find("dg-secret"), std::string::npos) << e.what();
  e = error_of([&] { parse_config("admin:\n  token_file: " + unreadable + "\n"); });
  EXPECT_EQ(e.key(), "admin.token_file");
  EXPECT_EQ(e.line(), 2);
  EXPECT_NE(std::string(e.what()).find("cannot read '" + unreadable + "': No such file"), std::string::npos)
      << e.what();
  e = error_of([&] { parse_config("admin:\n  token_file: " + empty + "\n"); });
  EXPECT_NE(std::string(e.what()).find("is empty"), std::string::npos) << e.what();
  e = error_of([&] { parse_config("admin:\n  token_file: " + t.dir.string() + "\n"); });
  EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  if (::geteuid() != 0) {  // root reads a file of mode 0000
    auto locked = t.write("locked", "x");
    std::filesystem::permissions(locked, std::filesystem::perms::none);
    e = error_of([&] { parse_config("admin: {token_file: " + locked + "}"); });
    EXPECT_NE(std::string(e.what()).find("Permission denied"), std::string::npos) << e.what();
  }
  auto big = t.write("big", std::string(65 * 1024, 'k'));
  e = error_of([&] { parse_config("admin: {token_file: " + big + "}"); });
  EXPECT_NE(std::string(e.what()).find("larger than 64 KiB"), std::string::npos) << e.what();
  EXPECT_EQ(std::string(e.what()).find("kkkk"), std::string::npos);
}

TEST(ConfigSecrets, EnvironmentFileVariables) {
  TempDir t;
  auto key = t.write("dg", "dg-from-file\n");
  auto token = t.write("token", "adm-from-file\n");
  Config c = parse_config("upstream: {api_key: in-the-file}");
  fake_env() = {{"DEEPGRAM_API_KEY_FILE", key}, {"SLUICE_ADMIN_TOKEN_FILE", token}};
  apply_environment(c, fake_getenv);
  EXPECT_EQ(c.upstream.api_key, "dg-from-file");  // the environment over the file
  EXPECT_EQ(c.admin.token, "adm-from-file");
  fake_env() = {{"DEEPGRAM_API_KEY_FILE", key}, {"DEEPGRAM_API_KEY", "dg-secret-4"}};
  auto e = error_of([&] { apply_environment(c, fake_getenv); });
  EXPECT_EQ(e.key(), "DEEPGRAM_API_KEY_FILE");
  EXPECT_EQ(std::string(e.what()).find("dg-secret"), std::string::npos) << e.what();
  fake_env() = {{"SLUICE_ADMIN_TOKEN_FILE", (t.dir / "nope").string()}};
  e = error_of([&] { apply_environment(c, fake_getenv); });
  EXPECT_EQ(e.key(), "SLUICE_ADMIN_TOKEN_FILE");
  EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos) << e.what();
}

TEST(ConfigLines, EveryErrorHasItsLine) {
  struct Case {
    std::string yaml, key;
    int line;
  };
  const std::vector<Case> cases = {
      {"listen: 127.0.0.1:1\nthreads: 0\n", "threads", 2},                                  // a value out of range
      {"relay:\n  ping_interval: 3s\n  ping_intervall: 3s\n", "relay.ping_intervall", 3},  // an unknown key
      {"pools:\n  - name: a\n  - name: b\n    limit: 0\n", "pools[1].limit", 4},
      {"pools:\n  - name: a\n  - name: a\n", "pools[1].name", 3},                 // validate(): a duplicate
      {"pools:\n  - name: a\n  - limit: 3\n", "pools[1].name", 3},                // required: the item's line
      {"tls:\n  cert: /tmp/c.pem\n", "tls.key", 1},                               // validate(): the enclosing key
      {"\n\nupstream:\n  url: https://x\n", "upstream.url", 4},                   // validate()
      {"log:\n  level: loud\n", "log.level", 2},                                  // validate()
      {"tenants:\n  - name: t\n    quotas:\n      nopool: {max: 1}\n", "tenants[0].quotas.nopool", 4},
      {"listen: [\n", "<file>", 2},                                               // not YAML
      {"admin: [1, 2]\n", "admin", 1},
      {"# comment\n? [a]\n: 1\n", "<root>", 2},
  };
  for (const auto& k : cases) {
    auto e = error_of([&] { parse_config(k.yaml); });
    EXPECT_EQ(e.key(), k.key) << k.yaml << " -> " << e.what();
    EXPECT_EQ(e.line(), k.line) << k.yaml << " -> " << e.what();
    auto place = "line " + std::to_string(k.line) + ": ";
    EXPECT_EQ(std::string(e.what()).rfind(place + (k.key == "<file>" ? "" : k.key + ": "), 0), 0u) << e.what();
  }
}

TEST(ConfigLines, AFileNamesItselfAndTheLine) {
  TempDir t;
  auto path = t.write("sluice.yaml", "listen: 127.0.0.1:8080\npools:\n  - name: a\n    limit: 0\n");
  auto e = error_of([&] { load_config_file(path); });
  EXPECT_EQ(e.file(), path);
  EXPECT_STREQ(e.what(), (path + ":4: pools[0].limit: must be between 1 and 1000000, got 0").c_str());
  path = t.write("broken.yaml", "listen: 127.0.0.1:8080\nadmin: {listen: x\n");
  e = error_of([&] { load_config_file(path); });
  EXPECT_EQ(std::string(e.what()).rfind(path + ":3: not valid YAML", 0), 0u) << e.what();
  e = error_of([&] { load_config_file((t.dir / "absent.yaml").string()); });
  EXPECT_EQ(std::string(e.what()), (t.dir / "absent.yaml").string() + ": cannot read: No such file or directory");
}

TEST(Config, UpstreamKeyIsRequiredForVirtualKeysTowardARealUpstream) {
  auto c = parse_config("tenants: [{name: a, keys: [" + sluice::protocol::key_hash("k") + "]}]");
  EXPECT_NO_THROW(check_upstream_key(c));  // no upstream: the bundled simulator
  c.upstream.url = "wss://api.deepgram.com";
  EXPECT_THROW(check_upstream_key(c), ConfigError);
  c.upstream.api_key = "k";
  EXPECT_NO_THROW(check_upstream_key(c));
}

TEST(ConfigCluster, ReadsTheSectionAndDefaults) {
  auto c = parse_config("");
  EXPECT_FALSE(c.cluster.enabled());
  EXPECT_EQ(c.cluster.on_redis_loss, "local_share");
  EXPECT_EQ(c.cluster.lease_ttl, sluice::config::Seconds(6));
  c = parse_config(
      "cluster:\n  redis_url: redis://:pw@10.0.0.5:6379/2\n  instance: gw-1\n  key_prefix: fleet-a\n"
      "  lease_ttl: 10s\n  renew_interval: 3s\n  redis_timeout: 250ms\n  on_redis_loss: refuse\n"
      "  expected_instances: 3\n");
  EXPECT_TRUE(c.cluster.enabled());
  EXPECT_EQ(c.cluster.instance, "gw-1");
  EXPECT_EQ(c.cluster.key_prefix, "fleet-a");
  EXPECT_EQ(c.cluster.lease_ttl, sluice::config::Seconds(10));
  EXPECT_EQ(c.cluster.renew_interval, sluice::config::Seconds(3));
  EXPECT_EQ(c.cluster.redis_timeout, sluice::config::Seconds(0.25));
  EXPECT_EQ(c.cluster.on_redis_loss, "refuse");
  EXPECT_EQ(c.cluster.expected_instances, 3);
}

TEST(ConfigCluster, RefusesWhatCannotWork) {
  auto e = error_of([] { parse_config("cluster:\n  redis_url: http://h\n"); });
  EXPECT_EQ(e.key(), "cluster.redis_url");
  e = error_of([] { parse_config("cluster:\n  redis_url: redis://h\n  on_redis_loss: guess\n"); });
  EXPECT_EQ(e.key(), "cluster.on_redis_loss");
  e = error_of([] { parse_config("cluster:\n  redis_url: redis://h\n  lease_ttl: 4s\n  renew_interval: 3s\n"); });
  EXPECT_EQ(e.key(), "cluster.renew_interval");
  e = error_of([] { parse_config("cluster:\n  redis_url: redis://h\n  expected_instances: 0\n"); });
  EXPECT_EQ(e.key(), "cluster.expected_instances");
  e = error_of([] { parse_config("cluster:\n  redis: redis://h\n"); });
  EXPECT_EQ(e.line(), 2);
}

TEST(ConfigStore, StaleAfterIsAtLeastThreeHeartbeats) {
  EXPECT_EQ(parse_config("").store.stale_after, sluice::config::Seconds(0));  // the gateway's default
  EXPECT_EQ(parse_config("store:\n  heartbeat: 1s\n  stale_after: 3s\n").store.stale_after, sluice::config::Seconds(3));
  auto e = error_of([] { parse_config("store:\n  heartbeat: 5s\n  stale_after: 10s\n"); });
  EXPECT_EQ(e.key(), "store.stale_after");
  EXPECT_NE(std::string(e.what()).find("15 s"), std::string::npos) << e.what();
}
