// The history store and its exact queries, the same suite on both backends:
// SQLite (a temporary file) and PostgreSQL (SLUICE_TEST_POSTGRES_URL; see
// scripts/test-postgres.sh). Each PostgreSQL test runs in a schema of its
// own, dropped at the end.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "history/db.hpp"
#include "history/queries.hpp"
#include "history/rollup.hpp"
#include "history/store.hpp"
#include "postgres_schema.hpp"

namespace sluice::history {
namespace {

using sluice::testing::in_ci;
using sluice::testing::kNoPostgres;
using sluice::testing::kNoPostgresInCi;
using sluice::testing::postgres_url;
using sluice::testing::PostgresSchema;
using sluice::testing::unique_suffix;

namespace fs = std::filesystem;

constexpr Micros kS = 1'000'000;
constexpr Micros kMin = 60 * kS;
constexpr Micros kHour = 60 * kMin;
constexpr Micros kDay = 24 * kHour;
// 2025-11-22 00:00:00 UTC, a Saturday; a multiple of 10 minutes.
constexpr Micros kMidnight = 1'763'769'600 * kS;
constexpr Micros T = kMidnight + 12 * kHour;

std::int64_t utc(std::int64_t) { return 0; }

using Key = std::pair<std::int64_t, std::int64_t>;
using Keys = std::vector<Key>;

// A stream that held capacity during [opened, closed), or is still open.
SessionRecord session(std::int64_t run, std::int64_t id, Micros opened, std::optional<Micros> closed,
                      const std::string& pool = "listen", const std::string& tenant = "acme") {
  SessionRecord r;
  r.run_id = run;
  r.session_id = id;
  r.tenant = tenant;
  r.pool = pool;
  r.path = "/v1/listen";
  r.accepted_at = opened - 2000;
  r.admitted_at = opened - 1000;
  r.opened_at = opened;
  r.closed_at = closed;
  r.last_seen_at = closed.value_or(opened);
  r.outcome = closed ? Outcome::completed : Outcome::open;
  return r;
}

// A stream refused before it opened.
SessionRecord refused(std::int64_t run, std::int64_t id, Micros accepted, const std::string& pool = "listen") {
  SessionRecord r;
  r.run_id = run;
  r.session_id = id;
  r.tenant = "acme";
  r.pool = pool;
  r.path = "/v1/listen";
  r.accepted_at = accepted;
  r.closed_at = accepted;
  r.last_seen_at = accepted;
  r.outcome = Outcome::refused;
  r.outcome_reason = "pool full";
  return r;
}

class HistoryStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "sqlite") {
      dir_ = fs::temp_directory_path() / ("sluice-history-test-" + unique_suffix());
      fs::create_directories(dir_);
      url_ = (dir_ / "history.db").string();
    } else {
      auto base = postgres_url();
      if (!base) {
        if (in_ci()) GTEST_FAIL() << kNoPostgresInCi;
        GTEST_SKIP() << kNoPostgres;
      }
      schema_ = std::make_unique<PostgresSchema>(*base);
      url_ = schema_->url();
    }
  }

  void TearDown() override {
    schema_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }

  bool postgres() const { return GetParam() == "postgres"; }

  std::unique_ptr<Store> open(const OpenOptions& options = {}) { return std::make_unique<Store>(url_, options); }

  static void write_sessions(Store& store, std::vector<SessionRecord> rows) {
    WriteBatch b;
    b.sessions = std::move(rows);
    store.write(b);
  }

  // Takes a database of this version back to version 2 (before the rollup
  // and the resume columns).
  void drop_version_3(Store& store) {
    store.connection().exec("ALTER TABLE sessions DROP COLUMN upstream_request_ids");
    store.connection().exec("ALTER TABLE sessions DROP COLUMN resumes");
    if (postgres()) {
      store.connection().exec("DROP TRIGGER sessions_rollup ON sessions; DROP FUNCTION sluice_rollup_invalidate()");
    } else {
      store.connection().exec(
          "DROP TRIGGER sessions_rollup_insert; DROP TRIGGER sessions_rollup_update; DROP TRIGGER sessions_rollup_delete");
    }
    store.connection().exec(
        "DROP TABLE rollup_minutes; DROP TABLE rollup_cover; DROP INDEX sessions_closed; DELETE FROM meta WHERE name LIKE "
        "'rollup%'; DELETE FROM schema_version WHERE version > 2");
  }

  static Keys keys(Store& store, SessionQuery q) {
    Keys out;
    store.sessions(q, [&](SessionRecord&& r) { out.emplace_back(r.run_id, r.session_id); });
    std::sort(out.begin(), out.end());
    return out;
  }

  static std::vector<Span> spans(Store& store, SessionQuery q, Micros now) {
    std::vector<Span> out;
    store.spans(q, now, [&](Span&& s) { out.push_back(std::move(s)); });
    return out;
  }

  static std::vector<PoolConcurrency> concurrency(Store& store, Micros from, Micros to, Micros origin, Micros size,
                                                  Micros now, std::optional<std::string> pool = {},
                                                  std::optional<std::string> tenant = {}) {
    ConcurrencySweep sweep(from, to, origin, size);
    store.spans({.from = from, .to = to, .pool = pool, .tenant = tenant}, now, [&](Span&& s) { sweep.add(s); });
    return sweep.finish();
  }

  fs::path dir_;
  std::string url_;
  std::unique_ptr<PostgresSchema> schema_;
};

std::string backend_name(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

INSTANTIATE_TEST_SUITE_P(Backends, HistoryStoreTest, ::testing::Values(std::string("sqlite"), std::string("postgres")),
                         backend_name);

// --- Schema, runs, rows ------------------------------------------------------

TEST_P(HistoryStoreTest, MigratesOnceAndReopensIdempotently) {
  {
    auto store = open();
    EXPECT_EQ(store->schema_version(), kSchemaVersion);
    write_sessions(*store, {session(1, 1, T, T + kMin)});
  }
  for (int i = 0; i < 2; ++i) {
    auto store = open();
    EXPECT_EQ(store->schema_version(), kSchemaVersion);
    std::int64_t rows = -1;
    store->connection().query("SELECT COUNT(*) FROM schema_version", {}, [&](const Row& r) { rows = r.integer(0); });
    EXPECT_EQ(rows, kSchemaVersion);
    EXPECT_EQ(keys(*store, {.from = T, .to = T + 1}), (Keys{{1, 1}}));
  }
  auto reader = open({.read_only = true});
  EXPECT_EQ(reader->schema_version(), kSchemaVersion);
  EXPECT_EQ(keys(*reader, {.from = T, .to = T + 1}), (Keys{{1, 1}}));
}

TEST_P(HistoryStoreTest, MigratesAVersion1Database) {
  auto index_exists = [&](Store& store) {
    std::int64_t n = 0;
    store.connection().query(postgres() ? "SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema() AND "
                                          "indexname = 'sessions_open_since'"
                                        : "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = "
                                          "'sessions_open_since'",
                             {}, [&](const Row& r) { n = r.integer(0); });
    return n == 1;
  };
  {
    // Version 1: the database as the first release of the schema left it.
    auto store = open();
    write_sessions(*store, {session(1, 1, T, std::nullopt), session(1, 2, T, T + kS)});
    drop_version_3(*store);
    store->connection().exec("DROP INDEX sessions_open_since");
    store->connection().exec("DELETE FROM schema_version WHERE version > 1");
    ASSERT_EQ(store->schema_version(), 1);
  }
  {
    // A reader of this version reads it as it is.
    auto reader = open({.read_only = true});
    EXPECT_EQ(reader->schema_version(), 1);
    EXPECT_EQ(keys(*reader, {.from = T, .to = T + 1}), (Keys{{1, 1}, {1, 2}}));
  }
  auto store = open();
  EXPECT_EQ(store->schema_version(), kSchemaVersion);
  EXPECT_TRUE(index_exists(*store));
  EXPECT_EQ(keys(*store, {.from = T, .to = T + 1}), (Keys{{1, 1}, {1, 2}}));
}

TEST_P(HistoryStoreTest, RefusesADatabaseWithANewerSchema) {
  {
    auto store = open();
    std::array<Value, 1> p{std::int64_t{kSchemaVersion + 1}};
    store->connection().run("INSERT INTO schema_version (version, applied_at) VALUES (?, 0)", p);
  }
  for (bool read_only : {false, true}) {
    SCOPED_TRACE(read_only ? "read-only" : "read-write");
    try {
      open({.read_only = read_only});
      FAIL() << "expected DbError";
    } catch (const DbError& e) {
      std::string what = e.what();
      EXPECT_NE(what.find("schema version " + std::to_string(kSchemaVersion + 1)), std::string::npos) << what;
      EXPECT_NE(what.find("newer than this sluice"), std::string::npos) << what;
      EXPECT_EQ(what.find("sluice-test-password"), std::string::npos) << what;
    }
  }
}

TEST_P(HistoryStoreTest, ReadOnlyOpenOfAnEmptyDatabaseSaysItHoldsNoHistory) {
  if (!postgres()) open_database(url_).reset();  // an empty SQLite file
  try {
    open({.read_only = true});
    FAIL() << "expected DbError";
  } catch (const DbError& e) {
    EXPECT_NE(std::string(e.what()).find("holds no sluice history"), std::string::npos) << e.what();
  }
}

TEST_P(HistoryStoreTest, RunsBeginAreSeenAndEnd) {
  auto store = open();
  auto a = store->begin_run({.instance = "host:8080", .version = "0.1.0", .pid = 42, .started_at = T});
  auto b = store->begin_run({.instance = "host:8081", .version = "0.1.0", .pid = 43, .started_at = T + kS});
  EXPECT_GT(b, a);
  WriteBatch batch;
  batch.run_seen = std::make_pair(a, T + 5 * kS);
  store->write(batch);
  store->end_run(b, T + 9 * kS);
  auto runs = store->runs();
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].run_id, a);
  EXPECT_EQ(runs[0].instance, "host:8080");
  EXPECT_EQ(runs[0].version, "0.1.0");
  EXPECT_EQ(runs[0].pid, 42);
  EXPECT_EQ(runs[0].started_at, T);
  EXPECT_EQ(runs[0].last_seen_at, T + 5 * kS);
  EXPECT_FALSE(runs[0].stopped_at);
  EXPECT_EQ(runs[1].last_seen_at, T + 9 * kS);
  EXPECT_EQ(runs[1].stopped_at, T + 9 * kS);
}

