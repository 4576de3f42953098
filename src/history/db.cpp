#include "history/db.hpp"

#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include "history/db_internal.hpp"

namespace sluice::history {

namespace {
bool is_postgres(const std::string& url) {
  return url.starts_with("postgres://") || url.starts_with("postgresql://");
}
}  // namespace

std::unique_ptr<Connection> open_database(const std::string& url, const OpenOptions& options) {
  if (url.empty()) throw DbError("no history database configured (store.url)");
  if (is_postgres(url)) return open_postgres(url, options);
  std::string path = url;
  if (url.starts_with("sqlite://")) {
    path = url.substr(9);  // sqlite:///abs/path -> /abs/path
  } else if (url.starts_with("sqlite:")) {
    path = url.substr(7);
  } else if (url.find("://") != std::string::npos) {
    throw DbError("store.url: expected a file path, sqlite:<path> or postgres://…, got a URL with another scheme");
  }
  if (path.empty()) throw DbError("store.url: the SQLite path is empty");
  return open_sqlite(path, options);
}

std::string redact_url(const std::string& url) {
  if (!is_postgres(url)) return url;
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) return "postgres://(unparsable URL)";
  boost::urls::url u(*parsed);
  if (u.has_password()) u.set_password("***");
  // Passwords in the query (?password=) too, however spelled and however
  // often.
  if (u.params().contains("password", boost::urls::ignore_case))
    u.params().set("password", "***", boost::urls::ignore_case);
  return std::string(u.buffer());
}

void transaction(Connection& db, const std::function<void()>& fn) {
  db.exec("BEGIN");
  try {
    fn();
    db.exec("COMMIT");
  } catch (...) {
    try {
      db.exec("ROLLBACK");
    } catch (...) {
    }
    throw;
  }
}

}  // namespace sluice::history
