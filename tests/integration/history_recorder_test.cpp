// The recorder against real streams: every stream's row, its interval and
// outcome, the per-second concurrency, crash recovery after kill -9, and a
// stalled database that neither stalls the relay nor loses a row.
#include <sqlite3.h>

#include <sched.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "child_process.hpp"
#include "history/queries.hpp"
#include "history/store.hpp"
#include "stack.hpp"
#include "sluice_binary.hpp"

namespace sluice::testing {
namespace {

constexpr const char* kListen = "/v1/listen?encoding=linear16&sample_rate=16000";

std::vector<history::SessionRecord> all_rows(const std::string& url) {
  history::Store store(url, {.read_only = true});
  std::vector<history::SessionRecord> out;
  history::SessionQuery q;
  q.from = 0;
  q.to = std::numeric_limits<history::Micros>::max() / 2;
  q.include_unopened = true;
  store.sessions(q, [&](history::SessionRecord&& r) { out.push_back(std::move(r)); });
  return out;
}

const history::SessionRecord* row_for(const std::vector<history::SessionRecord>& rows, std::int64_t session) {
  for (const auto& r : rows)
    if (r.session_id == session) return &r;
  return nullptr;
}

std::int64_t session_id_of(const Client& c) { return std::stoll(std::string(c.response["x-sluice-session-id"])); }

// Sends audio, asks for the final results and waits for the close.
void finish(Client& c, double seconds) {
  c.send_binary(linear16_silence(seconds));
  c.send_text(R"({"type":"CloseStream"})");
  ASSERT_TRUE(c.read_until_type("Metadata"));
  EXPECT_EQ(c.read_until_close(), 1000);
}

TEST(History, EveryStreamIsRecordedWithItsIntervalOutcomeAndConcurrency) {
  Stack s({}, [](config::Config& c, Stack&) {
    config::PoolConfig p;
    p.name = "streaming";
    p.match.path = "/v1/listen";
    p.limit = 2;
    p.queue_timeout = std::chrono::milliseconds(200);
    c.pools = {p};
  });
  // a opens, b opens, a closes, c opens, then b and c close; d is refused
  // while b and c hold the pool.
  Client a, b, c, d;
  ASSERT_TRUE(a.open(s.port(), kListen, "Token k"));
  ASSERT_TRUE(b.open(s.port(), kListen, "Token k"));
  finish(a, 0.2);
  ASSERT_TRUE(eventually([&] { return s.gateway().admission().status("streaming")->in_use == 1; }));
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k"));
  EXPECT_FALSE(d.open(s.port(), kListen, "Token k"));
  finish(b, 0.3);
  finish(c, 0.1);
  ASSERT_TRUE(eventually([&] { return s.registry().size() == 0; }));
  ASSERT_TRUE(s.recorder().flush(10'000'000));

  auto rows = all_rows(s.history_url());
  ASSERT_EQ(rows.size(), 4u);
  auto* ra = row_for(rows, session_id_of(a));
  auto* rb = row_for(rows, session_id_of(b));
  auto* rc = row_for(rows, session_id_of(c));
  ASSERT_TRUE(ra && rb && rc);
  for (auto* r : {ra, rb, rc}) {
    EXPECT_EQ(r->outcome, history::Outcome::completed);
    ASSERT_TRUE(r->opened_at && r->closed_at && r->admitted_at);
    EXPECT_LE(r->accepted_at, *r->admitted_at);
    EXPECT_LE(*r->admitted_at, *r->opened_at);
    EXPECT_LT(*r->opened_at, *r->closed_at);
    EXPECT_EQ(r->pool, "streaming");
    EXPECT_EQ(r->path, "/v1/listen");
    EXPECT_EQ(r->closed_by, "upstream");
    EXPECT_EQ(r->close_code, 1000);
    EXPECT_FALSE(r->request_id.empty());
    EXPECT_EQ(r->user_agent, "sluice-test/1");
    EXPECT_EQ(r->params, R"({"encoding":"linear16","sample_rate":"16000"})");
  }
  EXPECT_DOUBLE_EQ(ra->audio_seconds, 0.2);
  EXPECT_DOUBLE_EQ(rb->audio_seconds, 0.3);
  EXPECT_EQ(ra->audio_messages, 1);
  // The order of events: b opened while a was open; c after a closed.
  EXPECT_LT(*rb->opened_at, *ra->closed_at);
  EXPECT_GE(*rc->opened_at, *ra->closed_at);
  // d: refused after waiting in the queue, never opened.
  const history::SessionRecord* rd = nullptr;
  for (const auto& r : rows)
    if (&r != ra && &r != rb && &r != rc) rd = &r;
  ASSERT_TRUE(rd);
  EXPECT_EQ(rd->outcome, history::Outcome::queue_timeout);
  EXPECT_FALSE(rd->opened_at);
  EXPECT_EQ(rd->outcome_reason, "queue_timeout");

  // Exact over the intervals: the peak is 2, first reached when b opened,
  // made by a and b.
  history::Store store(s.history_url(), {.read_only = true});
  const auto from = *ra->opened_at - 1'000'000, to = *rc->closed_at + 1;
  history::ConcurrencySweep sweep(from, to, 0, 600'000'000);
  history::SessionQuery q{.from = from, .to = to};
  store.spans(q, *rc->closed_at + 1, [&](history::Span&& sp) { sweep.add(sp); });
  auto pools = sweep.finish();
  ASSERT_EQ(pools.size(), 1u);
  EXPECT_EQ(pools[0].peak, 2);
  EXPECT_EQ(pools[0].peak_at, *rb->opened_at);
  EXPECT_EQ(pools[0].peak_until, *ra->closed_at);
  std::set<std::int64_t> peak_ids;
  for (auto [run, id] : pools[0].peak_sessions) peak_ids.insert(id);
  EXPECT_EQ(peak_ids, (std::set<std::int64_t>{ra->session_id, rb->session_id}));

  // The per-second samples agree: at most 2, and the seconds are covered.
  auto samples = store.samples(*ra->opened_at, *rc->closed_at + 1, std::string("streaming"));
  ASSERT_FALSE(samples.empty());
  int max_open = 0;
  for (const auto& sm : samples) max_open = std::max(max_open, sm.max_open);
  EXPECT_EQ(max_open, 2);
  EXPECT_LE(samples.front().second, *ra->opened_at / 1'000'000);
  EXPECT_GE(samples.back().second, *rc->closed_at / 1'000'000 - 1);

  // Events: the start and the queue timeout, with its session.
  auto events = store.events(0, std::numeric_limits<history::Micros>::max() / 2, std::nullopt, 100);
  std::set<std::string> types;
  for (const auto& e : events) {
    types.insert(e.type);
    if (e.type == "queue_timeout") {
      EXPECT_EQ(e.session_id, rd->session_id);
    }
  }
  EXPECT_TRUE(types.count("start"));
  EXPECT_TRUE(types.count("queue_timeout"));
}

// The writer must never hold a CPU an I/O thread wants: it runs under
// SCHED_IDLE, named so that operators can find it.
// flush() promises the concurrency of the second in progress too. It used to
// return as soon as any writer pass had committed what was handed before the
// call (at once when the regular passes had committed it all), and no pass
// had written that second: a stream opened and closed within the second was
// then missing from the samples.
TEST(History, FlushWritesTheSecondInProgress) {
  char dir[] = "/tmp/sluice-flush-XXXXXX";
  ASSERT_TRUE(::mkdtemp(dir));
  const std::string url = std::string("sqlite:") + dir + "/history.db";
  history::Recorder rec({.url = url, .instance = "test", .version = "0", .flush_interval = 1'000});
  history::Store store(url, {.read_only = true});
  for (int i = 1; i <= 20; ++i) {
    registry::SessionInfo info;
    info.id = static_cast<registry::SessionId>(i);
    info.pool = "flush";
    info.accepted = registry::wall_now();
    info.accepted_mono = registry::mono_ns();
    auto e = std::make_shared<registry::SessionEntry>(std::move(info));
    e->counters().upstream_open_ns.store(registry::mono_ns());
    rec.admitted(e);
    rec.opened(*e);
    e->counters().closed_ns.store(registry::mono_ns());
    rec.upstream_closed(*e);
    rec.finished(*e, {});
    // Let the writer's regular passes commit the rows first: flush() must
    // still write the second in progress.
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(rec.flush(10'000'000));
    const auto opened = e->info().to_wall_ns(e->counters().upstream_open_ns.load()) / 1000;
    const auto closed = e->info().to_wall_ns(e->counters().closed_ns.load()) / 1000;
    auto samples = store.samples(opened, closed + 1, std::string("flush"));
    ASSERT_FALSE(samples.empty()) << "stream " << i << ": no sample for its second after flush()";
    EXPECT_GE(samples.back().max_open, 1);
  }
  rec.stop();
  std::filesystem::remove_all(dir);
}

TEST(History, TheWriterThreadYieldsToTheIoThreads) {
  Stack s;
  (void)s.recorder();
  // The thread names and demotes itself as it starts: look until it has.
  int writers = 0;
  int policy = -1;
  for (int attempt = 0; attempt < 200 && writers == 0; ++attempt) {
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
      std::ifstream comm(task.path() / "comm");
      std::string name;
      std::getline(comm, name);
      if (name != "sluice-history") continue;
      ++writers;
      policy = ::sched_getscheduler(static_cast<pid_t>(std::stol(task.path().filename().string())));
    }
    if (writers == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(policy, SCHED_IDLE);
  EXPECT_EQ(writers, 1);
}

TEST(History, StalledDatabaseStallsNeitherTheRelayNorLosesARow) {
  Stack s({}, [](config::Config& c, Stack&) { c.store.queue_limit = 100; });
  ASSERT_TRUE(s.recorder().flush(10'000'000));
  // Another connection takes the write lock and keeps it.
  auto path = s.history_url();
  sqlite3* blocker = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &blocker), SQLITE_OK);
  sqlite3_busy_timeout(blocker, 10000);
  ASSERT_EQ(sqlite3_exec(blocker, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(blocker, "INSERT INTO meta (name, value) VALUES ('blocker', 1)", nullptr, nullptr, nullptr),
            SQLITE_OK);

  constexpr int kStreams = 6;
  std::set<std::int64_t> ids;
  for (int i = 0; i < kStreams; ++i) {
    Client c;
    ASSERT_TRUE(c.open(s.port(), kListen, "Token k"));
    ids.insert(session_id_of(c));
    finish(c, 0.1);  // the relay works while the recorder cannot write
  }
  ASSERT_TRUE(eventually([&] { return s.recorder().stats().write_failures > 0; }));
  auto stalled = s.recorder().stats();
  EXPECT_GE(stalled.pending_sessions, 1u);
  EXPECT_FALSE(stalled.last_error.empty());
  EXPECT_FALSE(s.recorder().flush(100'000));  // nothing commits while locked
  // Events beyond the queue's bound are dropped, counted and shown; rows never are.
  for (int i = 0; i < 150; ++i) s.gateway().events().record("test", {});
  EXPECT_GE(s.recorder().stats().events_dropped, 50u);
  auto metrics = admin_call(s.admin_port(), http::verb::get, "/metrics", "");
  EXPECT_EQ(metrics.result_int(), 200);
  EXPECT_NE(metrics.body().find("sluice_history_events_dropped_total "), std::string::npos);
  EXPECT_EQ(metrics.body().find("sluice_history_events_dropped_total 0\n"), std::string::npos);
  EXPECT_EQ(metrics.body().find("sluice_history_write_failures_total 0\n"), std::string::npos);
  EXPECT_NE(metrics.body().find("sluice_pool_in_use{pool=\"streaming\"} 0"), std::string::npos) << metrics.body();

  ASSERT_EQ(sqlite3_exec(blocker, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(blocker);
  ASSERT_TRUE(s.recorder().flush(20'000'000));
  auto rows = all_rows(s.history_url());
  std::set<std::int64_t> recorded;
  for (const auto& r : rows) {
    EXPECT_EQ(r.outcome, history::Outcome::completed) << r.session_id;
    EXPECT_TRUE(r.closed_at.has_value());
    recorded.insert(r.session_id);
  }
  EXPECT_EQ(recorded, ids);
  EXPECT_EQ(s.recorder().stats().pending_sessions, 0u);
}

std::string write_store_config(const std::filesystem::path& dir) {
  auto file = (dir / "sluice.yaml").string();
  std::ofstream f(file);
  f << "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n  token: t\n"
    << "store:\n  url: " << (dir / "data" / "history.db").string() << "\n  heartbeat: 200ms\n  instance: kill-test\n";
  return file;
}

TEST(History, KillNineLeavesRowsThatTheNextStartMarksInterrupted) {
  Stack s;  // its simulator is the upstream
  char tmpl[] = "/tmp/sluice-kill9-XXXXXX";
  ASSERT_TRUE(::mkdtemp(tmpl));
  std::filesystem::path dir(tmpl);
  auto file = write_store_config(dir);
  auto url = (dir / "data" / "history.db").string();
  auto upstream = "ws://" + net::to_string(s.sim().endpoint());
  std::vector<std::string> argv{SLUICE_BINARY, "serve", "--config", file, "--upstream", upstream,
                                "--admin-token-file", (dir / "admin.token").string()};
  std::set<std::int64_t> ids;
  {
    ChildProcess gw(argv);
    auto port = static_cast<unsigned short>(std::stoi(gw.wait_for_line(R"(listening on 127\.0\.0\.1:(\d+) admin)")[1]));
    std::vector<std::unique_ptr<Client>> clients;
    for (int i = 0; i < 3; ++i) {
      clients.push_back(std::make_unique<Client>());
      ASSERT_TRUE(clients.back()->open(port, kListen, "Token k"));
      clients.back()->send_binary(linear16_silence(0.2));
      ids.insert(session_id_of(*clients.back()));
    }
    // Wait until the open rows are on disk, with a heartbeat after the audio.
    ASSERT_TRUE(eventually([&] {
      try {
        auto rows = all_rows(url);
        int fresh = 0;
        for (const auto& r : rows)
          if (r.outcome == history::Outcome::open && r.opened_at && r.last_audio_at && r.last_seen_at > *r.last_audio_at)
            ++fresh;
        return fresh == 3;
      } catch (const history::DbError&) {
        return false;
      }
    }));
    int status = gw.stop(SIGKILL);
    ASSERT_TRUE(WIFSIGNALED(status));
  }
  auto before = all_rows(url);
  ASSERT_EQ(before.size(), 3u);
  for (const auto& r : before) EXPECT_EQ(r.outcome, history::Outcome::open);

  {
    ChildProcess gw(argv);
    gw.wait_for_line(R"(listening on 127\.0\.0\.1:(\d+) admin)");
    auto rows = all_rows(url);
    ASSERT_EQ(rows.size(), 3u);  // none missing
    std::set<std::int64_t> recorded;
    for (const auto& r : rows) {
      recorded.insert(r.session_id);
      EXPECT_EQ(r.outcome, history::Outcome::interrupted);
      ASSERT_TRUE(r.closed_at && r.opened_at);
      EXPECT_EQ(*r.closed_at, r.last_seen_at);  // ends at its last known activity
      EXPECT_GT(*r.closed_at, *r.opened_at);
      EXPECT_GE(*r.closed_at, *r.last_audio_at);
    }
    EXPECT_EQ(recorded, ids);
    gw.stop();
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(url.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  std::string check;
  sqlite3_exec(db, "PRAGMA integrity_check", [](void* out, int, char** v, char**) {
    *static_cast<std::string*>(out) = v[0] ? v[0] : "";
    return 0;
  }, &check, nullptr);
  sqlite3_close(db);
  EXPECT_EQ(check, "ok");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sluice::testing
