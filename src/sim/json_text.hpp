#pragma once
// JSON text in the form Deepgram writes it: plain decimals, and a whole
// double keeps its point (3.0, 12.08, 0.3333333333333333); see
// util/json_text.hpp.
#include "util/json_text.hpp"

namespace sluice::sim {

inline std::string to_json_text(const boost::json::value& v) {
  return util::json_text(v, util::Doubles::keep_point);
}

inline void append_json_number(std::string& out, double d) {
  util::append_json_number(out, d, util::Doubles::keep_point);
}

}  // namespace sluice::sim
