#pragma once
// The gateway's configuration: aggregates with defaults, one function that
// loads and validates a YAML file, environment overrides, and command-line
// overrides applied by the caller. A bad value is reported with its key.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace sluice::config {

using Seconds = std::chrono::duration<double>;

// Thrown for an invalid configuration. what() reads
// "<file>:<line>: <key>: <what is wrong>" when the place is known ("line <n>:
// <key>: …" for text without a file name, "<key>: …" for a value that did not
// come from a file). The key "<file>" stands for the file as a whole (not
// valid YAML, not readable) and is not repeated after its place.
class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string key, std::string message, int line = 0, std::string file = {})
      : std::runtime_error(describe(key, message, line, file)),
        key_(std::move(key)),
        message_(std::move(message)),
        file_(std::move(file)),
        line_(line) {}
  const std::string& key() const { return key_; }
  const std::string& message() const { return message_; }  // what is wrong, without key or place
  const std::string& file() const { return file_; }        // empty: not known
  int line() const { return line_; }                        // 1-based; 0: not known

  // The same error at `line` (when it has none yet), or in `file`.
  ConfigError at_line(int line) const { return line_ > 0 ? *this : ConfigError(key_, message_, line, file_); }
  ConfigError in_file(std::string file) const { return ConfigError(key_, message_, line_, std::move(file)); }

  static std::string describe(const std::string& key, const std::string& message, int line, const std::string& file) {
    std::string place = file;
    if (line > 0) place += file.empty() ? "line " + std::to_string(line) : ":" + std::to_string(line);
    if (place.empty()) return key + ": " + message;
    return place + ": " + (key == "<file>" ? std::string() : key + ": ") + message;
  }

 private:
  std::string key_, message_, file_;
  int line_ = 0;
};

struct TlsConfig {
  std::string cert_file;  // PEM certificate chain; TLS is on when both are set
  std::string key_file;   // PEM private key
  bool enabled() const { return !cert_file.empty(); }
};

struct AdminConfig {
  std::string listen = "127.0.0.1:9090";
  std::string token;  // bearer token for /api/v1 (SLUICE_ADMIN_TOKEN)
  bool metrics_per_tenant = false;  // admin.metrics.per_tenant: /metrics series labelled by tenant
};

// What to do when the upstream answers 429 although the pool had room.
struct Retry429Config {
  Seconds initial_backoff{0.1};
  Seconds max_backoff{2};
  Seconds deadline{5};  // retry while the lease is younger than this, then answer the gateway's own 429
};

struct UpstreamConfig {
  // Unset means "not configured": with no DEEPGRAM_API_KEY either, `serve`
  // starts the bundled simulator as the upstream.
  std::optional<std::string> url;        // listen and speak; default wss://api.deepgram.com
  std::optional<std::string> agent_url;  // agent; default wss://agent.deepgram.com
  std::string api_key;                   // the real Deepgram key (DEEPGRAM_API_KEY)
  Seconds connect_timeout{10};           // resolve + connect + TLS + WebSocket handshake
  std::string ca_file;                   // extra CA bundle (PEM) besides the system store
  bool verify_tls = true;
  Retry429Config retry_429;

  std::string effective_url() const { return url.value_or("wss://api.deepgram.com"); }
  std::string effective_agent_url() const {
    return agent_url.value_or(url ? *url : std::string("wss://agent.deepgram.com"));
  }
};

struct ClientConfig {
  Seconds handshake_timeout{10};  // to send a complete upgrade request (and TLS handshake)
  std::uint32_t header_limit = 16 * 1024;
};

// A tenant's share of one pool.
struct TenantQuota {
  int max = 0;       // concurrent streams at most; 0 = no cap
  int reserved = 0;  // streams kept free for this tenant that others cannot take
};

struct Tenant {
  std::string name;
  std::vector<std::string> key_hashes;  // "sha256:<hex>"
  int priority = 0;                     // higher is admitted first from a queue
  std::map<std::string, TenantQuota> quotas;  // by pool name
};

// Which streams a pool holds: all conditions must match (path exactly; each
// parameter exactly, or by prefix when the pattern ends with '*').
struct PoolMatch {
  std::string path;  // empty: any
  std::map<std::string, std::string> params;
};

// Transparent upstream reconnect for /v1/listen and /v2/listen
// (docs/resume.md): when the vendor's leg ends abnormally while the client is
// still there, reconnect under the same lease, replay the audio since the
// last finalized point and rewrite times onto one timeline.
struct ResumeConfig {
  bool enabled = false;
  Seconds buffer{30};          // audio kept for replay (seconds of the declared format)
  int max_attempts = 3;        // reconnects tried per drop
  Seconds backoff{0.1};        // before the second attempt; doubles per attempt
  Seconds max_backoff{2};      // the longest wait between attempts
  double replay_speed = 4;     // replayed audio is sent at most this many times faster than real time
  int max_resumes = 10;        // per stream; past it a drop is passed to the client
};

struct PoolConfig {
  std::string name;
  PoolMatch match;
  int limit = 50;                // the vendor's concurrency limit for this family
  Seconds queue_timeout{5};      // how long a handshake may wait for room
  int max_queue = 100;           // waiting handshakes beyond this are refused at once
  // Hygiene: 0 disables each.
  Seconds idle_close_after{0};   // close a stream without client audio this long
  Seconds liveness_timeout{30};  // a client that neither answers pings nor reads is dead
  Seconds max_duration{0};       // close a stream this old
  // How long the vendor keeps counting a stream after it closed: a released
  // slot cools this long before it admits another stream. Unset: learned
  // from the upstream's 429s (docs/admission.md).
  std::optional<Seconds> release_delay;
  ResumeConfig resume;
};

