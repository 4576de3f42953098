#pragma once
// The upgrade request up to authentication: whether it is a complete
// WebSocket upgrade (RFC 6455 4.2.1), which endpoint its path names, and the
// query parameters that classify the stream. Pure functions of the parsed
// request: no I/O, no configuration.
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/endpoint.hpp"

namespace sluice::session {

using UpgradeRequest = boost::beast::http::request<boost::beast::http::empty_body>;

// An HTTP answer in place of an upgrade: Deepgram-shaped JSON.
struct HttpRefusal {
  unsigned status = 400;
  std::string body;
  std::string content_type = "application/json";
  std::string request_id;  // dg-request-id (only when the vendor gave one)
  std::string dg_error;
  std::string retry_after;
  std::vector<std::pair<std::string, std::string>> headers;  // more fields (Allow, Sec-WebSocket-Version)
};

// A refusal of the gateway's own: `code` and `message` in the JSON body,
// `message` in dg-error.
HttpRefusal sluice_error(unsigned status, std::string_view code, std::string_view message);

// Checks that a request is a complete WebSocket upgrade (RFC 6455 4.2.1):
// GET over HTTP/1.1, a Host field, `Upgrade: websocket`, `Connection:
// upgrade`, a Sec-WebSocket-Key of 16 bytes in base64, Sec-WebSocket-Version
// 13. Done before authentication, admission or any upstream work, so a request
// the client's accept would refuse costs nothing: every request it passes,
// Beast's accept takes (the fuzz target `upgrade` checks this); it is stricter
// only about the key's form.
std::optional<HttpRefusal> check_upgrade(const UpgradeRequest& req);

// The fields read from the upgrade request that decide what happens next.
struct Route {
  protocol::Endpoint endpoint;
  std::string target;  // path + original query, untouched
  std::string model;
  std::vector<std::pair<std::string, std::string>> params;      // the classifying ones, recorded
  std::vector<std::pair<std::string, std::string>> all_params;  // for the pools' match rules
  double audio_bytes_per_second = 0;
  unsigned audio_block_bytes = 0;  // one sample of every channel; 0: raw format unknown
};

// A route, or the refusal of a request that names no endpoint or is not a
// complete upgrade.
struct RouteResult {
  std::optional<Route> route;
  std::optional<HttpRefusal> refusal;
  bool logged = false;  // a refusal worth a log line: a known endpoint, a bad upgrade
  std::string path;     // the request's path as sent (empty when the target is malformed)
};

// The path names the endpoint, the request must be a complete WebSocket
// upgrade; the query goes upstream untouched.
RouteResult read_route(const UpgradeRequest& req);

// Whether a query parameter classifies a stream (recorded with the session):
// model, format, features; never secrets or URLs.
bool is_classifying(std::string_view key);

}  // namespace sluice::session
