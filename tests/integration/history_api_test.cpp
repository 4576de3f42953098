// The admin API's history endpoints on an in-process gateway whose store is
// a database written with history::Store (tests/integration/history_data.hpp).
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "admin/history_api.hpp"
#include "history/report.hpp"
#include "history_data.hpp"
#include "postgres_schema.hpp"
#include "stack.hpp"
#include "util/json_text.hpp"

using namespace sluice;
using namespace sluice::testing;
namespace json = boost::json;

namespace {

std::vector<std::int64_t> session_ids(const json::value& sessions) {
  std::vector<std::int64_t> ids;
  for (const auto& s : sessions.as_array()) ids.push_back(s.at("session_id").as_int64());
  return ids;
}

json::object get_json(unsigned short port, const std::string& target, unsigned expected_status = 200) {
  auto res = admin_call(port, http::verb::get, target);
  EXPECT_EQ(res.result_int(), expected_status) << target << "\n" << res.body();
  EXPECT_EQ(res[http::field::content_type], "application/json");
  return json::parse(res.body()).as_object();
}

// The answer the command line's --json gives, from the same report code.
json::object report(const std::string& db, history::ReportKind kind, const history::ReportArgs& args) {
  history::OpenOptions options;
  options.read_only = true;
  history::Store store(db, options);
  auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                 std::chrono::system_clock::now().time_since_epoch()).count();
  return history::run_report(store, history::parse_report_request(kind, args, now, "--"), now);
}

Stack::Tweak with_store(const std::string& url) {
  // Retention off: the synthetic rows are older than its defaults.
  return [url](config::Config& c, Stack&) {
    c.store.url = url;
    c.store.retention = {.sessions = config::Seconds(0), .events = config::Seconds(0), .seconds = config::Seconds(0),
                         .minutes = config::Seconds(0), .rollup_after = config::Seconds(0)};
  };
}

}  // namespace

TEST(HistoryApi, SessionsAtAnInstantAndInARange) {
  HistoryData data("history-api-sessions", false);
  Stack s({}, with_store(data.db));
  auto at = get_json(s.admin_port(), "/api/v1/history/sessions?at=2025-03-01T12:00:00Z");
  EXPECT_EQ(at.at("count"), 2);
  EXPECT_EQ(session_ids(at.at("sessions")), (std::vector<std::int64_t>{1001, 1002}));
  EXPECT_EQ(at.at("sessions").as_array()[1].at("opened_at"), "2025-03-01T12:00:00.000Z");

  auto range = get_json(s.admin_port(),
                        "/api/v1/history/sessions?from=2025-03-01T12:00:00Z&to=2025-03-01T12:10:00Z&pool=streaming&all=true");
  EXPECT_EQ(session_ids(range.at("sessions")), (std::vector<std::int64_t>{1001, 1002, 1004, 1006}));
  EXPECT_EQ(range.at("pool"), "streaming");
  EXPECT_EQ(range.at("include_unopened"), true);

  // An offset's + is %2B in a query string; the zone shapes the answer's times.
  auto berlin = get_json(s.admin_port(), "/api/v1/history/sessions?at=2025-03-01T13:00:00%2B01:00&tz=Europe/Berlin&tenant=globex");
  EXPECT_EQ(berlin.at("at"), "2025-03-01T13:00:00.000+01:00");
  EXPECT_EQ(session_ids(berlin.at("sessions")), (std::vector<std::int64_t>{1002}));
  EXPECT_EQ(berlin.at("sessions").as_array()[0].at("closed_at"), "2025-03-01T13:20:00.000+01:00");
}

