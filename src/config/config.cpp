#include "config/config.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "net/listener.hpp"
#include "util/duration.hpp"

namespace sluice::config {
namespace {

// A key's name in errors; an empty key shows as "".
std::string join(const std::string& prefix, const std::string& key) {
  auto shown = key.empty() ? std::string("\"\"") : key;
  return prefix.empty() ? shown : prefix + "." + shown;
}

// The 1-based line of a node; 0 when it has no place (a node not from the text).
int line_of(const YAML::Node& n) {
  auto m = n.Mark();
  return m.is_null() || m.line < 0 ? 0 : m.line + 1;
}

// Runs `f`; a ConfigError it throws without a line gets the line of `n`.
template <class F>
auto located(const YAML::Node& n, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const ConfigError& e) {
    throw e.at_line(line_of(n));
  }
}

// A mapping's key as text. YAML allows any node as a key (`? [a, b]`, `~`,
// control characters); a configuration's keys are plain words, and errors
// name them.
std::string key_text(const YAML::Node& key, const std::string& prefix) {
  auto plain = [](const std::string& s) {
    return std::none_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7F; });
  };
  if (!key.IsScalar() || !plain(key.Scalar()))
    throw ConfigError(prefix.empty() ? "<root>" : prefix,
                      "expected a plain key, got a list, a mapping, null or control characters", line_of(key));
  return key.Scalar();
}

long long parse_int(const std::string& s, const std::string& key, long long lo, long long hi) {
  long long v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size())
    throw ConfigError(key, "expected an integer, got '" + s + "'");
  if (v < lo || v > hi)
    throw ConfigError(key, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                               ", got " + s);
  return v;
}

bool parse_bool(const std::string& s, const std::string& key) {
  if (s == "true" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "no" || s == "off") return false;
  throw ConfigError(key, "expected true or false, got '" + s + "'");
}

// Byte sizes: a plain number, or with a KiB/MiB suffix.
std::uint64_t parse_bytes(const std::string& s, const std::string& key) {
  std::uint64_t mult = 1;
  std::string digits = s;
  for (auto [suffix, m] : {std::pair{"KiB", 1024ull}, {"MiB", 1024ull * 1024}, {"GiB", 1ull << 30}}) {
    std::string_view sv(s), sf(suffix);
    if (sv.ends_with(sf)) {
      mult = m;
      digits = s.substr(0, s.size() - sf.size());
      break;
    }
  }
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc() || p != digits.data() + digits.size() || v == 0)
    throw ConfigError(key, "expected a positive size in bytes (e.g. 65536, 64KiB, 4MiB), got '" + s + "'");
  if (v > (std::uint64_t{1} << 50) / mult)  // 1 PiB: beyond it, a mistake (and v * mult could wrap to 0)
    throw ConfigError(key, "must be at most 1024TiB, got '" + s + "'");
  return v * mult;
}

bool env_name(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return c == '_' || std::isalnum(static_cast<unsigned char>(c)); });
}

// ${VAR}, ${VAR:-default} and $$ in a value; any other $ stays as written.
std::string interpolate(const std::string& text, const std::string& key, Getenv getenv) {
  if (text.find('$') == std::string::npos) return text;
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] != '$' || i + 1 == text.size() || (text[i + 1] != '$' && text[i + 1] != '{')) {
      out += text[i++];
      continue;
    }
    if (text[i + 1] == '$') {
      out += '$';
      i += 2;
      continue;
    }
    auto close = text.find('}', i + 2);
    if (close == std::string::npos) throw ConfigError(key, "'${' without its '}' (write $$ for a literal $)");
    std::string_view inner(text.data() + i + 2, close - i - 2);
    auto sep = inner.find(":-");
    auto name = inner.substr(0, sep);
    if (!env_name(name))
      throw ConfigError(key, "expected ${NAME} or ${NAME:-default}, NAME of letters, digits and '_', got a NAME of '" +
                                 std::string(name.substr(0, 64)) + "'");
    const char* value = getenv(std::string(name).c_str());
    if (sep == std::string_view::npos) {
      if (!value)
        throw ConfigError(key, "environment variable " + std::string(name) + " is not set (${" + std::string(name) +
                                   ":-default} gives a default)");
      out += value;
    } else {
      out += value && *value ? std::string_view(value) : inner.substr(sep + 2);
    }
    i = close + 1;
  }
  return out;
}

const char* process_getenv(const char* name) { return std::getenv(name); }

