#include "history/store.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>

namespace sluice::history {

std::string_view outcome_name(Outcome o) {
  switch (o) {
    case Outcome::open: return "open";
    case Outcome::completed: return "completed";
    case Outcome::reaped: return "reaped";
    case Outcome::refused: return "refused";
    case Outcome::queue_timeout: return "queue_timeout";
    case Outcome::upstream_refused: return "upstream_refused";
    case Outcome::abandoned: return "abandoned";
    case Outcome::interrupted: return "interrupted";
  }
  return "open";
}

std::optional<Outcome> outcome_from_name(std::string_view s) {
  for (auto o : {Outcome::open, Outcome::completed, Outcome::reaped, Outcome::refused, Outcome::queue_timeout,
                 Outcome::upstream_refused, Outcome::abandoned, Outcome::interrupted})
    if (outcome_name(o) == s) return o;
  return std::nullopt;
}

namespace {

// Each migration takes the schema from version i to i + 1.
std::vector<std::string> migrations(Dialect d) {
  const char* id = d == Dialect::sqlite ? "INTEGER PRIMARY KEY AUTOINCREMENT"
                                        : "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY";
  return {
      fmt::format(R"(
CREATE TABLE runs (
  run_id {0},
  instance TEXT NOT NULL,
  version TEXT NOT NULL,
  pid INTEGER NOT NULL,
  started_at BIGINT NOT NULL,
  last_seen_at BIGINT NOT NULL,
  stopped_at BIGINT
);
CREATE TABLE sessions (
  run_id BIGINT NOT NULL,
  session_id BIGINT NOT NULL,
  request_id TEXT,
  tenant TEXT NOT NULL,
  pool TEXT NOT NULL,
  path TEXT NOT NULL,
  model TEXT,
  params TEXT,
  client_address TEXT,
  user_agent TEXT,
  accepted_at BIGINT NOT NULL,
  admitted_at BIGINT,
  opened_at BIGINT,
  first_audio_at BIGINT,
  last_audio_at BIGINT,
  last_seen_at BIGINT NOT NULL,
  closed_at BIGINT,
  close_code INTEGER,
  close_reason TEXT,
  closed_by TEXT,
  outcome TEXT NOT NULL,
  outcome_reason TEXT,
  client_messages BIGINT NOT NULL DEFAULT 0,
  client_bytes BIGINT NOT NULL DEFAULT 0,
  upstream_messages BIGINT NOT NULL DEFAULT 0,
  upstream_bytes BIGINT NOT NULL DEFAULT 0,
  audio_messages BIGINT NOT NULL DEFAULT 0,
  audio_bytes BIGINT NOT NULL DEFAULT 0,
  keep_alive BIGINT NOT NULL DEFAULT 0,
  audio_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
  idle_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
  PRIMARY KEY (run_id, session_id)
);
CREATE INDEX sessions_opened ON sessions (opened_at);
CREATE INDEX sessions_accepted ON sessions (accepted_at);
CREATE INDEX sessions_still_open ON sessions (run_id) WHERE closed_at IS NULL;
CREATE TABLE events (
  id {0},
  run_id BIGINT NOT NULL,
  occurred_at BIGINT NOT NULL,
  type TEXT NOT NULL,
  session_id BIGINT,
  pool TEXT,
  tenant TEXT,
  fields TEXT NOT NULL
);
CREATE INDEX events_occurred ON events (occurred_at);
CREATE TABLE concurrency (
  run_id BIGINT NOT NULL,
  pool TEXT NOT NULL,
  resolution INTEGER NOT NULL,
  second BIGINT NOT NULL,
  max_open INTEGER NOT NULL,
  min_open INTEGER NOT NULL,
  PRIMARY KEY (run_id, pool, resolution, second)
);
CREATE INDEX concurrency_second ON concurrency (second);
CREATE TABLE meta (
  name TEXT PRIMARY KEY,
  value BIGINT NOT NULL
);
INSERT INTO meta (name, value) VALUES ('longest_span', 0);
)",
                  id),
      // The overlap query's still-open branch (closed_at IS NULL AND
      // opened_at < ?) had only the full opened_at index, so it read every
      // row opened before the range's end; this one holds the open rows only.
      "CREATE INDEX sessions_open_since ON sessions (opened_at) WHERE closed_at IS NULL;",
      // The per-minute concurrency rollup (rollup.hpp). A minute is in
      // rollup_cover once its rows in rollup_minutes are written; a trigger
      // on sessions deletes the cover of every minute a change of a row's
      // interval touches, in the change's transaction, and lowers
      // rollup_dirty_from, below which every minute from rollup_from on is
      // covered. The closes of a minute are found through sessions_closed.
      std::string(R"(
CREATE INDEX sessions_closed ON sessions (closed_at);
CREATE TABLE rollup_minutes (
  minute BIGINT NOT NULL,
  pool TEXT NOT NULL,
  before_open INTEGER NOT NULL,
  start_open INTEGER NOT NULL,
  max_open INTEGER NOT NULL,
  max_at BIGINT NOT NULL,
  max_until BIGINT NOT NULL,
  min_open INTEGER NOT NULL,
  changes TEXT NOT NULL,
  PRIMARY KEY (minute, pool)
);
CREATE TABLE rollup_cover (minute BIGINT PRIMARY KEY);
INSERT INTO meta (name, value) VALUES ('rollup_dirty_from', -9000000000000000000);
INSERT INTO meta (name, value) VALUES ('rollup_from', -9000000000000000000);
)") + (d == Dialect::sqlite ? R"(
CREATE TRIGGER sessions_rollup_insert AFTER INSERT ON sessions WHEN NEW.opened_at IS NOT NULL BEGIN
  DELETE FROM rollup_cover WHERE minute > NEW.opened_at - 60000000 AND minute <= COALESCE(NEW.closed_at, 9000000000000000000);
  UPDATE meta SET value = NEW.opened_at - 60000000 WHERE name = 'rollup_dirty_from' AND value > NEW.opened_at - 60000000;
END;
CREATE TRIGGER sessions_rollup_delete AFTER DELETE ON sessions WHEN OLD.opened_at IS NOT NULL BEGIN
  DELETE FROM rollup_cover WHERE minute > OLD.opened_at - 60000000 AND minute <= COALESCE(OLD.closed_at, 9000000000000000000);
  UPDATE meta SET value = OLD.opened_at - 60000000 WHERE name = 'rollup_dirty_from' AND value > OLD.opened_at - 60000000;
END;
CREATE TRIGGER sessions_rollup_update AFTER UPDATE OF pool, opened_at, closed_at ON sessions
WHEN OLD.pool IS NOT NEW.pool OR OLD.opened_at IS NOT NEW.opened_at OR OLD.closed_at IS NOT NEW.closed_at BEGIN
  DELETE FROM rollup_cover WHERE minute > (CASE WHEN OLD.pool IS NEW.pool AND OLD.opened_at IS NEW.opened_at
      THEN MIN(COALESCE(OLD.closed_at, 9000000000000000000), COALESCE(NEW.closed_at, 9000000000000000000))
      ELSE MIN(COALESCE(OLD.opened_at, 9000000000000000000), COALESCE(NEW.opened_at, 9000000000000000000)) END) - 60000000;
  UPDATE meta SET value = (CASE WHEN OLD.pool IS NEW.pool AND OLD.opened_at IS NEW.opened_at
      THEN MIN(COALESCE(OLD.closed_at, 9000000000000000000), COALESCE(NEW.closed_at, 9000000000000000000))
      ELSE MIN(COALESCE(OLD.opened_at, 9000000000000000000), COALESCE(NEW.opened_at, 9000000000000000000)) END) - 60000000
    WHERE name = 'rollup_dirty_from' AND value > (CASE WHEN OLD.pool IS NEW.pool AND OLD.opened_at IS NEW.opened_at
      THEN MIN(COALESCE(OLD.closed_at, 9000000000000000000), COALESCE(NEW.closed_at, 9000000000000000000))
      ELSE MIN(COALESCE(OLD.opened_at, 9000000000000000000), COALESCE(NEW.opened_at, 9000000000000000000)) END) - 60000000;
END;
)"
                                                                    : R"(
CREATE FUNCTION sluice_rollup_invalidate() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  lo BIGINT;
  hi BIGINT := 9000000000000000000;
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.opened_at IS NULL THEN RETURN NULL; END IF;
    lo := NEW.opened_at;
    hi := COALESCE(NEW.closed_at, hi);
  ELSIF TG_OP = 'DELETE' THEN
    IF OLD.opened_at IS NULL THEN RETURN NULL; END IF;
    lo := OLD.opened_at;
    hi := COALESCE(OLD.closed_at, hi);
  ELSE
    IF OLD.pool IS NOT DISTINCT FROM NEW.pool AND OLD.opened_at IS NOT DISTINCT FROM NEW.opened_at THEN
      IF OLD.closed_at IS NOT DISTINCT FROM NEW.closed_at THEN RETURN NULL; END IF;
      lo := LEAST(COALESCE(OLD.closed_at, hi), COALESCE(NEW.closed_at, hi));
    ELSE
      lo := LEAST(COALESCE(OLD.opened_at, hi), COALESCE(NEW.opened_at, hi));
    END IF;
    IF lo >= hi THEN RETURN NULL; END IF;
  END IF;
  -- Waits for a rollup being written (which holds this lock exclusively) to
  -- commit, so its minutes are seen and deleted here.
  PERFORM pg_advisory_xact_lock_shared(7395036202);
  DELETE FROM rollup_cover WHERE minute > lo - 60000000 AND minute <= hi;
  UPDATE meta SET value = lo - 60000000 WHERE name = 'rollup_dirty_from' AND value > lo - 60000000;
  RETURN NULL;
END $$;
CREATE TRIGGER sessions_rollup AFTER INSERT OR UPDATE OR DELETE ON sessions
  FOR EACH ROW EXECUTE FUNCTION sluice_rollup_invalidate();
)"),
      // Resumed streams (docs/resume.md): every upstream request id a
      // session had (a JSON array), and how many times it was resumed.
      "ALTER TABLE sessions ADD COLUMN upstream_request_ids TEXT;\n"
      "ALTER TABLE sessions ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0;",
  };
}

