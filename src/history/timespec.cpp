#include "history/timespec.hpp"

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

// The POSIX TZ rule at the end of a TZif file ("CET-1CEST,M3.5.0,M10.5.0/3"):
// it gives the offsets after the file's last transition.
struct PosixRule {
  struct Date {
    char kind = 'M';   // 'J': Julian day 1..365 without Feb 29; 'D': day 0..365; 'M': month.week.weekday
    int month = 0, week = 0, weekday = 0, day = 0;
    std::int64_t time = 7200;  // seconds after local midnight, may be negative or past 24 h
  };
  std::int64_t std_offset = 0, dst_offset = 0;  // east of UTC
  bool has_dst = false;
  Date start, end;

  // Local seconds (on the clock in force before the change) of the change in `year`.
  static std::int64_t local_change(std::int64_t year, const Date& d) {
    std::int64_t day = 0;
    if (d.kind == 'J') {
      day = days_from_civil(year, 1, 1) + d.day - 1 + (leap_year(year) && d.day >= 60 ? 1 : 0);
    } else if (d.kind == 'D') {
      day = days_from_civil(year, 1, 1) + d.day;
    } else {
      auto first = days_from_civil(year, static_cast<unsigned>(d.month), 1);
      auto first_weekday = ((first + 4) % 7 + 7) % 7;  // 1970-01-01 was a Thursday (4)
      auto dom = 1 + ((d.weekday - first_weekday) % 7 + 7) % 7 + (d.week - 1) * 7;
      while (dom > static_cast<std::int64_t>(days_in_month(year, static_cast<unsigned>(d.month)))) dom -= 7;
      day = first + dom - 1;
    }
    return day * kDay + d.time;
  }

  std::int64_t offset_at(std::int64_t t) const {
    if (!has_dst) return std_offset;
    std::int64_t y = 0;
    unsigned m = 0, dd = 0;
    civil_from_days(floor_div(t + std_offset, kDay), y, m, dd);
    auto start_utc = local_change(y, start) - std_offset;
    auto end_utc = local_change(y, end) - dst_offset;
    bool dst = start_utc < end_utc ? (start_utc <= t && t < end_utc) : !(end_utc <= t && t < start_utc);
    return dst ? dst_offset : std_offset;
  }
};

class RuleParser {
 public:
  explicit RuleParser(std::string_view s) : s_(s) {}

  std::optional<PosixRule> parse() {
    PosixRule r;
    if (!name()) return std::nullopt;
    auto std_off = offset(24);
    if (!std_off) return std::nullopt;
    r.std_offset = -*std_off;  // POSIX counts west of UTC
    if (done()) return r;
    if (!name()) return std::nullopt;
    r.has_dst = true;
    r.dst_offset = r.std_offset + 3600;
    if (!done() && peek() != ',') {
      auto dst_off = offset(24);
      if (!dst_off) return std::nullopt;
      r.dst_offset = -*dst_off;
    }
    if (done()) {
      // No rule given: the US rule, as glibc assumes.
      r.start = {'M', 3, 2, 0, 0, 7200};
      r.end = {'M', 11, 1, 0, 0, 7200};
      return r;
    }
    if (!eat(',') || !date(r.start) || !eat(',') || !date(r.end) || !done()) return std::nullopt;
    return r;
  }