TEST_P(HistoryStoreTest, SessionsRoundTripEveryColumnAndUpsertTheWholeRow) {
  auto store = open();
  SessionRecord r;
  r.run_id = 7;
  r.session_id = 123456789012;
  r.request_id = "a3c1e9d2-0000-4000-8000-000000000001";
  r.tenant = "acme";
  r.pool = "listen-nova";
  r.path = "/v1/listen";
  r.model = "nova-3";
  r.params = R"({"encoding":"linear16","sample_rate":"16000","language":"en-US"})";
  r.client_address = "[::1]:51234";
  r.user_agent = "deepgram-sdk/4.0 \"quoted\" it's";
  r.accepted_at = T;
  r.admitted_at = T + 10;
  r.opened_at = T + 20;
  r.first_audio_at = T + 30;
  r.last_audio_at = T + 40;
  r.last_seen_at = T + 50;
  r.outcome = Outcome::open;
  r.client_messages = 1;
  r.client_bytes = 3'000'000'000'000;
  r.upstream_messages = 3;
  r.upstream_bytes = 4;
  r.audio_messages = 5;
  r.audio_bytes = 6;
  r.keep_alive = 7;
  r.audio_seconds = 12.345678901234;
  r.idle_seconds = 0.25;
  write_sessions(*store, {r});

  auto read = [&] {
    std::vector<SessionRecord> out;
    store->sessions({.from = T, .to = T + kHour}, [&](SessionRecord&& s) { out.push_back(std::move(s)); });
    return out;
  };
  auto got = read();
  ASSERT_EQ(got.size(), 1u);
  const auto& g = got[0];
  EXPECT_EQ(g.run_id, r.run_id);
  EXPECT_EQ(g.session_id, r.session_id);
  EXPECT_EQ(g.request_id, r.request_id);
  EXPECT_EQ(g.tenant, r.tenant);
  EXPECT_EQ(g.pool, r.pool);
  EXPECT_EQ(g.path, r.path);
  EXPECT_EQ(g.model, r.model);
  EXPECT_EQ(g.params, r.params);
  EXPECT_EQ(g.client_address, r.client_address);
  EXPECT_EQ(g.user_agent, r.user_agent);
  EXPECT_EQ(g.accepted_at, r.accepted_at);
  EXPECT_EQ(g.admitted_at, r.admitted_at);
  EXPECT_EQ(g.opened_at, r.opened_at);
  EXPECT_EQ(g.first_audio_at, r.first_audio_at);
  EXPECT_EQ(g.last_audio_at, r.last_audio_at);
  EXPECT_EQ(g.last_seen_at, r.last_seen_at);
  EXPECT_FALSE(g.closed_at);
  EXPECT_FALSE(g.close_code);
  EXPECT_EQ(g.outcome, Outcome::open);
  EXPECT_EQ(g.client_messages, 1);
  EXPECT_EQ(g.client_bytes, 3'000'000'000'000);
  EXPECT_EQ(g.upstream_messages, 3);
  EXPECT_EQ(g.upstream_bytes, 4);
  EXPECT_EQ(g.audio_messages, 5);
  EXPECT_EQ(g.audio_bytes, 6);
  EXPECT_EQ(g.keep_alive, 7);
  EXPECT_DOUBLE_EQ(g.audio_seconds, r.audio_seconds);
  EXPECT_DOUBLE_EQ(g.idle_seconds, 0.25);

  // The close: the whole row again, once.
  r.closed_at = T + 60;
  r.last_seen_at = T + 60;
  r.close_code = 1000;
  r.close_reason = "bye";
  r.closed_by = "client";
  r.outcome = Outcome::reaped;
  r.outcome_reason = "idle";
  r.audio_seconds = 20;
  r.model.clear();  // cleared fields read back empty
  write_sessions(*store, {r});
  got = read();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].closed_at, T + 60);
  EXPECT_EQ(got[0].close_code, 1000);
  EXPECT_EQ(got[0].close_reason, "bye");
  EXPECT_EQ(got[0].closed_by, "client");
  EXPECT_EQ(got[0].outcome, Outcome::reaped);
  EXPECT_EQ(got[0].outcome_reason, "idle");
  EXPECT_DOUBLE_EQ(got[0].audio_seconds, 20);
  EXPECT_EQ(got[0].model, "");
  EXPECT_EQ(got[0].request_id, r.request_id);

  // Every outcome's name survives the trip.
  std::int64_t id = 100;
  std::vector<SessionRecord> rows;
  for (auto o : {Outcome::open, Outcome::completed, Outcome::reaped, Outcome::refused, Outcome::queue_timeout,
                 Outcome::upstream_refused, Outcome::interrupted}) {
    auto s = session(8, id++, T + kDay, T + kDay + kS);
    s.outcome = o;
    rows.push_back(s);
  }
  write_sessions(*store, rows);
  std::vector<Outcome> outcomes;
  store->sessions({.from = T + kDay, .to = T + kDay + 1},
                  [&](SessionRecord&& s) { outcomes.push_back(s.outcome); });
  ASSERT_EQ(outcomes.size(), rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(outcomes[i], rows[i].outcome) << i;
}

// --- Which streams meet an instant or a range ----------------------------------

TEST_P(HistoryStoreTest, OpenAtAnInstantCountsOpenedAtTAndNotClosedAtT) {
  auto store = open();
  write_sessions(*store, {
                             session(1, 1, T - 10 * kMin, T),          // closed exactly at T: not open
                             session(1, 2, T, T + 5 * kMin),           // opened exactly at T: open
                             session(1, 3, T - kHour, T + kHour),      // spans T
                             session(1, 4, T, T),                      // zero-length at T: never open
                             session(1, 5, T - 1, T - 1),              // zero-length before T
                             session(1, 6, T + 1, T + 2 * kMin),       // opens just after
                             session(1, 7, T - 5 * kMin, std::nullopt),  // still open since before T
                             session(1, 8, T + 1, std::nullopt),       // still open, opened after T
                             refused(1, 9, T),                         // never opened
                             session(2, 1, T - 1, T + 1, "speak"),     // another pool
                         });
  const Micros now = T + 10 * kMin;
  // The rows that meet [T, T + 1 µs): a zero-length stream at T meets it.
  EXPECT_EQ(keys(*store, {.from = T, .to = T + 1}), (Keys{{1, 2}, {1, 3}, {1, 4}, {1, 7}, {2, 1}}));
  EXPECT_EQ(keys(*store, {.from = T, .to = T + 1, .include_unopened = true}),
            (Keys{{1, 2}, {1, 3}, {1, 4}, {1, 7}, {1, 9}, {2, 1}}));
  // Open at T: opened_at <= T < closed_at.
  Keys open;
  for (const auto& s : spans(*store, {.from = T, .to = T + 1}, now))
    if (open_at(s, T)) open.emplace_back(s.run_id, s.session_id);
  std::sort(open.begin(), open.end());
  EXPECT_EQ(open, (Keys{{1, 2}, {1, 3}, {1, 7}, {2, 1}}));
  // The sweep over that instant agrees.
  auto c = concurrency(*store, T, T + 1, T, 1, now);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].pool, "listen");
  EXPECT_EQ(c[0].peak, 3);
  EXPECT_EQ(c[0].peak_at, T);
  EXPECT_EQ(c[0].peak_sessions, (Keys{{1, 2}, {1, 3}, {1, 7}}));
  EXPECT_EQ(c[1].pool, "speak");
  EXPECT_EQ(c[1].peak, 1);
}

