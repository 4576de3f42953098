// The SQLite connection: WAL mode for a writer beside readers, a busy
// timeout, and prepared statements cached by their text.
#include <sqlite3.h>

#include <fmt/format.h>

#include <filesystem>
#include <map>

#include "history/db.hpp"
#include "history/db_internal.hpp"

namespace sluice::history {
namespace {

class SqliteRow final : public Row {
 public:
  explicit SqliteRow(sqlite3_stmt* st) : st_(st) {}
  bool is_null(int c) const override { return sqlite3_column_type(st_, c) == SQLITE_NULL; }
  std::int64_t integer(int c) const override { return sqlite3_column_int64(st_, c); }
  double real(int c) const override { return sqlite3_column_double(st_, c); }
  std::string text(int c) const override {
    auto* p = sqlite3_column_text(st_, c);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(st_, c)))
             : std::string();
  }

 private:
  sqlite3_stmt* st_;
};

class SqliteConnection final : public Connection {
 public:
  SqliteConnection(const std::string& path, const OpenOptions& opt) : path_(path) {
    if (!opt.read_only) {
      auto dir = std::filesystem::path(path).parent_path();
      std::error_code ec;
      if (!dir.empty()) std::filesystem::create_directories(dir, ec);
      if (ec) throw DbError(fmt::format("cannot create the data directory {}: {}", dir.string(), ec.message()));
    } else if (!std::filesystem::exists(path)) {
      throw DbError(fmt::format("no history database at {} (has the gateway run with this store?)", path));
    }
    int flags = opt.read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    flags |= SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
      std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      db_ = nullptr;
      throw DbError(fmt::format("cannot open the history database {}: {}", path, msg));
    }
    sqlite3_busy_timeout(db_, opt.busy_timeout_ms);
    try {
      if (!opt.read_only) {
        exec("PRAGMA journal_mode=WAL");
        exec("PRAGMA synchronous=NORMAL");
      }
      exec("PRAGMA foreign_keys=ON");
    } catch (...) {
      sqlite3_close(db_);
      throw;
    }
    if (opt.deadline) {
      deadline_ = opt.deadline;
      // Called every 1000 virtual-machine instructions (a few µs): a
      // non-zero return interrupts the statement with SQLITE_INTERRUPT.
      sqlite3_progress_handler(
          db_, 1000, [](void* self) { return static_cast<SqliteConnection*>(self)->past_deadline() ? 1 : 0; }, this);
    }
  }

  ~SqliteConnection() override {
    for (auto& [_, st] : cache_) sqlite3_finalize(st);
    sqlite3_close(db_);
  }

  Dialect dialect() const override { return Dialect::sqlite; }
  std::string describe() const override { return "sqlite:" + path_; }

  void exec(std::string_view sql) override {
    check_deadline();
    char* err = nullptr;
    std::string text(sql);
    int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string msg = err ? err : sqlite3_errstr(rc);
      sqlite3_free(err);
      if (interrupted(rc)) throw_deadline();
      throw DbError(fmt::format("sqlite {}: {}", path_, msg), is_busy(rc));
    }
  }

  std::int64_t run(std::string_view sql, std::span<const Value> params) override {
    auto* st = prepare(sql, params);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    }
    finish(st, rc);
    return sqlite3_changes64(db_);
  }

  void query(std::string_view sql, std::span<const Value> params,
             const std::function<void(const Row&)>& fn) override {
    auto* st = prepare(sql, params);
    SqliteRow row(st);
    int rc;
    try {
      while ((rc = sqlite3_step(st)) == SQLITE_ROW) fn(row);
    } catch (...) {
      sqlite3_reset(st);
      throw;
    }
    finish(st, rc);
  }

 private:
  static bool is_busy(int rc) { return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED; }
  bool interrupted(int rc) const { return deadline_ && (rc & 0xff) == SQLITE_INTERRUPT; }

  bool past_deadline() const { return deadline_ && std::chrono::steady_clock::now() >= *deadline_; }
  [[noreturn]] void throw_deadline() const {
    throw DeadlineExceeded(fmt::format("sqlite {}: the query ran past its deadline and was stopped", path_));
  }
  void check_deadline() const {
    if (past_deadline()) throw_deadline();
  }

  sqlite3_stmt* prepare(std::string_view sql, std::span<const Value> params) {
    check_deadline();
    auto key = std::string(sql);
    auto it = cache_.find(key);
    sqlite3_stmt* st = nullptr;
    if (it != cache_.end()) {
      st = it->second;
    } else {
      if (sqlite3_prepare_v2(db_, key.data(), static_cast<int>(key.size()), &st, nullptr) != SQLITE_OK)
        throw DbError(fmt::format("sqlite {}: {} in: {}", path_, sqlite3_errmsg(db_), key),
                      is_busy(sqlite3_errcode(db_)));
      cache_.emplace(key, st);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    int i = 1;
    for (const auto& v : params) {
      std::visit(
          [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::nullptr_t>) sqlite3_bind_null(st, i);
            else if constexpr (std::is_same_v<T, std::int64_t>) sqlite3_bind_int64(st, i, x);
            else if constexpr (std::is_same_v<T, double>) sqlite3_bind_double(st, i, x);
            else sqlite3_bind_text(st, i, x.data(), static_cast<int>(x.size()), SQLITE_TRANSIENT);
          },
          v);
      ++i;
    }
    return st;
  }

  void finish(sqlite3_stmt* st, int rc) {
    if (rc != SQLITE_DONE) {
      auto msg = std::string(sqlite3_errmsg(db_));
      sqlite3_reset(st);
      if (interrupted(rc)) throw_deadline();
      throw DbError(fmt::format("sqlite {}: {}", path_, msg), is_busy(rc));
    }
    sqlite3_reset(st);
  }

  std::string path_;
  sqlite3* db_ = nullptr;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  std::map<std::string, sqlite3_stmt*> cache_;
};

}  // namespace

std::unique_ptr<Connection> open_sqlite(const std::string& path, const OpenOptions& options) {
  return std::make_unique<SqliteConnection>(path, options);
}

}  // namespace sluice::history
