#include "history/timespec.hpp"

#include <date/tz.h>
// ptz.h (3.0.1) names hh_mm_ss unqualified under both `using namespace date`
// and `using namespace std::chrono`, ambiguous in C++20 where std::chrono has
// its own: declared in ptz.h's namespace, lookup finds date's first.
namespace Posix {
using date::hh_mm_ss;
}  // namespace Posix
#include <date/ptz.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <vector>

#include "util/duration.hpp"

namespace sluice::history {

std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  // Howard Hinnant's algorithm: eras of 400 years starting in March.
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

void civil_from_days(std::int64_t z, std::int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y = static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2);
}

namespace {

constexpr std::int64_t kDay = 86400;

std::int64_t floor_div(std::int64_t a, std::int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

bool leap_year(std::int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

unsigned days_in_month(std::int64_t y, unsigned m) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap_year(y) ? 29 : kDays[m - 1];
}

std::string zone_dir() { return "/usr/share/zoneinfo"; }  // where date/tz's USE_OS_TZDB reads

[[noreturn]] void unknown_zone(const std::string& name, const std::string& why) {
  throw TimeError(fmt::format("unknown time zone '{}' ({}; expected UTC or an IANA name such as Europe/Berlin from "
                              "tzdata in {})",
                              name, why, zone_dir()));
}

bool plausible_zone_name(const std::string& name) {
  if (name.empty() || name.size() > 200 || name.front() == '/' || name.find("..") != std::string::npos) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '_' || c == '-' || c == '+';
  });
}

// The POSIX TZ rule on the last line of a zone's TZif file
// ("CET-1CEST,M3.5.0,M10.5.0/3"), read by date/ptz.h. tzdata's files list
// transitions up to 2037 only, and date/tz keeps the last one's offset for
// ever after; the rule gives the offsets after it (summer time in 2100).
std::optional<Posix::time_zone> footer_rule(const std::string& name) {
  std::ifstream in(std::filesystem::path(zone_dir()) / name, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  if (bytes.size() < 2 || bytes.back() != '\n') return std::nullopt;
  auto start = bytes.rfind('\n', bytes.size() - 2);
  if (start == std::string::npos) return std::nullopt;
  auto text = bytes.substr(start + 1, bytes.size() - start - 2);
  if (text.empty()) return std::nullopt;
  try {
    return Posix::time_zone(text);
  } catch (const std::exception&) {
    return std::nullopt;  // a rule ptz.h cannot read: the last offset stays
  }
}

// The period date/tz reports from a zone's last transition on (it ends at
// its largest time).
bool open_ended(const date::sys_info& info) { return info.end >= date::sys_days(date::year(9999) / 1 / 1); }

// ptz.h computes in date::year, a short: past this, the last offset stays.
constexpr auto kRuleUntil = date::sys_days(date::year(30000) / 1 / 1);

using Secs = std::chrono::seconds;

}  // namespace

struct Zone::Data {
  std::string name;
  const date::time_zone* tz = nullptr;    // tzdata's zone, from date::locate_zone
  std::optional<Posix::time_zone> rule;  // after its last transition

  date::sys_info info(std::int64_t t) const {
    auto tp = date::sys_seconds(Secs(t));
    auto i = tz->get_info(tp);
    if (rule && open_ended(i) && i.begin <= tp && tp < kRuleUntil) return rule->get_info(tp);
    return i;
  }
};

Zone::Zone() = default;

Zone Zone::named(const std::string& name) {
  if (name == "UTC" || name == "utc" || name == "Z" || name == "Etc/UTC" || name == "Etc/Universal" ||
      name == "Etc/Zulu" || name == "Universal" || name == "Zulu")
    return Zone();
  if (!plausible_zone_name(name)) unknown_zone(name, "not a zone name");
  const date::time_zone* tz = nullptr;
  try {
    tz = date::locate_zone(name);
  } catch (const std::exception&) {
    unknown_zone(name, "no such zone");
  }
  auto d = std::make_shared<Data>();
  d->name = name;
  d->tz = tz;
  d->rule = footer_rule(name);
  try {
    (void)d->info(0);  // date/tz reads the zone's file on first use
  } catch (const std::exception&) {
    unknown_zone(name, "its tzdata file is not TZif");
  }
  Zone z;
  z.data_ = std::move(d);
  return z;
}

