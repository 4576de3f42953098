// End to end: streams of known timing through the gateway to the simulator;
// afterwards the command line (reading the database directly) and the admin
// API answer who was open at a chosen instant and what the peak was, with its
// window and the streams that made it. Also the recorder on PostgreSQL.
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "history/store.hpp"
#include "history/timespec.hpp"
#include "postgres_schema.hpp"
#include "run_sluice.hpp"
#include "stack.hpp"

namespace sluice::testing {
namespace {

namespace json = boost::json;
constexpr const char* kListen = "/v1/listen?encoding=linear16&sample_rate=16000";

std::int64_t session_id_of(const Client& c) { return std::stoll(std::string(c.response["x-sluice-session-id"])); }

void finish(Client& c) {
  c.send_binary(linear16_silence(0.1));
  c.send_text(R"({"type":"CloseStream"})");
  ASSERT_TRUE(c.read_until_type("Metadata"));
  EXPECT_EQ(c.read_until_close(), 1000);
}

std::set<std::int64_t> ids_of(const json::value& sessions) {
  std::set<std::int64_t> out;
  for (const auto& s : sessions.as_array()) out.insert(s.at("session_id").to_number<std::int64_t>());
  return out;
}

std::map<std::int64_t, history::SessionRecord> rows_by_id(const std::string& url) {
  history::Store store(url, {.read_only = true});
  std::map<std::int64_t, history::SessionRecord> out;
  store.sessions({.from = 0, .to = std::numeric_limits<history::Micros>::max() / 2},
                 [&](history::SessionRecord&& r) { out[r.session_id] = std::move(r); });
  return out;
}

// A pause long enough that instants between the events are unambiguous at
// the millisecond precision of the answers.
void pause() { std::this_thread::sleep_for(std::chrono::milliseconds(120)); }

TEST(HistoryEndToEnd, CommandLineAndApiAnswerWhoWasOpenAndThePeak) {
  Stack s;
  // a, then b, then c open (the peak: 3); a and b close; d opens; c, d close.
  Client a, b, c, d;
  ASSERT_TRUE(a.open(s.port(), kListen, "Token k"));
  pause();
  ASSERT_TRUE(b.open(s.port(), kListen, "Token k"));
  pause();
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k"));
  pause();
  finish(a);
  finish(b);
  pause();
  ASSERT_TRUE(d.open(s.port(), kListen, "Token k"));
  pause();
  finish(c);
  finish(d);
  ASSERT_TRUE(eventually([&] { return s.registry().size() == 0; }));
  ASSERT_TRUE(s.recorder().flush(10'000'000));

  auto rows = rows_by_id(s.history_url());
  const auto ia = session_id_of(a), ib = session_id_of(b), ic = session_id_of(c), id = session_id_of(d);
  ASSERT_EQ(rows.size(), 4u);
  const auto& ra = rows.at(ia);
  const auto& rb = rows.at(ib);
  const auto& rc = rows.at(ic);
  const auto& rd = rows.at(id);
  // The instant between b's and c's opening: a and b are open.
  auto t = (*rb.opened_at + *rc.opened_at) / 2;
  auto at = history::format_time(t);
  auto from = history::format_time(*ra.opened_at - 5'000'000);
  auto to = history::format_time(*rd.closed_at + 5'000'000);

  auto cli = run_sluice({"sessions", "--at", at, "--store", s.history_url(), "--json"});
  ASSERT_EQ(cli.status, 0) << cli.err;
  auto open_at = json::parse(cli.out).as_object();
  EXPECT_EQ(ids_of(open_at.at("sessions")), (std::set<std::int64_t>{ia, ib}));
  // And after a and b closed: c and d.
  auto later = history::format_time((*rd.opened_at + *rc.closed_at) / 2);
  cli = run_sluice({"sessions", "--at", later, "--store", s.history_url(), "--json"});
  ASSERT_EQ(cli.status, 0) << cli.err;
  EXPECT_EQ(ids_of(json::parse(cli.out).at("sessions")), (std::set<std::int64_t>{ic, id}));

  cli = run_sluice({"peaks", "--window", "10m", "--from", from, "--to", to, "--store", s.history_url(), "--json"});
  ASSERT_EQ(cli.status, 0) << cli.err;
  auto peaks = json::parse(cli.out).as_object();
  ASSERT_EQ(peaks.at("pools").as_array().size(), 1u);
  const auto& pool = peaks.at("pools").as_array()[0].as_object();
  EXPECT_EQ(pool.at("pool").as_string(), "streaming");
  EXPECT_EQ(pool.at("peak").to_number<int>(), 3);
  // The peak was first reached when c opened, and lasted until a closed.
  EXPECT_EQ(pool.at("peak_at").as_string(), history::format_time(*rc.opened_at));
  EXPECT_EQ(pool.at("peak_until").as_string(), history::format_time(*ra.closed_at));
  EXPECT_EQ(ids_of(pool.at("sessions")), (std::set<std::int64_t>{ia, ib, ic}));
  const auto& best = pool.at("best_window").as_object();
  EXPECT_EQ(best.at("max").to_number<int>(), 3);
  EXPECT_LE(best.at("start").as_string(), pool.at("peak_at").as_string());
  EXPECT_GT(best.at("end").as_string(), pool.at("peak_at").as_string());

  // The table form names the same peak.
  cli = run_sluice({"peaks", "--window", "10m", "--from", from, "--to", to, "--store", s.history_url()});
  ASSERT_EQ(cli.status, 0) << cli.err;
  EXPECT_NE(cli.out.find("streaming"), std::string::npos) << cli.out;

  // The admin API answers the same, from the running gateway.
  auto encode = [](std::string v) {
    for (std::size_t p; (p = v.find('+')) != std::string::npos;) v.replace(p, 1, "%2B");
    return v;
  };
  auto res = admin_call(s.admin_port(), http::verb::get, "/api/v1/history/sessions?at=" + encode(at));
  ASSERT_EQ(res.result_int(), 200) << res.body();
  EXPECT_EQ(ids_of(json::parse(res.body()).at("sessions")), (std::set<std::int64_t>{ia, ib}));
  res = admin_call(s.admin_port(), http::verb::get,
                   "/api/v1/history/peaks?window=10m&from=" + encode(from) + "&to=" + encode(to));
  ASSERT_EQ(res.result_int(), 200) << res.body();
  auto api_pool = json::parse(res.body()).at("pools").as_array()[0].as_object();
  EXPECT_EQ(api_pool.at("peak").to_number<int>(), 3);
  EXPECT_EQ(api_pool.at("peak_at"), pool.at("peak_at"));
  EXPECT_EQ(ids_of(api_pool.at("sessions")), (std::set<std::int64_t>{ia, ib, ic}));
}

TEST(HistoryEndToEnd, RecorderWritesToPostgreSql) {
  auto base = postgres_url();
  if (!base) {
    if (in_ci()) FAIL() << kNoPostgresInCi;
    GTEST_SKIP() << kNoPostgres;
  }
  // A fresh schema of its own, so runs of this test never meet.
  PostgresSchema schema(*base);
  const std::string& scoped = schema.url();
  std::set<std::int64_t> ids;
  {
    Stack s({}, [&](config::Config& c, Stack&) { c.store.url = scoped; });
    for (int i = 0; i < 3; ++i) {
      Client c;
      ASSERT_TRUE(c.open(s.port(), kListen, "Token k"));
      ids.insert(session_id_of(c));
      finish(c);
    }
    ASSERT_TRUE(eventually([&] { return s.registry().size() == 0; }));
    ASSERT_TRUE(s.recorder().flush(10'000'000));
    auto metrics = admin_call(s.admin_port(), http::verb::get, "/metrics", "");
    EXPECT_EQ(metrics.body().find("password"), std::string::npos);
  }
  auto rows = rows_by_id(scoped);
  std::set<std::int64_t> recorded;
  for (const auto& [sid, r] : rows) {
    recorded.insert(sid);
    EXPECT_EQ(r.outcome, history::Outcome::completed);
    EXPECT_TRUE(r.opened_at && r.closed_at && *r.opened_at < *r.closed_at);
  }
  EXPECT_EQ(recorded, ids);
  // The command line reads it too.
  auto cli = run_sluice({"sessions", "--from", "-1h", "--store", scoped, "--json"});
  ASSERT_EQ(cli.status, 0) << cli.err;
  EXPECT_EQ(ids_of(json::parse(cli.out).at("sessions")), ids);
  EXPECT_EQ(cli.err.find("sluice-test-password"), std::string::npos);
}

}  // namespace
}  // namespace sluice::testing
