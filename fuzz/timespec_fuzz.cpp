// Fuzz target `timespec`: the history's time syntax (history/timespec.hpp):
// parse_time's absolute and relative forms (with their durations) in UTC and
// in named zones, and format_time.
//
// The input picks a zone (UTC or one of a few tzdata zones chosen for their
// offsets: DST, half hours, +14:00, a local mean time with seconds), a "now"
// within a few centuries of 2026, an instant, and the text to parse.
// What it asserts:
//   - parse_time returns an instant or throws history::TimeError; no other
//     exception, no crash, no overflow;
//   - "now" is now; a relative time ("-2h", "now+15m", ...) is now plus or
//     minus a non-negative duration of at most a million days, in whole
//     microseconds;
//   - an absolute time that names no offset reads as a wall-clock time in
//     the zone: formatting the result in that zone shows the date written (or
//     a later one, where the zone's clock skipped the time written);
//   - format_time round-trips: for any instant within years 0001..9999,
//     parse_time(format_time(t, zone), now, zone) is t to the millisecond (the
//     precision format_time writes), and format_time's text is RFC 3339 with
//     milliseconds ("Z" in UTC, else the zone's offset as +HH:MM).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "history/timespec.hpp"

namespace {

using namespace sluice::history;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "timespec oracle: %s\n", what.c_str());
  std::abort();
}

const std::vector<Zone>& zones() {
  static const std::vector<Zone> all = [] {
    std::vector<Zone> v{Zone()};
    for (auto name : {"Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Kiritimati",
                      "America/St_Johns", "Europe/Amsterdam"}) {
      try {
        v.push_back(Zone::named(name));
      } catch (const TimeError&) {
        // tzdata without this zone: fuzz the others
      }
    }
    return v;
  }();
  return all;
}

constexpr Micros kSecond = 1'000'000;
// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z.
constexpr Micros kFirst = -62135596800LL * kSecond;
constexpr Micros kLast = 253402300799LL * kSecond + 999'000;

Micros floor_ms(Micros t) { return t >= 0 ? t / 1000 * 1000 : -((-t + 999) / 1000) * 1000; }

std::int64_t take(const std::uint8_t*& p, std::size_t& n, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) {
    v = (v << 8) | (n ? *p : 0);
    if (n) ++p, --n;
  }
  return static_cast<std::int64_t>(v);
}

// Checks format_time's text and that parse_time reads it back.
void round_trip(Micros t, Micros now, const Zone& zone) {
  auto text = format_time(t, zone);
  // YYYY-MM-DDTHH:MM:SS.mmm then Z or ±HH:MM.
  bool shape = text.size() == (zone.is_utc() ? 24u : 29u) && text[4] == '-' && text[7] == '-' && text[10] == 'T' &&
               text[13] == ':' && text[16] == ':' && text[19] == '.';
  if (!shape) fail("format_time(" + std::to_string(t) + ", " + zone.name() + ") = '" + text + "' is not RFC 3339");
  Micros back = 0;
  try {
    back = parse_time(text, now, zone);
  } catch (const TimeError& e) {
    fail("parse_time refuses format_time's '" + text + "': " + e.what());
  }
  if (back != floor_ms(t))
    fail("format_time(" + std::to_string(t) + ", " + zone.name() + ") = '" + text + "' reads back as " +
         std::to_string(back) + " (" + format_time(back, zone) + ")");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const auto& all = zones();
  const Zone& zone = all[data[0] % all.size()];
  const std::uint8_t* p = data + 1;
  std::size_t n = size - 1;
  // now: 2026-01-01 plus or minus about 270 years, to the microsecond.
  const Micros base = 1767225600LL * kSecond;
  const Micros now = base + (take(p, n, 6) - (1LL << 47)) * 61;
  // An instant anywhere in years 0001..9999.
  const Micros t = kFirst + static_cast<Micros>(static_cast<std::uint64_t>(take(p, n, 8)) %
                                                 static_cast<std::uint64_t>(kLast - kFirst + 1));
  round_trip(t, now, zone);

  const std::string text(reinterpret_cast<const char*>(p), n);
  Micros got = 0;
  try {
    got = parse_time(text, now, zone);
  } catch (const TimeError&) {
    return 0;
  } catch (const std::exception& e) {
    fail("parse_time('" + text + "') threw " + typeid(e).name() + ": " + e.what());
  }
  const std::string_view v(text);
  if (v == "now") {
    if (got != now) fail("now is not now");
  } else if (v.starts_with("now-") || v.starts_with("now+") || v.starts_with("-")) {
    const Micros d = v.starts_with("now+") ? got - now : now - got;
    if (d < 0 || d > 1'000'000LL * 86400 * kSecond) fail("'" + text + "' is " + std::to_string(d) + " us from now");
  } else {
    // An absolute time: its date as written, read in the zone when it names no offset.
    const bool offset = v.size() > 10 && (v.back() == 'Z' || v.back() == 'z' || v.find_first_of("+-", 16) != v.npos);
    if (got >= kFirst && got <= kLast) {
      if (!offset) {
        // The same date on the zone's clock, or a later one when the clock
        // skipped the time written (a gap, a leap second's next minute).
        // format_time writes an offset to the minute, so a clock with seconds
        // in its offset shows up to 59 s earlier: look a minute later.
        auto shown = format_time(got + 60 * kSecond, zone);
        if (shown.substr(0, 10) < v.substr(0, 10)) fail("'" + text + "' reads as " + shown);
      }
      round_trip(got, now, zone);
    }
  }
  return 0;
}