TEST(HistoryApi, PeaksConcurrencyAndUsageMatchTheCommandLine) {
  HistoryData data("history-api-reports", false);
  Stack s({}, with_store(data.db));
  history::ReportArgs peaks;
  peaks.from = "2025-03-01T11:00:00Z";
  peaks.to = "2025-03-01T13:00:00Z";
  peaks.window = "10m";
  auto p = get_json(s.admin_port(), "/api/v1/history/peaks?from=2025-03-01T11:00:00Z&to=2025-03-01T13:00:00Z&window=10m");
  // Compared as written: the API writes a whole double as 2, which reads back
  // as an integer.
  EXPECT_EQ(util::json_text(p), util::json_text(report(data.db, history::ReportKind::peaks, peaks)));
  const auto& streaming = p.at("pools").as_array()[0].as_object();
  EXPECT_EQ(streaming.at("pool"), "streaming");
  EXPECT_EQ(streaming.at("peak"), 3);
  EXPECT_EQ(streaming.at("peak_at"), "2025-03-01T12:05:00.000Z");
  EXPECT_EQ(streaming.at("best_window").at("start"), "2025-03-01T12:00:00.000Z");
  EXPECT_EQ(session_ids(streaming.at("sessions")), (std::vector<std::int64_t>{1001, 1002, 1004}));

  history::ReportArgs series;
  series.from = "2025-03-01T11:58:00Z";
  series.to = "2025-03-01T12:08:00Z";
  series.step = "2m";
  series.pool = "streaming";
  auto c = get_json(s.admin_port(),
                    "/api/v1/history/concurrency?from=2025-03-01T11:58:00Z&to=2025-03-01T12:08:00Z&step=2m&pool=streaming");
  EXPECT_EQ(util::json_text(c), util::json_text(report(data.db, history::ReportKind::concurrency, series)));
  EXPECT_EQ(c.at("pools").as_array()[0].at("points").as_array().size(), 5u);

  history::ReportArgs usage;
  usage.from = "2025-03-01";
  usage.to = "2025-03-02";
  usage.tz = "Europe/Berlin";
  auto u = get_json(s.admin_port(), "/api/v1/history/usage?from=2025-03-01&to=2025-03-02&tz=Europe/Berlin");
  EXPECT_EQ(util::json_text(u), util::json_text(report(data.db, history::ReportKind::usage, usage)));
  EXPECT_EQ(u.at("from"), "2025-03-01T00:00:00.000+01:00");
  EXPECT_EQ(u.at("totals").at("sessions"), 6);

  // Queries in parallel each get their own answer.
  std::vector<std::thread> threads;
  std::vector<int> counts(6, -1);
  for (std::size_t i = 0; i < counts.size(); ++i)
    threads.emplace_back([&, i] {
      auto res = admin_call(s.admin_port(), http::verb::get, "/api/v1/history/sessions?at=2025-03-01T12:0" +
                                                                 std::to_string(i) + ":00Z");
      if (res.result_int() == 200) counts[i] = static_cast<int>(json::parse(res.body()).at("count").as_int64());
    });
  for (auto& t : threads) t.join();
  // 12:00: 1001, 1002; 12:01: +1005; 12:02: 1005 closed; 12:05: +1004.
  EXPECT_EQ(counts, (std::vector<int>{2, 3, 2, 2, 2, 3}));
}