constexpr const char* kSessionColumns =
    "run_id, session_id, request_id, tenant, pool, path, model, params, client_address, user_agent, "
    "accepted_at, admitted_at, opened_at, first_audio_at, last_audio_at, last_seen_at, closed_at, "
    "close_code, close_reason, closed_by, outcome, outcome_reason, client_messages, client_bytes, "
    "upstream_messages, upstream_bytes, audio_messages, audio_bytes, keep_alive, audio_seconds, idle_seconds, "
    "upstream_request_ids, resumes";
constexpr int kSessionColumnCount = 33;

Value opt(const std::optional<Micros>& v) { return v ? Value(*v) : Value(nullptr); }
Value text_or_null(const std::string& s) { return s.empty() ? Value(nullptr) : Value(s); }

std::vector<Value> session_values(const SessionRecord& r) {
  return {r.run_id, r.session_id, text_or_null(r.request_id), r.tenant, r.pool, r.path, text_or_null(r.model),
          text_or_null(r.params), text_or_null(r.client_address), text_or_null(r.user_agent), r.accepted_at,
          opt(r.admitted_at), opt(r.opened_at), opt(r.first_audio_at), opt(r.last_audio_at), r.last_seen_at,
          opt(r.closed_at), r.close_code ? Value(std::int64_t{*r.close_code}) : Value(nullptr),
          text_or_null(r.close_reason), text_or_null(r.closed_by), std::string(outcome_name(r.outcome)),
          text_or_null(r.outcome_reason), r.client_messages, r.client_bytes, r.upstream_messages, r.upstream_bytes,
          r.audio_messages, r.audio_bytes, r.keep_alive, r.audio_seconds, r.idle_seconds,
          text_or_null(r.upstream_request_ids), std::int64_t{r.resumes}};
}

