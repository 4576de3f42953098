#include "server/gateway.hpp"

#include <spdlog/spdlog.h>

#include "admin/admin_server.hpp"
#include "net/listener.hpp"
#include "session/session.hpp"

namespace sluice::server {
namespace {

std::unique_ptr<boost::asio::ssl::context> make_client_tls(const config::TlsConfig& tls) {
  if (!tls.enabled()) return nullptr;
  auto ctx = std::make_unique<boost::asio::ssl::context>(boost::asio::ssl::context::tls_server);
  ctx->set_options(boost::asio::ssl::context::default_workarounds | boost::asio::ssl::context::no_sslv2 |
                   boost::asio::ssl::context::no_sslv3 | boost::asio::ssl::context::no_tlsv1 |
                   boost::asio::ssl::context::no_tlsv1_1);
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(tls.cert_file, ec);
  if (ec) throw config::ConfigError("tls.cert", "cannot load '" + tls.cert_file + "': " + ec.message());
  ctx->use_private_key_file(tls.key_file, boost::asio::ssl::context::pem, ec);
  if (ec) throw config::ConfigError("tls.key", "cannot load '" + tls.key_file + "': " + ec.message());
  return ctx;
}

}  // namespace

Gateway::Gateway(boost::asio::io_context& ioc, config::Config config)
    : ioc_(ioc),
      upstream_tls_(boost::asio::ssl::context::tls_client),
      client_tls_(make_client_tls(config.tls)),
      registry_(config.relay.idle_after) {
  config::validate(config);
  if (config.upstream.verify_tls) {
    upstream_tls_.set_default_verify_paths();
    upstream_tls_.set_verify_mode(boost::asio::ssl::verify_peer);
    if (!config.upstream.ca_file.empty()) {
      boost::system::error_code ec;
      upstream_tls_.load_verify_file(config.upstream.ca_file, ec);
      if (ec)
        throw config::ConfigError("upstream.ca_file", "cannot load '" + config.upstream.ca_file + "': " + ec.message());
    }
  } else {
    upstream_tls_.set_verify_mode(boost::asio::ssl::verify_none);
  }
  auto listen = net::parse_endpoint(config.listen);
  auto admin_listen = net::parse_endpoint(config.admin.listen);
  auto admin_token = config.admin.token;
  auto policy = std::make_shared<const session::SessionPolicy>(std::move(config));
  services_ = std::unique_ptr<session::SessionServices>(
      new session::SessionServices{registry_, upstream_tls_, client_tls_.get(), {}});
  services_->policy.store(policy);
  listener_ = std::make_unique<net::Listener>(
      ioc_, listen, [this](boost::asio::ip::tcp::socket s) { return session::run_connection(std::move(s), *services_); },
      "gateway");
  admin_ = std::make_unique<admin::AdminServer>(ioc_, admin_listen,
                                                admin::AdminDeps{registry_, std::move(admin_token), ready_});
}

Gateway::~Gateway() = default;

void Gateway::start() {
  listener_->start();
  admin_->start();
  ready_ = true;
}

void Gateway::stop_accepting() {
  ready_ = false;
  listener_->stop();
}

void Gateway::end_all_sessions() {
  for (auto& e : registry_.list()) e->request_end();
}

void Gateway::stop() {
  stop_accepting();
  admin_->stop();
}

boost::asio::ip::tcp::endpoint Gateway::endpoint() const { return listener_->local_endpoint(); }
boost::asio::ip::tcp::endpoint Gateway::admin_endpoint() const { return admin_->endpoint(); }

}  // namespace sluice::server
