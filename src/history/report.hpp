#pragma once
// The history's answers, one function per question, shared by the command
// line and the admin API: each runs its query against a Store and returns a
// JSON object, which the API sends as it is and the command line prints as
// JSON, CSV or a table. Times in the answers are RFC 3339 in the request's
// zone. Stateless: run each on its own Store.
#include <boost/json/object.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "history/records.hpp"
#include "history/store.hpp"
#include "history/timespec.hpp"

namespace sluice::history {

enum class ReportKind { sessions, concurrency, peaks, usage };
std::string_view report_name(ReportKind kind);

// A request as the user typed it: option or parameter values, unparsed.
struct ReportArgs {
  std::optional<std::string> at, from, to, step, window, pool, tenant, instance, tz;
  bool all = false;
};

// A request parsed and checked.
struct ReportRequest {
  ReportKind kind = ReportKind::sessions;
  std::optional<Micros> at;          // sessions open at this instant, or
  Micros from = 0, to = 0;           // those meeting [from, to)
  Micros step = 0;                   // concurrency: the step; peaks: the window
  std::optional<std::string> pool, tenant;
  std::optional<std::string> instance;  // one gateway of those sharing the store; none: the fleet
  bool include_unopened = false;     // sessions in a range: also never-opened rows
  Zone zone;
};

// Points of a series, or windows of a peaks answer, per pool at most.
constexpr std::size_t kMaxPoints = 100'000;

// Parses and checks `args` for `kind`, reading relative times against `now`
// and zone-less times in args.tz. `to` defaults to now. Throws QueryError (or
// TimeError) whose message names the parameter as `prefix` + name ("--from"
// on the command line, "from" in the API) and says what was expected.
ReportRequest parse_report_request(ReportKind kind, const ReportArgs& args, Micros now, std::string_view prefix);

// Each throws QueryError for a request it cannot answer and DbError when the
// database fails. `now` ends the streams still open.
boost::json::object sessions_report(Store& store, const ReportRequest& r, Micros now);
boost::json::object concurrency_report(Store& store, const ReportRequest& r, Micros now);
boost::json::object peaks_report(Store& store, const ReportRequest& r, Micros now);
boost::json::object usage_report(Store& store, const ReportRequest& r, Micros now);
boost::json::object run_report(Store& store, const ReportRequest& r, Micros now);

// One stored session as the reports show it; `instance` names the gateway
// that served it (the run's), when known.
boost::json::object session_json(const SessionRecord& s, const Zone& zone, Micros now,
                                 const std::string* instance = nullptr);

}  // namespace sluice::history