const std::string& Zone::name() const {
  static const std::string kUtc = "UTC";
  return data_ ? data_->name : kUtc;
}

std::int64_t Zone::offset_at(std::int64_t unix_seconds) const {
  return data_ ? data_->info(unix_seconds).offset.count() : 0;
}

std::int64_t Zone::to_utc(std::int64_t local) const {
  if (!data_) return local;
  auto lt = date::local_seconds(Secs(local));
  auto li = data_->tz->get_info(lt);
  const auto& last = li.result == date::local_info::unique ? li.first : li.second;
  if (data_->rule && open_ended(last) && lt.time_since_epoch() < kRuleUntil.time_since_epoch()) li = data_->rule->get_info(lt);
  // Unique: the one offset. Ambiguous (the clock set back over it): the
  // earlier instant, on the first offset. Nonexistent (the clock skipped
  // it): read with the offset before the gap, which lands after it.
  auto t = local - li.first.offset.count();
  if (li.result != date::local_info::unique || offset_at(t) == li.first.offset.count()) return t;
  // date/tz finds a change within a day of the time asked; a gap of a whole
  // day (Kiritimati skipped 1994-12-31) reads as "unique" with the offset
  // after it. Try the offsets a day either side, as for any change.
  auto before = offset_at(local - 86400), after = offset_at(local + 86400);
  auto t1 = local - before, t2 = local - after;
  bool ok1 = offset_at(t1) == before, ok2 = offset_at(t2) == after;
  if (ok1 && ok2) return std::min(t1, t2);
  if (ok2 && !ok1) return t2;
  return t1;  // in a gap: read with the offset before it, which lands after it
}

namespace {

constexpr std::string_view kExpected =
    "expected a time such as 2026-11-20T14:00:00Z, 2026-11-20T14:00:00.250+01:00, 2026-11-20 (midnight), "
    "now, -2h, -30m, -7d, -90s or now-2h";

[[noreturn]] void bad_time(std::string_view text, std::string_view why = {}) {
  if (why.empty()) throw TimeError(fmt::format("{}; got '{}'", kExpected, text));
  throw TimeError(fmt::format("{}; got '{}' ({})", kExpected, text, why));
}

// A cursor over the text with the small readers the formats need.
struct Cursor {
  std::string_view s;
  std::size_t i = 0;
  bool done() const { return i >= s.size(); }
  char peek() const { return done() ? '\0' : s[i]; }
  bool eat(char c) {
    if (peek() != c) return false;
    ++i;
    return true;
  }
  // Exactly n digits.
  std::optional<int> digits(int n) {
    if (i + static_cast<std::size_t>(n) > s.size()) return std::nullopt;
    int v = 0;
    for (int k = 0; k < n; ++k) {
      char c = s[i + static_cast<std::size_t>(k)];
      if (c < '0' || c > '9') return std::nullopt;
      v = v * 10 + (c - '0');
    }
    i += static_cast<std::size_t>(n);
    return v;
  }
};

// The relative forms' durations: the grammar the configuration and the
// command line share (util/duration.hpp), with a unit always ("-2" could be
// hours or days), at most a million days (~2700 years), in microseconds.
std::optional<Micros> relative_duration(std::string_view s) {
  auto v = util::parse_duration(s, util::Unitless::refused);
  if (!v || *v > 1e6 * 86400) return std::nullopt;
  return static_cast<Micros>(std::llround(*v * 1e6));
}

}  // namespace

