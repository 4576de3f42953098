// net::parse_endpoint for the fuzz targets, which load configurations: the
// syntax step is the gateway's own (net/endpoint.cpp); only the resolving
// step differs: a host name is not resolved (a fuzzer must not wait on DNS)
// but taken to be 127.0.0.1.
#include <boost/asio/ip/address.hpp>

#include "net/endpoint.hpp"
#include "net/listener.hpp"

namespace sluice::net {

tcp::endpoint parse_endpoint(std::string_view text) {
  auto [host, port] = parse_host_port(text);
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (!ec) return {addr, port};
  return {asio::ip::make_address_v4("127.0.0.1"), port};
}

}  // namespace sluice::net