TEST_P(HistoryStoreTest, ARangeMeetsStreamsThatOpenBeforeItsEndAndCloseAfterItsStart) {
  auto store = open();
  const Micros from = T, to = T + kMin;
  write_sessions(*store, {
                             session(1, 1, from - kMin, from),        // closed exactly at from: no
                             session(1, 2, from - kMin, from + 1),    // closed just inside: yes
                             session(1, 3, to, to + kMin),            // opened exactly at to: no
                             session(1, 4, to - 1, to + kMin),        // opened just inside: yes
                             session(1, 5, from - kHour, to + kHour),  // the whole range: yes
                             session(1, 6, from + kS, from + 2 * kS),  // inside: yes
                             session(1, 7, from, from),               // zero-length at from: yes
                             session(1, 8, to, to),                   // zero-length at to: no
                             session(1, 9, to - 1, to - 1),           // zero-length inside: yes
                             session(1, 10, from - 1, from - 1),      // zero-length before: no
                             session(1, 11, from - kHour, std::nullopt),  // still open: yes
                             session(1, 12, to, std::nullopt),        // still open, opened at to: no
                             refused(1, 13, from + kS),               // refused inside: only with include_unopened
                             refused(1, 14, to),                      // refused at to: no
                         });
  EXPECT_EQ(keys(*store, {.from = from, .to = to}), (Keys{{1, 2}, {1, 4}, {1, 5}, {1, 6}, {1, 7}, {1, 9}, {1, 11}}));
  EXPECT_EQ(keys(*store, {.from = from, .to = to, .include_unopened = true}),
            (Keys{{1, 2}, {1, 4}, {1, 5}, {1, 6}, {1, 7}, {1, 9}, {1, 11}, {1, 13}}));
  // Ordered by opened_at, rows never opened last.
  std::vector<std::int64_t> order;
  store->sessions({.from = from, .to = to, .include_unopened = true},
                  [&](SessionRecord&& r) { order.push_back(r.session_id); });
  EXPECT_EQ(order, (std::vector<std::int64_t>{5, 11, 2, 7, 6, 4, 9, 13}));
}

TEST_P(HistoryStoreTest, AWindowWithNoStreams) {
  auto store = open();
  write_sessions(*store, {session(1, 1, T - kHour, T - kMin), session(1, 2, T + kHour, T + 2 * kHour)});
  EXPECT_TRUE(keys(*store, {.from = T, .to = T + 10 * kMin}).empty());
  EXPECT_TRUE(spans(*store, {.from = T, .to = T + 10 * kMin}, T + 3 * kHour).empty());
  EXPECT_TRUE(concurrency(*store, T, T + 10 * kMin, 0, kMin, T + 3 * kHour).empty());
  UsageSweep usage(T, T + 10 * kMin, utc);
  store->spans({.from = T, .to = T + 10 * kMin}, T + 3 * kHour, [&](Span&& s) { usage.add(s); });
  EXPECT_TRUE(usage.finish().empty());
  // And an empty database.
  auto other = postgres() ? nullptr : std::make_unique<Store>((dir_ / "empty.db").string());
  if (other) {
    EXPECT_TRUE(keys(*other, {.from = T, .to = T + 1}).empty());
  }
}

TEST_P(HistoryStoreTest, StreamsStillOpenEndNow) {
  auto store = open();
  write_sessions(*store, {session(1, 1, T, std::nullopt), session(1, 2, T + kMin, T + 2 * kMin)});
  auto s = spans(*store, {.from = T - kHour, .to = T + kHour}, T + 5 * kMin);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].session_id, 1);
  EXPECT_TRUE(s[0].still_open);
  EXPECT_EQ(s[0].start, T);
  EXPECT_EQ(s[0].end, T + 5 * kMin);
  EXPECT_FALSE(s[1].still_open);
  EXPECT_EQ(s[1].end, T + 2 * kMin);
  // A `now` before the stream opened never gives a negative span.
  s = spans(*store, {.from = T - kHour, .to = T + kHour}, T - kMin);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].end, T);
  // Concurrency: the open stream counts up to now and not after.
  auto c = concurrency(*store, T, T + kHour, 0, 10 * kMin, T + 5 * kMin);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].peak, 2);
  EXPECT_EQ(c[0].peak_at, T + kMin);
  EXPECT_EQ(c[0].peak_until, T + 2 * kMin);
  EXPECT_EQ(c[0].windows[0].min_open, 0);  // after now, nothing
  EXPECT_EQ(c[0].windows[1].max_open, 0);
  // When now is past the range, it is open to the end.
  c = concurrency(*store, T, T + kHour, 0, 10 * kMin, T + 2 * kHour);
  EXPECT_EQ(c[0].windows.back().min_open, 1);
  EXPECT_EQ(c[0].peak_until, T + 2 * kMin);
}

TEST_P(HistoryStoreTest, FiltersByPoolAndTenant) {
  auto store = open();
  write_sessions(*store, {
                             session(1, 1, T, T + kMin, "listen", "acme"),
                             session(1, 2, T, T + kMin, "listen", "globex"),
                             session(1, 3, T, T + kMin, "speak", "acme"),
                             session(1, 4, T, std::nullopt, "speak", "globex"),
                             refused(1, 5, T, "speak"),
                         });
  auto k = [&](std::optional<std::string> pool, std::optional<std::string> tenant, bool unopened = false) {
    return keys(*store, {.from = T, .to = T + 1, .pool = pool, .tenant = tenant, .include_unopened = unopened});
  };
  EXPECT_EQ(k("listen", std::nullopt), (Keys{{1, 1}, {1, 2}}));
  EXPECT_EQ(k(std::nullopt, "acme"), (Keys{{1, 1}, {1, 3}}));
  EXPECT_EQ(k("speak", "globex"), (Keys{{1, 4}}));
  EXPECT_EQ(k("speak", std::nullopt, true), (Keys{{1, 3}, {1, 4}, {1, 5}}));
  EXPECT_EQ(k("nope", std::nullopt), Keys{});
  auto c = concurrency(*store, T, T + kMin, 0, kMin, T + kHour, std::nullopt, "globex");
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].pool, "listen");
  EXPECT_EQ(c[0].peak, 1);
  EXPECT_EQ(c[1].pool, "speak");
  EXPECT_EQ(c[1].peak_sessions, (Keys{{1, 4}}));
}

TEST_P(HistoryStoreTest, TheLongestStreamBoundsTheScanButIsNeverMissed) {
  auto store = open();
  // A 20-hour stream among short ones (run 100); asked about an instant 19
  // hours in.
  std::vector<SessionRecord> rows{session(100, 1, T - 19 * kHour, T + kHour)};
  for (int i = 0; i < 50; ++i)
    rows.push_back(session(100, 100 + i, T - 19 * kHour + i * kMin, T - 19 * kHour + (i + 2) * kMin));
  write_sessions(*store, rows);
  EXPECT_EQ(keys(*store, {.from = T, .to = T + 1}), (Keys{{100, 1}}));
  EXPECT_EQ(keys(*store, {.from = T + kHour - 1, .to = T + kHour}), (Keys{{100, 1}}));
  EXPECT_TRUE(keys(*store, {.from = T + kHour, .to = T + 2 * kHour}).empty());

  // A stream that only becomes long when recovery closes it: a gateway that
  // died with a stream open for 30 hours.
  auto dead = store->begin_run({.instance = "gw:1", .started_at = T - 31 * kHour});
  auto self = store->begin_run({.instance = "gw:1", .started_at = T});
  auto s = session(dead, 1, T - 30 * kHour, std::nullopt);
  s.last_seen_at = T - kMin;
  write_sessions(*store, {s});
  EXPECT_EQ(keys(*store, {.from = T - 2 * kMin, .to = T - 2 * kMin + 1}), (Keys{{dead, 1}, {100, 1}}));
  EXPECT_EQ(store->recover_interrupted(self, "gw:1", 0), 1);
  // Closed at its last sight, 30 hours long: still found at any instant in it.
  EXPECT_EQ(keys(*store, {.from = T - 2 * kMin, .to = T - 2 * kMin + 1}), (Keys{{dead, 1}, {100, 1}}));
  EXPECT_EQ(keys(*store, {.from = T - 29 * kHour, .to = T - 29 * kHour + 1}), (Keys{{dead, 1}}));
  EXPECT_EQ(keys(*store, {.from = T - kMin, .to = T - kMin + 1}), (Keys{{100, 1}}));
  // And by a reader that opens the database afterwards.
  auto reader = open({.read_only = true});
  EXPECT_EQ(keys(*reader, {.from = T - 29 * kHour, .to = T - 29 * kHour + 1}), (Keys{{dead, 1}}));
}

