#include "sim/simulator.hpp"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <atomic>

#include "net/listener.hpp"
#include "sim/sim_core.hpp"

namespace sluice::sim {

namespace asio = boost::asio;

struct Simulator::Impl {
  Impl(asio::io_context& ioc, SimConfig config)
      : ioc(ioc),
        core(std::make_shared<SimCore>(ioc, std::move(config))),
        listener(std::make_shared<net::Listener>(
            ioc, core->config.listen,
            [core = core](asio::ip::tcp::socket s) { return serve_stream_connection(core, std::move(s)); },
            "sim")),
        admin(std::make_shared<net::Listener>(
            ioc, core->config.admin_listen,
            [core = core](asio::ip::tcp::socket s) { return serve_admin_connection(core, std::move(s)); },
            "sim-admin")),
        endpoint(listener->local_endpoint()),
        admin_endpoint(admin->local_endpoint()) {}

  asio::io_context& ioc;
  std::shared_ptr<SimCore> core;
  // Shared with the handler that stops them on the io_context.
  std::shared_ptr<net::Listener> listener;
  std::shared_ptr<net::Listener> admin;
  const asio::ip::tcp::endpoint endpoint;        // as bound, port 0 resolved
  const asio::ip::tcp::endpoint admin_endpoint;
  std::atomic<bool> stopped{false};
};

Simulator::Simulator(asio::io_context& ioc, SimConfig config)
    : impl_(std::make_unique<Impl>(ioc, std::move(config))) {}

Simulator::~Simulator() { stop(); }

void Simulator::start() {
  impl_->listener->start();
  impl_->admin->start();
  spdlog::info("sim: listening on {}, admin on {}", net::to_string(impl_->endpoint),
               net::to_string(impl_->admin_endpoint));
}

void Simulator::stop() {
  if (impl_->stopped.exchange(true)) return;
  // Acceptors are touched only from the io_context, where they accept.
  asio::post(impl_->ioc, [listener = impl_->listener, admin = impl_->admin] {
    listener->stop();
    admin->stop();
  });
  impl_->core->connections->stop_all();
  impl_->core->accounting->stop();
}

asio::ip::tcp::endpoint Simulator::endpoint() const { return impl_->endpoint; }

asio::ip::tcp::endpoint Simulator::admin_endpoint() const { return impl_->admin_endpoint; }

SimStats Simulator::stats() const {
  auto s = impl_->core->accounting->snapshot();
  s.streams = impl_->core->streams.load();
  s.drops = impl_->core->drops->records();
  return s;
}

DropCue Simulator::add_drop(DropCue cue) { return impl_->core->drops->add(cue); }

}  // namespace sluice::sim
