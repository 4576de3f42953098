#pragma once
// The admin API's history endpoints, GET /api/v1/history/{sessions,
// concurrency,peaks,usage}: query parameters to a report (history/report.hpp,
// the same answers as the command line), run on a read-only Store opened for
// the one request. Blocking: the admin server runs it off its I/O thread.
#include <boost/json/object.hpp>

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "history/records.hpp"

namespace sluice::admin {

struct HistoryAnswer {
  unsigned status = 200;        // 200; 400 bad parameter; 404 unknown endpoint; 503 database unreadable or
                                // the query ran past `timeout`
  boost::json::object body;     // the report, or {"error": code, "message": what was expected}
};

// True for sessions, concurrency, peaks and usage.
bool is_history_endpoint(std::string_view endpoint);

// `endpoint` is the path's last segment; `params` the decoded query
// parameters in order. Never throws for bad input: that is a 400 answer.
// The database work is stopped once `timeout` has passed (zero: no limit),
// answered 503 "query_timeout".
HistoryAnswer history_answer(std::string_view endpoint, const std::vector<std::pair<std::string, std::string>>& params,
                             const std::string& store_url, history::Micros now,
                             std::chrono::steady_clock::duration timeout = {});

}  // namespace sluice::admin
