// net::parse_endpoint for the fuzz targets, which load configurations: the
// same reading of HOST:PORT as src/net/listener.cpp, except that a host name
// is not resolved (a fuzzer must not wait on DNS) but taken to be 127.0.0.1.
#include <boost/asio/ip/address.hpp>
#include <boost/url/parse.hpp>

#include <stdexcept>
#include <string>

#include "net/listener.hpp"

namespace sluice::net {

tcp::endpoint parse_endpoint(std::string_view text) {
  auto r = boost::urls::parse_authority(text);
  if (!r || !r->has_port() || r->port().empty() || r->has_userinfo())
    throw std::invalid_argument("expected HOST:PORT (e.g. 127.0.0.1:8080), got '" + std::string(text) + "'");
  std::string host = r->host_address();  // without IPv6 brackets
  auto port = r->port_number();
  if (port == 0 && r->port() != "0")
    throw std::invalid_argument("port out of range in '" + std::string(text) + "'");
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (!ec) return {addr, port};
  return {asio::ip::make_address_v4("127.0.0.1"), port};
}

}  // namespace sluice::net
