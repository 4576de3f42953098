#include "util/duration.hpp"

#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>

namespace sluice::util {
namespace {

bool digit(char c) { return c >= '0' && c <= '9'; }

// The length of the number at the start of `s`, 0 when there is none.
std::size_t number_length(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size() && digit(s[i])) ++i;
  if (i == 0) return 0;
  if (i < s.size() && s[i] == '.') {
    auto j = i + 1;
    while (j < s.size() && digit(s[j])) ++j;
    if (j == i + 1) return 0;  // "5." has no fraction
    i = j;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    auto j = i + 1;
    if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
    auto k = j;
    while (k < s.size() && digit(s[k])) ++k;
    if (k > j) i = k;  // else the 'e' is not an exponent (and no unit either)
  }
  return i;
}

}  // namespace

std::optional<double> parse_duration(std::string_view text, Unitless unitless) {
  if (text.empty()) return std::nullopt;
  double total = 0;
  std::string_view s = text;
  while (!s.empty()) {
    auto n = number_length(s);
    if (n == 0) return std::nullopt;
    double v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + n, v);
    if (ec == std::errc::result_out_of_range) v = std::numeric_limits<double>::infinity();
    else if (ec != std::errc() || p != s.data() + n) return std::nullopt;
    s.remove_prefix(n);
    double unit = 0;
    if (s.empty()) {
      // A bare number: only alone, and only where it means seconds.
      if (s.data() - n != text.data() || unitless != Unitless::seconds) return std::nullopt;
      unit = 1;
    } else if (s.starts_with("ms")) {  // before "m"
      unit = 0.001;
      s.remove_prefix(2);
    } else {
      switch (s.front()) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        case 'w': unit = 7 * 86400; break;
        default: return std::nullopt;
      }
      s.remove_prefix(1);
    }
    total += v * unit;
  }
  if (std::isnan(total) || total < 0) return std::nullopt;
  return total;
}

}  // namespace sluice::util
