#pragma once
// Times in API answers: RFC 3339 UTC with milliseconds.
#include <boost/json/value.hpp>

#include <cstdint>
#include <string>

namespace sluice::util {

// e.g. 2026-11-22T20:15:03.123Z
std::string format_time(std::int64_t ns_since_epoch);
// The same as a JSON string; null for 0 ("never").
boost::json::value time_json(std::int64_t ns_since_epoch);

}  // namespace sluice::util