// --- Peaks, windows and series ---------------------------------------------------

TEST_P(HistoryStoreTest, PeakItsFirstInstantUntilTheBestTenMinutesAndTheSessionsThatMadeIt) {
  auto store = open();
  auto m = [](Micros minutes) { return T + minutes * kMin; };
  write_sessions(*store, {
                             session(1, 1, m(0), m(30)),
                             session(1, 2, m(12), m(17)),
                             session(2, 3, m(11), m(14)),
                             session(2, 4, m(25), m(27)),
                             session(1, 5, m(26), m(28)),
                             session(1, 6, m(5), m(5)),
                             session(1, 7, m(1), m(2), "speak"),
                             session(1, 8, m(14), m(20)),  // opens as 3 closes: the peak ends at 14 all the same
                         });
  // 14:00 is when (2, 3) closes and (1, 8) opens: 3 before, 3 after.
  auto c = concurrency(*store, m(0), m(30), 0, 10 * kMin, m(60));
  ASSERT_EQ(c.size(), 2u);
  const auto& p = c[0];
  EXPECT_EQ(p.pool, "listen");
  EXPECT_EQ(p.peak, 3);
  EXPECT_EQ(p.peak_at, m(12));
  EXPECT_EQ(p.peak_until, m(17));
  EXPECT_EQ(p.best, 1u);
  EXPECT_EQ(p.peak_sessions, (Keys{{1, 1}, {1, 2}, {2, 3}}));
  ASSERT_EQ(p.windows.size(), 3u);
  EXPECT_EQ(p.windows[1].start, m(10));
  EXPECT_EQ(p.windows[1].end, m(20));
  EXPECT_EQ(p.windows[1].max_open, 3);
  EXPECT_EQ(p.windows[1].peak_at, m(12));
  EXPECT_EQ(p.windows[1].min_open, 1);
  EXPECT_EQ(p.windows[0].max_open, 1);
  EXPECT_EQ(p.windows[0].min_open, 1);
  EXPECT_EQ(p.windows[2].max_open, 3);
  EXPECT_EQ(p.windows[2].peak_at, m(26));
  const auto& s = c[1];
  EXPECT_EQ(s.pool, "speak");
  EXPECT_EQ(s.peak, 1);
  EXPECT_EQ(s.peak_at, m(1));
  EXPECT_EQ(s.peak_until, m(2));

  // Windows on the clock, clipped: a range starting at 12:05.
  c = concurrency(*store, m(5), m(30), 0, 10 * kMin, m(60), std::string("listen"));
  ASSERT_EQ(c.size(), 1u);
  ASSERT_EQ(c[0].windows.size(), 3u);
  EXPECT_EQ(c[0].windows[0].start, m(5));
  EXPECT_EQ(c[0].windows[0].end, m(10));
  EXPECT_EQ(c[0].best, 1u);
}

TEST_P(HistoryStoreTest, SeriesAtAStepWithMaxAndMin) {
  auto store = open();
  auto s = [](Micros seconds) { return T + seconds * kS; };
  write_sessions(*store, {
                             session(1, 1, s(-30), s(90)),   // open through the first 90 s
                             session(1, 2, s(30), s(150)),   // from 30 s to 150 s
                             session(1, 3, s(60), s(60)),    // zero-length at the start of a step
                             session(1, 4, s(200), s(201)),  // one second in the last step
                         });
  // Three 1-minute steps from T + 10 s (origin = from).
  auto c = concurrency(*store, s(10), s(190), s(10), kMin, s(1000));
  ASSERT_EQ(c.size(), 1u);
  const auto& w = c[0].windows;
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0].start, s(10));
  EXPECT_EQ(w[0].end, s(70));
  EXPECT_EQ(w[0].max_open, 2);
  EXPECT_EQ(w[0].min_open, 1);
  EXPECT_EQ(w[0].peak_at, s(30));
  EXPECT_EQ(w[1].start, s(70));
  EXPECT_EQ(w[1].max_open, 2);
  EXPECT_EQ(w[1].min_open, 1);
  EXPECT_EQ(w[1].peak_at, s(70));
  EXPECT_EQ(w[2].start, s(130));
  EXPECT_EQ(w[2].end, s(190));
  EXPECT_EQ(w[2].max_open, 1);
  EXPECT_EQ(w[2].min_open, 0);
  EXPECT_EQ(c[0].peak, 2);
  EXPECT_EQ(c[0].peak_at, s(30));
  EXPECT_EQ(c[0].peak_until, s(90));
}

// --- Usage ---------------------------------------------------------------------

TEST_P(HistoryStoreTest, UsagePerDaySplitAcrossMidnightInProportion) {
  auto store = open();
  auto a = session(1, 1, kMidnight - 30 * kMin, kMidnight + 90 * kMin, "listen", "acme");
  a.audio_seconds = 100;
  a.idle_seconds = 20;
  auto b = session(1, 2, kMidnight + kHour, kMidnight + kHour + 10 * kMin, "listen", "globex");
  b.audio_seconds = 600;
  auto c = session(1, 3, kMidnight - kDay, kMidnight - kDay + kMin, "speak", "acme");  // outside
  auto d = session(1, 4, kMidnight + 23 * kHour, std::nullopt, "listen", "acme");      // still open
  d.audio_seconds = 30;
  write_sessions(*store, {a, b, c, d, refused(1, 5, kMidnight)});
  const Micros now = kMidnight + 24 * kHour + 30 * kMin;
  UsageSweep usage(kMidnight - 12 * kHour, kMidnight + 2 * kDay, utc);
  store->spans({.from = kMidnight - 12 * kHour, .to = kMidnight + 2 * kDay}, now, [&](Span&& s) { usage.add(s); });
  auto rows = usage.finish();
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].day, "2025-11-21");
  EXPECT_EQ(rows[0].tenant, "acme");
  EXPECT_EQ(rows[0].sessions, 1);
  EXPECT_DOUBLE_EQ(rows[0].stream_minutes, 30);
  EXPECT_DOUBLE_EQ(rows[0].audio_seconds, 25);
  EXPECT_DOUBLE_EQ(rows[0].idle_seconds, 5);
  EXPECT_EQ(rows[1].day, "2025-11-22");
  EXPECT_EQ(rows[1].tenant, "acme");
  EXPECT_EQ(rows[1].sessions, 1);  // d opened that day; a the day before
  EXPECT_DOUBLE_EQ(rows[1].stream_minutes, 90 + 60);
  // a: three quarters of 100; d: 60 of its 90 minutes so far of 30 s.
  EXPECT_DOUBLE_EQ(rows[1].audio_seconds, 75 + 20);
  EXPECT_DOUBLE_EQ(rows[1].idle_seconds, 15);
  EXPECT_EQ(rows[2].day, "2025-11-22");
  EXPECT_EQ(rows[2].tenant, "globex");
  EXPECT_DOUBLE_EQ(rows[2].stream_minutes, 10);
  EXPECT_DOUBLE_EQ(rows[2].audio_seconds, 600);
  EXPECT_EQ(rows[3].day, "2025-11-23");
  EXPECT_EQ(rows[3].sessions, 0);
  EXPECT_DOUBLE_EQ(rows[3].stream_minutes, 30);
  EXPECT_DOUBLE_EQ(rows[3].audio_seconds, 10);
}

// --- Events and samples ------------------------------------------------------------

