#pragma once
// JSON views of live sessions for the admin API.
#include <boost/json/object.hpp>

#include "registry/registry.hpp"

namespace sluice::admin {

boost::json::object session_json(const registry::Registry& registry, const registry::SessionEntry& e,
                                 std::int64_t now_ns);

// RFC 3339 UTC with milliseconds, e.g. 2026-11-22T20:15:03.123Z; null for 0.
boost::json::value time_json(std::int64_t ns);

}  // namespace sluice::admin