SessionRecord session_from_row(const Row& row) {
  SessionRecord r;
  int c = 0;
  auto opt_int = [&](int i) { return row.opt_integer(i); };
  r.run_id = row.integer(c++);
  r.session_id = row.integer(c++);
  r.request_id = row.text(c++);
  r.tenant = row.text(c++);
  r.pool = row.text(c++);
  r.path = row.text(c++);
  r.model = row.text(c++);
  r.params = row.text(c++);
  r.client_address = row.text(c++);
  r.user_agent = row.text(c++);
  r.accepted_at = row.integer(c++);
  r.admitted_at = opt_int(c++);
  r.opened_at = opt_int(c++);
  r.first_audio_at = opt_int(c++);
  r.last_audio_at = opt_int(c++);
  r.last_seen_at = row.integer(c++);
  r.closed_at = opt_int(c++);
  if (auto code = opt_int(c++)) r.close_code = static_cast<int>(*code);
  r.close_reason = row.text(c++);
  r.closed_by = row.text(c++);
  r.outcome = outcome_from_name(row.text(c++)).value_or(Outcome::open);
  r.outcome_reason = row.text(c++);
  r.client_messages = row.integer(c++);
  r.client_bytes = row.integer(c++);
  r.upstream_messages = row.integer(c++);
  r.upstream_bytes = row.integer(c++);
  r.audio_messages = row.integer(c++);
  r.audio_bytes = row.integer(c++);
  r.keep_alive = row.integer(c++);
  r.audio_seconds = row.real(c++);
  r.idle_seconds = row.real(c++);
  r.upstream_request_ids = row.text(c++);
  r.resumes = static_cast<int>(row.integer(c++));
  return r;
}

std::string upsert_session_sql() {
  std::string sql = fmt::format("INSERT INTO sessions ({}) VALUES (", kSessionColumns);
  for (int i = 0; i < kSessionColumnCount; ++i) sql += i ? ", ?" : "?";
  sql += ") ON CONFLICT (run_id, session_id) DO UPDATE SET ";
  std::string_view cols = kSessionColumns;
  bool first = true;
  for (std::size_t pos = 0; pos < cols.size();) {
    auto end = cols.find(',', pos);
    if (end == std::string_view::npos) end = cols.size();
    auto name = cols.substr(pos, end - pos);
    while (name.starts_with(' ')) name.remove_prefix(1);
    if (name != "run_id" && name != "session_id") {
      sql += fmt::format("{}{} = excluded.{}", first ? "" : ", ", name, name);
      first = false;
    }
    pos = end + 1;
  }
  return sql;
}

}  // namespace

