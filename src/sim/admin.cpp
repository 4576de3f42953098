// The admin listener: GET /state, POST /reset-max, GET|POST /drops, GET /healthz.
#include "sim/admin.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>
#include <spdlog/spdlog.h>

#include <cmath>

#include "sim/sim_core.hpp"

namespace sluice::sim {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;

static json::array drops_to_json(const std::vector<SimDrop>& drops) {
  json::array out;
  for (const auto& d : drops) {
    json::object o;
    o["stream"] = d.stream;
    o["request_id"] = d.request_id;
    o["family"] = protocol::family_name(d.family);
    o["audio_seconds"] = std::round(d.audio_seconds * 1e6) / 1e6;
    o["after_seconds"] = std::round(d.after_seconds * 1e3) / 1e3;
    o["how"] = drop_how_name(d.how);
    o["random"] = d.random;
    out.push_back(std::move(o));
  }
  return out;
}

std::string stats_to_json(const SimStats& stats) {
  json::object projects;
  for (const auto& [name, families] : stats.projects) {
    json::object per_family;
    for (const auto& [family, c] : families) {
      json::object counts;
      counts["open"] = c.open;
      counts["max_open"] = c.max_open;
      counts["accepted"] = c.accepted;
      counts["refused_429"] = c.refused_429;
      per_family[protocol::family_name(family)] = std::move(counts);
    }
    projects[name] = std::move(per_family);
  }
  json::object o;
  o["projects"] = std::move(projects);
  o["handshakes"] = stats.handshakes;
  o["unauthorized"] = stats.unauthorized;
  o["streams"] = stats.streams;
  o["drops"] = drops_to_json(stats.drops);
  return json::serialize(o);
}

namespace {

http::response<http::string_body> answer(SimCore& core, const http::request<http::string_body>& req) {
  http::response<http::string_body> res{http::status::ok, req.version()};
  res.set(http::field::server, "sluice-sim");
  res.set(http::field::content_type, "application/json");
  res.keep_alive(req.keep_alive());
  auto url = boost::urls::parse_origin_form(req.target());
  std::string path = url ? std::string(url->path()) : std::string();
  auto method_not_allowed = [&](std::string_view allow) {
    res.result(http::status::method_not_allowed);
    res.set(http::field::allow, allow);
    res.body() = R"({"error":"method not allowed"})";
  };
  if (path == "/state") {
    if (req.method() != http::verb::get) method_not_allowed("GET");
    else res.body() = stats_to_json(core.accounting->snapshot());
  } else if (path == "/reset-max") {
    if (req.method() != http::verb::post) method_not_allowed("POST");
    else {
      core.accounting->reset_max();
      res.body() = stats_to_json(core.accounting->snapshot());
    }
  } else if (path == "/drops") {
    // GET: the streams dropped so far; POST {"at": "CUE"}: arm a cue (the
    // text form of --drop-at; STREAM may be "next", the next stream accepted).
    if (req.method() == http::verb::get) {
      json::object o;
      o["streams"] = core.streams.load();
      o["drops"] = drops_to_json(core.drops->records());
      res.body() = json::serialize(o);
    } else if (req.method() == http::verb::post) {
      std::string spec;
      boost::system::error_code ec;
      auto body = json::parse(req.body(), ec);
      if (!ec && body.is_object() && body.as_object().contains("at") && body.as_object().at("at").is_string())
        spec = std::string(body.as_object().at("at").as_string());
      if (spec.starts_with("next@")) spec = std::to_string(core.streams.load() + 1) + spec.substr(4);
      auto cue = spec.empty() ? DropCueParse{std::nullopt, "expected a JSON body {\"at\": \"CUE\"}"}
                              : parse_drop_cue(spec);
      if (!cue.cue) {
        res.result(http::status::bad_request);
        json::object e;
        e["error"] = cue.error;
        res.body() = json::serialize(e);
      } else {
        core.drops->add(*cue.cue);
        json::object o;
        o["armed"] = format_drop_cue(*cue.cue);
        res.body() = json::serialize(o);
      }
    } else {
      method_not_allowed("GET, POST");
    }
  } else if (path == "/healthz") {
    if (req.method() != http::verb::get) method_not_allowed("GET");
    else res.body() = R"({"status":"ok"})";
  } else {
    res.result(http::status::not_found);
    res.body() = R"({"error":"not found; try GET /state, POST /reset-max, GET|POST /drops or GET /healthz"})";
  }
  res.prepare_payload();
  return res;
}

}  // namespace

asio::awaitable<void> serve_admin_connection(std::shared_ptr<SimCore> core, asio::ip::tcp::socket socket) {
  constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
  beast::tcp_stream stream(std::move(socket));
  ConnectionSet::StopFn stop = [&stream] {
    boost::system::error_code ec;
    stream.socket().close(ec);
  };
  auto registration = core->connections->add(stream.get_executor(), &stop);
  if (!registration) co_return;
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(64 * 1024);
    stream.expires_after(std::chrono::seconds(60));
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_nothrow);
    if (ec) break;
    auto req = parser.release();
    auto res = answer(*core, req);
    bool keep_alive = res.keep_alive();
    auto [wec, wn] = co_await http::async_write(stream, res, use_nothrow);
    if (wec || !keep_alive) break;
  }
  boost::system::error_code ec;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
}

}  // namespace sluice::sim
