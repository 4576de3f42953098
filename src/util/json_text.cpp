#include "util/json_text.hpp"

#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <cmath>
#include <iterator>

namespace sluice::util {
namespace json = boost::json;

void append_json_number(std::string& out, double d, Doubles doubles) {
  if (!std::isfinite(d)) {
    out += "null";  // JSON has no NaN or infinity
    return;
  }
  auto start = out.size();
  fmt::format_to(std::back_inserter(out), "{}", d);
  if (doubles == Doubles::keep_point && out.find_first_of(".eEn", start) == std::string::npos) out += ".0";
}

void append_json_text(std::string& out, const json::value& v, Doubles doubles) {
  switch (v.kind()) {
    case json::kind::null: out += "null"; break;
    case json::kind::bool_: out += v.get_bool() ? "true" : "false"; break;
    case json::kind::int64: fmt::format_to(std::back_inserter(out), "{}", v.get_int64()); break;
    case json::kind::uint64: fmt::format_to(std::back_inserter(out), "{}", v.get_uint64()); break;
    case json::kind::double_: append_json_number(out, v.get_double(), doubles); break;
    case json::kind::string: out += json::serialize(v.get_string()); break;
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& item : v.get_array()) {
        if (!first) out += ',';
        first = false;
        append_json_text(out, item, doubles);
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
        append_json_text(out, member.value(), doubles);
      }
      out += '}';
      break;
    }
  }
}

std::string json_text(const json::value& v, Doubles doubles) {
  std::string out;
  out.reserve(256);
  append_json_text(out, v, doubles);
  return out;
}

}  // namespace sluice::util
