#include "admin/admin_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/url/parse.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <chrono>
#include <functional>
#include <variant>

#include "admin/dashboard_assets.hpp"
#include "admin/event_stream.hpp"
#include "admin/history_api.hpp"
#include "admin/metrics.hpp"
#include "admin/sessions_json.hpp"
#include "admission/controller.hpp"
#include "cluster/fleet_reader.hpp"
#include "events/event_log.hpp"
#include "history/timespec.hpp"
#include "net/listener.hpp"
#include "protocol/credential.hpp"
#include "util/json_text.hpp"
#include "util/time_json.hpp"

namespace sluice::admin {

struct HistoryQueries {
  // Two threads: a long query does not hold up the next, and the machine's
  // I/O threads keep their cores.
  boost::asio::thread_pool pool{2};
  // Queries running or waiting. Past the limit a request is answered 503 at
  // once rather than queued behind minutes of work.
  std::atomic<int> pending{0};
  static constexpr int kLimit = 16;
  std::atomic<std::uint64_t> refused_total{0};
  std::atomic<std::uint64_t> timed_out_total{0};

  HistoryQueryStats stats() const {
    return {pending.load(std::memory_order_relaxed), kLimit, refused_total.load(std::memory_order_relaxed),
            timed_out_total.load(std::memory_order_relaxed)};
  }
};

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;
// Work that must not run on the I/O thread (a history query), and what
// routing a request gives: a response at once, or such work.
using Job = std::function<Response()>;
// GET /api/v1/stream, authorized: the connection becomes an event stream.
struct EventStream {};
using Routed = std::variant<Response, Job, EventStream>;

Response json_response(const Request& req, http::status status, const json::value& body) {
  Response res{status, req.version()};
  res.set(http::field::server, "sluice-admin");
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  res.keep_alive(req.keep_alive());
  res.body() = util::json_text(body) + "\n";  // 5, 0.25: numbers as people write them
  res.prepare_payload();
  return res;
}

Response error_response(const Request& req, http::status status, std::string_view code, std::string_view message) {
  json::object o;
  o["error"] = code;
  o["message"] = message;
  auto res = json_response(req, status, o);
  if (status == http::status::unauthorized) res.set(http::field::www_authenticate, "Bearer realm=\"sluice-admin\"");
  return res;
}

bool authorized(const Request& req, const std::string& token) {
  auto header = req[http::field::authorization];
  constexpr std::string_view prefix = "Bearer ";
  if (header.size() <= prefix.size()) return false;
  std::string scheme(header.substr(0, prefix.size()));
  for (auto& ch : scheme) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (scheme != "bearer ") return false;
  // Compare hashes so the comparison takes the same time whatever the length.
  return protocol::constant_time_equal(protocol::key_hash(header.substr(prefix.size())), protocol::key_hash(token));
}

std::optional<double> parse_number(std::string_view s) {
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

// Unix seconds, or the history's time syntax (RFC 3339, now, -2h, ...), to
// ns since the epoch; nullopt when it is neither.
// Times past what ns since the epoch hold in 64 bits (April 2262) are
// nullopt too: the product would overflow.
std::optional<std::int64_t> parse_time(const std::string& text) {
  constexpr std::int64_t kMaxUs = std::numeric_limits<std::int64_t>::max() / 1000;
  if (auto n = parse_number(text)) {
    if (*n >= static_cast<double>(kMaxUs) / 1e6) return std::nullopt;
    return static_cast<std::int64_t>(*n * 1e9);
  }
  try {
    auto now = registry::wall_ns() / 1000;
    auto us = history::parse_time(text, now);
    if (us > kMaxUs || us < -kMaxUs) return std::nullopt;
    return us * 1000;
  } catch (const history::TimeError&) {
    return std::nullopt;
  }
}

class Handler {
 public:
  Handler(AdminDeps& deps, HistoryQueries& queries, const std::shared_ptr<StreamHub>& hub)
      : deps_(deps), queries_(queries), hub_(hub) {}

  Routed handle(const Request& req) {
    auto url = boost::urls::parse_origin_form(req.target());
    if (!url) return error_response(req, http::status::bad_request, "bad_request", "malformed request target");
    std::string path = url->path();
    if (path == "/healthz") return text(req, http::status::ok, "ok\n");
    if (path == "/metrics") {
      auto history = queries_.stats();
      MetricsOptions options;
      options.per_tenant = deps_.metrics_per_tenant && deps_.metrics_per_tenant->load(std::memory_order_relaxed);
      options.events = deps_.event_counters.get();
      options.queries = deps_.store_url.empty() ? nullptr : &history;
      options.event_streams = hub_->clients();
      ClusterFigures cluster;
      if (deps_.cluster_figures) {
        cluster = deps_.cluster_figures();
        options.cluster = &cluster;
      }
      auto res = text(req, http::status::ok,
                      render_metrics(*deps_.registry, *deps_.admission, deps_.recorder.get(), options));
      res.set(http::field::content_type, "text/plain; version=0.0.4");
      return res;
    }
    if (path == "/readyz") {
      if (!deps_.ready.load()) return text(req, http::status::service_unavailable, "not ready\n");
      if (deps_.cluster_figures && !deps_.cluster_figures().redis_up)
        return deps_.refuse_without_redis
                   ? text(req, http::status::service_unavailable, "not ready: the fleet's Redis cannot be reached\n")
                   : text(req, http::status::ok, "degraded: the fleet's Redis cannot be reached; admitting on the local share\n");
      return text(req, http::status::ok, "ready\n");
    }
    // The dashboard's page, script and style: public (they hold no data; the
    // page asks for the token and sends it with every API call).
    if (auto* asset = find_dashboard_asset(path);
        asset && (req.method() == http::verb::get || req.method() == http::verb::head))
      return dashboard_file(req, *asset);
    if (!path.starts_with("/api/"))
      return error_response(req, http::status::not_found, "not_found", "no such path: " + path);
    if (!authorized(req, deps_.token))
      return error_response(req, http::status::unauthorized, "unauthorized",
                            "send Authorization: Bearer <admin token> (SLUICE_ADMIN_TOKEN / admin.token)");
    if (path == "/api/v1/sessions") {
      if (req.method() != http::verb::get) return method_not_allowed(req, "GET");
      return list_sessions(req, *url);
    }
    if (path == "/api/v1/stream") {
      if (req.method() != http::verb::get) return method_not_allowed(req, "GET");
      return EventStream{};
    }
    constexpr std::string_view prefix = "/api/v1/sessions/";
    if (path.starts_with(prefix)) {
      auto id_text = std::string_view(path).substr(prefix.size());
      registry::SessionId id = 0;
      auto [p, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
      if (ec != std::errc() || p != id_text.data() + id_text.size())
        return error_response(req, http::status::bad_request, "bad_request",
                              "session id must be a number, got '" + std::string(id_text) + "'");
      // Another instance's session (cluster mode): ?instance=NAME.
      std::string instance;
      for (auto p : url->params())
        if (p.key == "instance") instance = p.value;
        else
          return error_response(req, http::status::bad_request, "bad_request",
                                "unknown parameter '" + p.key + "' (known: instance)");
      if (!instance.empty() && instance != deps_.instance) {
        if (!deps_.fleet)
          return error_response(req, http::status::bad_request, "bad_request",
                                "instance=" + instance + " names another gateway, and cluster mode is off "
                                "(cluster.redis_url)");
        if (req.method() == http::verb::get) return remote_session(req, instance, id);
        if (req.method() == http::verb::delete_) return end_remote_session(req, instance, id);
        return method_not_allowed(req, "GET, DELETE");
      }
      auto entry = deps_.registry->find(id);
      if (!entry)
        return error_response(req, http::status::not_found, "not_found",
                              "no open session " + std::string(id_text));
      if (req.method() == http::verb::get)
        return json_response(req, http::status::ok, session_json(*deps_.registry, *entry, registry::mono_ns()));
      if (req.method() == http::verb::delete_) {
        bool relaying = entry->request_end();
        json::object o;
        o["id"] = id;
        if (deps_.fleet) o["instance"] = deps_.instance;
        // A stream still queued or connecting ends as soon as it opens.
        o["status"] = relaying ? "closing" : "closing_when_open";
        return json_response(req, http::status::accepted, o);
      }
      return method_not_allowed(req, "GET, DELETE");
    }
    if (path == "/api/v1/pools") {
      if (req.method() != http::verb::get) return method_not_allowed(req, "GET");
      if (deps_.fleet) return fleet_pools(req);
      return json_response(req, http::status::ok, pools_json());
    }
    constexpr std::string_view pools_prefix = "/api/v1/pools/";
    if (path.starts_with(pools_prefix)) {
      auto name = path.substr(pools_prefix.size());
      if (req.method() == http::verb::get) {
        auto st = deps_.admission->status(name);
        if (!st) return error_response(req, http::status::not_found, "not_found", "no pool named '" + name + "'");
        return json_response(req, http::status::ok, pool_json(*st));
      }
      if (req.method() != http::verb::put) return method_not_allowed(req, "GET, PUT");
      boost::system::error_code ec;
      auto body = json::parse(req.body(), ec);
      const json::value* limit = (!ec && body.is_object()) ? body.as_object().if_contains("limit") : nullptr;
      if (!limit || !limit->is_int64() || limit->as_int64() < 1 || limit->as_int64() > 1000000)
        return error_response(req, http::status::bad_request, "bad_request",
                              "expected a JSON body {\"limit\": N} with N between 1 and 1000000");
      if (!deps_.admission->set_limit(name, static_cast<int>(limit->as_int64())))
        return error_response(req, http::status::not_found, "not_found", "no pool named '" + name + "'");
      json::object ev;
      ev["pool"] = name;
      ev["limit"] = limit->as_int64();
      ev["source"] = "api";
      deps_.events->record("limit_change", std::move(ev));
      spdlog::info("pool '{}': limit set to {} through the admin API", name, limit->as_int64());
      return json_response(req, http::status::ok, pool_json(*deps_.admission->status(name)));
    }
    constexpr std::string_view history_prefix = "/api/v1/history/";
    if (path.starts_with(history_prefix)) return history_request(req, *url, path.substr(history_prefix.size()));
    if (path == "/api/v1/events") {
      if (req.method() != http::verb::get) return method_not_allowed(req, "GET");
      events::EventFilter f;
      for (auto p : url->params()) {
        if (p.key == "type") f.type = p.value;
        else if (p.key == "since" || p.key == "until") {
          auto t = parse_time(p.value);
          if (!t)
            return error_response(req, http::status::bad_request, "bad_request",
                                  p.key + " must be RFC 3339 (2026-11-22T20:15:03Z), a relative time (-2h) or Unix seconds; got '" +
                                      p.value + "'");
          (p.key == "since" ? f.since_ns : f.until_ns) = *t;
        } else if (p.key == "limit") {
          auto v = parse_number(p.value);
          if (!v || *v < 1 || *v > 1e6 || *v != std::floor(*v))
            return error_response(req, http::status::bad_request, "bad_request",
                                  "limit must be a whole number between 1 and 1000000");
          f.limit = static_cast<std::size_t>(*v);
        } else {
          return error_response(req, http::status::bad_request, "bad_request",
                                "unknown filter '" + p.key + "' (known: type, since, until, limit)");
        }
      }
      json::array list;
      for (const auto& e : deps_.events->list(f)) list.push_back(events::to_json(e));
      json::object o;
      o["count"] = list.size();
      o["events"] = std::move(list);
      return json_response(req, http::status::ok, o);
    }
    return error_response(req, http::status::not_found, "not_found", "no such path: " + path);
  }

  // The stream's periodic frame: what GET /api/v1/pools and GET
  // /api/v1/sessions answer, with the time and readiness.
  std::string snapshot_frame() {
    auto o = pools_json();
    auto now = registry::mono_ns();
    json::array sessions;
    for (const auto& e : deps_.registry->list()) sessions.push_back(session_json(*deps_.registry, *e, now));
    o["sessions"] = std::move(sessions);
    o["time"] = util::time_json(registry::wall_ns());
    o["ready"] = deps_.ready.load();
    return sse_frame("snapshot", util::json_text(o));
  }

 private:
  json::object pools_json() {
    json::array pools;
    for (const auto& p : deps_.admission->status()) pools.push_back(pool_json(p));
    json::object o;
    o["pools"] = std::move(pools);
    o["leases"] = deps_.admission->leases_in_use();
    return o;
  }

  Response dashboard_file(const Request& req, const DashboardAsset& asset) {
    Response res{http::status::ok, req.version()};
    res.set(http::field::server, "sluice-admin");
    res.set(http::field::content_type, asset.content_type);
    // Fetched again on each load, so a new binary's page is seen at once.
    res.set(http::field::cache_control, "no-cache");
    res.set("Content-Security-Policy",
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'");
    res.set("X-Content-Type-Options", "nosniff");
    res.set("Referrer-Policy", "no-referrer");
    res.keep_alive(req.keep_alive());
    if (req.method() == http::verb::get) res.body() = std::string(asset.body);
    res.prepare_payload();
    if (req.method() == http::verb::head) res.content_length(asset.body.size());
    return res;
  }

  static json::object pool_json(const admission::PoolStatus& p) {
    json::object o;
    o["name"] = p.name;
    o["limit"] = p.limit;
    o["effective_limit"] = p.effective_limit;
    o["in_use"] = p.in_use;
    o["queued"] = p.queued;
    json::object tenants;
    for (const auto& [t, n] : p.tenants_in_use) tenants[t] = n;
    o["tenants"] = std::move(tenants);
    json::object match;
    if (!p.config.match.path.empty()) match["path"] = p.config.match.path;
    json::object params;
    for (const auto& [k, v] : p.config.match.params) params[k] = v;
    if (!params.empty()) match["params"] = std::move(params);
    o["match"] = std::move(match);
    o["queue_timeout_seconds"] = p.config.queue_timeout.count();
    o["max_queue"] = p.config.max_queue;
    o["idle_close_after_seconds"] = p.config.idle_close_after.count();
    o["liveness_timeout_seconds"] = p.config.liveness_timeout.count();
    o["max_duration_seconds"] = p.config.max_duration.count();
    {
      const auto& r = p.config.resume;
      json::object resume;
      resume["enabled"] = r.enabled;
      resume["buffer_seconds"] = r.buffer.count();
      resume["max_attempts"] = r.max_attempts;
      resume["max_resumes"] = r.max_resumes;
      resume["replay_speed"] = r.replay_speed;
      o["resume"] = std::move(resume);
    }
    o["admitted_total"] = p.admitted_total;
    o["refused_total"] = p.refused_total;
    o["upstream_429_total"] = p.upstream_429_total;
    o["upstream_open"] = p.upstream_open;
    o["cooling"] = p.cooling;
    o["release_delay_seconds"] = std::round(p.release_delay_seconds * 1000) / 1000;
    o["release_delay_source"] = p.release_delay_configured ? "configured"
                                : p.release_delay_lower_seconds ? "learned"
                                                                : "none";
    auto bound = [](const std::optional<double>& v) {
      return v ? json::value(std::round(*v * 1000) / 1000) : json::value(nullptr);
    };
    o["release_delay_lower_seconds"] = bound(p.release_delay_lower_seconds);
    o["release_delay_upper_seconds"] = bound(p.release_delay_upper_seconds);
    return o;
  }

  Response text(const Request& req, http::status status, std::string body) {
    Response res{status, req.version()};
    res.set(http::field::content_type, "text/plain");
    res.keep_alive(req.keep_alive());
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
  }

  Response method_not_allowed(const Request& req, std::string_view allow) {
    auto res = error_response(req, http::status::method_not_allowed, "method_not_allowed",
                              "allowed: " + std::string(allow));
    res.set(http::field::allow, allow);
    return res;
  }

  Routed list_sessions(const Request& req, const boost::urls::url_view& url) {
    registry::SessionFilter f;
    bool cluster = false;
    for (auto p : url.params()) {
      if (p.key == "scope") {
        if (p.value != "local" && p.value != "cluster")
          return error_response(req, http::status::bad_request, "bad_request",
                                "scope must be local (this gateway) or cluster (the fleet); got '" + p.value + "'");
        cluster = p.value == "cluster";
        if (cluster && !deps_.fleet)
          return error_response(req, http::status::bad_request, "bad_request",
                                "scope=cluster needs cluster mode (cluster.redis_url); this gateway runs alone");
      } else if (p.key == "tenant") f.tenant = p.value;
      else if (p.key == "pool") f.pool = p.value;
      else if (p.key == "path") f.path = p.value;
      else if (p.key == "state") {
        if (p.value != "queued" && p.value != "connecting" && p.value != "open" && p.value != "idle" &&
            p.value != "closing")
          return error_response(req, http::status::bad_request, "bad_request",
                                "state must be one of queued, connecting, open, idle, closing; got '" + p.value + "'");
        f.state = p.value;
      } else if (p.key == "idle_for") {
        auto v = parse_number(p.value);
        if (!v)
          return error_response(req, http::status::bad_request, "bad_request",
                                "idle_for must be a non-negative number of seconds; got '" + p.value + "'");
        f.idle_for = v;
      } else {
        return error_response(req, http::status::bad_request, "bad_request",
                              "unknown filter '" + p.key + "' (known: scope, tenant, pool, path, state, idle_for)");
      }
    }
    if (cluster) return fleet_sessions(req, f);
    auto now = registry::mono_ns();
    json::array sessions;
    for (const auto& e : deps_.registry->list(f)) sessions.push_back(session_json(*deps_.registry, *e, now));
    json::object o;
    o["count"] = sessions.size();
    o["sessions"] = std::move(sessions);
    return json_response(req, http::status::ok, o);
  }

  // --- The fleet view (cluster mode), on the query threads: Redis is asked
  // there, never on the I/O thread. Redis out of reach is a 503.

  static Request head_of(const Request& req) {
    Request head{http::verb::get, "", req.version()};
    head.keep_alive(req.keep_alive());
    return head;
  }

  static Response fleet_unavailable(const Request& head, const std::exception& e) {
    return error_response(head, http::status::service_unavailable, "cluster_unavailable",
                          std::string("the fleet's Redis cannot be asked: ") + e.what());
  }

  // A published session (JSON) passes the list's filters.
  static bool matches(const json::object& s, const registry::SessionFilter& f) {
    auto text = [&](const char* key) -> std::string {
      const auto* v = s.if_contains(key);
      return v && v->is_string() ? std::string(v->as_string()) : std::string();
    };
    if (f.tenant && text("tenant") != *f.tenant) return false;
    if (f.pool && text("pool") != *f.pool) return false;
    if (f.path && text("path") != *f.path) return false;
    if (f.state && text("state") != *f.state) return false;
    if (f.idle_for) {
      const auto* idle = s.if_contains("idle_seconds");
      if (!idle || !idle->is_number() || idle->to_number<double>() < *f.idle_for) return false;
    }
    return true;
  }

  Routed fleet_sessions(const Request& req, registry::SessionFilter f) {
    return Job([this, head = head_of(req), f = std::move(f)] {
      try {
        auto published = deps_.fleet->sessions();
        json::array sessions, instances;
        auto add_instance = [&](const std::string& name, std::size_t n, double age) {
          json::object i;
          i["instance"] = name;
          i["sessions"] = n;
          i["age_seconds"] = age;
          instances.push_back(std::move(i));
        };
        // This instance's own, live rather than as last published.
        auto now = registry::mono_ns();
        std::size_t mine = 0;
        for (const auto& e : deps_.registry->list(f)) {
          auto o = session_json(*deps_.registry, *e, now);
          o["instance"] = deps_.instance;
          sessions.push_back(std::move(o));
          ++mine;
        }
        add_instance(deps_.instance, mine, 0);
        for (const auto& p : published) {
          if (p.instance == deps_.instance) continue;
          boost::system::error_code ec;
          auto list = json::parse(p.sessions_json, ec);
          if (ec || !list.is_array()) continue;
          std::size_t n = 0;
          for (auto& v : list.as_array()) {
            if (!v.is_object() || !matches(v.as_object(), f)) continue;
            auto o = std::move(v.as_object());
            o["instance"] = p.instance;
            sessions.push_back(std::move(o));
            ++n;
          }
          add_instance(p.instance, n, static_cast<double>(p.age_ms) / 1000.0);
        }
        json::object o;
        o["scope"] = "cluster";
        o["count"] = sessions.size();
        o["sessions"] = std::move(sessions);
        o["instances"] = std::move(instances);
        return json_response(head, http::status::ok, o);
      } catch (const std::exception& e) {
        return fleet_unavailable(head, e);
      }
    });
  }

  Routed remote_session(const Request& req, const std::string& instance, registry::SessionId id) {
    return Job([this, head = head_of(req), instance, id] {
      try {
        for (const auto& p : deps_.fleet->sessions()) {
          if (p.instance != instance) continue;
          boost::system::error_code ec;
          auto list = json::parse(p.sessions_json, ec);
          if (ec || !list.is_array()) break;
          for (auto& v : list.as_array()) {
            const auto* sid = v.is_object() ? v.as_object().if_contains("id") : nullptr;
            if (!sid || !sid->is_number() || sid->to_number<registry::SessionId>() != id) continue;
            auto o = std::move(v.as_object());
            o["instance"] = instance;
            return json_response(head, http::status::ok, o);
          }
          return error_response(head, http::status::not_found, "not_found",
                                "no open session " + std::to_string(id) + " on instance '" + instance + "'");
        }
        return error_response(head, http::status::not_found, "not_found",
                              "no instance '" + instance + "' publishes its sessions to the fleet");
      } catch (const std::exception& e) {
        return fleet_unavailable(head, e);
      }
    });
  }

  Routed end_remote_session(const Request& req, const std::string& instance, registry::SessionId id) {
    return Job([this, head = head_of(req), instance, id] {
      try {
        if (deps_.fleet->end_session(instance, std::to_string(id)) == 0)
          return error_response(head, http::status::not_found, "not_found",
                                "no instance '" + instance + "' is listening in the fleet");
        json::object o;
        o["id"] = id;
        o["instance"] = instance;
        // That instance ends it as DELETE there would: gracefully, or as
        // soon as it opens; an id it does not hold is ignored there.
        o["status"] = "requested";
        return json_response(head, http::status::accepted, o);
      } catch (const std::exception& e) {
        return fleet_unavailable(head, e);
      }
    });
  }

  // This instance's pools, each with the fleet's use of it: leases in the
  // fleet, per instance, and places on the fleet's wait list. Redis out of
  // reach leaves "fleet" null, with the reason, rather than no answer.
  Routed fleet_pools(const Request& req) {
    return Job([this, head = head_of(req)] {
      auto o = pools_json();
      std::vector<std::pair<std::string, std::optional<std::chrono::milliseconds>>> names;
      for (const auto& p : o.at("pools").as_array()) {
        std::string name(p.at("name").as_string());
        auto pc = deps_.admission->pool_config(name);
        std::optional<std::chrono::milliseconds> configured;
        if (pc && pc->release_delay) configured = std::chrono::duration_cast<std::chrono::milliseconds>(*pc->release_delay);
        names.emplace_back(std::move(name), configured);
      }
      try {
        auto use = deps_.fleet->pools(names);
        int total = 0;
        for (auto& p : o.at("pools").as_array()) {
          const auto name = std::string(p.at("name").as_string());
          auto it = std::find_if(use.begin(), use.end(), [&](const auto& u) { return u.pool == name; });
          if (it == use.end()) continue;
          json::object fleet, by;
          fleet["in_use"] = it->in_use;
          fleet["waiting"] = it->waiting;
          fleet["effective_limit"] = it->lowered_limit ? json::value(*it->lowered_limit) : p.at("limit");
          fleet["cooling"] = it->delay.cooling;
          fleet["release_delay_seconds"] = static_cast<double>(it->delay.delay.count()) / 1000;
          for (const auto& [instance, n] : it->by_instance) by[instance] = n;
          fleet["instances"] = std::move(by);
          p.as_object()["fleet"] = std::move(fleet);
          total += it->in_use;
        }
        o["fleet_leases"] = total;
      } catch (const std::exception& e) {
        for (auto& p : o.at("pools").as_array()) p.as_object()["fleet"] = nullptr;
        o["fleet_leases"] = nullptr;
        o["fleet_error"] = std::string("the fleet's Redis cannot be asked: ") + e.what();
      }
      o["instance"] = deps_.instance;
      return json_response(head, http::status::ok, o);
    });
  }

  Routed history_request(const Request& req, const boost::urls::url_view& url, const std::string& endpoint) {
    if (!is_history_endpoint(endpoint))
      return error_response(req, http::status::not_found, "not_found",
                            "no history endpoint '" + endpoint + "' (known: sessions, concurrency, peaks, usage)");
    if (req.method() != http::verb::get) return method_not_allowed(req, "GET");
    if (deps_.store_url.empty())
      return error_response(req, http::status::not_found, "history_disabled",
                            "the history is disabled on this gateway (store.enabled is false)");
    std::vector<std::pair<std::string, std::string>> params;
    for (auto p : url.params()) params.emplace_back(p.key, p.value);
    Request head{http::verb::get, "", req.version()};
    head.keep_alive(req.keep_alive());
    return Job([head = std::move(head), endpoint, params = std::move(params), store_url = deps_.store_url,
                timeout = deps_.query_timeout, &queries = queries_] {
      auto now = registry::wall_ns() / 1000;
      try {
        auto answer = history_answer(endpoint, params, store_url, now, timeout);
        if (const auto* e = answer.body.if_contains("error"); e && e->is_string() && e->get_string() == "query_timeout")
          queries.timed_out_total.fetch_add(1, std::memory_order_relaxed);
        return json_response(head, static_cast<http::status>(answer.status), answer.body);
      } catch (const std::exception& e) {
        return error_response(head, http::status::internal_server_error, "internal_error", e.what());
      }
    });
  }

  AdminDeps& deps_;
  HistoryQueries& queries_;
  std::shared_ptr<StreamHub> hub_;
};


// Runs `job` on the pool and completes with its response on the caller's
// executor (kept busy meanwhile). `job` is moved from when the operation
// starts. A plain operation rather than a coroutine lambda: GCC 12 mishandles
// non-trivial temporaries in a co_await expression.
template <typename Token>
auto async_run(HistoryQueries& queries, Job& job, Token&& token) {
  return asio::async_initiate<Token, void(Response)>(
      [&queries, &job](auto handler) {
        auto work = asio::make_work_guard(asio::get_associated_executor(handler));
        asio::post(queries.pool, [&queries, handler = std::move(handler), work = std::move(work),
                                  job = std::move(job)]() mutable {
          auto res = job();
          queries.pending.fetch_sub(1, std::memory_order_relaxed);
          auto ex = work.get_executor();
          asio::dispatch(ex, [handler = std::move(handler), res = std::move(res)]() mutable {
            std::move(handler)(std::move(res));
          });
          work.reset();
        });
      },
      token);
}

asio::awaitable<void> serve_admin(tcp::socket socket, AdminDeps& deps, HistoryQueries& queries,
                                  std::shared_ptr<StreamHub> hub) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  Handler handler(deps, queries, hub);
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(16 * 1024);
    parser.body_limit(1024 * 1024);
    stream.expires_after(std::chrono::seconds(60));
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_tuple);
    (void)n;
    if (ec) break;
    auto req = parser.release();
    auto routed = handler.handle(req);
    if (std::holds_alternative<EventStream>(routed)) {
      // The connection is the stream's until it ends; then it closes.
      const std::function<std::string()> snapshot = [&handler] { return handler.snapshot_frame(); };
      co_await serve_event_stream(stream, req.version(), *hub, snapshot);
      break;
    }
    Response res;
    if (auto* job = std::get_if<Job>(&routed)) {
      if (queries.pending.fetch_add(1, std::memory_order_relaxed) >= HistoryQueries::kLimit) {
        queries.pending.fetch_sub(1, std::memory_order_relaxed);
        queries.refused_total.fetch_add(1, std::memory_order_relaxed);
        res = error_response(req, http::status::service_unavailable, "history_busy",
                             std::to_string(HistoryQueries::kLimit) +
                                 " history queries are already running or waiting; try again when they have finished");
        res.set(http::field::retry_after, "5");
      } else {
        res = co_await async_run(queries, *job, asio::use_awaitable);
      }
    } else {
      res = std::move(std::get<Response>(routed));
    }
    bool keep = res.keep_alive();
    auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
    (void)wn;
    if (wec || !keep) break;
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

}  // namespace

AdminServer::AdminServer(asio::io_context& ioc, const tcp::endpoint& listen, AdminDeps deps)
    : deps_(std::move(deps)), history_(std::make_unique<HistoryQueries>()), streams_(std::make_shared<StreamHub>()) {
  // Every event to every stream, as it is recorded.
  deps_.events->subscribe([hub = std::weak_ptr<StreamHub>(streams_)](const events::Event& e) {
    if (auto h = hub.lock()) h->publish(sse_frame("event", util::json_text(events::to_json(e)), e.id));
  });
  listener_ = std::make_unique<net::Listener>(
      ioc, listen, [this](tcp::socket s) { return serve_admin(std::move(s), deps_, *history_, streams_); }, "admin");
}

// Queries under way finish first (each within store.query_timeout): their
// answers go to the I/O executor, which outlives this server.
AdminServer::~AdminServer() { history_->pool.join(); }
void AdminServer::start() { listener_->start(); }
// The event streams end too: each sends its last chunk and closes.
void AdminServer::stop() {
  listener_->stop();
  streams_->stop();
}
tcp::endpoint AdminServer::endpoint() const { return listener_->local_endpoint(); }

}  // namespace sluice::admin