// Reads a configuration's YAML tree, remembering the line of every key it
// meets, so that an error found later (by validate()) is placed too.
class Parser {
 public:
  explicit Parser(Getenv getenv) : getenv_(getenv ? getenv : process_getenv) {}

  Config parse(const YAML::Node& root) {
    root_line_ = std::max(1, line_of(root));
    try {
      return read(root);
    } catch (const ConfigError& e) {
      throw e.at_line(line_for(e.key()));
    }
  }

 private:
  Config read(const YAML::Node& root);

  // The line of `key`, else of the nearest enclosing key that has one, else the root's.
  int line_for(std::string key) const {
    while (!key.empty()) {
      if (auto it = lines_.find(key); it != lines_.end() && it->second > 0) return it->second;
      auto cut = key.find_last_of(".[");
      if (cut == std::string::npos || cut == 0) break;
      key.resize(cut);
    }
    return root_line_;
  }

  // Rejects keys this version does not know, so a typo is never silently ignored.
  void check_keys(const YAML::Node& node, const std::string& prefix, std::initializer_list<const char*> allowed) {
    if (!node.IsMap()) throw ConfigError(prefix.empty() ? "<root>" : prefix, "expected a mapping", line_of(node));
    if (!prefix.empty()) lines_.emplace(prefix, line_of(node));
    std::set<std::string> known(allowed.begin(), allowed.end());
    for (const auto& kv : node) {
      auto key = key_text(kv.first, prefix);
      lines_.emplace(join(prefix, key), line_of(kv.first));
      if (!known.count(key)) {
        std::string list;
        for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
        throw ConfigError(join(prefix, key), "unknown key (known here: " + list + ")", line_of(kv.first));
      }
    }
  }

  // A value, with the environment interpolated.
  std::string scalar(const YAML::Node& n, const std::string& key) {
    if (!n.IsScalar()) throw ConfigError(key, "expected a single value", line_of(n));
    lines_.emplace(key, line_of(n));
    return located(n, [&] { return interpolate(n.Scalar(), key, getenv_); });
  }

  std::string as_string(const YAML::Node& n, const std::string& key) { return scalar(n, key); }

  long long as_int(const YAML::Node& n, const std::string& key, long long lo, long long hi) {
    auto s = scalar(n, key);
    return located(n, [&] { return parse_int(s, key, lo, hi); });
  }

  bool as_bool(const YAML::Node& n, const std::string& key) {
    auto s = scalar(n, key);
    return located(n, [&] { return parse_bool(s, key); });
  }

  std::uint64_t as_bytes(const YAML::Node& n, const std::string& key) {
    auto s = scalar(n, key);
    return located(n, [&] { return parse_bytes(s, key); });
  }

  Seconds as_duration(const YAML::Node& n, const std::string& key) {
    auto s = scalar(n, key);
    return located(n, [&] { return parse_duration(key, s); });
  }

  // A secret given in `section` as `name` or read from the file `name`_file.
  std::optional<std::string> secret(YAML::Node section, const std::string& prefix, const std::string& name) {
    auto key = prefix + "." + name, file_key = key + "_file";
    auto value = section[name], file = section[name + "_file"];
    if (value && file) throw ConfigError(file_key, "set either " + key + " or " + file_key + ", not both", line_of(file));
    if (value) return scalar(value, key);
    if (!file) return std::nullopt;
    auto path = scalar(file, file_key);
    return located(file, [&] { return read_secret_file(file_key, path); });
  }

  Getenv getenv_;
  std::map<std::string, int> lines_;
  int root_line_ = 1;
};

void check_endpoint(const std::string& key, const std::string& value) {
  try {
    net::parse_endpoint(value);
  } catch (const std::exception& e) {
    throw ConfigError(key, e.what());
  }
}

void check_upstream_url(const std::string& key, const std::string& value) {
  if (!(value.starts_with("ws://") || value.starts_with("wss://")))
    throw ConfigError(key, "expected a ws:// or wss:// URL, got '" + value + "'");
}

// The longest duration any option takes: a century (36525 days).
constexpr double kMaxDurationSeconds = 36525.0 * 86400;

}  // namespace

Seconds parse_duration(const std::string& key, const std::string& text) {
  // The grammar is shared with the command line and the history's relative
  // times (util/duration.hpp); a bare number is seconds here.
  auto v = util::parse_duration(text, util::Unitless::seconds);
  if (!v) throw ConfigError(key, "expected a duration such as 10s, 250ms, 2m, 1h30m or 7d, got '" + text + "'");
  // Durations become deadlines on nanosecond clocks: beyond a century they
  // are mistakes, and beyond ~292 years they would overflow.
  if (*v > kMaxDurationSeconds) throw ConfigError(key, "must be at most 36525d (100 years), got '" + text + "'");
  return Seconds(*v);
}