TEST_P(HistoryStoreTest, EventsRoundTrip) {
  auto store = open();
  WriteBatch b;
  b.events.push_back({.run_id = 1, .time = T + 2, .type = "reap", .session_id = 5, .pool = "listen",
                      .tenant = "acme", .fields = R"({"reason":"idle","seconds":30})"});
  b.events.push_back({.run_id = 1, .time = T, .type = "upstream_429", .pool = "listen",
                      .fields = R"({"status":429,"retry_after":"2"})"});
  b.events.push_back({.run_id = 1, .time = T + 2, .type = "reap", .session_id = 6, .fields = "{}"});
  b.events.push_back({.run_id = 1, .time = T + kMin, .type = "reap", .session_id = 7, .fields = "{}"});
  store->write(b);
  auto all = store->events(T, T + kMin, std::nullopt, 100);
  ASSERT_EQ(all.size(), 3u);  // [from, to): the one at T + 1 min is out
  EXPECT_EQ(all[0].type, "upstream_429");
  EXPECT_EQ(all[0].time, T);
  EXPECT_FALSE(all[0].session_id);
  EXPECT_EQ(all[0].pool, "listen");
  EXPECT_EQ(all[0].tenant, "");
  EXPECT_EQ(all[0].fields, R"({"status":429,"retry_after":"2"})");
  EXPECT_EQ(all[1].session_id, 5);
  EXPECT_EQ(all[1].tenant, "acme");
  EXPECT_EQ(all[2].session_id, 6);
  EXPECT_LT(all[1].id, all[2].id);  // equal times in the order written
  EXPECT_GT(all[1].id, 0);
  auto reaps = store->events(T, T + kHour, std::string("reap"), 100);
  ASSERT_EQ(reaps.size(), 3u);
  EXPECT_EQ(reaps[2].session_id, 7);
  auto limited = store->events(T, T + kHour, std::nullopt, 2);
  ASSERT_EQ(limited.size(), 2u);
  EXPECT_EQ(limited[1].session_id, 5);
  EXPECT_TRUE(store->events(T, T + kHour, std::string("nope"), 10).empty());
}

TEST_P(HistoryStoreTest, SamplesUpsertKeepsTheMaxOfMaximaAndTheMinOfMinima) {
  auto store = open();
  const std::int64_t sec = T / kS;
  auto write = [&](std::vector<ConcurrencySample> samples) {
    WriteBatch b;
    b.samples = std::move(samples);
    store->write(b);
  };
  write({{.run_id = 1, .pool = "listen", .second = sec, .max_open = 5, .min_open = 3},
         {.run_id = 1, .pool = "speak", .second = sec, .max_open = 1, .min_open = 1},
         {.run_id = 1, .pool = "listen", .second = sec + 1, .max_open = 2, .min_open = 2}});
  write({{.run_id = 1, .pool = "listen", .second = sec, .max_open = 7, .min_open = 4}});
  write({{.run_id = 1, .pool = "listen", .second = sec, .max_open = 2, .min_open = 1}});
  auto got = store->samples(T, T + 2 * kS, std::string("listen"));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].second, sec);
  EXPECT_EQ(got[0].resolution, 1);
  EXPECT_EQ(got[0].max_open, 7);
  EXPECT_EQ(got[0].min_open, 1);
  EXPECT_EQ(got[1].second, sec + 1);
  EXPECT_EQ(store->samples(T, T + 2 * kS, std::nullopt).size(), 3u);
  // [from, to) in seconds: the second that starts at `to` is out; the one
  // that holds `from` is in.
  EXPECT_EQ(store->samples(T, T + kS, std::string("listen")).size(), 1u);
  EXPECT_EQ(store->samples(T + kS / 2, T + kS + 1, std::string("listen")).size(), 2u);
  EXPECT_TRUE(store->samples(T + 2 * kS, T + 3 * kS, std::nullopt).empty());
}

TEST_P(HistoryStoreTest, RetentionRollsSecondsUpIntoMinutesAndDeletesOldRows) {
  auto store = open();
  const std::int64_t m0 = kMidnight / kS;  // a minute boundary
  WriteBatch b;
  // Minute 0: every second written, max 9 at second 30, min 2.
  for (int i = 0; i < 60; ++i)
    b.samples.push_back({.run_id = 1, .pool = "listen", .second = m0 + i, .max_open = i == 30 ? 9 : 4,
                         .min_open = i == 31 ? 2 : 3});
  // Minute 1: second 10 missing (nothing open then): min 0.
  for (int i = 0; i < 60; ++i)
    if (i != 10) b.samples.push_back({.run_id = 1, .pool = "listen", .second = m0 + 60 + i, .max_open = 5, .min_open = 5});
  // Minute 2: another run and pool, one second only.
  b.samples.push_back({.run_id = 2, .pool = "speak", .second = m0 + 125, .max_open = 1, .min_open = 1});
  // Minute 3: after the cutoff, stays per second.
  b.samples.push_back({.run_id = 1, .pool = "listen", .second = m0 + 185, .max_open = 6, .min_open = 6});
  b.sessions = {session(1, 1, kMidnight - kHour, kMidnight - kMin),   // closed before the cutoff: deleted
                session(1, 2, kMidnight - kHour, kMidnight + kMin),   // closed after: kept
                session(1, 3, kMidnight - kDay, std::nullopt),        // still open: kept
                refused(1, 4, kMidnight - kHour),                     // refused before: deleted
                [] {  // queued, never opened nor closed, accepted before: deleted
                  auto s = refused(1, 5, kMidnight - kHour);
                  s.closed_at.reset();
                  s.outcome = Outcome::open;
                  return s;
                }()};
  b.events = {{.run_id = 1, .time = kMidnight - kS, .type = "old", .fields = "{}"},
              {.run_id = 1, .time = kMidnight, .type = "new", .fields = "{}"}};
  store->write(b);

  // Roll up everything before minute 3 (now - rollup_after = m0 + 3 min + 30 s,
  // floored to the minute); delete sessions and events before midnight.
  const Micros now = kMidnight + kDay;
  RetentionPolicy policy{.sessions = kDay, .events = kDay, .rollup_after = kDay - 3 * kMin - 30 * kS};
  auto res = store->enforce_retention(policy, now);
  EXPECT_EQ(res.rolled_up, 60 + 59 + 1);
  EXPECT_EQ(res.sessions, 3);
  EXPECT_EQ(res.events, 1);
  auto got = store->samples(kMidnight, kMidnight + 10 * kMin, std::nullopt);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].second, m0);
  EXPECT_EQ(got[0].resolution, 60);
  EXPECT_EQ(got[0].max_open, 9);
  EXPECT_EQ(got[0].min_open, 2);
  EXPECT_EQ(got[1].second, m0 + 60);
  EXPECT_EQ(got[1].resolution, 60);
  EXPECT_EQ(got[1].max_open, 5);
  EXPECT_EQ(got[1].min_open, 0);
  EXPECT_EQ(got[2].second, m0 + 120);
  EXPECT_EQ(got[2].pool, "speak");
  EXPECT_EQ(got[2].run_id, 2);
  EXPECT_EQ(got[2].max_open, 1);
  EXPECT_EQ(got[2].min_open, 0);
  EXPECT_EQ(got[3].second, m0 + 185);
  EXPECT_EQ(got[3].resolution, 1);
  // A minute row is found by a range that starts inside it.
  auto inside = store->samples(kMidnight + 30 * kS, kMidnight + 31 * kS, std::string("listen"));
  ASSERT_EQ(inside.size(), 1u);
  EXPECT_EQ(inside[0].resolution, 60);
  EXPECT_EQ(keys(*store, {.from = kMidnight - 2 * kDay, .to = now, .include_unopened = true}),
            (Keys{{1, 2}, {1, 3}}));
  auto ev = store->events(0, now, std::nullopt, 10);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].type, "new");

  // Running it again changes nothing.
  res = store->enforce_retention(policy, now);
  EXPECT_EQ(res.rolled_up, 0);
  EXPECT_EQ(res.sessions, 0);
  EXPECT_EQ(res.events, 0);
  EXPECT_EQ(store->samples(kMidnight, kMidnight + 10 * kMin, std::nullopt).size(), 4u);

  // Deleting old samples by resolution.
  res = store->enforce_retention({.seconds = kDay - 4 * kMin, .minutes = kDay - 90 * kS}, now);
  EXPECT_EQ(res.samples, 1 + 2);  // the second at minute 3; the minutes 0 and 1
  got = store->samples(kMidnight, kMidnight + 10 * kMin, std::nullopt);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].pool, "speak");
}

// --- Crash recovery ------------------------------------------------------------------

