#include "admin/metrics.hpp"

#include <fmt/format.h>

#include "admission/controller.hpp"
#include "history/recorder.hpp"
#include "net/listener.hpp"
#include "registry/registry.hpp"

namespace sluice::admin {
namespace {

void family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

}  // namespace

std::string render_metrics(const registry::Registry& registry, const admission::Controller& admission,
                           const history::Recorder* recorder, const HistoryQueryStats* queries) {
  std::string out;
  auto pools = admission.status();
  auto per_pool = [&](std::string_view name, std::string_view type, std::string_view help, auto value) {
    family(out, name, type, help);
    for (const auto& p : pools) out += fmt::format("{}{{pool=\"{}\"}} {}\n", name, p.name, value(p));
  };
  using admission::PoolStatus;
  per_pool("sluice_pool_in_use", "gauge", "Streams holding a lease on the pool.", [](const PoolStatus& p) { return p.in_use; });
  per_pool("sluice_pool_queued", "gauge", "Handshakes waiting in the pool's queue.", [](const PoolStatus& p) { return p.queued; });
  per_pool("sluice_pool_limit", "gauge", "The pool's configured limit.", [](const PoolStatus& p) { return p.limit; });
  per_pool("sluice_pool_effective_limit", "gauge", "The limit in force (lowered after an upstream 429 that no release explains).",
           [](const PoolStatus& p) { return p.effective_limit; });
  per_pool("sluice_pool_admitted_total", "counter", "Streams admitted.", [](const PoolStatus& p) { return p.admitted_total; });
  per_pool("sluice_pool_refused_total", "counter", "Handshakes refused by the gateway.",
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
  auto one = [&](std::string_view name, std::string_view type, std::string_view help, auto v) {
    family(out, name, type, help);
    out += fmt::format("{} {}\n", name, v);
  };
  one("sluice_sessions_registered", "gauge", "Streams in the live registry (queued to closing).", registry.size());
  family(out, "sluice_accept_errors_total", "counter",
         "Failed accepts by listener and reason (emfile, enfile, enobufs, enomem: the listener backs off; other).");
  for (const auto& e : net::accept_error_counts())
    out += fmt::format("sluice_accept_errors_total{{listener=\"{}\",reason=\"{}\"}} {}\n", e.listener, e.reason, e.total);
  if (recorder) {
    auto s = recorder->stats();
    one("sluice_history_sessions_written_total", "counter", "Session row writes committed.", s.sessions_written);
    one("sluice_history_events_written_total", "counter", "Events committed.", s.events_written);
    one("sluice_history_samples_written_total", "counter", "Concurrency samples committed.", s.samples_written);
    one("sluice_history_events_dropped_total", "counter", "Events dropped because the writer's queue was full.",
        s.events_dropped);
    one("sluice_history_write_failures_total", "counter", "Batches the database refused (kept and retried).",
        s.write_failures);
    one("sluice_history_pending_sessions", "gauge", "Session rows waiting for the writer.", s.pending_sessions);
    one("sluice_history_pending_events", "gauge", "Events waiting for the writer.", s.pending_events);
    one("sluice_history_last_commit_timestamp_seconds", "gauge", "When the writer last committed (Unix time).",
        static_cast<double>(s.last_commit_us) / 1e6);
  }
  if (queries) {
    one("sluice_history_queries_pending", "gauge", "History API queries running or waiting.", queries->pending);
    one("sluice_history_queries_limit", "gauge", "History API queries that may run or wait at once.", queries->limit);
    one("sluice_history_queries_refused_total", "counter", "History API queries answered 503 history_busy.",
        queries->refused_total);
    one("sluice_history_queries_timed_out_total", "counter",
        "History API queries stopped at store.query_timeout (503 query_timeout).", queries->timed_out_total);
  }
  return out;
}

}  // namespace sluice::admin
