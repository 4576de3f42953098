#include "admin/metrics.hpp"

#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <type_traits>
#include <vector>

#include "admission/controller.hpp"
#include "events/event_log.hpp"
#include "history/recorder.hpp"
#include "net/listener.hpp"
#include "registry/registry.hpp"

#ifndef SLUICE_BUILD_TYPE
#define SLUICE_BUILD_TYPE ""
#endif
#ifndef SLUICE_COMPILER
#define SLUICE_COMPILER ""
#endif

namespace sluice::admin {

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

void EventCounters::observe(const events::Event& e) {
  if (e.type != "reap" && e.type != "resume") return;
  auto text = [&](const char* key) -> std::string {
    auto it = e.fields.find(key);
    if (it == e.fields.end() || !it->value().is_string()) return {};
    return std::string(it->value().as_string());
  };
  std::lock_guard lock(mutex_);
  if (e.type == "reap") ++reaps_[{text("pool"), text("reason")}];
  else ++resumes_[{text("pool"), text("outcome")}];
}

std::map<std::pair<std::string, std::string>, std::uint64_t> EventCounters::resumes() const {
  std::lock_guard lock(mutex_);
  return resumes_;
}

std::map<std::pair<std::string, std::string>, std::uint64_t> EventCounters::reaps() const {
  std::lock_guard lock(mutex_);
  return reaps_;
}

std::optional<ProcessFigures> read_process_figures() {
  std::ifstream stat("/proc/self/stat");
  std::string line;
  if (!std::getline(stat, line)) return std::nullopt;
  // The fields after the command name (which may hold spaces and parentheses).
  auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream in(line.substr(close + 1));
  std::vector<std::string> f;  // f[0] is field 3 (state) of proc(5)
  for (std::string t; in >> t;) f.push_back(t);
  if (f.size() < 22) return std::nullopt;
  const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  ProcessFigures p;
  try {
    p.cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / tick;  // utime + stime
    p.threads = std::stod(f[17]);
    double start_ticks = std::stod(f[19]);  // since boot
    p.virtual_bytes = std::stod(f[20]);
    p.resident_bytes = std::stod(f[21]) * page;
    std::ifstream sys("/proc/stat");
    for (std::string l; std::getline(sys, l);)
      if (l.starts_with("btime ")) p.start_time_seconds = std::stod(l.substr(6)) + start_ticks / tick;
  } catch (const std::exception&) {
    return std::nullopt;
  }
  std::error_code ec;
  double fds = 0;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end; it.increment(ec)) ++fds;
  p.open_fds = fds;
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0) p.max_fds = static_cast<double>(rl.rlim_cur);
  return p;
}

namespace {

// Writes one family at a time: its HELP and TYPE once, then its samples.
class Exposition {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += fmt::format("# HELP {} ", name);
    for (char c : help) {
      if (c == '\\') out_ += "\\\\";
      else if (c == '\n') out_ += "\\n";
      else out_ += c;
    }
    out_ += fmt::format("\n# TYPE {} {}\n", name, type);
  }
  // `labels`: name/value pairs; values are escaped here.
  template <class V>
  void sample(std::string_view name, std::initializer_list<std::pair<std::string_view, std::string_view>> labels, V v) {
    out_ += name;
    write_labels(labels, {});
    out_ += ' ';
    out_ += number(v);
    out_ += '\n';
  }
  void histogram(std::string_view name, std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
                 const util::HistogramSnapshot& h) {
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < h.counts.size(); ++i) {
      cumulative += h.counts[i];
      std::string le = i < h.bounds.size() ? number(h.bounds[i]) : "+Inf";
      out_ += name;
      out_ += "_bucket";
      write_labels(labels, le);
      out_ += fmt::format(" {}\n", cumulative);
    }
    out_ += name;
    out_ += "_sum";
    write_labels(labels, {});
    out_ += ' ' + number(h.sum) + '\n';
    out_ += name;
    out_ += "_count";
    write_labels(labels, {});
    out_ += fmt::format(" {}\n", cumulative);
  }
  std::string take() { return std::move(out_); }

  template <class V>
  static std::string number(V v) {
    if constexpr (std::is_floating_point_v<V>) {
      if (v == static_cast<double>(static_cast<long long>(v)) && v < 1e15 && v > -1e15)
        return fmt::format("{}", static_cast<long long>(v));
    }
    return fmt::format("{}", v);
  }

 private:
  void write_labels(std::initializer_list<std::pair<std::string_view, std::string_view>> labels, std::string_view le) {
    if (labels.size() == 0 && le.empty()) return;
    out_ += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
      if (!first) out_ += ',';
      first = false;
      out_ += k;
      out_ += "=\"";
      out_ += escape_label_value(v);
      out_ += '"';
    }
    if (!le.empty()) {
      if (!first) out_ += ',';
      out_ += "le=\"";
      out_ += le;
      out_ += '"';
    }
    out_ += '}';
  }
  std::string out_;
};

