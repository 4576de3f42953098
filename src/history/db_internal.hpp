#pragma once
// The two connection factories behind open_database().
#include <memory>
#include <string>

#include "history/db.hpp"

namespace sluice::history {

std::unique_ptr<Connection> open_sqlite(const std::string& path, const OpenOptions& options);
std::unique_ptr<Connection> open_postgres(const std::string& url, const OpenOptions& options);

}  // namespace sluice::history
