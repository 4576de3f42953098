// Fuzz target `upgrade`: a client's upgrade request from its first byte to
// the pool it is admitted to, as session.cpp's serve() reads it: the request
// line and headers through Beast's parser (fed in reads split at points taken
// from the input, with the configured header limit and no body), the route
// and upgrade check (session/upgrade.hpp), the credential
// (protocol/credential.hpp, both the Authorization and the
// Sec-WebSocket-Protocol forms), the tenant (auth::KeyTable) and the pool
// (admission::Classifier), under one of a few configurations.
//
// What it asserts:
//   - nothing crashes, leaks or trips a sanitizer;
//   - a refusal has a status the gateway answers with (400, 404, 405, 426),
//     a Deepgram-shaped JSON body and the header its status calls for (405:
//     Allow, 426: Upgrade or Sec-WebSocket-Version);
//   - every request the upgrade check passes, Beast's own WebSocket accept
//     takes (so no upstream work is done for a client the accept refuses);
//     the check may refuse what Beast takes only for the key's form (RFC 6455
//     4.2.1: 16 bytes in base64, which Beast does not verify);
//   - a credential has a non-empty secret without whitespace; taken from
//     Sec-WebSocket-Protocol, the subprotocol sluice selects is one the client
//     offered, exactly (RFC 6455 4.1: else the client fails the connection);
//   - a key maps to a tenant only when it is the configured key;
//   - a classified stream's pool exists in the configuration, its rules
//     match the stream, and no earlier pool's do (first match wins); with the
//     default pools every endpoint has one.
#include <boost/asio/io_context.hpp>
#include <boost/beast/_experimental/test/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <boost/json/parse.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "admission/classifier.hpp"
#include "auth/key_table.hpp"
#include "config/config.hpp"
#include "protocol/credential.hpp"
#include "protocol/endpoint.hpp"
#include "session/upgrade.hpp"

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using namespace sluice;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "upgrade oracle: %s\n", what.c_str());
  std::abort();
}
#define CHECK(cond, what)       \
  do {                          \
    if (!(cond)) fail(what);    \
  } while (0)

constexpr std::string_view kKey = "fuzz-known-key-0123456789";

// The configurations a request is read under: the default pools in
// pass-through mode; pools with parameter rules (exact and prefix) and a
// catch-all, with a tenant's key; pools that leave some streams unclassified.
struct Setup {
  config::Config cfg;
  std::vector<config::PoolConfig> pools;
  std::unique_ptr<admission::Classifier> classifier;
  std::unique_ptr<auth::KeyTable> keys;
};

Setup make_setup(const std::string& yaml) {
  Setup s;
  s.cfg = config::parse_config(yaml);
  s.pools = s.cfg.pools.empty() ? config::default_pools() : s.cfg.pools;
  s.classifier = std::make_unique<admission::Classifier>(s.pools);
  s.keys = std::make_unique<auth::KeyTable>(s.cfg.tenants);
  return s;
}