// Gateways sharing one store: the answers are the fleet's, and one
// instance's on request; every session names the gateway that served it.
TEST(HistoryApi, AFleetsHistoryTogetherAndPerInstance) {
  HistoryData data("history-api-fleet", false);
  {
    history::Store store(data.db);
    auto b = store.begin_run({.instance = "gw-b", .version = "test", .pid = 2, .started_at = utc_time(1, 11, 0)});
    history::WriteBatch batch;
    batch.sessions.push_back(
        HistoryData::session(2001, "acme", "streaming", "/v1/listen", utc_time(1, 12, 4), utc_time(1, 12, 9)));
    batch.sessions.push_back(
        HistoryData::session(2002, "acme", "streaming", "/v1/listen", utc_time(1, 12, 6), utc_time(1, 12, 30)));
    for (auto& row : batch.sessions) row.run_id = b;
    store.write(batch);
    store.end_run(b, utc_time(2, 0, 0));
  }
  Stack s({}, with_store(data.db));
  auto at = get_json(s.admin_port(), "/api/v1/history/sessions?at=2025-03-01T12:06:00Z");
  EXPECT_EQ(session_ids(at.at("sessions")), (std::vector<std::int64_t>{1001, 1002, 2001, 1004, 2002}));
  EXPECT_EQ(at.at("instance"), nullptr);
  for (const auto& v : at.at("sessions").as_array())
    EXPECT_EQ(v.at("instance"), v.at("session_id").as_int64() > 2000 ? "gw-b" : "history-test") << v;
  auto b_only = get_json(s.admin_port(), "/api/v1/history/sessions?at=2025-03-01T12:06:00Z&instance=gw-b");
  EXPECT_EQ(session_ids(b_only.at("sessions")), (std::vector<std::int64_t>{2001, 2002}));
  EXPECT_EQ(b_only.at("instance"), "gw-b");

  const std::string range = "from=2025-03-01T11:00:00Z&to=2025-03-01T13:00:00Z&window=10m&pool=streaming";
  auto fleet = get_json(s.admin_port(), "/api/v1/history/peaks?" + range);
  const auto& fp = fleet.at("pools").as_array()[0];
  EXPECT_EQ(fp.at("peak"), 5);
  EXPECT_EQ(fp.at("peak_at"), "2025-03-01T12:06:00.000Z");
  auto mine = get_json(s.admin_port(), "/api/v1/history/peaks?" + range + "&instance=history-test");
  const auto& mp = mine.at("pools").as_array()[0];
  EXPECT_EQ(mp.at("peak"), 3);
  EXPECT_EQ(mp.at("peak_at"), "2025-03-01T12:05:00.000Z");
  EXPECT_EQ(session_ids(mp.at("sessions")), (std::vector<std::int64_t>{1001, 1002, 1004}));
  auto theirs = get_json(s.admin_port(), "/api/v1/history/peaks?" + range + "&instance=gw-b");
  EXPECT_EQ(theirs.at("pools").as_array()[0].at("peak"), 2);
  EXPECT_EQ(session_ids(theirs.at("pools").as_array()[0].at("sessions")), (std::vector<std::int64_t>{2001, 2002}));

  // The command line's answer is the same, per instance too.
  history::ReportArgs series;
  series.from = "2025-03-01T11:58:00Z";
  series.to = "2025-03-01T12:10:00Z";
  series.step = "2m";
  series.instance = "gw-b";
  auto c = get_json(s.admin_port(),
                    "/api/v1/history/concurrency?from=2025-03-01T11:58:00Z&to=2025-03-01T12:10:00Z&step=2m&instance=gw-b");
  EXPECT_EQ(util::json_text(c), util::json_text(report(data.db, history::ReportKind::concurrency, series)));
  std::vector<std::int64_t> maxima;
  for (const auto& pt : c.at("pools").as_array()[0].at("points").as_array()) maxima.push_back(pt.at("max").as_int64());
  EXPECT_EQ(maxima, (std::vector<std::int64_t>{0, 0, 0, 1, 2, 2}));
  auto u = get_json(s.admin_port(), "/api/v1/history/usage?from=2025-03-01&to=2025-03-02&instance=gw-b");
  EXPECT_EQ(u.at("totals").at("sessions"), 2);
  auto all = get_json(s.admin_port(), "/api/v1/history/usage?from=2025-03-01&to=2025-03-02");
  EXPECT_EQ(all.at("totals").at("sessions"), 8);
  auto none = get_json(s.admin_port(), "/api/v1/history/usage?from=2025-03-01&to=2025-03-02&instance=gw-z");
  EXPECT_EQ(none.at("totals").at("sessions"), 0);
  auto empty = get_json(s.admin_port(), "/api/v1/history/usage?from=2025-03-01&instance=", 400);
  EXPECT_NE(std::string(empty.at("message").as_string()).find("instance: expected an instance name"), std::string::npos)
      << empty;
}