Config parse_config(const std::string& yaml_text, Getenv getenv) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) throw ConfigError("<file>", "not valid YAML: " + e.msg);
    throw ConfigError("<file>", "not valid YAML (column " + std::to_string(e.mark.column + 1) + "): " + e.msg,
                      e.mark.line + 1);
  }
  return Parser(getenv).parse(root);
}

Config Parser::read(const YAML::Node& root) {
  Config c;
  if (!root || root.IsNull()) return c;
  check_keys(root, "", {"listen", "tls", "admin", "upstream", "client", "tenants", "pools", "relay", "log", "store", "cluster", "threads", "drain_timeout"});
  if (auto n = root["drain_timeout"]) c.drain_timeout = as_duration(n, "drain_timeout");
  if (auto n = root["listen"]) c.listen = as_string(n, "listen");
  if (auto n = root["threads"]) c.threads = static_cast<int>(as_int(n, "threads", 1, 256));
  if (auto tls = root["tls"]; tls && !tls.IsNull()) {
    check_keys(tls, "tls", {"cert", "key"});
    if (auto n = tls["cert"]) c.tls.cert_file = as_string(n, "tls.cert");
    if (auto n = tls["key"]) c.tls.key_file = as_string(n, "tls.key");
  }
  if (auto admin = root["admin"]; admin && !admin.IsNull()) {
    check_keys(admin, "admin", {"listen", "token", "token_file", "metrics"});
    if (auto n = admin["listen"]) c.admin.listen = as_string(n, "admin.listen");
    if (auto v = secret(admin, "admin", "token")) c.admin.token = *v;
    if (auto m = admin["metrics"]; m && !m.IsNull()) {
      check_keys(m, "admin.metrics", {"per_tenant"});
      if (auto n = m["per_tenant"]) c.admin.metrics_per_tenant = as_bool(n, "admin.metrics.per_tenant");
    }
  }
  if (auto up = root["upstream"]; up && !up.IsNull()) {
    check_keys(up, "upstream", {"url", "agent_url", "api_key", "api_key_file", "connect_timeout", "ca_file", "verify_tls",
                          "retry_429"});
    if (auto r = up["retry_429"]; r && !r.IsNull()) {
      check_keys(r, "upstream.retry_429", {"initial_backoff", "max_backoff", "deadline", "recovery_interval"});
      auto& rc = c.upstream.retry_429;
      if (auto n = r["initial_backoff"]) rc.initial_backoff = as_duration(n, "upstream.retry_429.initial_backoff");
      if (auto n = r["max_backoff"]) rc.max_backoff = as_duration(n, "upstream.retry_429.max_backoff");
      if (auto n = r["deadline"]) rc.deadline = as_duration(n, "upstream.retry_429.deadline");
      // Obsolete (a lowered limit now recovers when the vendor accepts a
      // stream): still read, so older files load, and ignored.
      if (auto n = r["recovery_interval"]) (void)as_duration(n, "upstream.retry_429.recovery_interval");
    }
    if (auto n = up["url"]) c.upstream.url = as_string(n, "upstream.url");
    if (auto n = up["agent_url"]) c.upstream.agent_url = as_string(n, "upstream.agent_url");
    if (auto v = secret(up, "upstream", "api_key")) c.upstream.api_key = *v;
    if (auto n = up["connect_timeout"]) c.upstream.connect_timeout = as_duration(n, "upstream.connect_timeout");
    if (auto n = up["ca_file"]) c.upstream.ca_file = as_string(n, "upstream.ca_file");
    if (auto n = up["verify_tls"]) c.upstream.verify_tls = as_bool(n, "upstream.verify_tls");
  }
  if (auto cl = root["client"]; cl && !cl.IsNull()) {
    check_keys(cl, "client", {"handshake_timeout", "header_limit"});
    if (auto n = cl["handshake_timeout"]) c.client.handshake_timeout = as_duration(n, "client.handshake_timeout");
    if (auto n = cl["header_limit"])
      c.client.header_limit = static_cast<std::uint32_t>(as_int(n, "client.header_limit", 1024, 1 << 20));
  }
  if (auto tenants = root["tenants"]; tenants && !tenants.IsNull()) {
    if (!tenants.IsSequence()) throw ConfigError("tenants", "expected a list of {name, keys}");
    for (std::size_t i = 0; i < tenants.size(); ++i) {
      auto prefix = "tenants[" + std::to_string(i) + "]";
      const auto& t = tenants[i];
      check_keys(t, prefix, {"name", "keys", "priority", "quotas"});
      Tenant tenant;
      if (!t["name"]) throw ConfigError(prefix + ".name", "required");
      tenant.name = as_string(t["name"], prefix + ".name");
      if (auto n = t["priority"]) tenant.priority = static_cast<int>(as_int(n, prefix + ".priority", -1000, 1000));
      auto keys = t["keys"];
      if (keys && !keys.IsNull()) {
        if (!keys.IsSequence())
          throw ConfigError(prefix + ".keys", "expected a list of key hashes (sha256:<64 hex>; see `sluice hash-key`)");
        for (std::size_t k = 0; k < keys.size(); ++k) {
          auto kkey = prefix + ".keys[" + std::to_string(k) + "]";
          auto h = as_string(keys[k], kkey);
          bool ok = h.size() == 71 && h.starts_with("sha256:") &&
                    h.find_first_not_of("0123456789abcdef", 7) == std::string::npos;
          if (!ok)
            throw ConfigError(kkey, "expected sha256:<64 lowercase hex digits> (plain keys are not stored; "
                                    "run `sluice hash-key KEY`)");
          tenant.key_hashes.push_back(h);
        }
      }
      if (auto quotas = t["quotas"]; quotas && !quotas.IsNull()) {
        if (!quotas.IsMap()) throw ConfigError(prefix + ".quotas", "expected a mapping of pool name to {max, reserved}");
        for (const auto& kv : quotas) {
          auto pool = key_text(kv.first, prefix + ".quotas");
          auto qkey = prefix + ".quotas." + pool;
          check_keys(kv.second, qkey, {"max", "reserved"});
          TenantQuota q;
          if (auto n = kv.second["max"]) q.max = static_cast<int>(as_int(n, qkey + ".max", 0, 1000000));
          if (auto n = kv.second["reserved"]) q.reserved = static_cast<int>(as_int(n, qkey + ".reserved", 0, 1000000));
          tenant.quotas[pool] = q;
        }
      }
      c.tenants.push_back(std::move(tenant));
    }
  }
  if (auto pools = root["pools"]; pools && !pools.IsNull()) {
    if (!pools.IsSequence()) throw ConfigError("pools", "expected a list of pools");
    for (std::size_t i = 0; i < pools.size(); ++i) {
      auto prefix = "pools[" + std::to_string(i) + "]";
      const auto& p = pools[i];
      check_keys(p, prefix, {"name", "match", "limit", "queue_timeout", "max_queue", "idle_close_after",
                             "liveness_timeout", "max_duration", "release_delay", "resume"});
      PoolConfig pc;
      if (!p["name"]) throw ConfigError(prefix + ".name", "required");
      pc.name = as_string(p["name"], prefix + ".name");
      if (auto m = p["match"]; m && !m.IsNull()) {
        check_keys(m, prefix + ".match", {"path", "params"});
        if (auto n = m["path"]) pc.match.path = as_string(n, prefix + ".match.path");
        if (auto ps = m["params"]; ps && !ps.IsNull()) {
          if (!ps.IsMap()) throw ConfigError(prefix + ".match.params", "expected a mapping of parameter to value");
          for (const auto& kv : ps) {
            auto param = key_text(kv.first, prefix + ".match.params");
            pc.match.params[param] = as_string(kv.second, prefix + ".match.params." + param);
          }
        }
      }
      if (auto n = p["limit"]) pc.limit = static_cast<int>(as_int(n, prefix + ".limit", 1, 1000000));
      if (auto n = p["queue_timeout"]) pc.queue_timeout = as_duration(n, prefix + ".queue_timeout");
      if (auto n = p["max_queue"]) pc.max_queue = static_cast<int>(as_int(n, prefix + ".max_queue", 0, 1000000));
      if (auto n = p["idle_close_after"]) pc.idle_close_after = as_duration(n, prefix + ".idle_close_after");
      if (auto n = p["liveness_timeout"]) pc.liveness_timeout = as_duration(n, prefix + ".liveness_timeout");
      if (auto n = p["max_duration"]) pc.max_duration = as_duration(n, prefix + ".max_duration");
      if (auto n = p["release_delay"]; n && !n.IsNull()) {
        auto text = scalar(n, prefix + ".release_delay");
        if (text != "learn") {
          try {
            pc.release_delay = parse_duration(prefix + ".release_delay", text);
          } catch (const ConfigError&) {
            throw ConfigError(prefix + ".release_delay",
                              "expected a duration such as 3s or 500ms, or 'learn', got '" + text + "'");
          }
        }
      }
      if (auto r = p["resume"]; r && !r.IsNull()) {
        auto rp = prefix + ".resume";
        check_keys(r, rp, {"enabled", "buffer", "max_attempts", "backoff", "max_backoff", "replay_speed", "max_resumes"});
        auto& rc = pc.resume;
        if (auto n = r["enabled"]) rc.enabled = as_bool(n, rp + ".enabled");
        if (auto n = r["buffer"]) rc.buffer = as_duration(n, rp + ".buffer");
        if (auto n = r["max_attempts"]) rc.max_attempts = static_cast<int>(as_int(n, rp + ".max_attempts", 1, 100));
        if (auto n = r["backoff"]) rc.backoff = as_duration(n, rp + ".backoff");
        if (auto n = r["max_backoff"]) rc.max_backoff = as_duration(n, rp + ".max_backoff");
        if (auto n = r["replay_speed"]) {
          auto text = scalar(n, rp + ".replay_speed");
          double v = 0;
          auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
          if (ec != std::errc() || end != text.data() + text.size() || !(v >= 1 && v <= 100))
            throw ConfigError(rp + ".replay_speed",
                              "expected a number from 1 to 100 (times real time), got '" + text + "'", line_of(n));
          rc.replay_speed = v;
        }
        if (auto n = r["max_resumes"]) rc.max_resumes = static_cast<int>(as_int(n, rp + ".max_resumes", 1, 10000));
        if (rc.buffer.count() <= 0 || rc.buffer.count() > 600)
          throw ConfigError(rp + ".buffer", "must be more than 0 s and at most 600 s", line_of(r));
        if (rc.max_backoff < rc.backoff)
          throw ConfigError(rp + ".max_backoff", "must not be shorter than " + rp + ".backoff", line_of(r));
      }
      c.pools.push_back(std::move(pc));
    }
  }
  if (auto relay = root["relay"]; relay && !relay.IsNull()) {
    check_keys(relay, "relay", {"max_message_bytes", "ping_interval", "close_timeout", "close_grace", "idle_after"});
    if (auto n = relay["max_message_bytes"]) c.relay.max_message_bytes = as_bytes(n, "relay.max_message_bytes");
    if (auto n = relay["ping_interval"]) c.relay.ping_interval = as_duration(n, "relay.ping_interval");
    if (auto n = relay["close_timeout"]) c.relay.close_timeout = as_duration(n, "relay.close_timeout");
    if (auto n = relay["close_grace"]) c.relay.close_grace = as_duration(n, "relay.close_grace");
    if (auto n = relay["idle_after"]) c.relay.idle_after = as_duration(n, "relay.idle_after");
  }
  if (auto cl = root["cluster"]; cl && !cl.IsNull()) {
    check_keys(cl, "cluster", {"redis_url", "redis_url_file", "instance", "key_prefix", "lease_ttl", "renew_interval",
                               "redis_timeout", "on_redis_loss", "expected_instances"});
    if (auto v = secret(cl, "cluster", "redis_url")) c.cluster.redis_url = *v;
    if (auto n = cl["instance"]) c.cluster.instance = as_string(n, "cluster.instance");
    if (auto n = cl["key_prefix"]) c.cluster.key_prefix = as_string(n, "cluster.key_prefix");
    if (auto n = cl["lease_ttl"]) c.cluster.lease_ttl = as_duration(n, "cluster.lease_ttl");
    if (auto n = cl["renew_interval"]) c.cluster.renew_interval = as_duration(n, "cluster.renew_interval");
    if (auto n = cl["redis_timeout"]) c.cluster.redis_timeout = as_duration(n, "cluster.redis_timeout");
    if (auto n = cl["on_redis_loss"]) c.cluster.on_redis_loss = as_string(n, "cluster.on_redis_loss");
    if (auto n = cl["expected_instances"])
      c.cluster.expected_instances = static_cast<int>(as_int(n, "cluster.expected_instances", 1, 10000));
  }
  if (auto store = root["store"]; store && !store.IsNull()) {
    check_keys(store, "store", {"enabled", "data_dir", "url", "url_file", "heartbeat", "stale_after", "flush_interval",
                                "queue_limit", "instance", "query_timeout", "retention"});
    if (auto n = store["enabled"]) c.store.enabled = as_bool(n, "store.enabled");
    if (auto n = store["data_dir"]) c.store.data_dir = as_string(n, "store.data_dir");
    if (auto v = secret(store, "store", "url")) c.store.url = *v;
    if (auto n = store["heartbeat"]) c.store.heartbeat = as_duration(n, "store.heartbeat");
    if (auto n = store["stale_after"]) c.store.stale_after = as_duration(n, "store.stale_after");
    if (auto n = store["flush_interval"]) c.store.flush_interval = as_duration(n, "store.flush_interval");
    if (auto n = store["queue_limit"]) c.store.queue_limit = static_cast<std::size_t>(as_int(n, "store.queue_limit", 100, 10'000'000));
    if (auto n = store["instance"]) c.store.instance = as_string(n, "store.instance");
    if (auto n = store["query_timeout"]) c.store.query_timeout = as_duration(n, "store.query_timeout");
    if (auto r = store["retention"]; r && !r.IsNull()) {
      check_keys(r, "store.retention", {"sessions", "events", "seconds", "minutes", "rollup_after", "interval"});
      if (auto n = r["sessions"]) c.store.retention.sessions = as_duration(n, "store.retention.sessions");
      if (auto n = r["events"]) c.store.retention.events = as_duration(n, "store.retention.events");
      if (auto n = r["seconds"]) c.store.retention.seconds = as_duration(n, "store.retention.seconds");
      if (auto n = r["minutes"]) c.store.retention.minutes = as_duration(n, "store.retention.minutes");
      if (auto n = r["rollup_after"]) c.store.retention.rollup_after = as_duration(n, "store.retention.rollup_after");
      if (auto n = r["interval"]) c.store.retention.interval = as_duration(n, "store.retention.interval");
    }
  }
  if (auto log = root["log"]; log && !log.IsNull()) {
    check_keys(log, "log", {"level", "format"});
    if (auto n = log["level"]) c.log.level = as_string(n, "log.level");
    if (auto n = log["format"]) c.log.format = as_string(n, "log.format");
  }
  validate(c);
  return c;
}

