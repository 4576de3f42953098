// The history commands as users run them: the real binary against a database
// written with history::Store (tests/integration/history_data.hpp), in table,
// --json and --csv forms, and its answers to bad arguments.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "history_data.hpp"
#include "run_sluice.hpp"

using namespace sluice::testing;
namespace json = boost::json;

namespace {

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

std::vector<std::int64_t> session_ids(const json::array& sessions) {
  std::vector<std::int64_t> ids;
  for (const auto& s : sessions) ids.push_back(s.at("session_id").as_int64());
  return ids;
}

json::object parse_json(const Result& r) {
  EXPECT_EQ(r.status, 0) << r.err;
  return json::parse(r.out).as_object();
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class HistoryCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { data_ = new HistoryData("history-cli"); }
  static void TearDownTestSuite() {
    delete data_;
    data_ = nullptr;
  }
  // The command with --store pointing at the test database.
  static Result query(std::vector<std::string> args) {
    args.push_back("--store");
    args.push_back(data_->db);
    return run_sluice(args);
  }
  static HistoryData* data_;
};
HistoryData* HistoryCli::data_ = nullptr;

constexpr const char* kNoon = "2025-03-01T12:00:00Z";

}  // namespace

TEST_F(HistoryCli, SessionsAtAnInstantCountOpenedAtTButNotClosedAtT) {
  auto o = parse_json(query({"sessions", "--at", kNoon, "--json"}));
  EXPECT_EQ(o.at("report"), "sessions");
  EXPECT_EQ(o.at("at"), "2025-03-01T12:00:00.000Z");
  EXPECT_EQ(o.at("zone"), "UTC");
  EXPECT_EQ(o.at("count"), 2);
  // 1001 was open across noon; 1002 opened exactly at noon; 1003 closed exactly at noon.
  EXPECT_EQ(session_ids(o.at("sessions").as_array()), (std::vector<std::int64_t>{1001, 1002}));
  const auto& s = o.at("sessions").as_array()[1].as_object();
  EXPECT_EQ(s.at("run_id"), data_->run_id);
  EXPECT_EQ(s.at("request_id"), "req-1002");
  EXPECT_EQ(s.at("tenant"), "globex");
  EXPECT_EQ(s.at("pool"), "streaming");
  EXPECT_EQ(s.at("path"), "/v1/listen");
  EXPECT_EQ(s.at("model"), "nova-3");
  EXPECT_EQ(s.at("params").at("encoding"), "linear16");
  EXPECT_EQ(s.at("opened_at"), "2025-03-01T12:00:00.000Z");
  EXPECT_EQ(s.at("closed_at"), "2025-03-01T12:20:00.000Z");
  EXPECT_EQ(s.at("accepted_at"), "2025-03-01T11:59:59.950Z");
  EXPECT_EQ(s.at("close_code"), 1000);
  EXPECT_EQ(s.at("closed_by"), "client");
  EXPECT_EQ(s.at("outcome"), "completed");
  EXPECT_EQ(s.at("still_open"), false);
  EXPECT_EQ(s.at("duration_seconds").to_number<double>(), 1200.0);
  EXPECT_EQ(s.at("audio_seconds").to_number<double>(), 120.0);
  EXPECT_EQ(s.at("counters").at("client_bytes"), 3200);

  // One microsecond earlier, 1003 was still open and 1002 not yet.
  auto before = parse_json(query({"sessions", "--at", "2025-03-01T11:59:59.999999Z", "--json"}));
  EXPECT_EQ(session_ids(before.at("sessions").as_array()), (std::vector<std::int64_t>{1003, 1001}));

  // Filters.
  auto globex = parse_json(query({"sessions", "--at", kNoon, "--tenant", "globex", "--json"}));
  EXPECT_EQ(session_ids(globex.at("sessions").as_array()), (std::vector<std::int64_t>{1002}));
  auto tts = parse_json(query({"sessions", "--at", "2025-03-01T12:01:30Z", "--pool", "tts", "--json"}));
  EXPECT_EQ(session_ids(tts.at("sessions").as_array()), (std::vector<std::int64_t>{1005}));
}

