#pragma once
// HOST:PORT as the configuration and the command line write it, read without
// touching the network: the syntax step of net::parse_endpoint
// (net/listener.hpp), which then resolves a host name. The fuzz targets link
// this step and stop short of resolving.
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::net {

struct HostPort {
  std::string host;  // an address literal (IPv6 without brackets) or a name
  std::uint16_t port = 0;
};

// Throws std::invalid_argument saying what was expected.
HostPort parse_host_port(std::string_view text);

}  // namespace sluice::net