Config load_config_file(const std::string& path, Getenv getenv) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw ConfigError("<file>", "is a directory, not a file", 0, path);
  std::ifstream in(path);
  if (!in) throw ConfigError("<file>", std::string("cannot read: ") + std::strerror(errno), 0, path);
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return parse_config(ss.str(), getenv);
  } catch (const ConfigError& e) {
    throw e.in_file(path);
  }
}

std::string read_secret_file(const std::string& key, const std::string& path) {
  constexpr std::size_t kMaxSecret = 64 * 1024;
  // O_NONBLOCK: a FIFO opens at once (and is then refused as not a regular file).
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) throw ConfigError(key, "cannot read '" + path + "': " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw ConfigError(key, "cannot read '" + path + "': " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw ConfigError(key, "'" + path + "' is not a regular file");
  if (static_cast<std::uint64_t>(st.st_size) > kMaxSecret)
    throw ConfigError(key, "'" + path + "' is larger than 64 KiB (it should hold the secret alone)");
  std::string secret;
  char buf[4096];
  while (secret.size() <= kMaxSecret) {
    auto n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw ConfigError(key, "cannot read '" + path + "': " + std::strerror(errno));
    if (n == 0) break;
    secret.append(buf, static_cast<std::size_t>(n));
  }
  if (secret.size() > kMaxSecret)
    throw ConfigError(key, "'" + path + "' is larger than 64 KiB (it should hold the secret alone)");
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.empty()) throw ConfigError(key, "'" + path + "' is empty");
  return secret;
}