TEST(HistoryApi, BadParametersAre400WithWhatWasExpected) {
  HistoryData data("history-api-bad", false);
  Stack s({}, with_store(data.db));
  struct Case {
    std::string target;
    unsigned status;
    std::string error, message;
  };
  std::vector<Case> cases = {
      {"/api/v1/history/peaks?from=yesterday&window=10m", 400, "bad_request", "from: expected a time such as"},
      {"/api/v1/history/peaks?from=yesterday&window=10m", 400, "bad_request", "'yesterday'"},
      {"/api/v1/history/peaks?from=-1h", 400, "bad_request", "missing window"},
      {"/api/v1/history/concurrency?from=-1h&step=0s", 400, "bad_request", "step: must be positive"},
      {"/api/v1/history/concurrency?from=-30d&step=1s", 400, "bad_request", "too many"},
      {"/api/v1/history/usage?from=2025-03-02&to=2025-03-01", 400, "bad_request", "must be later than from"},
      {"/api/v1/history/usage?from=2025-03-01&tz=Mars/Base", 400, "bad_request", "unknown time zone 'Mars/Base'"},
      {"/api/v1/history/sessions", 400, "bad_request", "missing from (or at)"},
      {"/api/v1/history/sessions?at=-1h&from=-2h", 400, "bad_request", "either at alone"},
      {"/api/v1/history/sessions?at=-1h&all=maybe", 400, "bad_request", "all must be true or false"},
      {"/api/v1/history/sessions?at=-1h&step=1m", 400, "bad_request", "unknown parameter 'step'"},
      {"/api/v1/history/trends?from=-1h", 404, "not_found", "no history endpoint 'trends'"},
      // Times past what 64-bit nanoseconds since the epoch hold (April 2262)
      // and limits no list has are refused, not multiplied into overflow.
      {"/api/v1/events?since=1e300", 400, "bad_request", "since must be RFC 3339"},
      {"/api/v1/events?until=9999-12-31T00:00:00Z", 400, "bad_request", "until must be RFC 3339"},
      {"/api/v1/events?limit=1e30", 400, "bad_request", "limit must be a whole number"},
      {"/api/v1/events?limit=2.5", 400, "bad_request", "limit must be a whole number"},
  };
  for (const auto& c : cases) {
    auto o = get_json(s.admin_port(), c.target, c.status);
    EXPECT_EQ(std::string(o.at("error").as_string()), c.error) << c.target;
    EXPECT_NE(std::string(o.at("message").as_string()).find(c.message), std::string::npos)
        << c.target << ": " << o.at("message");
  }
  get_json(s.admin_port(), "/api/v1/events?since=2262-01-01T00:00:00Z&limit=1000000", 200);
  get_json(s.admin_port(), "/api/v1/events?since=0&until=9000000000", 200);
  EXPECT_EQ(admin_call(s.admin_port(), http::verb::get, "/api/v1/history/sessions?at=-1h", "wrong").result_int(), 401);
  auto post = admin_call(s.admin_port(), http::verb::post, "/api/v1/history/sessions?at=-1h");
  EXPECT_EQ(post.result_int(), 405);
  EXPECT_EQ(post[http::field::allow], "GET");
}

TEST(HistoryApi, DisabledHistoryIs404) {
  Stack s({}, [](config::Config& c, Stack&) { c.store.enabled = false; });
  auto o = get_json(s.admin_port(), "/api/v1/history/sessions?at=-1h", 404);
  EXPECT_EQ(o.at("error"), "history_disabled");
  EXPECT_NE(std::string(o.at("message").as_string()).find("store.enabled"), std::string::npos) << o;
}

TEST(HistoryApi, UnreadableDatabaseIs503WithoutSecrets) {
  auto missing = (std::filesystem::temp_directory_path() / "sluice-history-api-none" / "history.db").string();
  auto a = admin::history_answer("sessions", {{"at", "-1h"}}, missing, 0);
  EXPECT_EQ(a.status, 503u);
  EXPECT_EQ(a.body.at("error"), "history_unavailable");
  EXPECT_NE(std::string(a.body.at("message").as_string()).find("no history database at " + missing),
            std::string::npos)
      << a.body;
  auto pg = admin::history_answer("sessions", {{"at", "-1h"}}, "postgres://sluice:s3cret@127.0.0.1:1/history", 0);
  EXPECT_EQ(pg.status, 503u);
  EXPECT_EQ(std::string(pg.body.at("message").as_string()).find("s3cret"), std::string::npos) << pg.body;
  // Bad parameters are found before the database is opened.
  EXPECT_EQ(admin::history_answer("sessions", {{"at", "soon"}}, missing, 0).status, 400u);
}

// --- Limits: store.query_timeout and the bound on waiting queries -------------

