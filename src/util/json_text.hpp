#pragma once
// JSON text with numbers as people write them. Boost.JSON 1.81 writes every
// double in scientific notation (0.25 becomes 2.5E-1, 5 becomes 5E0);
// clients parse both, but logs, API answers, captures and diffs read better
// with plain decimals, so values are built with Boost.JSON and written out
// here. Strings are escaped by Boost.JSON.
#include <boost/json/value.hpp>

#include <string>

namespace sluice::util {

enum class Doubles {
  plain,       // the shortest decimal that round-trips: 5, 0.25, 1e-07
  keep_point,  // the same, but a whole double keeps its point: 5.0 (as Deepgram writes them)
};

std::string json_text(const boost::json::value& v, Doubles doubles = Doubles::plain);
void append_json_text(std::string& out, const boost::json::value& v, Doubles doubles = Doubles::plain);
// A double alone (non-finite: null, which is what JSON has).
void append_json_number(std::string& out, double d, Doubles doubles = Doubles::plain);

}  // namespace sluice::util