void apply_environment(Config& c, Getenv getenv) {
  auto env = [&](const std::string& name) -> std::optional<std::string> {
    const char* v = getenv(name.c_str());
    if (!v || !*v) return std::nullopt;
    return std::string(v);
  };
  // NAME, or the file NAME_FILE names; not both.
  auto secret = [&](const std::string& name) -> std::optional<std::string> {
    auto file_name = name + "_FILE";
    auto value = env(name), file = env(file_name);
    if (value && file) throw ConfigError(file_name, "set either " + name + " or " + file_name + ", not both");
    if (file) return read_secret_file(file_name, *file);
    return value;
  };
  if (auto v = secret("DEEPGRAM_API_KEY")) c.upstream.api_key = *v;
  if (auto v = secret("SLUICE_ADMIN_TOKEN")) c.admin.token = *v;
  if (auto v = env("SLUICE_LISTEN")) c.listen = *v;
  if (auto v = env("SLUICE_ADMIN_LISTEN")) c.admin.listen = *v;
  if (auto v = env("SLUICE_UPSTREAM_URL")) c.upstream.url = *v;
  if (auto v = env("SLUICE_AGENT_UPSTREAM_URL")) c.upstream.agent_url = *v;
  if (auto v = env("SLUICE_LOG_LEVEL")) c.log.level = *v;
  if (auto v = env("SLUICE_LOG_FORMAT")) c.log.format = *v;
  if (auto v = secret("SLUICE_STORE_URL")) c.store.url = *v;
  if (auto v = env("SLUICE_DATA_DIR")) c.store.data_dir = *v;
  if (auto v = secret("SLUICE_REDIS_URL")) c.cluster.redis_url = *v;
  if (auto v = env("SLUICE_INSTANCE")) c.cluster.instance = *v;
  if (auto v = env("SLUICE_TLS_CERT")) c.tls.cert_file = *v;
  if (auto v = env("SLUICE_TLS_KEY")) c.tls.key_file = *v;
  if (auto v = env("SLUICE_THREADS")) c.threads = static_cast<int>(parse_int(*v, "SLUICE_THREADS", 1, 256));
}