TEST_P(HistoryStoreTest, RecoverInterruptedClosesOnlyRowsOfDeadRunsAtTheirLastSight) {
  auto store = open();
  auto dead_same = store->begin_run({.instance = "gw:8080", .started_at = T - kDay});         // crashed earlier
  auto alive_other = store->begin_run({.instance = "gw:8081", .started_at = T - kHour});     // another gateway, alive
  auto stale_other = store->begin_run({.instance = "gw:8082", .started_at = T - kDay});      // another, silent
  auto stopped = store->begin_run({.instance = "gw:8080", .started_at = T - 2 * kDay});      // stopped cleanly
  store->end_run(stopped, T - 2 * kDay + kHour);
  auto self = store->begin_run({.instance = "gw:8080", .started_at = T});
  WriteBatch seen;
  seen.run_seen = std::make_pair(alive_other, T - kS);
  store->write(seen);
  seen.run_seen = std::make_pair(dead_same, T - kMin);
  store->write(seen);
  seen.run_seen = std::make_pair(stale_other, T - 3 * kHour);
  store->write(seen);

  auto open_row = [](std::int64_t run, std::int64_t id, Micros opened, Micros last_seen) {
    auto s = session(run, id, opened, std::nullopt);
    s.last_seen_at = last_seen;
    return s;
  };
  auto queued = open_row(dead_same, 3, 0, T - 2 * kMin);  // never opened
  queued.opened_at.reset();
  queued.admitted_at.reset();
  queued.accepted_at = T - 3 * kMin;
  auto skewed = open_row(dead_same, 4, T - 5 * kMin, T - 6 * kMin);  // seen last before it opened
  write_sessions(*store, {
                             open_row(dead_same, 1, T - 10 * kMin, T - 2 * kMin),
                             session(dead_same, 2, T - 20 * kMin, T - 15 * kMin),  // closed: untouched
                             queued,
                             skewed,
                             open_row(alive_other, 1, T - 10 * kMin, T - kS),
                             open_row(stale_other, 1, T - 5 * kHour, T - 3 * kHour - kS),
                             open_row(stopped, 1, T - 2 * kDay, T - 2 * kDay + kMin),
                             open_row(self, 1, T, T),
                         });
  EXPECT_EQ(store->recover_interrupted(self, "gw:8080", T - kHour), 5);

  std::map<Key, SessionRecord> rows;
  store->sessions({.from = 0, .to = T + kDay, .include_unopened = true},
                  [&](SessionRecord&& r) { rows[{r.run_id, r.session_id}] = std::move(r); });
  ASSERT_EQ(rows.size(), 8u);
  auto row = [&](std::int64_t run, std::int64_t id) -> SessionRecord& { return rows[Key{run, id}]; };
  auto& a = row(dead_same, 1);
  EXPECT_EQ(a.outcome, Outcome::interrupted);
  EXPECT_EQ(a.closed_at, T - 2 * kMin);
  EXPECT_FALSE(a.outcome_reason.empty());
  EXPECT_EQ(row(dead_same, 2).outcome, Outcome::completed);
  EXPECT_EQ(row(dead_same, 2).closed_at, T - 15 * kMin);
  EXPECT_EQ(row(dead_same, 3).outcome, Outcome::interrupted);
  EXPECT_EQ(row(dead_same, 3).closed_at, T - 2 * kMin);
  EXPECT_EQ(row(dead_same, 4).outcome, Outcome::interrupted);
  EXPECT_EQ(row(dead_same, 4).closed_at, T - 5 * kMin);  // never before it opened
  EXPECT_EQ(row(alive_other, 1).outcome, Outcome::open);
  EXPECT_FALSE(row(alive_other, 1).closed_at);
  EXPECT_EQ(row(stale_other, 1).outcome, Outcome::interrupted);
  EXPECT_EQ(row(stale_other, 1).closed_at, T - 3 * kHour - kS);
  // A run that stopped is over too: a row it left open ends at its last sight.
  EXPECT_EQ(row(stopped, 1).outcome, Outcome::interrupted);
  EXPECT_EQ(row(stopped, 1).closed_at, T - 2 * kDay + kMin);
  EXPECT_EQ(row(self, 1).outcome, Outcome::open);

  auto runs = store->runs();
  std::map<std::int64_t, RunRecord> by_id;
  for (auto& r : runs) by_id[r.run_id] = r;
  EXPECT_EQ(by_id[dead_same].stopped_at, T - kMin);
  EXPECT_EQ(by_id[stale_other].stopped_at, T - 3 * kHour);
  EXPECT_FALSE(by_id[alive_other].stopped_at);
  EXPECT_FALSE(by_id[self].stopped_at);
  EXPECT_EQ(by_id[stopped].stopped_at, T - 2 * kDay + kHour);

  // Interrupted rows are ordinary closed intervals for the queries.
  auto c = concurrency(*store, T - 6 * kHour, T + kMin, 0, 10 * kMin, T + kMin);
  ASSERT_EQ(c.size(), 1u);
  // (stopped,1) ended two days before; (dead,1) and (alive,1) from T - 10 min;
  // (dead,4) is zero-length; (dead,1) ends at T - 2 min.
  EXPECT_EQ(c[0].peak, 2);
  EXPECT_EQ(c[0].peak_at, T - 10 * kMin);
  EXPECT_EQ(c[0].peak_until, T - 2 * kMin);

  // Again: nothing left to do.
  EXPECT_EQ(store->recover_interrupted(self, "gw:8080", T - kHour), 0);
}

TEST_P(HistoryStoreTest, ASurvivorsSweepClosesOnlySilentGatewaysRowsAndALateOneComesBack) {
  auto store = open();
  auto killed = store->begin_run({.instance = "gw-a", .started_at = T - kHour});
  auto alive = store->begin_run({.instance = "gw-b", .started_at = T - kHour});
  auto self = store->begin_run({.instance = "gw-c", .started_at = T - kHour});
  auto restarted_twin = store->begin_run({.instance = "gw-c", .started_at = T - kHour});  // same name, alive
  WriteBatch seen;
  for (auto [run, at] : {std::pair{killed, T - kMin}, {alive, T - kS}, {restarted_twin, T - kS}}) {
    seen.run_seen = std::make_pair(run, at);
    store->write(seen);
  }
  auto open_row = [](std::int64_t run, std::int64_t id, Micros last_seen) {
    auto s = session(run, id, T - 10 * kMin, std::nullopt);
    s.last_seen_at = last_seen;
    return s;
  };
  write_sessions(*store, {open_row(killed, 1, T - kMin), open_row(alive, 1, T - kS), open_row(restarted_twin, 1, T - kS),
                          open_row(self, 1, T)});
  // The sweep names no instance: only silence counts.
  EXPECT_EQ(store->recover_interrupted(self, std::nullopt, T - 30 * kS), 1);
  std::map<Key, SessionRecord> rows;
  auto read = [&] {
    rows.clear();
    store->sessions({.from = 0, .to = T + kDay}, [&](SessionRecord&& r) { rows[{r.run_id, r.session_id}] = std::move(r); });
  };
  auto row = [&](std::int64_t run) -> SessionRecord& { return rows[Key{run, 1}]; };
  read();
  EXPECT_EQ(row(killed).outcome, Outcome::interrupted);
  EXPECT_EQ(row(killed).closed_at, T - kMin);
  EXPECT_EQ(row(alive).outcome, Outcome::open);
  EXPECT_EQ(row(restarted_twin).outcome, Outcome::open);
  EXPECT_EQ(row(self).outcome, Outcome::open);
  EXPECT_EQ(store->recover_interrupted(self, std::nullopt, T - 30 * kS), 0);

  // A gateway that was only late (its writer stalled) heartbeats again: its
  // run is alive, its open row is written whole again, and the next sweep
  // leaves it alone.
  seen.run_seen = std::make_pair(killed, T + kS);
  store->write(seen);
  write_sessions(*store, {open_row(killed, 1, T + kS)});
  EXPECT_EQ(store->recover_interrupted(self, std::nullopt, T - 30 * kS), 0);
  read();
  EXPECT_EQ(row(killed).outcome, Outcome::open);
  EXPECT_FALSE(row(killed).closed_at);
  for (auto& r : store->runs()) {
    if (r.run_id == killed) {
      EXPECT_FALSE(r.stopped_at);
    }
  }
}

// --- Random rows against brute force ----------------------------------------------

