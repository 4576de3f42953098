#pragma once
// Wires one gateway instance: TLS contexts, the session policy, the live
// registry, the client listener and the admin listener. It owns these and
// nothing else; sessions own themselves. Runs on the io_context it is given.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <atomic>
#include <memory>

#include "config/config.hpp"
#include "registry/registry.hpp"

namespace sluice::net {
class Listener;
}
namespace sluice::admin {
class AdminServer;
}
namespace sluice::session {
struct SessionServices;
}

namespace sluice::server {

class Gateway {
 public:
  // Binds both listeners (so port 0 is known at once). Throws ConfigError or
  // std::system_error with a message naming what failed.
  Gateway(boost::asio::io_context& ioc, config::Config config);
  ~Gateway();

  void start();
  // Stops accepting; readyz turns false. Open streams go on.
  void stop_accepting();
  // Asks every open stream to end gracefully (endpoint close message first).
  void end_all_sessions();
  // Closes the admin listener too.
  void stop();

  boost::asio::ip::tcp::endpoint endpoint() const;
  boost::asio::ip::tcp::endpoint admin_endpoint() const;
  registry::Registry& registry() { return registry_; }
  bool ready() const { return ready_.load(); }

 private:
  boost::asio::io_context& ioc_;
  boost::asio::ssl::context upstream_tls_;
  std::unique_ptr<boost::asio::ssl::context> client_tls_;
  registry::Registry registry_;
  std::unique_ptr<session::SessionServices> services_;
  std::unique_ptr<net::Listener> listener_;
  std::unique_ptr<admin::AdminServer> admin_;
  std::atomic<bool> ready_{false};
};

}  // namespace sluice::server