void check_upstream_key(const Config& c) {
  if (c.upstream.url && !c.pass_through() && c.upstream.api_key.empty())
    throw ConfigError("upstream.api_key",
                      "required in virtual-key mode (tenants are configured); set DEEPGRAM_API_KEY, "
                      "DEEPGRAM_API_KEY_FILE or upstream.api_key_file");
}

std::vector<PoolConfig> default_pools() {
  auto pool = [](std::string name, std::string path, int limit) {
    PoolConfig p;
    p.name = std::move(name);
    p.match.path = std::move(path);
    p.limit = limit;
    return p;
  };
  return {pool("flux", "/v2/listen", 50), pool("streaming", "/v1/listen", 50), pool("tts", "/v1/speak", 15),
          pool("agent", "/v1/agent/converse", 15)};
}

void validate(const Config& c) {
  check_endpoint("listen", c.listen);
  check_endpoint("admin.listen", c.admin.listen);
  if (c.tls.cert_file.empty() != c.tls.key_file.empty())
    throw ConfigError(c.tls.cert_file.empty() ? "tls.cert" : "tls.key",
                      "tls.cert and tls.key must be given together");
  if (c.upstream.url) check_upstream_url("upstream.url", *c.upstream.url);
  if (c.upstream.agent_url) check_upstream_url("upstream.agent_url", *c.upstream.agent_url);
  if (c.upstream.connect_timeout <= Seconds(0))
    throw ConfigError("upstream.connect_timeout", "must be positive");
  if (c.client.handshake_timeout <= Seconds(0))
    throw ConfigError("client.handshake_timeout", "must be positive");
  if (c.relay.ping_interval <= Seconds(0)) throw ConfigError("relay.ping_interval", "must be positive");
  if (c.store.heartbeat <= Seconds(0)) throw ConfigError("store.heartbeat", "must be positive");
  if (c.store.stale_after != Seconds(0) && c.store.stale_after < c.store.heartbeat * 3)
    throw ConfigError("store.stale_after",
                      fmt::format("must be at least three heartbeats ({:g} s), or a live gateway whose write is "
                                  "late would be taken for dead",
                                  (c.store.heartbeat * 3).count()));
  if (c.store.flush_interval <= Seconds(0)) throw ConfigError("store.flush_interval", "must be positive");
  if (c.store.retention.interval <= Seconds(0)) throw ConfigError("store.retention.interval", "must be positive");
  if (c.store.enabled && c.store.url.empty() && c.store.data_dir.empty())
    throw ConfigError("store.data_dir", "must name a directory when store.url is unset");
  if (auto u = c.store.url; !u.empty() && u.find("://") != std::string::npos && !u.starts_with("postgres://") &&
                             !u.starts_with("postgresql://") && !u.starts_with("sqlite://"))
    throw ConfigError("store.url", "expected a file path, sqlite:<path> or postgres://…, got '" + u.substr(0, u.find("://")) + "://…'");
  if (c.relay.close_timeout <= Seconds(0)) throw ConfigError("relay.close_timeout", "must be positive");
  if (c.cluster.enabled()) {
    if (!c.cluster.redis_url.starts_with("redis://"))
      throw ConfigError("cluster.redis_url", "expected redis://[:password@]host[:port][/db]");
    if (c.cluster.lease_ttl <= Seconds(0)) throw ConfigError("cluster.lease_ttl", "must be positive");
    if (c.cluster.renew_interval <= Seconds(0) || c.cluster.renew_interval * 2 > c.cluster.lease_ttl)
      throw ConfigError("cluster.renew_interval", "must be positive and at most half of cluster.lease_ttl");
    if (c.cluster.redis_timeout <= Seconds(0)) throw ConfigError("cluster.redis_timeout", "must be positive");
    if (c.cluster.on_redis_loss != "local_share" && c.cluster.on_redis_loss != "refuse")
      throw ConfigError("cluster.on_redis_loss", "expected local_share or refuse; got '" + c.cluster.on_redis_loss + "'");
    if (c.cluster.key_prefix.empty()) throw ConfigError("cluster.key_prefix", "must not be empty");
  }
  static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error", "critical", "off"};
  if (!levels.count(c.log.level))
    throw ConfigError("log.level", "expected one of trace, debug, info, warn, error; got '" + c.log.level + "'");
  if (c.log.format != "text" && c.log.format != "json")
    throw ConfigError("log.format", "expected text or json; got '" + c.log.format + "'");
  // Names reach log lines, /metrics labels and the dg-error header of a
  // refusal, where a control character (a newline) has no place.
  auto check_name = [](const std::string& key, const std::string& name) {
    for (unsigned char ch : name)
      if (ch < 0x20 || ch == 0x7f) throw ConfigError(key, "must not contain control characters (such as a newline)");
  };
  std::set<std::string> pool_names;
  for (std::size_t i = 0; i < c.pools.size(); ++i) {
    const auto& p = c.pools[i];
    auto prefix = "pools[" + std::to_string(i) + "]";
    if (p.name.empty()) throw ConfigError(prefix + ".name", "must not be empty");
    check_name(prefix + ".name", p.name);
    if (!pool_names.insert(p.name).second) throw ConfigError(prefix + ".name", "duplicate pool '" + p.name + "'");
    if (p.limit < 1) throw ConfigError(prefix + ".limit", "must be at least 1");
    if (p.queue_timeout < Seconds(0)) throw ConfigError(prefix + ".queue_timeout", "must not be negative");
    if (p.liveness_timeout <= Seconds(0)) throw ConfigError(prefix + ".liveness_timeout", "must be positive");
    if (p.release_delay && *p.release_delay < Seconds(0))
      throw ConfigError(prefix + ".release_delay", "must not be negative (0s: the vendor frees a slot at once; "
                                                   "leave it out, or write 'learn', to learn it)");
    if (p.release_delay && *p.release_delay > Seconds(600))
      throw ConfigError(prefix + ".release_delay", "must be at most 10m (every released slot waits this long)");
    if (!p.match.path.empty() && !p.match.path.starts_with("/"))
      throw ConfigError(prefix + ".match.path", "expected a path such as /v1/listen");
  }
  const auto pools = c.pools.empty() ? default_pools() : c.pools;
  std::map<std::string, int> reserved_sum;
  std::set<std::string> names, hashes;
  for (std::size_t i = 0; i < c.tenants.size(); ++i) {
    const auto& t = c.tenants[i];
    auto prefix = "tenants[" + std::to_string(i) + "]";
    if (t.name.empty()) throw ConfigError(prefix + ".name", "must not be empty");
    check_name(prefix + ".name", t.name);
    if (!names.insert(t.name).second) throw ConfigError(prefix + ".name", "duplicate tenant '" + t.name + "'");
    for (const auto& h : t.key_hashes)
      if (!hashes.insert(h).second)
        throw ConfigError(prefix + ".keys", "a key hash is listed twice (keys must map to one tenant)");
    for (const auto& [pool, q] : t.quotas) {
      auto qkey = prefix + ".quotas." + pool;
      auto it = std::find_if(pools.begin(), pools.end(), [&name = pool](const PoolConfig& p) { return p.name == name; });
      if (it == pools.end()) throw ConfigError(qkey, "no pool named '" + pool + "'");
      if (q.max > 0 && q.reserved > q.max) throw ConfigError(qkey + ".reserved", "must not exceed max");
      reserved_sum[pool] += q.reserved;
      if (reserved_sum[pool] > it->limit)
        throw ConfigError(qkey + ".reserved", "reservations in pool '" + pool + "' add up to more than its limit (" +
                                                  std::to_string(it->limit) + ")");
    }
  }
}

}  // namespace sluice::config
