#pragma once
// JSON text in the form Deepgram writes it. Boost.JSON 1.81 writes every
// double in scientific notation (12.08 becomes 1.208E1); clients parse both,
// but captures, logs and diffs against the vendor read better with plain
// decimals, so values are built with Boost.JSON and written out here.
#include <boost/json/value.hpp>

#include <string>

namespace sluice::sim {

// Serializes `v`, writing doubles as the shortest decimal that round-trips
// (3.0, 12.08, 0.3333333333333333); strings are escaped by Boost.JSON.
std::string to_json_text(const boost::json::value& v);

void append_json_number(std::string& out, double d);

}  // namespace sluice::sim