TEST_P(HistoryStoreTest, RandomRowsMatchABruteForceOverlapAndSweep) {
  auto store = open();
  std::mt19937_64 rng(7);
  auto uniform = [&](Micros lo, Micros hi) { return std::uniform_int_distribution<Micros>(lo, hi)(rng); };
  std::vector<SessionRecord> rows;
  std::vector<Span> all;
  const Micros now = T + 200 * kS;
  for (int i = 0; i < 400; ++i) {
    Micros opened = T + uniform(0, 120) * kS;
    std::optional<Micros> closed;
    int kind = static_cast<int>(uniform(0, 9));
    if (kind == 0) closed = opened;                                  // zero-length
    else if (kind == 1) closed = std::nullopt;                       // still open
    else closed = opened + uniform(1, kind == 2 ? 100 : 20) * kS;  // some long, most short
    auto s = session(1 + i % 3, i, opened, closed, uniform(0, 1) ? "listen" : "speak",
                     uniform(0, 2) ? "acme" : "globex");
    rows.push_back(s);
    Span sp;
    sp.run_id = s.run_id;
    sp.session_id = s.session_id;
    sp.pool = s.pool;
    sp.tenant = s.tenant;
    sp.start = opened;
    sp.end = closed.value_or(std::max(now, opened));
    sp.still_open = !closed;
    all.push_back(sp);
  }
  write_sessions(*store, rows);
  std::stable_sort(all.begin(), all.end(), [](const Span& a, const Span& b) { return a.start < b.start; });
  for (int round = 0; round < 60; ++round) {
    Micros from = T + uniform(-10, 150) * kS;
    Micros to = from + uniform(1, 60) * kS;
    std::optional<std::string> pool;
    if (round % 3 == 1) pool = "speak";
    SCOPED_TRACE(::testing::Message() << "round " << round);
    Keys want;
    for (const auto& s : all) {
      // Still-open rows meet a range they opened before the end of, whatever now is.
      bool hit = s.still_open ? s.start < to : meets(s, from, to);
      if (hit && (!pool || s.pool == *pool)) want.emplace_back(s.run_id, s.session_id);
    }
    std::sort(want.begin(), want.end());
    EXPECT_EQ(keys(*store, {.from = from, .to = to, .pool = pool}), want);

    Micros size = uniform(1, 30) * kS;
    ConcurrencySweep direct(from, to, 0, size);
    for (const auto& s : all)
      if (!pool || s.pool == *pool) direct.add(s);
    auto want_c = direct.finish();
    auto got_c = concurrency(*store, from, to, 0, size, now, pool);
    ASSERT_EQ(got_c.size(), want_c.size());
    for (std::size_t i = 0; i < want_c.size(); ++i) {
      EXPECT_EQ(got_c[i].pool, want_c[i].pool);
      EXPECT_EQ(got_c[i].peak, want_c[i].peak);
      EXPECT_EQ(got_c[i].peak_at, want_c[i].peak_at);
      EXPECT_EQ(got_c[i].peak_until, want_c[i].peak_until);
      EXPECT_EQ(got_c[i].peak_sessions, want_c[i].peak_sessions);
      ASSERT_EQ(got_c[i].windows.size(), want_c[i].windows.size());
      for (std::size_t k = 0; k < want_c[i].windows.size(); ++k) {
        EXPECT_EQ(got_c[i].windows[k].max_open, want_c[i].windows[k].max_open);
        EXPECT_EQ(got_c[i].windows[k].min_open, want_c[i].windows[k].min_open);
      }
    }
    if (HasFailure()) return;
  }
}

// --- The concurrency rollup against the sweep ---------------------------------------

void expect_same(const std::vector<PoolConcurrency>& got, const std::vector<PoolConcurrency>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(want[i].pool);
    EXPECT_EQ(got[i].pool, want[i].pool);
    EXPECT_EQ(got[i].peak, want[i].peak);
    EXPECT_EQ(got[i].peak_at, want[i].peak_at);
    EXPECT_EQ(got[i].peak_until, want[i].peak_until);
    EXPECT_EQ(got[i].best, want[i].best);
    EXPECT_EQ(got[i].peak_sessions, want[i].peak_sessions);
    ASSERT_EQ(got[i].windows.size(), want[i].windows.size());
    for (std::size_t k = 0; k < want[i].windows.size(); ++k) {
      SCOPED_TRACE(::testing::Message() << "window " << k);
      EXPECT_EQ(got[i].windows[k].start, want[i].windows[k].start);
      EXPECT_EQ(got[i].windows[k].end, want[i].windows[k].end);
      EXPECT_EQ(got[i].windows[k].max_open, want[i].windows[k].max_open);
      EXPECT_EQ(got[i].windows[k].min_open, want[i].windows[k].min_open);
      EXPECT_EQ(got[i].windows[k].peak_at, want[i].windows[k].peak_at);
      if (::testing::Test::HasFailure()) return;
    }
  }
}

std::int64_t roll_up_all(Store& store, Micros now) {
  std::int64_t total = 0;
  for (std::int64_t n; (n = store.update_rollup(now, 37)) > 0;) total += n;
  return total;
}

std::int64_t covered_minutes(Store& store) {
  std::int64_t n = 0;
  store.connection().query("SELECT COUNT(*) FROM rollup_cover", {}, [&](const Row& r) { n = r.integer(0); });
  return n;
}

TEST_P(HistoryStoreTest, TheRollupAnswersExactlyAsTheSweepOnRandomRows) {
  auto store = open();
  std::mt19937_64 rng(11);
  auto uniform = [&](Micros lo, Micros hi) { return std::uniform_int_distribution<Micros>(lo, hi)(rng); };
  // Times on whole seconds half of the time, so opens and closes coincide.
  auto instant = [&](Micros lo, Micros hi) {
    auto t = uniform(lo, hi);
    return uniform(0, 1) ? t / kS * kS : t;
  };
  auto crashed = store->begin_run({.instance = "gw:8080", .started_at = T - kDay});
  auto other = store->begin_run({.instance = "gw:8081", .started_at = T - kDay});
  const Micros begin = T - 90 * kMin, end = T + 90 * kMin;
  std::vector<SessionRecord> rows;
  for (int i = 0; i < 1500; ++i) {
    Micros opened = instant(begin, end);
    std::optional<Micros> closed;
    int kind = static_cast<int>(uniform(0, 19));
    if (kind == 0) closed = opened;                                 // zero-length
    else if (kind == 1) closed = std::nullopt;                      // still open (or interrupted)
    else if (kind == 2) closed = opened + uniform(1, 120 * kMin);   // long, across many minutes
    else closed = std::min(opened + uniform(1, 240 * kS), end);    // most short; some end together at `end`
    if (closed && uniform(0, 3) == 0) closed = *closed / kS * kS;   // on a second, with others
    if (closed && *closed < opened) closed = opened;
    auto s = session(i % 2 ? crashed : other, i, opened, closed, uniform(0, 2) ? "listen" : "speak",
                     uniform(0, 2) ? "acme" : "globex");
    if (!closed) s.last_seen_at = opened + uniform(0, 30 * kMin);
    rows.push_back(s);
  }
  // Written in three batches, the rollup brought up to date between them.
  Micros now = end + 5 * kMin;
  for (int part = 0; part < 3; ++part) {
    WriteBatch b;
    for (std::size_t i = part; i < rows.size(); i += 3) b.sessions.push_back(rows[i]);
    store->write(b);
    roll_up_all(*store, now);
  }
  ASSERT_GT(covered_minutes(*store), 150);

  auto compare = [&](const char* stage, int rounds) {
    SCOPED_TRACE(stage);
    for (int round = 0; round < rounds; ++round) {
      SCOPED_TRACE(::testing::Message() << "round " << round);
      Micros from = instant(begin - 10 * kMin, end);
      if (round % 4 == 0) from = from / kMin * kMin;
      Micros to = from + (round % 5 == 0 ? uniform(1, 60 * kS) : uniform(1, 200 * kMin));
      if (round % 4 == 1) to = to / kMin * kMin + kMin;
      Micros size = std::array<Micros, 6>{kS, kMin, 10 * kMin, 7 * kS + 13, uniform(1, 30 * kMin), kHour}[round % 6];
      Micros origin = round % 3 == 0 ? from : 0;
      std::optional<std::string> pool;
      if (round % 3 == 1) pool = "speak";
      if (round % 7 == 2) pool = "nothing-here";
      std::optional<std::string> tenant;
      if (round % 11 == 5) tenant = "globex";
      if ((to - 1 - origin) / size - (from - origin) / size > 20000) size = kHour;
      auto want = concurrency_by_sweep(*store, from, to, origin, size, pool, tenant, now);
      auto got = history::concurrency(*store, from, to, origin, size, pool, tenant, now);
      expect_same(got, want);
      if (HasFailure()) return;
    }
  };
  compare("rolled up", 150);

  // Changes after the rollup: streams that were open close (some long ago,
  // written late), a stream written late that opened an hour ago, a pool
  // changed, a row deleted.
  {
    WriteBatch b;
    int closed = 0;
    for (auto& r : rows) {
      if (r.closed_at || r.run_id != other || closed++ > 20) continue;
      r.closed_at = *r.opened_at + uniform(0, 20 * kMin);
      r.outcome = Outcome::completed;
      b.sessions.push_back(r);
    }
    auto late = session(other, 100000, T - 60 * kMin + 17, T - 20 * kMin, "speak");
    b.sessions.push_back(late);
    rows[3].pool = rows[3].pool == "listen" ? "speak" : "listen";
    b.sessions.push_back(rows[3]);
    store->write(b);
    std::array<Value, 2> key{rows[8].run_id, rows[8].session_id};
    store->connection().run("DELETE FROM sessions WHERE run_id = ? AND session_id = ?", key);
  }
  compare("changed, not rolled up again", 60);
  // A restart: the crashed run's open rows end at their last sight.
  auto self = store->begin_run({.instance = "gw:8080", .started_at = now});
  EXPECT_GT(store->recover_interrupted(self, "gw:8080", T - kDay), 0);
  compare("recovered, not rolled up again", 60);
  EXPECT_GT(roll_up_all(*store, now), 0);
  compare("recovered and rolled up", 100);
  // A later `now`: rows still open reach further.
  now += 30 * kMin;
  roll_up_all(*store, now);
  compare("later", 60);
  // Retention deletes the rows closed before T.
  store->enforce_retention({.sessions = now - T}, now);
  compare("after retention", 60);
  roll_up_all(*store, now);
  compare("after retention, rolled up", 60);
}

