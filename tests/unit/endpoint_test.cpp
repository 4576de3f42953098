#include "net/endpoint.hpp"
#include "net/listener.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace sluice::net {
namespace {

TEST(Endpoint, ReadsAddressLiteralsAndNamesWithoutResolving) {
  auto v4 = parse_host_port("127.0.0.1:8080");
  EXPECT_EQ(v4.host, "127.0.0.1");
  EXPECT_EQ(v4.port, 8080);
  auto v6 = parse_host_port("[::1]:9");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.port, 9);
  auto name = parse_host_port("gateway.invalid:443");
  EXPECT_EQ(name.host, "gateway.invalid");
  EXPECT_EQ(name.port, 443);
  EXPECT_EQ(parse_host_port("0.0.0.0:0").port, 0);
}

TEST(Endpoint, RefusesWhatIsNotHostColonPort) {
  for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", ":", "user@127.0.0.1:80", "127.0.0.1:65536",
                          "127.0.0.1:99999999", "[::1:80", "a b:80"}) {
    SCOPED_TRACE(bad);
    EXPECT_THROW(parse_host_port(bad), std::invalid_argument);
  }
}

TEST(Endpoint, ParseEndpointTakesLiteralsAsTheyAre) {
  auto ep = parse_endpoint("[::1]:8080");
  EXPECT_TRUE(ep.address().is_v6());
  EXPECT_EQ(ep.port(), 8080);
  EXPECT_EQ(to_string(parse_endpoint("127.0.0.1:0")), "127.0.0.1:0");
  EXPECT_THROW(parse_endpoint("127.0.0.1:70000"), std::invalid_argument);
}

}  // namespace
}  // namespace sluice::net
