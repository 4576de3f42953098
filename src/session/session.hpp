#pragma once
// One client connection's life: read the upgrade request, authenticate, open
// the upstream first, accept the client, relay both ways, close, summarize.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <atomic>
#include <memory>
#include <string>

#include "admission/classifier.hpp"
#include "admission/controller.hpp"
#include "auth/key_table.hpp"
#include "events/event_log.hpp"
#include "config/config.hpp"
#include "registry/registry.hpp"
#include "upstream/connector.hpp"
#include "session/ticker.hpp"

namespace sluice::history {
class Recorder;
}
namespace sluice::cluster {
class Agent;
class FleetWake;
}

namespace sluice::session {

// What sessions read from configuration: an immutable snapshot, replaced whole
// on reload, so a session sees one consistent version for its whole life.
struct SessionPolicy {
  explicit SessionPolicy(config::Config c);

  config::Config config;
  auth::KeyTable keys;
  upstream::UpstreamBase base;        // listen, speak
  upstream::UpstreamBase agent_base;  // agent
  std::string upstream_key;           // virtual-key mode: the real Deepgram key
  admission::Classifier classifier;   // stream -> pool
};

// Long-lived services sessions use. Shared by the Gateway and every session
// (each session's frame holds a reference), so it outlives them all.
struct SessionServices {
  std::shared_ptr<registry::Registry> registry;
  std::shared_ptr<admission::Controller> admission;
  std::shared_ptr<events::EventLog> events;
  std::shared_ptr<history::Recorder> recorder;  // null when the history is off
  std::shared_ptr<Ticker> ticker;               // every open stream's housekeeping clock
  std::unique_ptr<boost::asio::ssl::context> upstream_tls;
  std::unique_ptr<boost::asio::ssl::context> client_tls;  // null: plain TCP
  std::atomic<std::shared_ptr<const SessionPolicy>> policy;
  // Cluster mode (null otherwise): the link to the fleet's leases, and the
  // wake-ups of sessions waiting for room in the fleet.
  std::shared_ptr<cluster::Agent> cluster;
  std::shared_ptr<cluster::FleetWake> fleet_wake;
  std::atomic<long long> cluster_degraded_admissions{0};  // admitted on the local share while Redis was away
};

// The connection handler for the client listener. Never throws for anything
// a client or upstream can cause.
boost::asio::awaitable<void> run_connection(boost::asio::ip::tcp::socket socket,
                                            std::shared_ptr<SessionServices> services);

}  // namespace sluice::session
