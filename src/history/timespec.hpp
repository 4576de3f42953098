#pragma once
// Times as operators type them and as the history reports them: RFC 3339,
// bare dates, relative forms ("-2h", "now-30m"), in UTC or a named IANA zone
// read from the system's tzdata. No global state (no TZ switching), so the
// admin API's threads may use it at once.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "history/queries.hpp"
#include "history/records.hpp"

namespace sluice::history {

// A time or zone that cannot be understood; what() says what was expected
// and echoes the input.
class TimeError : public QueryError {
 public:
  using QueryError::QueryError;
};

// UTC, or an IANA zone (Europe/Berlin) from the system's tzdata in
// /usr/share/zoneinfo, read by Howard Hinnant's date/tz (built with
// USE_OS_TZDB), with the POSIX rule at the end of the zone's file (read by
// date/ptz.h) for times after its last transition. Immutable: copies share
// the data and may cross threads.
class Zone {
 public:
  Zone();  // UTC
  // "UTC" (also "Z", "Etc/UTC") or an IANA name; throws TimeError for a name
  // tzdata does not know.
  static Zone named(const std::string& name);

  const std::string& name() const;
  bool is_utc() const { return !data_; }
  // Seconds east of UTC at a Unix time.
  std::int64_t offset_at(std::int64_t unix_seconds) const;
  // The Unix time of a local wall-clock time (seconds since 1970-01-01 00:00
  // on that clock): the earlier instant when the clock is set back over it,
  // the instant after the gap when the clock skips it.
  std::int64_t to_utc(std::int64_t local_seconds) const;

  struct Data;

 private:
  std::shared_ptr<const Data> data_;  // null for UTC
};

// Parses, relative to `now` and in `zone` where the text names no offset:
//   2026-11-20T14:00:00Z, 2026-11-20T14:00:00.250+01:00 (or a space for T);
//   2026-11-20 14:00[:00] without an offset: local time in `zone`;
//   2026-11-20: midnight in `zone`;
//   now, -2h, -30m, -7d, -90s, -1h30m, now-2h, now+15m: a duration in the
//   grammar the configuration and the command line share (util/duration.hpp:
//   units ms, s, m, h, d, w), with a unit, at most a million days.
// Throws TimeError naming the accepted forms and echoing `text`.
Micros parse_time(std::string_view text, Micros now, const Zone& zone = {});

// RFC 3339 with milliseconds: 2026-11-20T14:00:00.250Z in UTC, else with
// the zone's offset at that instant (2026-11-20T15:00:00.250+01:00), to the
// minute. parse_time reads it back as `t` to the millisecond (years 0001 to
// 9999; the fuzz target `timespec` checks this).
std::string format_time(Micros t, const Zone& zone = {});

// Days since 1970-01-01 of a proleptic Gregorian date, and back.
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d);
void civil_from_days(std::int64_t days, std::int64_t& y, unsigned& m, unsigned& d);

}  // namespace sluice::history