Store::Store(const std::string& url, const OpenOptions& options) : db_(open_database(url, options)) {
  if (!options.read_only) {
    migrate();
  } else {
    auto v = schema_version();
    if (v > kSchemaVersion)
      throw DbError(fmt::format("the history database {} has schema version {}, newer than this sluice reads ({})",
                                db_->describe(), v, kSchemaVersion));
    if (v == 0) throw DbError(fmt::format("{} holds no sluice history (no schema)", db_->describe()));
    version_ = v;
  }
}

Store::~Store() = default;

int Store::schema_version() {
  int version = 0;
  bool exists = false;
  auto probe = db_->dialect() == Dialect::sqlite
                   ? "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
                   : "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND "
                     "table_name = 'schema_version'";
  db_->query(probe, {}, [&](const Row& r) { exists = r.integer(0) > 0; });
  if (!exists) return 0;
  db_->query("SELECT MAX(version) FROM schema_version", {}, [&](const Row& r) { version = static_cast<int>(r.integer(0)); });
  return version;
}

void Store::migrate() {
  auto steps = migrations(db_->dialect());
  // One migrator at a time: SQLite takes the write lock at BEGIN IMMEDIATE;
  // PostgreSQL gateways sharing a database queue on an advisory lock.
  if (db_->dialect() == Dialect::sqlite) {
    db_->exec("BEGIN IMMEDIATE");
  } else {
    db_->exec("BEGIN");
    db_->exec("SELECT pg_advisory_xact_lock(7395036201)");
  }
  try {
    db_->exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at BIGINT NOT NULL)");
    int v = schema_version();
    if (v > static_cast<int>(steps.size()))
      throw DbError(fmt::format("the history database {} has schema version {}, newer than this sluice ({}); "
                                "upgrade sluice or point store.url elsewhere",
                                db_->describe(), v, steps.size()));
    auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                   std::chrono::system_clock::now().time_since_epoch()).count();
    for (auto i = static_cast<std::size_t>(v); i < steps.size(); ++i) {
      db_->exec(steps[i]);
      std::array<Value, 2> p{static_cast<std::int64_t>(i + 1), static_cast<std::int64_t>(now)};
      db_->run("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", p);
    }
    db_->exec("COMMIT");
  } catch (...) {
    try {
      db_->exec("ROLLBACK");
    } catch (...) {
    }
    throw;
  }
}

std::int64_t Store::begin_run(const RunRecord& run) {
  std::int64_t id = 0;
  std::array<Value, 5> p{run.instance, run.version, std::int64_t{run.pid}, run.started_at, run.started_at};
  db_->query("INSERT INTO runs (instance, version, pid, started_at, last_seen_at) VALUES (?, ?, ?, ?, ?) RETURNING run_id",
             p, [&](const Row& r) { id = r.integer(0); });
  return id;
}

void Store::end_run(std::int64_t run_id, Micros at) {
  transaction(*db_, [&] {
    // A row this run could not close (its stream outlived the shutdown)
    // ends at its last known activity.
    std::array<Value, 1> id{run_id};
    Micros longest = 0;
    db_->query("SELECT COALESCE(MAX(last_seen_at - opened_at), 0) FROM sessions WHERE closed_at IS NULL AND "
               "opened_at IS NOT NULL AND run_id = ?",
               id, [&](const Row& r) { longest = r.integer(0); });
    if (longest > 0) {
      std::array<Value, 2> q{longest, longest};
      db_->run("UPDATE meta SET value = ? WHERE name = 'longest_span' AND value < ?", q);
    }
    db_->run("UPDATE sessions SET outcome = 'interrupted', outcome_reason = 'gateway stopped without closing it', "
             "closed_at = CASE WHEN opened_at IS NOT NULL AND last_seen_at < opened_at THEN opened_at ELSE last_seen_at END "
             "WHERE closed_at IS NULL AND run_id = ?",
             id);
    std::array<Value, 3> p{at, at, run_id};
    db_->run("UPDATE runs SET stopped_at = ?, last_seen_at = ? WHERE run_id = ?", p);
  });
}

