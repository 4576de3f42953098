#pragma once
// PostgreSQL for the tests: the cluster SLUICE_TEST_POSTGRES_URL names
// (scripts/test-postgres.sh starts one; scripts/test.sh sets the variable),
// and a schema of the test's own on it, dropped when the test ends.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include "history/db.hpp"

namespace sluice::testing {

// A name part no other test process or test of this one uses.
inline std::string unique_suffix() {
  static std::atomic<int> counter{0};
  std::random_device rd;
  return std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + std::to_string(rd() % 100000);
}

inline std::optional<std::string> postgres_url() {
  const char* url = std::getenv("SLUICE_TEST_POSTGRES_URL");
  if (url && *url) return std::string(url);
  return std::nullopt;
}

// Under CI a missing cluster is a failure, not a skip.
inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

inline constexpr const char* kNoPostgresInCi =
    "SLUICE_TEST_POSTGRES_URL is not set (CI=true): scripts/test.sh starts a PostgreSQL cluster with "
    "scripts/test-postgres.sh and sets it";
inline constexpr const char* kNoPostgres =
    "SLUICE_TEST_POSTGRES_URL is not set; run scripts/test-postgres.sh start and export "
    "SLUICE_TEST_POSTGRES_URL=<the URL it prints> to run the PostgreSQL tests";

// CREATE SCHEMA on construction, DROP SCHEMA … CASCADE on destruction; url()
// puts a connection's search_path on it.
class PostgresSchema {
 public:
  explicit PostgresSchema(const std::string& base)
      : name_("sluice_test_" + unique_suffix()), admin_(history::open_database(base)) {
    admin_->exec("CREATE SCHEMA " + name_);
    url_ = base + (base.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" + name_;
  }
  // A schema that cannot be dropped is reported, not thrown: this runs while
  // a failed test unwinds too.
  ~PostgresSchema() {
    try {
      admin_->exec("DROP SCHEMA " + name_ + " CASCADE");
    } catch (const std::exception& e) {
      std::fprintf(stderr, "could not drop the test schema %s: %s\n", name_.c_str(), e.what());
    }
  }
  PostgresSchema(const PostgresSchema&) = delete;
  PostgresSchema& operator=(const PostgresSchema&) = delete;

  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }
  history::Connection& admin() { return *admin_; }

 private:
  std::string name_;
  std::string url_;
  std::unique_ptr<history::Connection> admin_;
};

}  // namespace sluice::testing
