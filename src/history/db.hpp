#pragma once
// A small SQL connection interface with two implementations, SQLite and
// PostgreSQL (libpq), so the history store is written once. Statements use
// `?` placeholders; the PostgreSQL connection numbers them ($1, $2, ...).
// A Connection is used by one thread at a time.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace sluice::history {

// A database failure; what() names the statement's purpose and the server's
// message. `busy` marks a lock or a conflict worth retrying later.
class DbError : public std::runtime_error {
 public:
  DbError(const std::string& what, bool busy = false) : std::runtime_error(what), busy_(busy) {}
  bool busy() const { return busy_; }

 private:
  bool busy_;
};

// A statement stopped because the connection's deadline (OpenOptions) passed,
// or not started because it already had.
class DeadlineExceeded : public DbError {
 public:
  using DbError::DbError;
};

using Value = std::variant<std::nullptr_t, std::int64_t, double, std::string>;

// One result row; columns by index, as the SELECT lists them.
class Row {
 public:
  virtual ~Row() = default;
  virtual bool is_null(int col) const = 0;
  virtual std::int64_t integer(int col) const = 0;  // 0 for NULL
  virtual double real(int col) const = 0;           // 0 for NULL
  virtual std::string text(int col) const = 0;      // "" for NULL
  std::optional<std::int64_t> opt_integer(int col) const {
    return is_null(col) ? std::nullopt : std::optional<std::int64_t>(integer(col));
  }
};

enum class Dialect { sqlite, postgres };

class Connection {
 public:
  virtual ~Connection() = default;
  virtual Dialect dialect() const = 0;
  // Runs one or more statements without parameters.
  virtual void exec(std::string_view sql) = 0;
  // Runs one statement; returns the number of rows it changed.
  virtual std::int64_t run(std::string_view sql, std::span<const Value> params = {}) = 0;
  // Runs one query, calling `row` for each result row in order.
  virtual void query(std::string_view sql, std::span<const Value> params,
                     const std::function<void(const Row&)>& row) = 0;
  // Where the data lives, for messages (never with a password).
  virtual std::string describe() const = 0;
};

struct OpenOptions {
  bool read_only = false;            // the CLI reads; only the gateway writes
  int busy_timeout_ms = 1000;        // SQLite: how long to wait for a lock
  // When set, no statement starts after it and one running past it is
  // stopped (SQLite: a progress handler; PostgreSQL: statement_timeout set to
  // what is left before each statement), with DeadlineExceeded.
  std::optional<std::chrono::steady_clock::time_point> deadline;
};

// Opens `url`: a file path or sqlite:///path or sqlite:relative, or
// postgres://… / postgresql://… (libpq's URI syntax). Throws DbError.
std::unique_ptr<Connection> open_database(const std::string& url, const OpenOptions& options = {});

// The URL with any password replaced by "***", for messages and logs.
std::string redact_url(const std::string& url);

// Runs `fn` inside BEGIN … COMMIT, rolling back if it throws.
void transaction(Connection& db, const std::function<void()>& fn);

}  // namespace sluice::history
