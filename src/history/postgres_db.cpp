// The PostgreSQL connection (libpq): parameters as text, results streamed
// in single-row mode so a long range never sits in memory at once.
#include <libpq-fe.h>

#include <fmt/format.h>

#include <cstdlib>
#include <map>

#include "history/db.hpp"
#include "history/db_internal.hpp"

namespace sluice::history {
namespace {

class PgRow final : public Row {
 public:
  explicit PgRow(PGresult* r) : r_(r) {}
  bool is_null(int c) const override { return PQgetisnull(r_, 0, c); }
  std::int64_t integer(int c) const override { return is_null(c) ? 0 : std::strtoll(PQgetvalue(r_, 0, c), nullptr, 10); }
  double real(int c) const override { return is_null(c) ? 0 : std::strtod(PQgetvalue(r_, 0, c), nullptr); }
  std::string text(int c) const override {
    return std::string(PQgetvalue(r_, 0, c), static_cast<std::size_t>(PQgetlength(r_, 0, c)));
  }

 private:
  PGresult* r_;
};

// `?` placeholders become $1, $2, ... (outside quoted text).
std::string number_placeholders(std::string_view sql) {
  std::string out;
  out.reserve(sql.size() + 16);
  int n = 0;
  bool quoted = false;
  for (char c : sql) {
    if (c == '\'') quoted = !quoted;
    if (c == '?' && !quoted) {
      out += fmt::format("${}", ++n);
    } else {
      out += c;
    }
  }
  return out;
}

struct Params {
  std::vector<std::string> text;
  std::vector<const char*> ptrs;
  explicit Params(std::span<const Value> values) {
    text.reserve(values.size());
    for (const auto& v : values) {
      std::visit(
          [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::nullptr_t>) text.emplace_back();
            else if constexpr (std::is_same_v<T, std::int64_t>) text.push_back(std::to_string(x));
            else if constexpr (std::is_same_v<T, double>) text.push_back(fmt::format("{:.17g}", x));
            else text.push_back(x);
          },
          v);
    }
    for (std::size_t i = 0; i < values.size(); ++i)
      ptrs.push_back(std::holds_alternative<std::nullptr_t>(values[i]) ? nullptr : text[i].c_str());
  }
};

class PgConnection final : public Connection {
 public:
  PgConnection(const std::string& url, const OpenOptions& opt) : where_(redact_url(url)) {
    conn_ = PQconnectdb(url.c_str());
    if (PQstatus(conn_) != CONNECTION_OK) {
      std::string msg = PQerrorMessage(conn_);
      PQfinish(conn_);
      conn_ = nullptr;
      while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
      throw DbError(fmt::format("cannot connect to the history database {}: {}", where_, msg));
    }
    try {
      exec("SET client_min_messages = warning");
      if (opt.read_only) exec("SET default_transaction_read_only = on");
    } catch (...) {
      PQfinish(conn_);
      throw;
    }
    deadline_ = opt.deadline;
  }
  ~PgConnection() override { PQfinish(conn_); }

  Dialect dialect() const override { return Dialect::postgres; }
  std::string describe() const override { return where_; }

  void exec(std::string_view sql) override {
    ensure_connected();
    arm_deadline();
    PGresult* r = PQexec(conn_, std::string(sql).c_str());
    check(r, sql);
    PQclear(r);
  }

  // Statements that change rows are prepared once per connection (by their
  // text) and then only executed: the recorder runs the same few for every
  // batch, and parsing and planning a 31-column upsert each time cost more
  // than running it. Queries are not: their plans depend on the range.
  std::int64_t run(std::string_view sql, std::span<const Value> params) override {
    ensure_connected();
    arm_deadline();
    Params p(params);
    auto key = std::string(sql);
    auto it = prepared_.find(key);
    if (it == prepared_.end()) {
      auto name = fmt::format("sluice_{}", prepared_.size() + 1);
      PGresult* r = PQprepare(conn_, name.c_str(), number_placeholders(sql).c_str(), 0, nullptr);
      check(r, sql);
      PQclear(r);
      it = prepared_.emplace(std::move(key), std::move(name)).first;
    }
    PGresult* r = PQexecPrepared(conn_, it->second.c_str(), static_cast<int>(p.ptrs.size()), p.ptrs.data(), nullptr,
                                 nullptr, 0);
    check(r, sql);
    auto n = std::strtoll(PQcmdTuples(r), nullptr, 10);
    PQclear(r);
    return n;
  }

