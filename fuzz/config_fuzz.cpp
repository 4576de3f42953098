// Fuzz target `config`: the configuration loader (config::parse_config) on
// arbitrary YAML text.
//
// What it asserts:
//   - parse_config returns a configuration or throws config::ConfigError,
//     whose what() reads "line <n>: <key>: <what is wrong>" (the key left out
//     for "<file>", the text as a whole), with a line for every error but a
//     YAML error yaml-cpp gives no place for; no other exception, no crash;
//   - a configuration it returns passes validate() again, and its values are
//     ones the gateway can use: threads 1..256, a header limit of 1 KiB..1
//     MiB, a message limit of at least one byte, pools with names, limits of
//     at least 1 and paths that start with '/', and every duration finite,
//     not negative and at most a century, parse_duration's bound (so that it
//     converts to the clocks' nanoseconds without overflow).
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <typeinfo>

#include "config/config.hpp"

namespace {

using namespace sluice::config;

// parse_duration's bound: a century (36525 days).
constexpr Seconds kMaxDuration{36525.0 * 86400};

[[noreturn]] void fail(const std::string& what, const std::string& text) {
  std::fprintf(stderr, "config oracle: %s\n--- yaml ---\n%s\n------------\n", what.c_str(), text.c_str());
  std::abort();
}

void check_duration(const char* name, Seconds d, const std::string& text) {
  if (!std::isfinite(d.count()) || d.count() < 0 || d > kMaxDuration)
    fail(std::string(name) + " = " + std::to_string(d.count()) + " s is not a usable duration", text);
  // What the gateway does with it: steady_clock deadlines and nanoseconds.
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d);
  if (ns.count() < 0) fail(std::string(name) + " overflows in nanoseconds", text);
}

void check(const Config& c, const std::string& text) {
  try {
    validate(c);
  } catch (const ConfigError& e) {
    fail(std::string("a loaded configuration fails validate(): ") + e.what(), text);
  }
  if (c.threads < 1 || c.threads > 256) fail("threads", text);
  if (c.client.header_limit < 1024 || c.client.header_limit > (1u << 20)) fail("header_limit", text);
  if (c.relay.max_message_bytes < 1) fail("max_message_bytes", text);
  check_duration("drain_timeout", c.drain_timeout, text);
  check_duration("upstream.connect_timeout", c.upstream.connect_timeout, text);
  check_duration("upstream.retry_429.initial_backoff", c.upstream.retry_429.initial_backoff, text);
  check_duration("upstream.retry_429.max_backoff", c.upstream.retry_429.max_backoff, text);
  check_duration("upstream.retry_429.deadline", c.upstream.retry_429.deadline, text);
  check_duration("client.handshake_timeout", c.client.handshake_timeout, text);
  check_duration("relay.ping_interval", c.relay.ping_interval, text);
  check_duration("relay.close_timeout", c.relay.close_timeout, text);
  check_duration("relay.close_grace", c.relay.close_grace, text);
  check_duration("relay.idle_after", c.relay.idle_after, text);
  check_duration("store.heartbeat", c.store.heartbeat, text);
  check_duration("store.flush_interval", c.store.flush_interval, text);
  check_duration("store.query_timeout", c.store.query_timeout, text);
  const auto& r = c.store.retention;
  for (auto [name, d] : {std::pair{"store.retention.sessions", r.sessions},
                         {"store.retention.events", r.events},
                         {"store.retention.seconds", r.seconds},
                         {"store.retention.minutes", r.minutes},
                         {"store.retention.rollup_after", r.rollup_after},
                         {"store.retention.interval", r.interval}})
    check_duration(name, d, text);
  for (const auto& p : c.pools) {
    if (p.name.empty() || p.limit < 1 || p.max_queue < 0) fail("pool " + p.name, text);
    if (!p.match.path.empty() && p.match.path.front() != '/') fail("pool path " + p.match.path, text);
    check_duration("pool queue_timeout", p.queue_timeout, text);
    check_duration("pool idle_close_after", p.idle_close_after, text);
    check_duration("pool liveness_timeout", p.liveness_timeout, text);
    check_duration("pool max_duration", p.max_duration, text);
    if (p.release_delay) check_duration("pool release_delay", *p.release_delay, text);
  }
  for (const auto& t : c.tenants)
    if (t.name.empty()) fail("tenant without a name", text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  Config c;
  try {
    c = parse_config(text);
  } catch (const ConfigError& e) {
    std::string what = e.what();
    if (e.key().empty()) fail("ConfigError without its key: " + what, text);
    if (e.line() < 1 && e.key() != "<file>") fail("ConfigError without its line: " + what, text);
    // Compared as C strings: a message that quotes a NUL ends what() there.
    auto expected = "line " + std::to_string(e.line()) + ": " + (e.key() == "<file>" ? "" : e.key() + ": ") + e.message();
    if (e.line() < 1) expected = e.key() + ": " + e.message();
    if (std::strcmp(what.c_str(), expected.c_str()) != 0)
      fail("ConfigError whose what() does not read \"line <n>: <key>: <message>\": " + what, text);
    return 0;
  } catch (const std::exception& e) {
    fail(std::string("parse_config threw ") + typeid(e).name() + " (not ConfigError): " + e.what(), text);
  } catch (...) {
    fail("parse_config threw something that is not a std::exception", text);
  }
  check(c, text);
  return 0;
}
