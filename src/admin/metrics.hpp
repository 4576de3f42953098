#pragma once
// GET /metrics: the Prometheus text exposition (format 0.0.4) of the pools,
// the streams' traffic, the listeners' failed accepts, the history recorder
// and the process. No secrets; tenant names only when per-tenant series are
// switched on (admin.metrics.per_tenant). docs/api.md lists every metric.
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "admin/cluster_figures.hpp"

namespace sluice::registry {
class Registry;
}
namespace sluice::admission {
class Controller;
}
namespace sluice::history {
class Recorder;
}
namespace sluice::events {
struct Event;
}

namespace sluice {
// The commit the binary was built from (generated at build time).
const char* build_commit();
}  // namespace sluice

namespace sluice::admin {

// The admin API's history queries (GET /api/v1/history/...).
struct HistoryQueryStats {
  int pending = 0;  // running or waiting for one of the query threads
  int limit = 0;    // past it a query is answered 503 history_busy
  std::uint64_t refused_total = 0;
  std::uint64_t timed_out_total = 0;
};

// Counts kept from the event log (subscribed to it): reaps by pool and
// reason, resumes by pool and outcome. Both are rare; one mutex is enough.
class EventCounters {
 public:
  void observe(const events::Event& e);
  std::map<std::pair<std::string, std::string>, std::uint64_t> reaps() const;  // (pool, reason) -> count
  std::map<std::pair<std::string, std::string>, std::uint64_t> resumes() const;  // (pool, outcome) -> count

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> reaps_;    // guarded by mutex_
  std::map<std::pair<std::string, std::string>, std::uint64_t> resumes_;  // guarded by mutex_
};

struct MetricsOptions {
  bool per_tenant = false;                  // admin.metrics.per_tenant: series labelled by tenant
  const ClusterFigures* cluster = nullptr;  // null when not in cluster mode
  const EventCounters* events = nullptr;    // reaps; none when null
  const HistoryQueryStats* queries = nullptr;  // null when the history is off
  std::size_t event_streams = 0;            // GET /api/v1/stream clients (the dashboards)
};

// This process's figures, read from /proc at scrape time.
struct ProcessFigures {
  double cpu_seconds = 0;
  double resident_bytes = 0;
  double virtual_bytes = 0;
  double start_time_seconds = 0;  // Unix time
  double open_fds = 0;
  double max_fds = 0;
  double threads = 0;
};
std::optional<ProcessFigures> read_process_figures();

// A label value as the exposition format writes it between double quotes:
// backslash, double quote and newline escaped.
std::string escape_label_value(std::string_view v);

// `recorder` is null when the history is off.
std::string render_metrics(const registry::Registry& registry, const admission::Controller& admission,
                           const history::Recorder* recorder, const MetricsOptions& options = {});

}  // namespace sluice::admin