TEST_F(HistoryCli, SessionsAtInTableAndCsvForms) {
  auto t = query({"sessions", "--at", kNoon});
  ASSERT_EQ(t.status, 0) << t.err;
  auto ls = lines(t.out);
  ASSERT_EQ(ls.size(), 4u) << t.out;  // heading, column names, two sessions
  EXPECT_TRUE(contains(ls[0], "Sessions open at 2025-03-01 12:00:00.000 (zone UTC): 2")) << ls[0];
  EXPECT_TRUE(contains(ls[1], "INSTANCE") && contains(ls[1], "RUN") && contains(ls[1], "OPENED") &&
              contains(ls[1], "OUTCOME"))
      << ls[1];
  EXPECT_TRUE(contains(ls[2], "history-test")) << ls[2];
  EXPECT_TRUE(contains(ls[2], "1001") && contains(ls[2], "2025-03-01 11:50:00.000")) << ls[2];
  EXPECT_TRUE(contains(ls[3], "1002") && contains(ls[3], "globex") && contains(ls[3], "1000 by client")) << ls[3];
  EXPECT_FALSE(contains(t.out, "1003"));

  auto c = query({"sessions", "--at", kNoon, "--csv"});
  ASSERT_EQ(c.status, 0) << c.err;
  auto rows = lines(c.out);
  ASSERT_EQ(rows.size(), 3u) << c.out;
  EXPECT_TRUE(rows[0].starts_with("run_id,instance,session_id,request_id,tenant,pool,path,model,")) << rows[0];
  EXPECT_TRUE(rows[1].starts_with(std::to_string(data_->run_id) +
                                  ",history-test,1001,req-1001,acme,streaming,/v1/listen,nova-3,"))
      << rows[1];
  EXPECT_TRUE(rows[2].starts_with(std::to_string(data_->run_id) + ",history-test,1002,req-1002,globex,")) << rows[2];
  // A field with a comma and quotes is quoted, its quotes doubled.
  EXPECT_TRUE(contains(rows[1], R"("history-test, ""quoted""")")) << rows[1];
  EXPECT_TRUE(contains(rows[1], ",2025-03-01T11:50:00.000Z,")) << rows[1];
}

TEST_F(HistoryCli, SessionsInARangeWithFiltersAndNeverOpenedRows) {
  auto o = parse_json(query({"sessions", "--from", kNoon, "--to", "2025-03-01T12:10:00Z", "--json"}));
  EXPECT_EQ(o.at("from"), "2025-03-01T12:00:00.000Z");
  EXPECT_EQ(o.at("to"), "2025-03-01T12:10:00.000Z");
  EXPECT_EQ(o.at("include_unopened"), false);
  // In order of opening; 1003 ended exactly at the start of the range, so it did not meet it.
  EXPECT_EQ(session_ids(o.at("sessions").as_array()), (std::vector<std::int64_t>{1001, 1002, 1005, 1004}));

  auto all = parse_json(query({"sessions", "--from", kNoon, "--to", "2025-03-01T12:10:00Z", "--all", "--json"}));
  EXPECT_EQ(session_ids(all.at("sessions").as_array()), (std::vector<std::int64_t>{1001, 1002, 1005, 1004, 1006}));
  const auto& refused = all.at("sessions").as_array().back().as_object();
  EXPECT_EQ(refused.at("outcome"), "refused");
  EXPECT_EQ(refused.at("outcome_reason"), "pool streaming is full");
  EXPECT_TRUE(refused.at("opened_at").is_null());
  EXPECT_TRUE(refused.at("duration_seconds").is_null());

  auto pool = parse_json(
      query({"sessions", "--from", kNoon, "--to", "2025-03-01T12:10:00Z", "--pool", "streaming", "--json"}));
  EXPECT_EQ(session_ids(pool.at("sessions").as_array()), (std::vector<std::int64_t>{1001, 1002, 1004}));

  auto t = query({"sessions", "--from", kNoon, "--to", "2025-03-01T12:10:00Z", "--all"});
  ASSERT_EQ(t.status, 0) << t.err;
  EXPECT_TRUE(contains(t.out, "Sessions that met [2025-03-01 12:00:00.000, 2025-03-01 12:10:00.000) (zone UTC, "
                              "with never-opened): 5"))
      << t.out;
  EXPECT_TRUE(contains(t.out, "refused (pool streaming is full)")) << t.out;
}

TEST_F(HistoryCli, AStreamStillOpenCountsUntilNow) {
  auto o = parse_json(query({"sessions", "--at", "2025-03-05T00:00:00Z", "--json"}));
  ASSERT_EQ(session_ids(o.at("sessions").as_array()), (std::vector<std::int64_t>{1007}));
  const auto& s = o.at("sessions").as_array()[0].as_object();
  EXPECT_EQ(s.at("still_open"), true);
  EXPECT_TRUE(s.at("closed_at").is_null());
  EXPECT_GT(s.at("duration_seconds").to_number<double>(), 86400.0);
  auto t = query({"sessions", "--at", "2025-03-05T00:00:00Z"});
  EXPECT_TRUE(contains(t.out, "(open)")) << t.out;
  // Nothing is known about the future.
  auto future = parse_json(query({"sessions", "--at", "now+1d", "--json"}));
  EXPECT_EQ(future.at("count"), 0);
}

TEST_F(HistoryCli, PeaksFindTheHighestWindowAndTheSessionsThatMadeIt) {
  auto o = parse_json(query(
      {"peaks", "--window", "10m", "--from", "2025-03-01T11:00:00Z", "--to", "2025-03-01T13:00:00Z", "--json"}));
  EXPECT_EQ(o.at("report"), "peaks");
  EXPECT_EQ(o.at("window_seconds").to_number<double>(), 600.0);
  const auto& pools = o.at("pools").as_array();
  ASSERT_EQ(pools.size(), 2u);
  const auto& p = pools[0].as_object();
  EXPECT_EQ(p.at("pool"), "streaming");
  EXPECT_EQ(p.at("peak"), 3);
  EXPECT_EQ(p.at("peak_at"), "2025-03-01T12:05:00.000Z");
  EXPECT_EQ(p.at("peak_until"), "2025-03-01T12:07:00.000Z");
  const auto& best = p.at("best_window").as_object();
  EXPECT_EQ(best.at("start"), "2025-03-01T12:00:00.000Z");
  EXPECT_EQ(best.at("end"), "2025-03-01T12:10:00.000Z");
  EXPECT_EQ(best.at("max"), 3);
  EXPECT_EQ(best.at("min"), 2);
  const auto& windows = p.at("windows").as_array();
  ASSERT_EQ(windows.size(), 12u);
  std::vector<std::int64_t> maxima;
  for (const auto& w : windows) maxima.push_back(w.at("max").as_int64());
  // 11:30 1003 opens; 11:50 1001; noon 1003 closes as 1002 opens; 12:10 1001 closes; 12:20 1002.
  EXPECT_EQ(maxima, (std::vector<std::int64_t>{0, 0, 0, 1, 1, 2, 3, 1, 0, 0, 0, 0}));
  EXPECT_EQ(windows[7].at("min"), 1);
  EXPECT_EQ(session_ids(p.at("sessions").as_array()), (std::vector<std::int64_t>{1001, 1002, 1004}));
  const auto& tts = pools[1].as_object();
  EXPECT_EQ(tts.at("pool"), "tts");
  EXPECT_EQ(tts.at("peak"), 1);
  EXPECT_EQ(tts.at("peak_at"), "2025-03-01T12:01:00.000Z");

  // Windows sit on the clock whatever the range's start.
  auto shifted = parse_json(query({"peaks", "--window", "10m", "--from", "2025-03-01T12:03:00Z", "--to",
                                     "2025-03-01T12:30:00Z", "--pool", "streaming", "--json"}));
  const auto& sw = shifted.at("pools").as_array()[0].at("windows").as_array();
  ASSERT_EQ(sw.size(), 3u);
  EXPECT_EQ(sw[0].at("start"), "2025-03-01T12:03:00.000Z");
  EXPECT_EQ(sw[0].at("end"), "2025-03-01T12:10:00.000Z");
  EXPECT_EQ(sw[1].at("start"), "2025-03-01T12:10:00.000Z");

  // In another zone, the same instants with the zone's offset.
  auto berlin = parse_json(query({"peaks", "--window", "10m", "--from", "2025-03-01T11:00:00Z", "--to",
                                    "2025-03-01T13:00:00Z", "--pool", "streaming", "--tz", "Europe/Berlin", "--json"}));
  EXPECT_EQ(berlin.at("zone"), "Europe/Berlin");
  EXPECT_EQ(berlin.at("pools").as_array()[0].at("peak_at"), "2025-03-01T13:05:00.000+01:00");
}

TEST_F(HistoryCli, PeaksInTableAndCsvForms) {
  auto t = query({"peaks", "--window", "10m", "--from", "2025-03-01T11:00:00Z", "--to", "2025-03-01T13:00:00Z"});
  ASSERT_EQ(t.status, 0) << t.err;
  EXPECT_TRUE(contains(t.out, "Peak concurrency in 10m windows over [2025-03-01 11:00:00.000, 2025-03-01 "
                              "13:00:00.000) (zone UTC)"))
      << t.out;
  EXPECT_TRUE(contains(t.out, "Pool streaming: peak 3 open at 2025-03-01 12:05:00.000 until 2025-03-01 12:07:00.000"))
      << t.out;
  std::vector<std::string> marked;
  for (const auto& l : lines(t.out))
    if (contains(l, "<- peak")) marked.push_back(l);
  ASSERT_EQ(marked.size(), 2u) << t.out;  // one per pool
  EXPECT_TRUE(contains(marked[0], "2025-03-01 12:00:00.000  2025-03-01 12:10:00.000")) << marked[0];
  EXPECT_TRUE(contains(t.out, "Sessions open at the peak (3):")) << t.out;

  auto c = query({"peaks", "--window", "10m", "--from", "2025-03-01T11:00:00Z", "--to", "2025-03-01T13:00:00Z",
                    "--pool", "streaming", "--csv"});
  ASSERT_EQ(c.status, 0) << c.err;
  auto rows = lines(c.out);
  ASSERT_EQ(rows.size(), 13u) << c.out;
  EXPECT_EQ(rows[0], "pool,start,end,max,min,peak_at,peak_window");
  EXPECT_EQ(rows[7], "streaming,2025-03-01T12:00:00.000Z,2025-03-01T12:10:00.000Z,3,2,2025-03-01T12:05:00.000Z,true");
  EXPECT_EQ(rows[8], "streaming,2025-03-01T12:10:00.000Z,2025-03-01T12:20:00.000Z,1,1,2025-03-01T12:10:00.000Z,false");
}

TEST_F(HistoryCli, ConcurrencySeriesInEveryForm) {
  std::vector<std::string> args = {"concurrency", "--from", "2025-03-01T11:58:00Z", "--to", "2025-03-01T12:08:00Z",
                                   "--step", "2m", "--pool", "streaming"};
  auto ja = args;
  ja.push_back("--json");
  auto o = parse_json(query(ja));
  EXPECT_EQ(o.at("step_seconds").to_number<double>(), 120.0);
  const auto& pools = o.at("pools").as_array();
  ASSERT_EQ(pools.size(), 1u);
  const auto& points = pools[0].at("points").as_array();
  ASSERT_EQ(points.size(), 5u);
  std::vector<std::pair<std::int64_t, std::int64_t>> mm;
  for (const auto& p : points) mm.emplace_back(p.at("max").as_int64(), p.at("min").as_int64());
  EXPECT_EQ(mm, (std::vector<std::pair<std::int64_t, std::int64_t>>{{2, 2}, {2, 2}, {2, 2}, {3, 2}, {3, 2}}));
  EXPECT_EQ(points[0].at("start"), "2025-03-01T11:58:00.000Z");
  EXPECT_EQ(points[3].at("start"), "2025-03-01T12:04:00.000Z");

  auto ca = args;
  ca.push_back("--csv");
  auto c = query(ca);
  ASSERT_EQ(c.status, 0) << c.err;
  auto rows = lines(c.out);
  ASSERT_EQ(rows.size(), 6u) << c.out;
  EXPECT_EQ(rows[0], "pool,start,max,min");
  EXPECT_EQ(rows[4], "streaming,2025-03-01T12:04:00.000Z,3,2");

  auto t = query(args);
  ASSERT_EQ(t.status, 0) << t.err;
  auto tl = lines(t.out);
  ASSERT_EQ(tl.size(), 7u) << t.out;
  EXPECT_TRUE(contains(tl[0], "Concurrency per 2m over [2025-03-01 11:58:00.000, 2025-03-01 12:08:00.000) (zone UTC, "
                              "pool streaming)"))
      << tl[0];
  EXPECT_TRUE(contains(tl[5], "streaming") && contains(tl[5], "2025-03-01 12:04:00.000") && tl[5].ends_with("3    2"))
      << tl[5];

  // A pool asked for by name shows at 0 in a range without streams.
  auto empty = parse_json(query({"concurrency", "--from", "2025-03-01T08:00:00Z", "--to", "2025-03-01T09:00:00Z",
                                   "--step", "30m", "--pool", "streaming", "--json"}));
  ASSERT_EQ(empty.at("pools").as_array().size(), 1u);
  EXPECT_EQ(empty.at("pools").as_array()[0].at("points").as_array().size(), 2u);
  EXPECT_EQ(empty.at("pools").as_array()[0].at("peak"), 0);
}

TEST_F(HistoryCli, UsagePerDayTenantAndPool) {
  auto o = parse_json(query({"usage", "--from", "2025-03-01", "--to", "2025-03-02", "--json"}));
  const auto& rows = o.at("rows").as_array();
  ASSERT_EQ(rows.size(), 3u) << json::serialize(o);
  auto row = [&](std::size_t i, const char* day, const char* tenant, const char* pool, std::int64_t sessions,
                 double minutes, double audio) {
    const auto& r = rows[i].as_object();
    EXPECT_EQ(r.at("day"), day);
    EXPECT_EQ(r.at("tenant"), tenant);
    EXPECT_EQ(r.at("pool"), pool);
    EXPECT_EQ(r.at("sessions"), sessions);
    EXPECT_NEAR(r.at("stream_minutes").to_number<double>(), minutes, 1e-9);
    EXPECT_NEAR(r.at("audio_seconds").to_number<double>(), audio, 1e-9);
  };
  // acme/streaming: 1001 (20 min), 1003 (30), 1004 (2), 1008 (60); the refused 1006 held nothing.
  row(0, "2025-03-01", "acme", "streaming", 4, 112, 672);
  row(1, "2025-03-01", "acme", "tts", 1, 1, 6);
  row(2, "2025-03-01", "globex", "streaming", 1, 20, 120);
  EXPECT_EQ(o.at("totals").at("sessions"), 6);
  EXPECT_NEAR(o.at("totals").at("stream_minutes").to_number<double>(), 133, 1e-9);

  // In Berlin, 1008 (22:30-23:30 UTC) runs over local midnight: half on each day.
  auto b = parse_json(
      query({"usage", "--from", "2025-03-01", "--to", "2025-03-02", "--tz", "Europe/Berlin", "--pool", "streaming",
               "--tenant", "acme", "--json"}));
  EXPECT_EQ(b.at("from"), "2025-03-01T00:00:00.000+01:00");
  const auto& br = b.at("rows").as_array();
  ASSERT_EQ(br.size(), 1u) << json::serialize(b);
  EXPECT_EQ(br[0].at("day"), "2025-03-01");
  EXPECT_NEAR(br[0].at("stream_minutes").to_number<double>(), 52 + 30, 1e-9);
  auto b2 = parse_json(query({"usage", "--from", "2025-03-01", "--to", "2025-03-03", "--tz", "Europe/Berlin",
                                "--pool", "streaming", "--tenant", "acme", "--json"}));
  const auto& b2r = b2.at("rows").as_array();
  ASSERT_EQ(b2r.size(), 2u) << json::serialize(b2);
  EXPECT_EQ(b2r[1].at("day"), "2025-03-02");
  EXPECT_EQ(b2r[1].at("sessions"), 0);
  EXPECT_NEAR(b2r[1].at("stream_minutes").to_number<double>(), 30, 1e-9);

  auto c = query({"usage", "--from", "2025-03-01", "--to", "2025-03-02", "--csv"});
  ASSERT_EQ(c.status, 0) << c.err;
  auto cl = lines(c.out);
  ASSERT_EQ(cl.size(), 4u) << c.out;
  EXPECT_EQ(cl[0], "day,tenant,pool,sessions,stream_minutes,audio_seconds,idle_seconds");
  EXPECT_TRUE(cl[1].starts_with("2025-03-01,acme,streaming,4,112")) << cl[1];

  auto t = query({"usage", "--from", "2025-03-01", "--to", "2025-03-02"});
  ASSERT_EQ(t.status, 0) << t.err;
  EXPECT_TRUE(contains(t.out, "Usage per day over [2025-03-01 00:00:00.000, 2025-03-02 00:00:00.000) (zone UTC)"))
      << t.out;
  auto tl = lines(t.out);
  ASSERT_EQ(tl.size(), 6u) << t.out;
  EXPECT_TRUE(tl[5].starts_with("total") && contains(tl[5], "133.00")) << tl[5];
}

TEST_F(HistoryCli, BadArgumentsExitTwoSayingWhatWasExpected) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  std::vector<Case> cases = {
      {{"sessions"}, "missing --from (or --at)"},
      {{"sessions", "--at", "yesterday"}, "--at: expected a time such as"},
      {{"sessions", "--at", "yesterday"}, "'yesterday'"},
      {{"sessions", "--at", kNoon, "--from", "-1h"}, "either --at alone"},
      {{"sessions", "--from", kNoon, "--to", "2025-03-01T11:00:00Z"}, "--to (2025-03-01T11:00:00.000Z) must be later"},
      {{"sessions", "--at", kNoon, "--tz", "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"},
      {{"peaks", "--from", kNoon}, "missing --window"},
      {{"peaks", "--from", kNoon, "--window", "0s"}, "--window: must be positive"},
      {{"peaks", "--from", kNoon, "--window", "often"}, "--window: expected a duration"},
      {{"concurrency", "--from", "2025-01-01", "--to", "2025-03-01", "--step", "1s"}, "too many"},
      {{"usage", "--to", kNoon}, "missing --from"},
      {{"sessions", "--at", kNoon, "--json", "--csv"}, "excludes"},
      {{"peaks", "--bogus"}, "--bogus"},
  };
  for (const auto& c : cases) {
    auto r = query(c.args);
    std::string cmd;
    for (const auto& a : c.args) cmd += a + " ";
    EXPECT_EQ(r.status, 2) << cmd << "\n" << r.err;
    EXPECT_TRUE(contains(r.err, c.message)) << cmd << "\nstderr: " << r.err;
    EXPECT_TRUE(r.out.empty()) << cmd << "\nstdout: " << r.out;
  }
  // An option without its value.
  auto r = run_sluice({"sessions", "--store", data_->db, "--at"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(contains(r.err, "--at")) << r.err;
}

TEST_F(HistoryCli, UnreadableDatabaseExitsOne) {
  auto missing = (data_->dir / "nowhere" / "history.db").string();
  auto r = run_sluice({"sessions", "--at", kNoon, "--store", missing});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(contains(r.err, "no history database at " + missing)) << r.err;

  auto junk = (data_->dir / "junk.db").string();
  {
    std::ofstream f(junk);
    f << "this is not a database\n";
  }
  r = run_sluice({"peaks", "--window", "1m", "--from", "-1h", "--store", junk});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(contains(r.err, "cannot read the history at " + junk)) << r.err;

  // A password in a PostgreSQL URL never reaches the message.
  r = run_sluice({"sessions", "--at", kNoon, "--store", "postgres://sluice:s3cret@127.0.0.1:1/history"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_FALSE(contains(r.err, "s3cret")) << r.err;
}

TEST_F(HistoryCli, FindsTheStoreThroughTheEnvironmentAndTheConfigFile) {
  auto count_at_noon = [](const Result& r) {
    EXPECT_EQ(r.status, 0) << r.err;
    return r.status == 0 ? json::parse(r.out).at("count").as_int64() : -1;
  };
  EXPECT_EQ(count_at_noon(run_sluice({"sessions", "--at", kNoon, "--json"}, {"SLUICE_STORE_URL=" + data_->db})), 2);
  EXPECT_EQ(count_at_noon(run_sluice({"sessions", "--at", kNoon, "--json"}, {"SLUICE_DATA_DIR=" + data_->dir.string()})),
            2);
  auto cfg = (data_->dir / "sluice.yaml").string();
  {
    std::ofstream f(cfg);
    f << "store:\n  url: sqlite:" << data_->db << "\n";
  }
  EXPECT_EQ(count_at_noon(run_sluice({"sessions", "--at", kNoon, "--json", "--config", cfg})), 2);
  // --store wins over both.
  auto r = run_sluice({"sessions", "--at", kNoon, "--json", "--config", cfg, "--store", data_->db + ".missing"},
                  {"SLUICE_STORE_URL=" + data_->db});
  EXPECT_EQ(r.status, 1) << r.err;
}

TEST(HistoryCliHelp, ExplainsTheCommandsWithExamples) {
  for (const char* cmd : {"sessions", "peaks", "concurrency", "usage"}) {
    auto r = run_sluice({cmd, "--help"});
    EXPECT_EQ(r.status, 0) << cmd;
    EXPECT_TRUE(contains(r.out, std::string("sluice ") + cmd + " --")) << r.out;  // an example
    EXPECT_TRUE(contains(r.out, "--store")) << r.out;
    EXPECT_TRUE(contains(r.out, "--tz")) << r.out;
    EXPECT_TRUE(contains(r.out, "now-2h")) << r.out;
  }
}
