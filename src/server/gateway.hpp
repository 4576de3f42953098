#pragma once
// Wires one gateway instance: TLS contexts, the session policy, admission, the
// event log, the live registry, the client listener and the admin listener.
// It owns these and nothing else; sessions own themselves. Runs on the
// io_context it is given; call its methods from that context's thread (or
// before it runs).
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <memory>
#include <string>

#include "config/config.hpp"

namespace sluice::net {
class Listener;
}
namespace sluice::admin {
class AdminServer;
class EventCounters;
}
namespace sluice::session {
struct SessionServices;
}
namespace sluice::registry {
class Registry;
}
namespace sluice::cluster {
class FleetReader;
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

namespace sluice::server {

class Gateway {
 public:
  // Binds both listeners (so port 0 is known at once). Throws ConfigError or
  // std::system_error with a message naming what failed.
  Gateway(boost::asio::io_context& ioc, config::Config config);
  ~Gateway();

  void start();
  // Applies a new configuration (keys, tenants, pools, limits, upstream,
  // relay settings) to new streams; open streams go on untouched. Listener
  // addresses and TLS files need a restart. Throws ConfigError, leaving the
  // running configuration as it was.
  void reload(config::Config config);
  // Stops accepting; readyz turns false; queued handshakes are refused.
  void stop_accepting();
  // Asks every open stream to end gracefully (endpoint close message first).
  void end_all_sessions();
  // Closes the admin listener too.
  void stop();

  boost::asio::ip::tcp::endpoint endpoint() const;
  boost::asio::ip::tcp::endpoint admin_endpoint() const;
  registry::Registry& registry();
  admission::Controller& admission();
  events::EventLog& events();
  history::Recorder* recorder();  // null when the history is off
  bool ready() const { return ready_.load(); }

 private:
  boost::asio::io_context& ioc_;
  std::shared_ptr<session::SessionServices> services_;
  std::unique_ptr<net::Listener> listener_;
  std::unique_ptr<admin::AdminServer> admin_;
  std::shared_ptr<admin::EventCounters> event_counters_;  // reaps by reason, for /metrics
  std::shared_ptr<std::atomic<bool>> metrics_per_tenant_ = std::make_shared<std::atomic<bool>>(false);
  std::atomic<bool> ready_{false};
  std::shared_ptr<cluster::FleetReader> fleet_reader_;  // cluster mode: the admin API's fleet view
  std::string fleet_instance_;
};

// Loads the TLS files `config` names (the client certificate and key, the
// upstream CA bundle) as the gateway does when it starts; throws ConfigError.
// For `sluice check-config`.
void check_tls_files(const config::Config& config);

}  // namespace sluice::server
