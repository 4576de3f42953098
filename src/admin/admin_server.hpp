#pragma once
// The operators' HTTP API on its own listener, and the dashboard at `/`
// (src/admin/dashboard/, embedded): live sessions (list, inspect,
// end gracefully), pools (view, change a limit), events, the history
// (sessions, concurrency, peaks, usage), a stream of snapshots and events
// for the dashboard (Server-Sent Events), health and readiness. Every /api/
// path requires `Authorization: Bearer <admin token>`. Runs on the io_context
// it is given; history queries run on a small thread pool of its own.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "admin/cluster_figures.hpp"
#include "registry/registry.hpp"

namespace sluice::net {
class Listener;
}

namespace sluice::admission {
class Controller;
}
namespace sluice::events {
class EventLog;
}
namespace sluice::history {
class Recorder;
}
namespace sluice::cluster {
class FleetReader;
}

namespace sluice::admin {

class EventCounters;

struct AdminDeps {
  std::shared_ptr<registry::Registry> registry;
  std::shared_ptr<admission::Controller> admission;
  std::shared_ptr<events::EventLog> events;
  std::shared_ptr<history::Recorder> recorder;  // null when the history is off
  std::string token;
  const std::atomic<bool>& ready;
  std::string store_url;  // the history database, read-only; empty: history disabled
  // How long one history query may run (store.query_timeout); zero: no limit.
  std::chrono::steady_clock::duration query_timeout = std::chrono::seconds(30);
  // /metrics: reaps counted from the event log, and whether series are
  // labelled by tenant (admin.metrics.per_tenant, follows reloads).
  std::shared_ptr<const EventCounters> event_counters;
  std::shared_ptr<const std::atomic<bool>> metrics_per_tenant;
  // Cluster mode: the link to Redis, read for /metrics and /readyz; empty
  // otherwise. `refuse_without_redis`: on_redis_loss is refuse, so the
  // instance is not ready while Redis is away (with local_share it is, and
  // says it is degraded).
  std::function<ClusterFigures()> cluster_figures;
  bool refuse_without_redis = false;
  // Cluster mode: the fleet view (scope=cluster, another instance's
  // sessions, fleet totals on /api/v1/pools), read on the query threads; and
  // this instance's name in the fleet.
  std::shared_ptr<cluster::FleetReader> fleet;
  std::string instance;
};

// Where history queries run, off the I/O threads: two threads, and a bound on
// the queries waiting for them.
struct HistoryQueries;
class StreamHub;

class AdminServer {
 public:
  AdminServer(boost::asio::io_context& ioc, const boost::asio::ip::tcp::endpoint& listen, AdminDeps deps);
  ~AdminServer();
  void start();
  void stop();
  boost::asio::ip::tcp::endpoint endpoint() const;

 private:
  AdminDeps deps_;
  std::unique_ptr<HistoryQueries> history_;
  std::shared_ptr<StreamHub> streams_;
  std::unique_ptr<net::Listener> listener_;
};

}  // namespace sluice::admin