struct RelayConfig {
  std::uint64_t max_message_bytes = 4 * 1024 * 1024;  // larger messages close with 1009
  Seconds ping_interval{15};  // ping a silent peer; dead after twice this without data
  Seconds close_timeout{10};  // to complete a close handshake
  Seconds close_grace{5};     // after the endpoint's close message, before forcing a close
  Seconds idle_after{10};     // a stream with no audio for this long shows as "idle"
};

// The durable history (sessions, events, concurrency samples).
struct RetentionConfig {
  Seconds sessions{90 * 86400.0};
  Seconds events{90 * 86400.0};
  Seconds seconds{7 * 86400.0};      // per-second concurrency samples
  Seconds minutes{400 * 86400.0};    // per-minute concurrency samples
  Seconds rollup_after{86400.0};     // per-second samples older than this become per-minute
  Seconds interval{3600.0};          // how often retention runs
};

struct StoreConfig {
  bool enabled = true;
  std::string data_dir = "sluice-data";
  std::string url;                   // file path, sqlite:<path> or postgres://…; default <data_dir>/history.db
  Seconds heartbeat{5};              // open rows' last activity is refreshed this often
  Seconds stale_after{0};            // a gateway silent this long is dead; 0: max(6 heartbeats, 30 s)
  Seconds flush_interval{0.2};       // how often the writer commits a batch
  std::size_t queue_limit = 10000;   // events waiting for the writer beyond this are dropped (and counted)
  std::string instance;              // names this gateway in the runs table; default host:listen port
  Seconds query_timeout{30};         // an admin API history query is stopped after this; 0: never
  RetentionConfig retention;

  std::string effective_url() const { return url.empty() ? data_dir + "/history.db" : url; }
};

// Cluster mode (docs/operations.md, "Cluster"): the pools' limits hold for
// every instance sharing the Redis at redis_url.
struct ClusterConfig {
  std::string redis_url;              // redis://[:password@]host[:port][/db]; empty: this instance alone
  std::string instance;               // this instance in the fleet; default store.instance's default
  std::string key_prefix = "sluice";  // every key in Redis starts with it
  Seconds lease_ttl{6};               // a lease whose instance stops renewing it returns after this
  Seconds renew_interval{2};          // how often an instance renews its leases (< lease_ttl)
  Seconds redis_timeout{1};           // to connect, and for each reply
  std::string on_redis_loss = "local_share";  // local_share: admit up to limit / expected_instances; refuse: 503
  int expected_instances = 1;

  bool enabled() const { return !redis_url.empty(); }
};

struct LogConfig {
  std::string level = "info";  // trace, debug, info, warn, error
  std::string format = "text";  // text (for people) or json (one object per line)
};

struct Config {
  std::string listen = "127.0.0.1:8080";
  TlsConfig tls;
  AdminConfig admin;
  UpstreamConfig upstream;
  ClientConfig client;
  std::vector<Tenant> tenants;  // no keys anywhere: pass-through mode
  std::vector<PoolConfig> pools;  // ordered; first match wins. Defaults when unset.
  Seconds drain_timeout{30};      // SIGTERM: how long streams may run on before being ended
  RelayConfig relay;
  LogConfig log;
  StoreConfig store;
  ClusterConfig cluster;
  int threads = 1;

  bool pass_through() const {
    for (const auto& t : tenants)
      if (!t.key_hashes.empty()) return false;
    return true;
  }
};

// Reads an environment variable; null when unset.
using Getenv = const char* (*)(const char*);

// Parses YAML text. Unknown keys, wrong types and bad values throw ConfigError
// with the key and its line. Scalar values may refer to the environment
// (through `getenv`; null: the process's): ${VAR}, ${VAR:-default} (the
// default when VAR is unset or empty), $$ for a literal $; an unset VAR
// without a default is an error. The secrets upstream.api_key, admin.token
// and store.url may instead be read from a file named by the same key with
// `_file` appended (one trailing newline removed).
Config parse_config(const std::string& yaml_text, Getenv getenv = nullptr);
// The same for a file; errors name it: "<path>:<line>: <key>: …".
Config load_config_file(const std::string& path, Getenv getenv = nullptr);

// Applies DEEPGRAM_API_KEY, SLUICE_ADMIN_TOKEN and the SLUICE_* overrides
// listed in docs/operations.md, reading through `getenv`; DEEPGRAM_API_KEY_FILE,
// SLUICE_ADMIN_TOKEN_FILE and SLUICE_STORE_URL_FILE name files holding those
// secrets (both a variable and its _FILE set is an error).
void apply_environment(Config& config, Getenv getenv);

// A secret read from a file: its bytes without the trailing newline (\n or
// \r\n). Errors name `key` and the path, never the content: not a regular
// file, unreadable, empty, or larger than 64 KiB.
std::string read_secret_file(const std::string& key, const std::string& path);

// The rule `serve` applies after the environment and the flags: virtual-key
// mode (tenants with keys) toward a configured upstream needs the upstream
// key. Throws ConfigError naming upstream.api_key.
void check_upstream_key(const Config& config);

// The default pools, one per Deepgram service family (limits from Deepgram's
// published pay-as-you-go figures; set yours).
std::vector<PoolConfig> default_pools();

// Checks cross-field rules (e.g. TLS cert without key). Throws ConfigError.
void validate(const Config& config);

// "10s", "250ms", "2m", "1h30m", "7d", "2w" or a plain number of seconds
// (util/duration.hpp, the grammar the command line and the history's
// relative times share), at most a century; throws ConfigError naming `key`.
Seconds parse_duration(const std::string& key, const std::string& text);

}  // namespace sluice::config