std::int64_t Store::recover_interrupted(std::int64_t self, const std::optional<std::string>& instance,
                                        Micros stale_before) {
  std::int64_t n = 0;
  transaction(*db_, [&] {
    // A restart's own predecessors are dead whenever it last heard of them.
    // A run whose end is recorded is over; its rows still open are what its
    // last write left.
    const char* dead_runs =
        "SELECT run_id FROM runs WHERE run_id <> ? AND (stopped_at IS NOT NULL OR instance = ? OR last_seen_at < ?)";
    std::array<Value, 3> p{self, instance ? Value(*instance) : Value(nullptr), stale_before};
    // The longest of the intervals about to be closed, so the overlap query's
    // bound covers them (from the still-open rows alone, not a scan of every
    // row).
    Micros longest = 0;
    db_->query(fmt::format("SELECT COALESCE(MAX(last_seen_at - opened_at), 0) FROM sessions WHERE closed_at IS NULL "
                           "AND opened_at IS NOT NULL AND run_id IN ({})",
                           dead_runs),
               p, [&](const Row& r) { longest = r.integer(0); });
    // An interrupted row ends at its last known activity; it never ends
    // before it opened.
    auto sql = fmt::format(
        "UPDATE sessions SET outcome = 'interrupted', outcome_reason = 'gateway stopped without closing it', "
        "closed_at = CASE WHEN opened_at IS NOT NULL AND last_seen_at < opened_at THEN opened_at ELSE last_seen_at END "
        "WHERE closed_at IS NULL AND run_id IN ({})",
        dead_runs);
    n = db_->run(sql, p);
    // Those runs are over: their end is their last sign of life.
    db_->run(fmt::format("UPDATE runs SET stopped_at = last_seen_at WHERE stopped_at IS NULL AND run_id IN ({})", dead_runs),
             p);
    if (longest > 0) {
      std::array<Value, 2> q{longest, longest};
      db_->run("UPDATE meta SET value = ? WHERE name = 'longest_span' AND value < ?", q);
    }
  });
  return n;
}

void Store::write(const WriteBatch& batch) {
  static const std::string upsert = upsert_session_sql();
  transaction(*db_, [&] {
    Micros longest = 0;
    for (const auto& s : batch.sessions) {
      auto v = session_values(s);
      db_->run(upsert, v);
      if (s.opened_at && s.closed_at) longest = std::max(longest, *s.closed_at - *s.opened_at);
    }
    if (longest > 0) {
      std::array<Value, 2> p{longest, longest};
      db_->run("UPDATE meta SET value = ? WHERE name = 'longest_span' AND value < ?", p);
    }
    for (const auto& e : batch.events) {
      std::array<Value, 7> p{e.run_id, e.time, e.type, e.session_id ? Value(*e.session_id) : Value(nullptr),
                             text_or_null(e.pool), text_or_null(e.tenant), e.fields};
      db_->run("INSERT INTO events (run_id, occurred_at, type, session_id, pool, tenant, fields) VALUES (?, ?, ?, ?, ?, ?, ?)",
               p);
    }
    const char* sample_sql =
        db_->dialect() == Dialect::sqlite
            ? "INSERT INTO concurrency (run_id, pool, resolution, second, max_open, min_open) VALUES (?, ?, ?, ?, ?, ?) "
              "ON CONFLICT (run_id, pool, resolution, second) DO UPDATE SET max_open = MAX(max_open, "
              "excluded.max_open), min_open = MIN(min_open, excluded.min_open)"
            : "INSERT INTO concurrency (run_id, pool, resolution, second, max_open, min_open) VALUES (?, ?, ?, ?, ?, ?) "
              "ON CONFLICT (run_id, pool, resolution, second) DO UPDATE SET max_open = GREATEST(concurrency.max_open, "
              "excluded.max_open), min_open = LEAST(concurrency.min_open, excluded.min_open)";
    for (const auto& s : batch.samples) {
      std::array<Value, 6> p{s.run_id, s.pool, std::int64_t{s.resolution}, s.second, std::int64_t{s.max_open},
                             std::int64_t{s.min_open}};
      db_->run(sample_sql, p);
    }
    if (batch.run_seen) {
      std::array<Value, 2> p{batch.run_seen->second, batch.run_seen->first};
      // A run taken for dead (its writer stalled past stale_after while
      // others swept) is alive again: its heartbeat rewrites its open rows.
      db_->run("UPDATE runs SET last_seen_at = ?, stopped_at = NULL WHERE run_id = ?", p);
    }
  });
}

namespace {

// Streams that held capacity and met [from, to): closed ones opened no
// earlier than the longest stream ever recorded before the range (so the
// opened_at index bounds the scan), plus those still open.
std::pair<std::string, std::vector<Value>> overlap_query(Connection& db, const char* cols, const SessionQuery& q) {
  Micros longest = 0;
  db.query("SELECT value FROM meta WHERE name = 'longest_span'", {}, [&](const Row& r) { longest = r.integer(0); });
  std::string filter;
  std::vector<Value> extra;
  if (q.pool) {
    filter += " AND pool = ?";
    extra.emplace_back(*q.pool);
  }
  if (q.tenant) {
    filter += " AND tenant = ?";
    extra.emplace_back(*q.tenant);
  }
  if (q.instance) {
    filter += " AND run_id IN (SELECT run_id FROM runs WHERE instance = ?)";
    extra.emplace_back(*q.instance);
  }
  auto sql = fmt::format(
      "SELECT {0} FROM sessions WHERE opened_at >= ? AND opened_at < ? AND closed_at IS NOT NULL "
      "AND (closed_at > ? OR (closed_at = opened_at AND opened_at >= ?)){1} "
      "UNION ALL SELECT {0} FROM sessions WHERE closed_at IS NULL AND opened_at IS NOT NULL AND opened_at < ?{1} ",
      cols, filter);
  std::vector<Value> p{q.from - longest, q.to, q.from, q.from};
  p.insert(p.end(), extra.begin(), extra.end());
  p.emplace_back(q.to);
  p.insert(p.end(), extra.begin(), extra.end());
  if (q.include_unopened) {
    sql += fmt::format("UNION ALL SELECT {} FROM sessions WHERE opened_at IS NULL AND accepted_at >= ? AND accepted_at < ?{} ",
                       cols, filter);
    p.emplace_back(q.from);
    p.emplace_back(q.to);
    p.insert(p.end(), extra.begin(), extra.end());
  }
  return {std::move(sql), std::move(p)};
}

}  // namespace