TEST_P(HistoryStoreTest, MigratesAVersion2DatabaseAndRollsItsHistoryUp) {
  {
    auto store = open();
    write_sessions(*store, {session(1, 1, T - 10 * kMin, T + 3 * kS), session(1, 2, T - 5 * kMin + 7, std::nullopt),
                            session(1, 3, T, T)});
    // Version 2, as it was before the rollup.
    drop_version_3(*store);
    ASSERT_EQ(store->schema_version(), 2);
  }
  auto store = open();
  EXPECT_EQ(store->schema_version(), kSchemaVersion);
  const Micros now = T + 20 * kMin;
  auto before = concurrency_by_sweep(*store, T - kHour, now, 0, 10 * kMin, {}, {}, now);
  expect_same(history::concurrency(*store, T - kHour, now, 0, 10 * kMin, {}, {}, now), before);
  EXPECT_EQ(roll_up_all(*store, now), 29);  // from the first row's minute to the last over 10 s before now
  expect_same(history::concurrency(*store, T - kHour, now, 0, 10 * kMin, {}, {}, now), before);
  ASSERT_EQ(before.size(), 1u);
  EXPECT_EQ(before[0].peak, 2);
  EXPECT_EQ(before[0].peak_at, T - 5 * kMin + 7);
  EXPECT_EQ(before[0].peak_until, T + 3 * kS);
  EXPECT_EQ(roll_up_all(*store, now), 0);
}

// --- Errors and URLs -------------------------------------------------------------------

TEST_P(HistoryStoreTest, DescriptionsAndErrorsNeverShowThePassword) {
  if (!postgres()) {
    EXPECT_EQ(open()->describe(), "sqlite:" + url_);
    return;
  }
  auto bad = url_;
  auto at = bad.find('@');
  auto colon = bad.rfind(':', at);
  ASSERT_NE(at, std::string::npos);
  bad = bad.substr(0, colon + 1) + "not-the-secret-pw" + bad.substr(at);
  try {
    Store store(bad);
    FAIL() << "expected DbError";
  } catch (const DbError& e) {
    std::string what = e.what();
    EXPECT_EQ(what.find("not-the-secret-pw"), std::string::npos) << what;
    EXPECT_NE(what.find("***"), std::string::npos) << what;
    EXPECT_NE(what.find("password authentication failed"), std::string::npos) << what;
  }
  auto store = open();
  EXPECT_EQ(store->describe().find(url_.substr(colon + 1, at - colon - 1)), std::string::npos) << store->describe();
}

// --- Deadlines ----------------------------------------------------------------

// A query that would run for minutes (SQLite: a recursive count to 2e9;
// PostgreSQL: a 120 s sleep) is stopped at the connection's deadline with
// DeadlineExceeded, and returns no row.
TEST_P(HistoryStoreTest, ADeadlineStopsALongQuery) {
  open();  // the schema
  auto db = open_database(url_, {.read_only = true, .deadline = std::chrono::steady_clock::now() +
                                                                    std::chrono::milliseconds(300)});
  auto endless = postgres() ? std::string("SELECT pg_sleep(120)")
                            : std::string("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                                          "WHERE x < 2000000000) SELECT max(x) FROM c");
  int rows = 0;
  try {
    db->query(endless, {}, [&](const Row&) { ++rows; });
    FAIL() << "expected DeadlineExceeded";
  } catch (const DeadlineExceeded& e) {
    EXPECT_NE(std::string(e.what()).find("ran past its deadline"), std::string::npos) << e.what();
  }
  EXPECT_EQ(rows, 0);
  // Past the deadline no statement starts, on this connection or on a Store.
  EXPECT_THROW(db->query("SELECT 1", {}, [](const Row&) {}), DeadlineExceeded);
  EXPECT_THROW(
      {
        Store store(url_, {.read_only = true, .deadline = std::chrono::steady_clock::now()});
        keys(store, {.from = T, .to = T + kS});
      },
      DeadlineExceeded);
}

TEST_P(HistoryStoreTest, ADeadlineAheadChangesNothing) {
  auto store = open();
  auto run = store->begin_run({.instance = "i", .version = "v", .pid = 1, .started_at = T});
  write_sessions(*store, {session(run, 1, T, T + kMin)});
  Store reader(url_, {.read_only = true, .deadline = std::chrono::steady_clock::now() + std::chrono::hours(1)});
  EXPECT_EQ(keys(reader, {.from = T, .to = T + kS}), (Keys{{run, 1}}));
  EXPECT_EQ(keys(reader, {.from = T + kMin, .to = T + 2 * kMin}), Keys{});
}

TEST(HistoryDb, ReadOnlyOpenOfAMissingSqliteFileIsAClearError) {
  auto path = fs::temp_directory_path() / ("sluice-missing-" + unique_suffix()) / "history.db";
  try {
    Store store(path.string(), {.read_only = true});
    FAIL() << "expected DbError";
  } catch (const DbError& e) {
    EXPECT_NE(std::string(e.what()).find("no history database at " + path.string()), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(path.parent_path()));  // and it created nothing
  try {
    Store store("sqlite://" + path.string(), {.read_only = true});
    FAIL() << "expected DbError";
  } catch (const DbError& e) {
    EXPECT_NE(std::string(e.what()).find("no history database"), std::string::npos) << e.what();
  }
}

TEST(HistoryDb, UrlSchemes) {
  EXPECT_THROW(open_database(""), DbError);
  EXPECT_THROW(open_database("mysql://u:p@h/db"), DbError);
  EXPECT_THROW(open_database("sqlite://"), DbError);
  auto dir = fs::temp_directory_path() / ("sluice-url-" + unique_suffix());
  auto db = open_database("sqlite:" + (dir / "a.db").string());
  EXPECT_EQ(db->dialect(), Dialect::sqlite);
  EXPECT_EQ(db->describe(), "sqlite:" + (dir / "a.db").string());
  db = open_database("sqlite://" + (dir / "b.db").string());
  EXPECT_TRUE(fs::exists(dir / "b.db"));
  db.reset();
  fs::remove_all(dir);
}

TEST(HistoryDb, RedactUrlNeverShowsAPassword) {
  auto check = [](const std::string& url) {
    auto r = redact_url(url);
    EXPECT_EQ(r.find("s3cret"), std::string::npos) << url << " -> " << r;
    EXPECT_EQ(r.find("s3%63ret"), std::string::npos) << url << " -> " << r;
    return r;
  };
  EXPECT_EQ(check("postgres://sluice:s3cret@db.example:5432/history"), "postgres://sluice:***@db.example:5432/history");
  EXPECT_EQ(check("postgresql://sluice:s3cret@db/history?sslmode=require"),
            "postgresql://sluice:***@db/history?sslmode=require");
  auto q = check("postgres://db/history?user=sluice&password=s3cret&sslmode=require");
  EXPECT_NE(q.find("password=***"), std::string::npos) << q;
  EXPECT_NE(q.find("sslmode=require"), std::string::npos) << q;
  check("postgres://sluice:s3cret@db/history?password=s3cret");
  check("postgres://sluice:s3%63ret@db/history");       // percent-encoded
  check("postgres://sluice:s3cret@[::1]:5432/history");  // IPv6
  check("postgres://sluice:s3cret @db/history");          // unparsable
  check("postgresql://:s3cret@db/history");               // no user
  check("postgres://db/history?PASSWORD=s3cret");         // libpq's keywords are lower case, but still
  check("postgres://db/history?password=s3cret&password=s3cret");  // twice
  check("postgres://db/history?password=s3%63ret");
  EXPECT_EQ(check("postgres://sluice@db/history"), "postgres://sluice@db/history");
  EXPECT_EQ(redact_url("/var/lib/sluice/history.db"), "/var/lib/sluice/history.db");
}

}  // namespace
}  // namespace sluice::history