 private:
  bool done() const { return i_ >= s_.size(); }
  char peek() const { return done() ? '\0' : s_[i_]; }
  bool eat(char c) {
    if (peek() != c) return false;
    ++i_;
    return true;
  }
  bool name() {
    if (eat('<')) {
      auto close = s_.find('>', i_);
      if (close == std::string_view::npos) return false;
      i_ = close + 1;
      return true;
    }
    auto begin = i_;
    while (!done() && std::isalpha(static_cast<unsigned char>(peek()))) ++i_;
    return i_ - begin >= 3;
  }
  std::optional<int> number() {
    if (done() || !std::isdigit(static_cast<unsigned char>(peek()))) return std::nullopt;
    int v = 0;
    while (!done() && std::isdigit(static_cast<unsigned char>(peek())) && v < 100000) v = v * 10 + (s_[i_++] - '0');
    return v;
  }
  // [+-]hh[:mm[:ss]] in seconds.
  std::optional<std::int64_t> offset(int max_hours) {
    int sign = 1;
    if (eat('-')) sign = -1;
    else eat('+');
    auto h = number();
    if (!h || *h > max_hours) return std::nullopt;
    std::int64_t v = *h * 3600;
    if (eat(':')) {
      auto m = number();
      if (!m || *m > 59) return std::nullopt;
      v += *m * 60;
      if (eat(':')) {
        auto sec = number();
        if (!sec || *sec > 59) return std::nullopt;
        v += *sec;
      }
    }
    return sign * v;
  }
  bool date(PosixRule::Date& d) {
    if (eat('J')) {
      auto n = number();
      if (!n || *n < 1 || *n > 365) return false;
      d = {'J', 0, 0, 0, *n, 7200};
    } else if (eat('M')) {
      auto m = number();
      if (!m || *m < 1 || *m > 12 || !eat('.')) return false;
      auto w = number();
      if (!w || *w < 1 || *w > 5 || !eat('.')) return false;
      auto wd = number();
      if (!wd || *wd > 6) return false;
      d = {'M', *m, *w, *wd, 0, 7200};
    } else {
      auto n = number();
      if (!n || *n > 365) return false;
      d = {'D', 0, 0, 0, *n, 7200};
    }
    if (eat('/')) {
      auto t = offset(167);
      if (!t) return false;
      d.time = *t;
    }
    return true;
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

std::string zone_dir() {
  const char* dir = std::getenv("TZDIR");
  return dir && *dir ? dir : "/usr/share/zoneinfo";
}

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

}  // namespace

struct Zone::Data {
  std::string name;
  std::vector<std::int64_t> transitions;  // Unix times, ascending
  std::vector<std::uint8_t> transition_type;
  std::vector<std::int32_t> type_offset;  // seconds east of UTC
  std::optional<PosixRule> rule;          // after the last transition

  std::int64_t offset_at(std::int64_t t) const {
    if (transitions.empty() || t >= transitions.back()) {
      if (rule) return rule->offset_at(t);
      if (transitions.empty()) return type_offset.empty() ? 0 : type_offset.front();
    }
    auto it = std::upper_bound(transitions.begin(), transitions.end(), t);
    if (it == transitions.begin()) return type_offset.front();  // before the first: type 0
    return type_offset[transition_type[static_cast<std::size_t>(it - transitions.begin() - 1)]];
  }
};

namespace {

// RFC 8536: a version 1 block with 32-bit times, then (version 2+) the same
// with 64-bit times and a newline-enclosed POSIX rule.
std::shared_ptr<Zone::Data> read_tzif(const std::string& name, const std::string& bytes) {
  auto bad = [&] { unknown_zone(name, "its tzdata file is not TZif"); };
  auto u8 = [&](std::size_t pos) -> std::uint8_t {
    if (pos >= bytes.size()) bad();
    return static_cast<std::uint8_t>(bytes[pos]);
  };
  auto be = [&](std::size_t pos, int n) -> std::int64_t {
    std::uint64_t v = 0;
    for (int k = 0; k < n; ++k) v = (v << 8) | u8(pos + static_cast<std::size_t>(k));
    if (n == 4) return static_cast<std::int32_t>(static_cast<std::uint32_t>(v));
    return static_cast<std::int64_t>(v);
  };
  struct Header {
    std::size_t isut, isstd, leap, time, type, chars;
  };
  auto header = [&](std::size_t pos) {
    if (bytes.compare(pos, 4, "TZif") != 0) bad();
    Header h{};
    std::size_t* fields[] = {&h.isut, &h.isstd, &h.leap, &h.time, &h.type, &h.chars};
    for (int k = 0; k < 6; ++k) {
      auto v = be(pos + 20 + 4 * static_cast<std::size_t>(k), 4);
      if (v < 0 || v > 1'000'000) bad();
      *fields[k] = static_cast<std::size_t>(v);
    }
    if (h.type == 0 || h.type > 256) bad();
    return h;
  };
  auto block_size = [](const Header& h, std::size_t time_bytes) {
    return h.time * time_bytes + h.time + h.type * 6 + h.chars + h.leap * (time_bytes + 4) + h.isstd + h.isut;
  };
  auto h = header(0);
  std::size_t pos = 44;
  std::size_t tb = 4;
  char version = static_cast<char>(u8(4));
  if (version >= '2') {
    pos += block_size(h, 4);
    h = header(pos);
    pos += 44;
    tb = 8;
  }
  auto d = std::make_shared<Zone::Data>();
  d->name = name;
  for (std::size_t k = 0; k < h.time; ++k) d->transitions.push_back(be(pos + k * tb, static_cast<int>(tb)));
  pos += h.time * tb;
  for (std::size_t k = 0; k < h.time; ++k) {
    auto t = u8(pos + k);
    if (t >= h.type) bad();
    d->transition_type.push_back(t);
  }
  pos += h.time;
  for (std::size_t k = 0; k < h.type; ++k) d->type_offset.push_back(static_cast<std::int32_t>(be(pos + k * 6, 4)));
  pos += block_size(h, tb) - h.time * tb - h.time;
  if (tb == 8 && pos < bytes.size() && bytes[pos] == '\n') {
    auto end = bytes.find('\n', pos + 1);
    if (end == std::string::npos) bad();
    auto text = std::string_view(bytes).substr(pos + 1, end - pos - 1);
    if (!text.empty()) {
      d->rule = RuleParser(text).parse();
      if (!d->rule) bad();
    }
  }
  if (!std::is_sorted(d->transitions.begin(), d->transitions.end())) bad();
  return d;
}

}  // namespace

Zone::Zone() = default;

Zone Zone::named(const std::string& name) {
  if (name == "UTC" || name == "utc" || name == "Z" || name == "Etc/UTC" || name == "Etc/Universal" ||
      name == "Etc/Zulu" || name == "Universal" || name == "Zulu")
    return Zone();
  if (!plausible_zone_name(name)) unknown_zone(name, "not a zone name");
  auto path = std::filesystem::path(zone_dir()) / name;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) unknown_zone(name, "no such zone");
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  if (!in.good() && !in.eof()) unknown_zone(name, "its tzdata file cannot be read");
  Zone z;
  z.data_ = read_tzif(name, bytes);
  return z;
}