const std::vector<Setup>& setups() {
  static const std::vector<Setup> all = [] {
    std::vector<Setup> v;
    v.push_back(make_setup(""));
    v.push_back(make_setup(R"(
client: {header_limit: 1024}
tenants:
  - name: acme
    keys: [")" + protocol::key_hash(kKey) + R"("]
pools:
  - name: nova
    match: {path: /v1/listen, params: {model: "nova-3*", encoding: linear16}}
  - name: flux
    match: {path: /v2/listen, params: {model: flux*}}
  - name: anything
)"));
    v.push_back(make_setup(R"(
pools:
  - name: speak
    match: {path: /v1/speak}
  - name: german
    match: {params: {language: de}}
)"));
    return v;
  }();
  return all;
}

bool has_header(const session::HttpRefusal& r, std::string_view name) {
  for (const auto& [n, v] : r.headers)
    if (beast::iequals(n, name)) return true;
  return false;
}

void check_refusal(const session::HttpRefusal& r) {
  CHECK(r.status == 400 || r.status == 404 || r.status == 405 || r.status == 426,
        "refusal status " + std::to_string(r.status));
  boost::system::error_code ec;
  auto body = boost::json::parse(r.body, ec);
  CHECK(!ec && body.is_object(), "refusal body is not a JSON object: " + r.body);
  for (auto member : {"err_code", "err_msg", "request_id"})
    CHECK(body.get_object().if_contains(member) && body.get_object().at(member).is_string(),
          std::string("refusal body without ") + member);
  CHECK(!r.dg_error.empty(), "refusal without dg-error");
  if (r.status == 405) CHECK(has_header(r, "Allow"), "405 without Allow");
  if (r.status == 426)
    CHECK(has_header(r, "Upgrade") || has_header(r, "Sec-WebSocket-Version"), "426 without Upgrade");
}

// Beast's WebSocket accept of the request: its error, none when it takes it.
boost::system::error_code beast_accept(const session::UpgradeRequest& req) {
  static boost::asio::io_context ioc;
  beast::test::stream client(ioc), server(ioc);
  server.connect(client);
  websocket::stream<beast::test::stream> ws(std::move(server));
  boost::system::error_code ec;
  ws.accept(req, ec);
  return ec;
}

void check_classified(const Setup& s, const session::Route& route) {
  auto path = protocol::endpoint_path(route.endpoint);
  auto pool = s.classifier->classify(path, route.all_params);
  auto matches = [&](const config::PoolConfig& p) {
    if (!p.match.path.empty() && p.match.path != path) return false;
    for (const auto& [key, pattern] : p.match.params) {
      bool found = false;
      for (const auto& [k, v] : route.all_params)
        if (k == key && admission::pattern_matches(pattern, v)) found = true;
      if (!found) return false;
    }
    return true;
  };
  if (s.cfg.pools.empty()) CHECK(pool.has_value(), "no default pool for " + std::string(path));
  bool earlier = false;
  for (const auto& p : s.pools) {
    if (pool && p.name == *pool) {
      CHECK(!earlier, "pool '" + *pool + "' chosen after an earlier match");
      CHECK(matches(p), "pool '" + *pool + "' whose rules do not match");
      return;
    }
    earlier = earlier || matches(p);
  }
  CHECK(!pool.has_value(), "pool '" + pool.value_or("") + "' is not in the configuration");
  CHECK(!earlier, "unclassified although a pool matches");
}

void check_credential(const Setup& s, const session::UpgradeRequest& req) {
  auto authorization = req[http::field::authorization];
  auto offered = req[http::field::sec_websocket_protocol];
  auto c = protocol::parse_credential(authorization, offered);
  if (!c) return;
  CHECK(!c->secret.empty(), "empty secret");
  CHECK(c->secret.find_first_of(" \t") == std::string::npos, "secret with whitespace");
  CHECK(c->via_subprotocol == !c->subprotocol.empty(), "via_subprotocol without the subprotocol to select");
  if (c->via_subprotocol) {
    // What accept_client selects: it must be one the client offered, exactly.
    bool listed = false;
    for (auto item : http::token_list{offered})
      if (item == c->subprotocol) listed = true;
    CHECK(listed, "selected subprotocol '" + c->subprotocol + "' was not offered: '" + std::string(offered) + "'");
    CHECK(beast::iequals(c->subprotocol, protocol::scheme_word(c->scheme)), "subprotocol is not the scheme word");
  }
  auto tenant = s.keys->tenant_for(c->secret);
  CHECK(tenant.has_value() == (!s.keys->empty() && c->secret == kKey), "a key maps to the wrong tenant");
  CHECK(protocol::fingerprint(c->secret).size() == 12, "fingerprint");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const auto& all = setups();
  const Setup& s = all[data[0] % all.size()];
  const std::size_t step = 1 + (data[1] & 0x7F) * ((data[1] & 0x80) ? 64 : 1);
  const char* bytes = reinterpret_cast<const char*>(data + 2);
  const std::size_t n = size - 2;

  // The request as serve() reads it (http::async_read with the parser below).
  http::request_parser<http::empty_body> parser;
  parser.header_limit(s.cfg.client.header_limit);
  parser.body_limit(0);
  parser.eager(true);
  beast::flat_buffer buffer;
  std::size_t fed = 0;
  boost::system::error_code ec;
  for (;;) {
    if (buffer.size() > 0) {
      ec = {};
      auto used = parser.put(buffer.data(), ec);
      buffer.consume(used);
      if (parser.is_done() || (ec && ec != http::error::need_more)) break;
      if (!ec && used > 0) continue;
    }
    if (fed == n) {
      ec = {};
      parser.put_eof(ec);  // the client stopped sending
      break;
    }
    auto take = std::min(step, n - fed);
    auto b = buffer.prepare(take);
    std::memcpy(b.data(), bytes + fed, take);
    buffer.commit(take);
    fed += take;
  }
  if (!parser.is_done() || ec) return 0;  // a malformed or incomplete request: the 400 or the deadline
  auto req = parser.release();

  auto r = session::read_route(req);
  CHECK(r.route.has_value() != r.refusal.has_value(), "a route and a refusal");
  if (r.refusal) {
    check_refusal(*r.refusal);
    if (r.logged) {
      // Refused by the upgrade check: Beast's accept refuses it too, unless
      // only the key's form is wrong.
      auto accepted = !beast_accept(req);
      bool key_form = r.refusal->dg_error.find("Sec-WebSocket-Key") != std::string::npos;
      CHECK(!accepted || key_form, "refused (" + r.refusal->dg_error + ") what Beast's accept takes");
    }
    return 0;
  }
  auto accept_ec = beast_accept(req);
  CHECK(!accept_ec, "passed the upgrade check but Beast's accept refuses it: " + accept_ec.message());
  CHECK(protocol::endpoint_from_path(r.path) == r.route->endpoint, "endpoint");
  CHECK(r.route->target == std::string_view(req.target()), "target");
  for (const auto& [k, v] : r.route->params) CHECK(session::is_classifying(k), "unclassifying param recorded");
  CHECK(r.route->audio_bytes_per_second >= 0, "bytes per second");
  check_credential(s, req);
  check_classified(s, *r.route);
  return 0;
}
