#pragma once
// The one duration syntax of the configuration, the command line, the admin
// API and the history's relative times ("-2h"): one or more number-unit
// pairs, "250ms", "10s", "2m", "1h30m", "1.5d", "2w" (units ms, s, m, h, d,
// w). A number is decimal digits with an optional fraction ("1.5", not ".5"
// or "5.") and an optional exponent ("1e3s"); never a sign. Each caller
// bounds the result for its own use (the configuration: a century; the
// history: a million days).
#include <optional>
#include <string_view>

namespace sluice::util {

// Whether a number without a unit is read as seconds ("1.5" in the
// configuration) or refused ("-2" as a time could be hours or days).
enum class Unitless { seconds, refused };

// The duration in seconds: finite and not negative, or +infinity when a
// number is beyond a double's range (so that a bound refuses it). nullopt
// when `text` is not a duration.
std::optional<double> parse_duration(std::string_view text, Unitless unitless);

}  // namespace sluice::util