Micros parse_time(std::string_view text, Micros now, const Zone& zone) {
  if (text == "now") return now;
  if (text.starts_with("now-") || text.starts_with("now+") || text.starts_with("-")) {
    auto sign = text.starts_with("now+") ? 1 : -1;
    auto rest = text.substr(text.starts_with("now") ? 4 : 1);
    auto d = relative_duration(rest);
    if (!d) bad_time(text, "a relative time is a number and a unit: ms, s, m, h, d or w, at most 1000000d");
    return now + sign * *d;
  }
  Cursor c{text};
  auto year = c.digits(4);
  if (!year || !c.eat('-')) bad_time(text);
  auto month = c.digits(2);
  if (!month || !c.eat('-')) bad_time(text);
  auto day = c.digits(2);
  if (!day) bad_time(text);
  if (*month < 1 || *month > 12) bad_time(text, "no such month");
  if (*day < 1 || static_cast<unsigned>(*day) > days_in_month(*year, static_cast<unsigned>(*month)))
    bad_time(text, "no such day");
  auto days = days_from_civil(*year, static_cast<unsigned>(*month), static_cast<unsigned>(*day));
  if (c.done()) return zone.to_utc(days * kDay) * 1'000'000;  // a bare date: midnight in the zone
  if (!(c.eat('T') || c.eat('t') || c.eat(' '))) bad_time(text);
  auto hour = c.digits(2);
  if (!hour || !c.eat(':')) bad_time(text);
  auto minute = c.digits(2);
  if (!minute) bad_time(text);
  int second = 0;
  Micros micros = 0;
  if (c.eat(':')) {
    auto s = c.digits(2);
    if (!s) bad_time(text);
    second = *s;
    if (c.eat('.') || c.eat(',')) {
      int n = 0;
      Micros scale = 100000;
      while (!c.done() && std::isdigit(static_cast<unsigned char>(c.peek()))) {
        if (scale > 0) micros += (c.s[c.i] - '0') * scale;
        scale /= 10;
        ++c.i;
        ++n;
      }
      if (n == 0) bad_time(text);
    }
  }
  if (*hour > 23) bad_time(text, "no such hour");
  if (*minute > 59) bad_time(text, "no such minute");
  if (second > 60) bad_time(text, "no such second");  // 60: a leap second, read as the next minute's first
  std::int64_t local = days * kDay + *hour * 3600 + *minute * 60 + second;
  if (c.done()) return zone.to_utc(local) * 1'000'000 + micros;  // no offset: the zone's wall clock
  std::int64_t offset = 0;
  if (c.eat('Z') || c.eat('z')) {
    offset = 0;
  } else if (c.peek() == '+' || c.peek() == '-') {
    int sign = c.peek() == '-' ? -1 : 1;
    ++c.i;
    auto oh = c.digits(2);
    if (!oh) bad_time(text);
    c.eat(':');
    auto om = c.digits(2);
    if (!om || *oh > 23 || *om > 59) bad_time(text, "the offset is ±HH:MM");
    offset = sign * (*oh * 3600 + *om * 60);
  } else {
    bad_time(text);
  }
  if (!c.done()) bad_time(text);
  return (local - offset) * 1'000'000 + micros;
}

std::string format_time(Micros t, const Zone& zone) {
  auto secs = floor_div(t, 1'000'000);
  auto ms = (t - secs * 1'000'000) / 1000;
  // RFC 3339 writes an offset to the minute. An offset with seconds (a local
  // mean time, before a zone's first standard time) is written to the minute,
  // and the wall-clock time with it, so that the text still names the instant.
  auto offset = zone.offset_at(secs);
  offset -= offset % 60;
  auto local = secs + offset;
  auto days = floor_div(local, kDay);
  auto sod = local - days * kDay;
  std::int64_t y = 0;
  unsigned m = 0, d = 0;
  civil_from_days(days, y, m, d);
  auto out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}", y, m, d, sod / 3600, sod / 60 % 60, sod % 60, ms);
  if (zone.is_utc()) return out + "Z";
  auto a = offset < 0 ? -offset : offset;
  return out + fmt::format("{}{:02}:{:02}", offset < 0 ? '-' : '+', a / 3600, a / 60 % 60);
}

}  // namespace sluice::history
