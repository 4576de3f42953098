#include "net/endpoint.hpp"

#include <boost/url/parse.hpp>

#include <stdexcept>

namespace sluice::net {

HostPort parse_host_port(std::string_view text) {
  auto r = boost::urls::parse_authority(text);
  if (!r || !r->has_port() || r->port().empty() || r->has_userinfo())
    throw std::invalid_argument("expected HOST:PORT (e.g. 127.0.0.1:8080), got '" + std::string(text) + "'");
  HostPort hp{r->host_address(), r->port_number()};  // host_address: without IPv6 brackets
  if (hp.port == 0 && r->port() != "0")
    throw std::invalid_argument("port out of range in '" + std::string(text) + "'");
  return hp;
}

}  // namespace sluice::net