void Store::sessions(const SessionQuery& q, const std::function<void(SessionRecord&&)>& fn) {
  // A schema before version 4 has no resume columns: a reader reads them as none.
  std::string columns = kSessionColumns;
  if (version_ < 4)
    columns.replace(columns.find("upstream_request_ids, resumes"), std::string::npos,
                    "NULL AS upstream_request_ids, 0 AS resumes");
  auto [sql, p] = overlap_query(*db_, columns.c_str(), q);
  sql += "ORDER BY 13 NULLS LAST, 11, 1, 2";  // opened_at, accepted_at, run, session
  db_->query(sql, p, [&](const Row& r) { fn(session_from_row(r)); });
}

void Store::spans(const SessionQuery& q, Micros now, const std::function<void(Span&&)>& fn) {
  auto query = q;
  query.include_unopened = false;
  auto [sql, p] = overlap_query(
      *db_, "run_id, session_id, pool, tenant, opened_at, closed_at, audio_seconds, idle_seconds", query);
  sql += "ORDER BY 5, 1, 2";
  db_->query(sql, p, [&](const Row& r) {
    Span s;
    s.run_id = r.integer(0);
    s.session_id = r.integer(1);
    s.pool = r.text(2);
    s.tenant = r.text(3);
    s.start = r.integer(4);
    s.still_open = r.is_null(5);
    s.end = s.still_open ? std::max(now, s.start) : r.integer(5);
    s.audio_seconds = r.real(6);
    s.idle_seconds = r.real(7);
    fn(std::move(s));
  });
}

std::vector<EventRecord> Store::events(Micros from, Micros to, const std::optional<std::string>& type,
                                       std::size_t limit) {
  std::vector<EventRecord> out;
  std::vector<Value> p{from, to};
  std::string sql = "SELECT id, run_id, occurred_at, type, session_id, pool, tenant, fields FROM events WHERE occurred_at >= ? AND occurred_at < ?";
  if (type) {
    sql += " AND type = ?";
    p.emplace_back(*type);
  }
  sql += " ORDER BY occurred_at, id LIMIT ?";
  p.emplace_back(static_cast<std::int64_t>(limit));
  db_->query(sql, p, [&](const Row& r) {
    EventRecord e;
    e.id = r.integer(0);
    e.run_id = r.integer(1);
    e.time = r.integer(2);
    e.type = r.text(3);
    e.session_id = r.opt_integer(4);
    e.pool = r.text(5);
    e.tenant = r.text(6);
    e.fields = r.text(7);
    out.push_back(std::move(e));
  });
  return out;
}

