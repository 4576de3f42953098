#include "sim/json_text.hpp"

#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <cmath>
#include <iterator>

namespace sluice::sim {
namespace json = boost::json;
namespace {

void append_value(std::string& out, const json::value& v) {
  switch (v.kind()) {
    case json::kind::null: out += "null"; break;
    case json::kind::bool_: out += v.get_bool() ? "true" : "false"; break;
    case json::kind::int64: fmt::format_to(std::back_inserter(out), "{}", v.get_int64()); break;
    case json::kind::uint64: fmt::format_to(std::back_inserter(out), "{}", v.get_uint64()); break;
    case json::kind::double_: append_json_number(out, v.get_double()); break;
    case json::kind::string: out += json::serialize(v.get_string()); break;
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& item : v.get_array()) {
        if (!first) out += ',';
        first = false;
        append_value(out, item);
      }
      out += ']';
      break;
    }
    case json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& member : v.get_object()) {
        if (!first) out += ',';
        first = false;
        out += json::serialize(member.key());
        out += ':';
        append_value(out, member.value());
      }
      out += '}';
      break;
    }
  }
}

}  // namespace

void append_json_number(std::string& out, double d) {
  if (!std::isfinite(d)) {
    out += "null";  // JSON has no NaN or infinity
    return;
  }
  auto start = out.size();
  fmt::format_to(std::back_inserter(out), "{}", d);
  // Keep a double recognisable as one (3.0, not 3), as Deepgram writes it.
  if (out.find_first_of(".eEn", start) == std::string::npos) out += ".0";
}

std::string to_json_text(const json::value& v) {
  std::string out;
  out.reserve(256);
  append_value(out, v);
  return out;
}

}  // namespace sluice::sim
