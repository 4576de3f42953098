#pragma once
// GET /metrics: the Prometheus text exposition of the pools, the listeners'
// failed accepts and the history recorder (no secrets, no tenant names).
#include <cstdint>
#include <string>

namespace sluice::registry {
class Registry;
}
namespace sluice::admission {
class Controller;
}
namespace sluice::history {
class Recorder;
}

namespace sluice::admin {

// The admin API's history queries (GET /api/v1/history/...).
struct HistoryQueryStats {
  int pending = 0;  // running or waiting for one of the query threads
  int limit = 0;    // past it a query is answered 503 history_busy
  std::uint64_t refused_total = 0;
  std::uint64_t timed_out_total = 0;
};

// `recorder` and `queries` are null when the history is off.
std::string render_metrics(const registry::Registry& registry, const admission::Controller& admission,
                           const history::Recorder* recorder, const HistoryQueryStats* queries = nullptr);

}  // namespace sluice::admin