std::vector<ConcurrencySample> Store::samples(Micros from, Micros to, const std::optional<std::string>& pool) {
  std::vector<ConcurrencySample> out;
  std::vector<Value> p{from / 1'000'000 - 60, (to + 999'999) / 1'000'000};
  std::string sql =
      "SELECT run_id, pool, resolution, second, max_open, min_open FROM concurrency WHERE second >= ? AND second < ?";
  if (pool) {
    sql += " AND pool = ?";
    p.emplace_back(*pool);
  }
  sql += " ORDER BY second, pool, run_id";
  db_->query(sql, p, [&](const Row& r) {
    ConcurrencySample s;
    s.run_id = r.integer(0);
    s.pool = r.text(1);
    s.resolution = static_cast<int>(r.integer(2));
    s.second = r.integer(3);
    s.max_open = static_cast<int>(r.integer(4));
    s.min_open = static_cast<int>(r.integer(5));
    if (s.second + s.resolution > from / 1'000'000) out.push_back(std::move(s));
  });
  return out;
}

std::vector<RunRecord> Store::runs() {
  std::vector<RunRecord> out;
  db_->query("SELECT run_id, instance, version, pid, started_at, last_seen_at, stopped_at FROM runs ORDER BY run_id", {},
             [&](const Row& r) {
               RunRecord run;
               run.run_id = r.integer(0);
               run.instance = r.text(1);
               run.version = r.text(2);
               run.pid = static_cast<int>(r.integer(3));
               run.started_at = r.integer(4);
               run.last_seen_at = r.integer(5);
               run.stopped_at = r.opt_integer(6);
               out.push_back(std::move(run));
             });
  return out;
}

RetentionResult Store::enforce_retention(const RetentionPolicy& policy, Micros now) {
  RetentionResult res;
  transaction(*db_, [&] {
    if (policy.rollup_after > 0) {
      // Per-second samples older than rollup_after become one row per minute:
      // the minute's maximum, and its minimum (0 when a second had none open,
      // which is when no row was written for it).
      std::int64_t cutoff = (now - policy.rollup_after) / 1'000'000 / 60 * 60;
      std::array<Value, 1> p{cutoff};
      auto merge = db_->dialect() == Dialect::sqlite
                       ? "max_open = MAX(max_open, excluded.max_open), min_open = MIN(min_open, excluded.min_open)"
                       : "max_open = GREATEST(concurrency.max_open, excluded.max_open), min_open = "
                         "LEAST(concurrency.min_open, excluded.min_open)";
      db_->run(fmt::format("INSERT INTO concurrency (run_id, pool, resolution, second, max_open, min_open) "
                           "SELECT run_id, pool, 60, second / 60 * 60, MAX(max_open), "
                           "CASE WHEN COUNT(*) < 60 THEN 0 ELSE MIN(min_open) END FROM concurrency "
                           "WHERE resolution = 1 AND second < ? GROUP BY run_id, pool, second / 60 * 60 "
                           "ON CONFLICT (run_id, pool, resolution, second) DO UPDATE SET {}",
                           merge),
               p);
      res.rolled_up = db_->run("DELETE FROM concurrency WHERE resolution = 1 AND second < ?", p);
    }
    if (policy.seconds > 0) {
      std::array<Value, 1> p{(now - policy.seconds) / 1'000'000};
      res.samples += db_->run("DELETE FROM concurrency WHERE resolution = 1 AND second < ?", p);
    }
    if (policy.minutes > 0) {
      std::array<Value, 1> p{(now - policy.minutes) / 1'000'000};
      res.samples += db_->run("DELETE FROM concurrency WHERE resolution = 60 AND second < ?", p);
    }
    if (policy.sessions > 0) {
      std::array<Value, 1> p{now - policy.sessions};
      res.sessions = db_->run("DELETE FROM sessions WHERE closed_at IS NOT NULL AND closed_at < ?", p);
      // Rows that never opened nor closed (queued when their gateway died
      // and never recovered) go by their acceptance.
      res.sessions += db_->run("DELETE FROM sessions WHERE closed_at IS NULL AND opened_at IS NULL AND accepted_at < ?", p);
      // Minutes before the cutoff lost rows: the rollup no longer holds them
      // (a query there sweeps what is left). Minutes from the cutoff on are
      // untouched: every row deleted closed before it.
      std::array<Value, 1> from{floor_minute(now - policy.sessions - 1) + kRollupMinute};
      db_->run("DELETE FROM rollup_cover WHERE minute < ?", from);
      db_->run("DELETE FROM rollup_minutes WHERE minute < ?", from);
      std::array<Value, 2> f2{from[0], from[0]};
      db_->run("UPDATE meta SET value = ? WHERE name = 'rollup_from' AND value < ?", f2);
    }
    if (policy.events > 0) {
      std::array<Value, 1> p{now - policy.events};
      res.events = db_->run("DELETE FROM events WHERE occurred_at < ?", p);
    }
  });
  return res;
}

void Store::read_snapshot(const std::function<void()>& fn) {
  db_->exec(db_->dialect() == Dialect::sqlite ? "BEGIN" : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  try {
    fn();
    db_->exec("COMMIT");
  } catch (...) {
    try {
      db_->exec("ROLLBACK");
    } catch (...) {
    }
    throw;
  }
}

std::vector<Micros> Store::rollup_covered(Micros m0, Micros m1) {
  std::vector<Micros> out;
  std::array<Value, 2> p{m0, m1};
  db_->query("SELECT minute FROM rollup_cover WHERE minute >= ? AND minute < ? ORDER BY minute", p,
             [&](const Row& r) { out.push_back(r.integer(0)); });
  return out;
}

void Store::rollup_minutes(Micros m0, Micros m1, const std::optional<std::string>& pool, bool changes,
                           const std::function<void(MinuteRow&&)>& fn) {
  std::vector<Value> p{m0, m1};
  std::string sql = fmt::format(
      "SELECT minute, pool, before_open, start_open, max_open, max_at, max_until, min_open{} FROM rollup_minutes "
      "WHERE minute >= ? AND minute < ?",
      changes ? ", changes" : "");
  if (pool) {
    sql += " AND pool = ?";
    p.emplace_back(*pool);
  }
  sql += " ORDER BY minute, pool";
  db_->query(sql, p, [&](const Row& r) {
    MinuteRow m;
    m.minute = r.integer(0);
    m.pool = r.text(1);
    m.before = static_cast<int>(r.integer(2));
    m.start = static_cast<int>(r.integer(3));
    m.max = static_cast<int>(r.integer(4));
    m.max_at = r.integer(5);
    m.max_until = r.integer(6);
    m.min = static_cast<int>(r.integer(7));
    if (changes) {
      m.changes = decode_changes(r.text(8), m.minute);
      m.has_changes = true;
    }
    fn(std::move(m));
  });
}

std::int64_t Store::update_rollup(Micros now, int max_minutes) {
  // Minutes that ended this long ago: rows of streams that closed within them
  // are written by then, so they are rarely computed twice.
  constexpr Micros kSettle = 10'000'000;
  const Micros hi = floor_minute(now - kSettle);
  std::int64_t written = 0;
  if (db_->dialect() == Dialect::sqlite) {
    db_->exec("BEGIN IMMEDIATE");
  } else {
    db_->exec("BEGIN");
    // Session writes that change an interval take this lock shared (the
    // trigger), so none commits between the reads below and the commit.
    db_->exec("SELECT pg_advisory_xact_lock(7395036202)");
  }
  try {
    Micros dirty = 0, rollup_from = 0;
    db_->query("SELECT name, value FROM meta WHERE name IN ('rollup_dirty_from', 'rollup_from')", {}, [&](const Row& r) {
      (r.text(0) == "rollup_from" ? rollup_from : dirty) = r.integer(1);
    });
    std::optional<Micros> first;
    db_->query("SELECT MIN(opened_at) FROM sessions", {}, [&](const Row& r) { first = r.opt_integer(0); });
    Micros start = std::max({floor_minute(dirty), floor_minute(rollup_from - 1) + kRollupMinute,
                             first ? floor_minute(*first) : hi});
    if (start < hi) {
      auto covered = rollup_covered(start, hi);
      std::size_t i = 0;
      Micros a = start;
      while (i < covered.size() && covered[i] == a) {
        ++i;
        a += kRollupMinute;
      }
      Micros dirty_after = hi;
      if (a < hi) {
        Micros b = a;
        while (b < hi && b < a + max_minutes * kRollupMinute && (i == covered.size() || covered[i] != b))
          b += kRollupMinute;
        MinuteBuilder builder(a, b);
        // Open just before a: the end of the minute before when it is
        // covered, else counted from the rows.
        std::array<Value, 1> prev{a - kRollupMinute};
        bool prev_covered = false;
        db_->query("SELECT COUNT(*) FROM rollup_cover WHERE minute = ?", prev,
                   [&](const Row& r) { prev_covered = r.integer(0) > 0; });
        if (prev_covered) {
          rollup_minutes(a - kRollupMinute, a, std::nullopt, true, [&](MinuteRow&& m) {
            int end = m.before;
            for (const auto& c : m.changes) end += c.delta;
            if (end) builder.before(m.pool, end);
          });
        } else {
          // Streams with opened < a <= end: the spans meeting [a - 1, a).
          spans({.from = a - 1, .to = a}, now, [&](Span&& s) {
            if (s.end > s.start && s.start < a && s.end >= a) builder.before(s.pool, 1);
          });
        }
        std::array<Value, 2> range{a, b};
        db_->query("SELECT pool, opened_at, closed_at FROM sessions WHERE opened_at >= ? AND opened_at < ?", range,
                   [&](const Row& r) {
                     auto pool = r.text(0);
                     Micros o = r.integer(1);
                     if (!r.is_null(2) && r.integer(2) <= o) builder.zero(pool, o);
                     else builder.open(pool, o);
                   });
        db_->query("SELECT pool, closed_at FROM sessions WHERE closed_at >= ? AND closed_at < ? AND opened_at IS NOT NULL "
                   "AND closed_at > opened_at",
                   range, [&](const Row& r) { builder.close(r.text(0), r.integer(1)); });
        db_->run("DELETE FROM rollup_minutes WHERE minute >= ? AND minute < ?", range);
        for (const auto& m : builder.finish()) {
          std::array<Value, 9> v{m.minute, m.pool, std::int64_t{m.before}, std::int64_t{m.start}, std::int64_t{m.max},
                                 m.max_at, m.max_until, std::int64_t{m.min}, encode_changes(m.changes, m.minute)};
          db_->run("INSERT INTO rollup_minutes (minute, pool, before_open, start_open, max_open, max_at, max_until, "
                   "min_open, changes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   v);
        }
        for (Micros m = a; m < b; m += kRollupMinute) {
          std::array<Value, 1> c{m};
          db_->run("INSERT INTO rollup_cover (minute) VALUES (?)", c);
          ++written;
        }
        // The first minute still to do from start on.
        dirty_after = b;
        while (i < covered.size() && covered[i] == dirty_after) {
          ++i;
          dirty_after += kRollupMinute;
        }
      }
      std::array<Value, 1> d{dirty_after};
      db_->run("UPDATE meta SET value = ? WHERE name = 'rollup_dirty_from'", d);
    }
    db_->exec("COMMIT");
  } catch (...) {
    try {
      db_->exec("ROLLBACK");
    } catch (...) {
    }
    throw;
  }
  return written;
}

}  // namespace sluice::history
