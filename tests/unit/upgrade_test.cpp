// The upgrade request up to authentication (session/upgrade.hpp): what the
// check refuses before any upstream work, and inputs the fuzz target
// `upgrade` found, kept as regressions.
#include <gtest/gtest.h>

#include <boost/beast/http/parser.hpp>
#include <boost/json/parse.hpp>

#include <string>

#include "session/upgrade.hpp"

using namespace sluice::session;
namespace http = boost::beast::http;

namespace {

// Parses a request as the gateway's reader does (Beast's parser, no body).
UpgradeRequest parse(const std::string& text) {
  http::request_parser<http::empty_body> p;
  p.eager(true);
  boost::system::error_code ec;
  p.put(boost::asio::buffer(text), ec);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_TRUE(p.is_done());
  return p.release();
}

const std::string kFields =
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n";

}  // namespace

TEST(Upgrade, ACompleteUpgradeRoutesWithItsParameters) {
  auto r = read_route(parse("GET /v1/listen?model=nova-3&encoding=linear16&sample_rate=16000&token=x HTTP/1.1\r\n"
                            "Host: gw\r\n" + kFields + "\r\n"));
  ASSERT_TRUE(r.route);
  EXPECT_EQ(r.route->endpoint, sluice::protocol::Endpoint::listen_v1);
  EXPECT_EQ(r.route->model, "nova-3");
  EXPECT_EQ(r.route->params.size(), 3u);      // token is not a classifying parameter
  EXPECT_EQ(r.route->all_params.size(), 4u);
  EXPECT_DOUBLE_EQ(r.route->audio_bytes_per_second, 32000);
}

TEST(Upgrade, UnknownPathsAndMalformedTargetsAreRefusedUnlogged) {
  auto r = read_route(parse("GET /v1/nothing HTTP/1.1\r\nHost: gw\r\n" + kFields + "\r\n"));
  ASSERT_TRUE(r.refusal);
  EXPECT_EQ(r.refusal->status, 404u);
  EXPECT_FALSE(r.logged);
  r = read_route(parse("GET http://gw/v1/listen HTTP/1.1\r\nHost: gw\r\n" + kFields + "\r\n"));
  ASSERT_TRUE(r.refusal);
  EXPECT_EQ(r.refusal->status, 400u);
}

// Found with the fuzz target `upgrade`'s oracle: the check passed a request
// without a Host field, which Beast's accept refuses, so the stream was
// admitted and the vendor connected before the client's accept failed (and
// the history recorded a client that left during the upgrade).
TEST(Upgrade, RequestsBeastsAcceptRefusesAreRefusedFirst) {
  auto r = read_route(parse("GET /v1/listen HTTP/1.1\r\n" + kFields + "\r\n"));
  ASSERT_TRUE(r.refusal);
  EXPECT_EQ(r.refusal->status, 400u);
  EXPECT_NE(r.refusal->dg_error.find("Host"), std::string::npos);
  EXPECT_TRUE(r.logged);
  r = read_route(parse("GET /v1/listen HTTP/1.0\r\nHost: gw\r\n" + kFields + "\r\n"));
  ASSERT_TRUE(r.refusal);
  EXPECT_EQ(r.refusal->status, 400u);
  EXPECT_NE(r.refusal->dg_error.find("HTTP/1.1"), std::string::npos);
  EXPECT_TRUE(read_route(parse("GET /v1/listen HTTP/1.1\r\nHost:\r\n" + kFields + "\r\n")).route);
}

// Found by the fuzz target `upgrade`: the refusal echoed the client's
// Sec-WebSocket-Version as it came, so a byte that is not UTF-8 made the
// JSON body one a client cannot parse.
TEST(Upgrade, RefusalsEchoOnlyPrintableText) {
  auto r = read_route(parse("GET /v1/listen HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 1\xff" "2\r\n\r\n"));
  ASSERT_TRUE(r.refusal);
  EXPECT_EQ(r.refusal->status, 426u);
  boost::system::error_code ec;
  auto body = boost::json::parse(r.refusal->body, ec);
  ASSERT_FALSE(ec) << r.refusal->body;
  EXPECT_NE(std::string(body.at("err_msg").as_string()).find("'1?2'"), std::string::npos);
  EXPECT_EQ(r.refusal->dg_error.find('\xff'), std::string::npos);
}
