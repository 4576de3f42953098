#include "net/listener.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/url/parse.hpp>
#include <spdlog/spdlog.h>

#include <stdexcept>
#include <system_error>

namespace sluice::net {

Listener::Listener(asio::io_context& ioc, const tcp::endpoint& endpoint, Handler handler,
                   std::string name, bool strand_per_connection)
    : ioc_(ioc),
      acceptor_(ioc),
      handler_(std::move(handler)),
      name_(std::move(name)),
      strand_per_connection_(strand_per_connection) {
  boost::system::error_code ec;
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::system_error(ec, "cannot listen on " + to_string(endpoint) + " (" + name_ + ")");
  endpoint_ = acceptor_.local_endpoint();
}

Listener::~Listener() { stop(); }

tcp::endpoint Listener::local_endpoint() const { return endpoint_; }

void Listener::start() { asio::co_spawn(ioc_, accept_loop(), asio::detached); }

void Listener::stop() {
  boost::system::error_code ec;
  acceptor_.close(ec);
}

asio::awaitable<void> Listener::accept_loop() {
  for (;;) {
    asio::any_io_executor executor = ioc_.get_executor();
    if (strand_per_connection_) executor = asio::make_strand(ioc_);
    auto [ec, socket] = co_await acceptor_.async_accept(executor, asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) {
      // Out of descriptors and the like: log and keep accepting.
      spdlog::warn("{}: accept failed: {}", name_, ec.message());
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(socket.get_executor(), handler_(std::move(socket)), [name = name_](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::error("{}: connection handler failed: {}", name, ex.what());
      }
    });
  }
}

tcp::endpoint parse_endpoint(std::string_view text) {
  auto r = boost::urls::parse_authority(text);
  if (!r || !r->has_port() || r->port().empty() || r->has_userinfo())
    throw std::invalid_argument("expected HOST:PORT (e.g. 127.0.0.1:8080), got '" +
                                std::string(text) + "'");
  std::string host = r->host_address();  // without IPv6 brackets
  auto port = r->port_number();
  if (port == 0 && r->port() != "0")
    throw std::invalid_argument("port out of range in '" + std::string(text) + "'");
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (!ec) return {addr, port};
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty())
    throw std::invalid_argument("cannot resolve host '" + host + "' in '" + std::string(text) + "'");
  return results.begin()->endpoint();
}

std::string to_string(const tcp::endpoint& ep) {
  if (ep.address().is_v6()) return "[" + ep.address().to_string() + "]:" + std::to_string(ep.port());
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

}  // namespace sluice::net