const std::string& Zone::name() const {
  static const std::string kUtc = "UTC";
  return data_ ? data_->name : kUtc;
}

std::int64_t Zone::offset_at(std::int64_t unix_seconds) const { return data_ ? data_->offset_at(unix_seconds) : 0; }

std::int64_t Zone::to_utc(std::int64_t local) const {
  if (!data_) return local;
  // The offsets a day either side cover any one change; try each.
  auto before = offset_at(local - kDay), after = offset_at(local + kDay);
  auto t1 = local - before, t2 = local - after;
  bool ok1 = offset_at(t1) == before, ok2 = offset_at(t2) == after;
  if (ok1 && ok2) return std::min(t1, t2);
  if (ok1) return t1;
  if (ok2) return t2;
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

// "2h", "30m", "1h30m", "1.5d": a sum of number-unit pairs, in microseconds.
std::optional<Micros> parse_duration(std::string_view s) {
  if (s.empty()) return std::nullopt;
  double total = 0;
  std::size_t i = 0;
  while (i < s.size()) {
    auto begin = i;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    if (i == begin || i == s.size()) return std::nullopt;
    auto number = std::string(s.substr(begin, i - begin));
    if (std::count(number.begin(), number.end(), '.') > 1 || number.front() == '.' || number.back() == '.')
      return std::nullopt;
    double v = std::strtod(number.c_str(), nullptr);
    double unit = 0;
    switch (s[i++]) {
      case 's': unit = 1; break;
      case 'm': unit = 60; break;
      case 'h': unit = 3600; break;
      case 'd': unit = 86400; break;
      case 'w': unit = 7 * 86400; break;
      default: return std::nullopt;
    }
    total += v * unit;
  }
  if (!std::isfinite(total) || total > 1e6 * 86400) return std::nullopt;  // beyond ~2700 years
  return static_cast<Micros>(std::llround(total * 1e6));
}

}  // namespace

Micros parse_time(std::string_view text, Micros now, const Zone& zone) {
  if (text == "now") return now;
  if (text.starts_with("now-") || text.starts_with("now+") || text.starts_with("-")) {
    auto sign = text.starts_with("now+") ? 1 : -1;
    auto rest = text.substr(text.starts_with("now") ? 4 : 1);
    auto d = parse_duration(rest);
    if (!d) bad_time(text, "a relative time is a number and a unit: s, m, h, d or w");
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
