#include "admin/history_api.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <optional>

#include "history/db.hpp"
#include "history/report.hpp"
#include "history/store.hpp"

namespace sluice::admin {
namespace {

using history::ReportKind;

struct Endpoint {
  std::string_view name;
  ReportKind kind;
  std::vector<std::string_view> params;
};

const std::array<Endpoint, 4>& endpoints() {
  static const std::array<Endpoint, 4> list = {{
      {"sessions", ReportKind::sessions, {"at", "from", "to", "pool", "tenant", "instance", "all", "tz"}},
      {"concurrency", ReportKind::concurrency, {"from", "to", "step", "pool", "tenant", "instance", "tz"}},
      {"peaks", ReportKind::peaks, {"from", "to", "window", "pool", "tenant", "instance", "tz"}},
      {"usage", ReportKind::usage, {"from", "to", "pool", "tenant", "instance", "tz"}},
  }};
  return list;
}

const Endpoint* find_endpoint(std::string_view name) {
  for (const auto& e : endpoints())
    if (e.name == name) return &e;
  return nullptr;
}

HistoryAnswer error(unsigned status, std::string_view code, const std::string& message) {
  HistoryAnswer a;
  a.status = status;
  a.body["error"] = code;
  a.body["message"] = message;
  return a;
}

}  // namespace

bool is_history_endpoint(std::string_view endpoint) { return find_endpoint(endpoint) != nullptr; }

HistoryAnswer history_answer(std::string_view endpoint, const std::vector<std::pair<std::string, std::string>>& params,
                             const std::string& store_url, history::Micros now,
                             std::chrono::steady_clock::duration timeout) {
  const auto* e = find_endpoint(endpoint);
  if (!e) return error(404, "not_found", fmt::format("no history endpoint '{}' (known: sessions, concurrency, peaks, usage)", endpoint));
  history::ReportArgs args;
  for (const auto& [key, value] : params) {
    if (std::find(e->params.begin(), e->params.end(), key) == e->params.end())
      return error(400, "bad_request", fmt::format("unknown parameter '{}' (known: {})", key, fmt::join(e->params, ", ")));
    if (key == "at") args.at = value;
    else if (key == "from") args.from = value;
    else if (key == "to") args.to = value;
    else if (key == "step") args.step = value;
    else if (key == "window") args.window = value;
    else if (key == "pool") args.pool = value;
    else if (key == "tenant") args.tenant = value;
    else if (key == "instance") args.instance = value;
    else if (key == "tz") args.tz = value;
    else if (key == "all") {
      if (value.empty() || value == "true" || value == "1") args.all = true;
      else if (value == "false" || value == "0") args.all = false;
      else return error(400, "bad_request", "all must be true or false; got '" + value + "'");
    }
  }
  history::ReportRequest request;
  try {
    request = history::parse_report_request(e->kind, args, now, "");
  } catch (const history::QueryError& ex) {
    return error(400, "bad_request", ex.what());
  }
  try {
    history::OpenOptions options;
    options.read_only = true;
    if (timeout > timeout.zero()) options.deadline = std::chrono::steady_clock::now() + timeout;
    history::Store store(store_url, options);
    HistoryAnswer a;
    a.body = history::run_report(store, request, now);
    return a;
  } catch (const history::QueryError& ex) {
    return error(400, "bad_request", ex.what());
  } catch (const history::DeadlineExceeded&) {
    return error(503, "query_timeout",
                 fmt::format("the query ran longer than store.query_timeout ({:g} s) and was stopped; ask for a "
                             "shorter range or filter by pool or tenant",
                             std::chrono::duration<double>(timeout).count()));
  } catch (const std::exception& ex) {
    return error(503, "history_unavailable",
                 fmt::format("cannot read the history at {}: {}", history::redact_url(store_url), ex.what()));
  }
}

}  // namespace sluice::admin