namespace {

// A metric's value from GET /metrics, or -1 when it is not there.
double metric(unsigned short port, const std::string& name) {
  auto body = admin_call(port, http::verb::get, "/metrics").body();
  auto at = body.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::stod(body.substr(at + name.size() + 2));
}

// PostgreSQL, where a test can hold a lock that blocks the history's readers
// for as long as it likes; skipped (failed under CI) without a test cluster.
std::unique_ptr<PostgresSchema> postgres_store() {
  auto base = postgres_url();
  if (!base) return nullptr;
  auto schema = std::make_unique<PostgresSchema>(*base);
  history::Store migrate(schema->url());  // the tables
  return schema;
}

#define REQUIRE_POSTGRES(schema)                     \
  if (!(schema)) {                                   \
    if (in_ci()) GTEST_FAIL() << kNoPostgresInCi;    \
    GTEST_SKIP() << kNoPostgres;                     \
  }

// Holds ACCESS EXCLUSIVE on the sessions table until release().
struct SessionsLock {
  std::unique_ptr<history::Connection> db;
  explicit SessionsLock(const std::string& url) : db(history::open_database(url)) {
    db->exec("BEGIN");
    db->exec("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE");
  }
  void release() { db->exec("COMMIT"); }
};

}  // namespace

TEST(HistoryApi, AQueryPastStoreQueryTimeoutIs503AndCounted) {
  HistoryData data("history-api-timeout", false);
  Stack s({}, [&](config::Config& c, Stack& st) {
    with_store(data.db)(c, st);
    c.store.query_timeout = config::Seconds(1e-6);  // over before the first statement
  });
  auto o = get_json(s.admin_port(), "/api/v1/history/sessions?at=2025-03-01T12:00:00Z", 503);
  EXPECT_EQ(o.at("error"), "query_timeout");
  EXPECT_NE(std::string(o.at("message").as_string()).find("store.query_timeout"), std::string::npos) << o;
  EXPECT_EQ(metric(s.admin_port(), "sluice_history_queries_timed_out_total"), 1);
  EXPECT_EQ(metric(s.admin_port(), "sluice_history_queries_pending"), 0);
}

TEST(HistoryApi, OnPostgresABlockedQueryIsStoppedAtStoreQueryTimeout) {
  auto schema = postgres_store();
  REQUIRE_POSTGRES(schema);
  Stack s({}, [&](config::Config& c, Stack& st) {
    with_store(schema->url())(c, st);
    c.store.query_timeout = config::Seconds(0.5);
  });
  SessionsLock lock(schema->url());
  // Without the timeout this waits for the lock for as long as it is held.
  auto o = get_json(s.admin_port(), "/api/v1/history/sessions?at=2025-03-01T12:00:00Z", 503);
  EXPECT_EQ(o.at("error"), "query_timeout");
  lock.release();
  EXPECT_EQ(get_json(s.admin_port(), "/api/v1/history/sessions?at=2025-03-01T12:00:00Z").at("count"), 0);
}

TEST(HistoryApi, OnPostgresQueriesPastTheWaitingLimitAre503Busy) {
  auto schema = postgres_store();
  REQUIRE_POSTGRES(schema);
  Stack s({}, with_store(schema->url()));
  auto port = s.admin_port();
  ASSERT_EQ(metric(port, "sluice_history_queries_pending"), 0);
  auto limit = static_cast<int>(metric(port, "sluice_history_queries_limit"));
  ASSERT_GT(limit, 0);
  SessionsLock lock(schema->url());
  // `limit` queries: two block on the lock, the rest wait for them.
  std::vector<std::thread> held;
  std::vector<unsigned> statuses(static_cast<std::size_t>(limit), 0);
  for (int i = 0; i < limit; ++i)
    held.emplace_back([&, i] {
      statuses[static_cast<std::size_t>(i)] =
          admin_call(port, http::verb::get, "/api/v1/history/sessions?at=2025-03-01T12:00:00Z").result_int();
    });
  for (int i = 0; i < 3000 && metric(port, "sluice_history_queries_pending") < limit; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(metric(port, "sluice_history_queries_pending"), limit);
  auto busy = admin_call(port, http::verb::get, "/api/v1/history/usage?from=2025-03-01");
  EXPECT_EQ(busy.result_int(), 503);
  EXPECT_EQ(busy[http::field::retry_after], "5");
  auto o = json::parse(busy.body()).as_object();
  EXPECT_EQ(o.at("error"), "history_busy");
  EXPECT_EQ(metric(port, "sluice_history_queries_refused_total"), 1);
  // The lock goes; every query held answers.
  lock.release();
  for (auto& t : held) t.join();
  EXPECT_EQ(statuses, std::vector<unsigned>(static_cast<std::size_t>(limit), 200));
  EXPECT_EQ(metric(port, "sluice_history_queries_pending"), 0);
}