// Reasons shown from the start (0 until one happens), so rate() and alerts see
// a series before the first occurrence.
constexpr std::string_view kRefusalReasons[] = {"queue_full",     "queue_timeout",    "tenant_quota",
                                                "shutting_down",  "abandoned",        "upstream_429",
                                                "upstream_error", "upstream_timeout", "upstream_unreachable",
                                                "cluster_unavailable"};
// Before a pool is chosen (pool ""): the request, its path, its credentials.
constexpr std::string_view kUnpooledRefusalReasons[] = {"no_pool",          "handshake_timeout", "bad_request",
                                                        "method_not_allowed", "not_found",       "upgrade_required",
                                                        "unauthorized"};
constexpr std::string_view kReapReasons[] = {"idle", "max_duration", "half_open"};
constexpr std::string_view kResumeOutcomes[] = {"resumed", "refused", "exhausted", "client_gone", "failed"};

}  // namespace

std::string render_metrics(const registry::Registry& registry, const admission::Controller& admission,
                           const history::Recorder* recorder, const MetricsOptions& options) {
  Exposition out;
  auto pools = admission.status();
  auto traffic = registry.traffic();
  using admission::PoolStatus;
  auto per_pool = [&](std::string_view name, std::string_view type, std::string_view help, auto value) {
    out.family(name, type, help);
    for (const auto& p : pools) out.sample(name, {{"pool", p.name}}, value(p));
  };
  per_pool("sluice_pool_in_use", "gauge", "Streams holding a lease on the pool.", [](const PoolStatus& p) { return p.in_use; });
  per_pool("sluice_pool_queued", "gauge", "Handshakes waiting in the pool's queue.", [](const PoolStatus& p) { return p.queued; });
  per_pool("sluice_pool_limit", "gauge", "The pool's configured limit.", [](const PoolStatus& p) { return p.limit; });
  per_pool("sluice_pool_effective_limit", "gauge", "The limit in force (lowered after an upstream 429 that no release explains).",
           [](const PoolStatus& p) { return p.effective_limit; });
  per_pool("sluice_pool_admitted_total", "counter", "Streams admitted.", [](const PoolStatus& p) { return p.admitted_total; });
  per_pool("sluice_pool_refused_total", "counter",
           "Handshakes refused by the gateway (all reasons; sluice_refusals_total has them by reason).",
           [](const PoolStatus& p) { return p.refused_total; });
  per_pool("sluice_pool_upstream_429_total", "counter", "Upstream handshakes answered 429.",
           [](const PoolStatus& p) { return p.upstream_429_total; });
  per_pool("sluice_pool_upstream_open", "gauge", "Streams of the pool the upstream accepted and still holds.",
           [](const PoolStatus& p) { return p.upstream_open; });
  per_pool("sluice_pool_cooling", "gauge", "Released slots cooling for the release delay before they admit again.",
           [](const PoolStatus& p) { return p.cooling; });
  per_pool("sluice_pool_release_delay_seconds", "gauge",
           "How long the vendor keeps counting a closed stream: configured, or learned from upstream 429s (0 until known).",
           [](const PoolStatus& p) { return p.release_delay_seconds; });

  out.family("sluice_refusals_total", "counter",
             "Handshakes the gateway did not admit or could not open, by pool and reason (pool \"\": refused before a pool "
             "was chosen).");
  for (const auto& p : pools) {
    std::set<std::string> reasons(std::begin(kRefusalReasons), std::end(kRefusalReasons));
    for (const auto& [r, n] : p.refused_by_reason) reasons.insert(r);
    for (const auto& r : reasons) {
      auto it = p.refused_by_reason.find(r);
      out.sample("sluice_refusals_total", {{"pool", p.name}, {"reason", r}}, it == p.refused_by_reason.end() ? 0 : it->second);
    }
  }
  {
    auto unpooled = admission.unpooled_refusals();
    for (auto r : kUnpooledRefusalReasons) unpooled.try_emplace(std::string(r), 0);
    for (const auto& [r, n] : unpooled) out.sample("sluice_refusals_total", {{"pool", ""}, {"reason", r}}, n);
  }

  out.family("sluice_reaps_total", "counter",
             "Open streams the gateway ended for hygiene, by pool and reason (idle, max_duration, half_open).");
  {
    std::map<std::pair<std::string, std::string>, std::uint64_t> reaps;
    for (const auto& p : pools)
      for (auto r : kReapReasons) reaps[{p.name, std::string(r)}] = 0;
    if (options.events)
      for (const auto& [key, n] : options.events->reaps()) reaps[key] = n;
    for (const auto& [key, n] : reaps) out.sample("sluice_reaps_total", {{"pool", key.first}, {"reason", key.second}}, n);
  }

  out.family("sluice_resumes_total", "counter",
             "Upstream legs of resumable streams that ended abnormally, by pool and outcome: resumed (reconnected "
             "and replayed), refused (a 4xx on reconnect), exhausted (max_attempts failed), client_gone, failed "
             "(max_resumes, or part of a message had reached the client).");
  {
    std::map<std::pair<std::string, std::string>, std::uint64_t> resumes;
    for (const auto& p : pools)
      if (p.resume_enabled)
        for (auto o : kResumeOutcomes) resumes[{p.name, std::string(o)}] = 0;
    if (options.events)
      for (const auto& [key, n] : options.events->resumes()) resumes[key] = n;
    for (const auto& [key, n] : resumes)
      out.sample("sluice_resumes_total", {{"pool", key.first}, {"outcome", key.second}}, n);
  }

  out.family("sluice_queue_wait_seconds", "histogram",
             "Seconds from a handshake's arrival at its pool to its admission (0 when admitted at once).");
  for (const auto& p : pools) out.histogram("sluice_queue_wait_seconds", {{"pool", p.name}}, p.queue_wait);
  out.family("sluice_upstream_handshake_seconds", "histogram",
             "Seconds from admission to the upstream's 101 (retries after upstream 429s included).");
  for (const auto& p : pools) out.histogram("sluice_upstream_handshake_seconds", {{"pool", p.name}}, p.upstream_handshake);

  // Pools with traffic: the configured ones and any a reload removed.
  std::set<std::string> traffic_pools;
  for (const auto& p : pools) traffic_pools.insert(p.name);
  for (const auto& [name, t] : traffic) traffic_pools.insert(name);
  const registry::PoolTraffic none{};
  auto of = [&](const std::string& pool) -> const registry::PoolTraffic& {
    auto it = traffic.find(pool);
    return it == traffic.end() ? none : it->second;
  };
  out.family("sluice_stream_duration_seconds", "histogram",
             "Seconds each ended stream was open (from its opening to the end of its upstream leg).");
  const auto empty_duration = util::Histogram(util::kStreamDurationBuckets).snapshot();
  for (const auto& pool : traffic_pools) {
    const auto& d = of(pool).duration;
    out.histogram("sluice_stream_duration_seconds", {{"pool", pool}}, d.counts.empty() ? empty_duration : d);
  }
  out.family("sluice_relayed_bytes_total", "counter",
             "Payload bytes relayed, by pool and direction (client_to_upstream, upstream_to_client); ended and open streams.");
  for (const auto& pool : traffic_pools) {
    out.sample("sluice_relayed_bytes_total", {{"pool", pool}, {"direction", "client_to_upstream"}}, of(pool).client_bytes);
    out.sample("sluice_relayed_bytes_total", {{"pool", pool}, {"direction", "upstream_to_client"}}, of(pool).upstream_bytes);
  }
  out.family("sluice_audio_seconds_total", "counter",
             "Seconds of client audio relayed (from the declared raw format, else the upstream's Metadata at the end).");
  for (const auto& pool : traffic_pools) out.sample("sluice_audio_seconds_total", {{"pool", pool}}, of(pool).audio_seconds);
  out.family("sluice_streams_open", "gauge", "Streams relaying (open or closing).");
  for (const auto& pool : traffic_pools) out.sample("sluice_streams_open", {{"pool", pool}}, of(pool).open);
  out.family("sluice_streams_idle", "gauge", "Open streams without client audio for relay.idle_after.");
  for (const auto& pool : traffic_pools) out.sample("sluice_streams_idle", {{"pool", pool}}, of(pool).idle);
  out.family("sluice_streams_keep_alive_only", "gauge",
             "Idle streams kept open by KeepAlive messages since their last audio.");
  for (const auto& pool : traffic_pools)
    out.sample("sluice_streams_keep_alive_only", {{"pool", pool}}, of(pool).keep_alive_only);

  if (options.per_tenant) {
    out.family("sluice_tenant_in_use", "gauge", "Streams holding a lease, by pool and tenant (admin.metrics.per_tenant).");
    for (const auto& p : pools)
      for (const auto& [tenant, n] : p.tenants_in_use)
        out.sample("sluice_tenant_in_use", {{"pool", p.name}, {"tenant", tenant}}, n);
  }

  auto one = [&](std::string_view name, std::string_view type, std::string_view help, auto v) {
    out.family(name, type, help);
    out.sample(name, {}, v);
  };
  one("sluice_sessions_registered", "gauge", "Streams in the live registry (queued to closing).", registry.size());
  one("sluice_admin_event_streams", "gauge", "Dashboard event streams (GET /api/v1/stream) open.", options.event_streams);
  if (const auto* c = options.cluster) {
    one("sluice_cluster_redis_up", "gauge", "1 when the last command to the fleet's Redis succeeded.", c->redis_up ? 1 : 0);
    one("sluice_cluster_leases_held", "gauge", "Fleet leases this instance holds in Redis.", c->leases_held);
    one("sluice_cluster_waiting", "gauge", "Streams of this instance waiting for room in the fleet.", c->waiting);
    one("sluice_cluster_reregistered_total", "counter", "Leases registered again after Redis lost them.",
        c->reregistered);
    one("sluice_cluster_local_share_admissions_total", "counter",
        "Streams admitted on this instance's local share while Redis could not be reached.", c->local_share_admissions);
    out.family("sluice_cluster_acquire_seconds", "histogram",
               "From a stream's request for a fleet lease to Redis's answer (the cluster thread's queue and the "
               "script's round trip).");
    out.histogram("sluice_cluster_acquire_seconds", {}, c->acquire);
  }
  out.family("sluice_accept_errors_total", "counter",
             "Failed accepts by listener and reason (emfile, enfile, enobufs, enomem: the listener backs off; other).");
  for (const auto& e : net::accept_error_counts())
    out.sample("sluice_accept_errors_total", {{"listener", e.listener}, {"reason", e.reason}}, e.total);
  if (recorder) {
    auto s = recorder->stats();
    one("sluice_history_sessions_written_total", "counter", "Session row writes committed.", s.sessions_written);
    one("sluice_history_events_written_total", "counter", "Events committed.", s.events_written);
    one("sluice_history_samples_written_total", "counter", "Concurrency samples committed.", s.samples_written);
    one("sluice_history_events_dropped_total", "counter", "Events dropped because the writer's queue was full.",
        s.events_dropped);
    one("sluice_history_write_failures_total", "counter", "Batches the database refused (kept and retried).",
        s.write_failures);
    one("sluice_history_interrupted_total", "counter",
        "Open streams of silent gateways on the same store this one marked interrupted.", s.interrupted_by_sweep);
    one("sluice_history_pending_sessions", "gauge", "Session rows waiting for the writer.", s.pending_sessions);
    one("sluice_history_pending_events", "gauge", "Events waiting for the writer.", s.pending_events);
    one("sluice_history_last_commit_timestamp_seconds", "gauge", "When the writer last committed (Unix time).",
        static_cast<double>(s.last_commit_us) / 1e6);
  }
  if (const auto* queries = options.queries) {
    one("sluice_history_queries_pending", "gauge", "History API queries running or waiting.", queries->pending);
    one("sluice_history_queries_limit", "gauge", "History API queries that may run or wait at once.", queries->limit);
    one("sluice_history_queries_refused_total", "counter", "History API queries answered 503 history_busy.",
        queries->refused_total);
    one("sluice_history_queries_timed_out_total", "counter",
        "History API queries stopped at store.query_timeout (503 query_timeout).", queries->timed_out_total);
  }

  out.family("sluice_build_info", "gauge", "The running binary: version, commit, build type and compiler (always 1).");
  out.sample("sluice_build_info",
             {{"version", SLUICE_VERSION}, {"commit", build_commit()}, {"build_type", SLUICE_BUILD_TYPE},
              {"compiler", SLUICE_COMPILER}},
             1);

  if (auto p = read_process_figures()) {
    one("process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.", p->cpu_seconds);
    one("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", p->resident_bytes);
    one("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", p->virtual_bytes);
    one("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
        p->start_time_seconds);
    one("process_open_fds", "gauge", "Number of open file descriptors.", p->open_fds);
    one("process_max_fds", "gauge", "Maximum number of open file descriptors.", p->max_fds);
    one("process_threads", "gauge", "Number of OS threads in the process.", p->threads);
  }
  return out.take();
}

}  // namespace sluice::admin