  void query(std::string_view sql, std::span<const Value> params,
             const std::function<void(const Row&)>& fn) override {
    ensure_connected();
    arm_deadline();
    auto text = number_placeholders(sql);
    Params p(params);
    if (!PQsendQueryParams(conn_, text.c_str(), static_cast<int>(p.ptrs.size()), nullptr, p.ptrs.data(), nullptr,
                           nullptr, 0))
      throw DbError(fmt::format("postgres {}: {}", where_, PQerrorMessage(conn_)), true);
    PQsetSingleRowMode(conn_);
    std::exception_ptr failure;
    std::string error;
    bool busy = false, timed_out = false;
    while (PGresult* r = PQgetResult(conn_)) {
      auto st = PQresultStatus(r);
      if (st == PGRES_SINGLE_TUPLE && !failure) {
        try {
          fn(PgRow(r));
        } catch (...) {
          failure = std::current_exception();
        }
      } else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && error.empty()) {
        error = message(r);
        busy = retryable(r);
        timed_out = canceled(r);
      }
      PQclear(r);
    }
    if (failure) std::rethrow_exception(failure);
    if (timed_out) throw_deadline();
    if (!error.empty()) throw DbError(fmt::format("postgres {}: {} in: {}", where_, error, sql), busy);
  }

 private:
  void ensure_connected() {
    if (PQstatus(conn_) == CONNECTION_OK) return;
    prepared_.clear();  // a new session has none of them
    PQreset(conn_);
    if (PQstatus(conn_) != CONNECTION_OK)
      throw DbError(fmt::format("postgres {}: connection lost: {}", where_, PQerrorMessage(conn_)), true);
  }

  static std::string message(PGresult* r) {
    std::string msg = PQresultErrorMessage(r);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    return msg;
  }

  // Conflicts and lost connections pass; the caller tries again later.
  bool retryable(PGresult* r) const {
    const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    std::string s = state ? state : "";
    return s == "40001" || s == "40P01" || s == "55P03" || s.starts_with("08") || PQstatus(conn_) != CONNECTION_OK;
  }

  // statement_timeout, which only a deadline sets.
  bool canceled(PGresult* r) const {
    const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    return deadline_ && state && std::string_view(state) == "57014";
  }

  [[noreturn]] void throw_deadline() const {
    throw DeadlineExceeded(fmt::format("postgres {}: the query ran past its deadline and was stopped", where_));
  }

  // With a deadline, each statement may run only for what is left of it.
  void arm_deadline() {
    if (!deadline_) return;
    auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline_ - std::chrono::steady_clock::now()).count();
    if (left <= 0) throw_deadline();
    auto set = fmt::format("SET statement_timeout = {}", left);
    PGresult* r = PQexec(conn_, set.c_str());
    check(r, set);
    PQclear(r);
  }

  void check(PGresult* r, std::string_view sql) {
    auto st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return;
    auto msg = message(r);
    bool busy = retryable(r);
    bool timed_out = canceled(r);
    PQclear(r);
    if (timed_out) throw_deadline();
    throw DbError(fmt::format("postgres {}: {} in: {}", where_, msg, sql.substr(0, 200)), busy);
  }

  std::string where_;
  PGconn* conn_ = nullptr;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  std::map<std::string, std::string> prepared_;  // statement text -> name
};

}  // namespace

std::unique_ptr<Connection> open_postgres(const std::string& url, const OpenOptions& options) {
  return std::make_unique<PgConnection>(url, options);
}

}  // namespace sluice::history
