// The reports on a small SQLite history: requests checked before any query,
// and answers where streams outlast the range.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "history/report.hpp"
#include "history/store.hpp"
#include "history/timespec.hpp"

using namespace sluice::history;

namespace {

constexpr Micros kSecond = 1'000'000;
constexpr Micros kMinute = 60 * kSecond;

Micros utc(int y, unsigned mo, unsigned d, int h = 0, int mi = 0, int s = 0) {
  return (days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * kSecond;
}

// A SQLite history in a temporary file with closed streams [open, close) in pool "p".
class TempHistory {
 public:
  TempHistory() {
    dir_ = std::filesystem::temp_directory_path() / ("sluice-report-test-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    store_ = std::make_unique<Store>((dir_ / "history.db").string());
    run_ = store_->begin_run(RunRecord{0, "report-test", "test", 1, utc(2025, 1, 1), 0, std::nullopt});
  }
  ~TempHistory() {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void add(std::int64_t id, Micros open, Micros close) {
    WriteBatch b;
    SessionRecord s;
    s.run_id = run_;
    s.session_id = id;
    s.tenant = "t";
    s.pool = "p";
    s.path = "/v1/listen";
    s.accepted_at = open;
    s.opened_at = open;
    s.closed_at = close;
    s.last_seen_at = close;
    s.outcome = Outcome::completed;
    b.sessions.push_back(s);
    store_->write(b);
  }
  Store& store() { return *store_; }

 private:
  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
  std::int64_t run_ = 0;
};

}  // namespace

TEST(HistoryReportRequest, ChecksRangesStepsAndWindows) {
  Micros now = utc(2026, 11, 20, 12);
  ReportArgs a;
  a.from = "2026-11-20T10:00:00Z";
  a.to = "2026-11-20T11:00:00Z";
  a.step = "1m";
  auto r = parse_report_request(ReportKind::concurrency, a, now, "--");
  EXPECT_EQ(r.from, utc(2026, 11, 20, 10));
  EXPECT_EQ(r.to, utc(2026, 11, 20, 11));
  EXPECT_EQ(r.step, kMinute);

  auto refused = [&](ReportKind kind, const ReportArgs& args, const std::string& fragment) {
    try {
      parse_report_request(kind, args, now, "--");
      ADD_FAILURE() << "accepted; expected an error with: " << fragment;
    } catch (const QueryError& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  auto b = a;
  b.to = "2026-11-20T10:00:00Z";
  refused(ReportKind::concurrency, b, "--to (2026-11-20T10:00:00.000Z) must be later than --from");
  b = a;
  b.step = "0s";
  refused(ReportKind::concurrency, b, "--step: must be positive");
  b.step = "soon";
  refused(ReportKind::concurrency, b, "--step: expected a duration");
  b.step.reset();
  refused(ReportKind::concurrency, b, "missing --step");
  b = a;
  b.step = "1s";
  b.from = "-30d";
  refused(ReportKind::concurrency, b, "too many");
  b = a;
  b.window.reset();
  refused(ReportKind::peaks, b, "missing --window");
  b.from = "tomorrow";
  refused(ReportKind::usage, b, "--from: expected a time");
  b = a;
  b.at = "-1h";
  refused(ReportKind::sessions, b, "either --at alone");
  b = ReportArgs{};
  refused(ReportKind::sessions, b, "missing --from (or --at)");
  b.at = "-1h";
  b.tz = "Nowhere/Special";
  refused(ReportKind::sessions, b, "unknown time zone 'Nowhere/Special'");

  // --to defaults to now; a bare date reads in --tz.
  ReportArgs c;
  c.from = "2026-11-20";
  c.tz = "Europe/Berlin";
  auto u = parse_report_request(ReportKind::usage, c, now, "--");
  EXPECT_EQ(u.from, utc(2026, 11, 19, 23));
  EXPECT_EQ(u.to, now);
  EXPECT_EQ(u.zone.name(), "Europe/Berlin");
}

TEST(HistoryReport, StreamsThatOutlastTheRangeStayInTheCount) {
  TempHistory h;
  // Two streams open across the whole range, one short one inside it.
  h.add(1, utc(2025, 3, 1, 11), utc(2025, 3, 1, 13));
  h.add(2, utc(2025, 3, 1, 11, 30), utc(2025, 3, 1, 14));
  h.add(3, utc(2025, 3, 1, 12, 5), utc(2025, 3, 1, 12, 7));
  ReportArgs a;
  a.from = "2025-03-01T12:00:00Z";
  a.to = "2025-03-01T12:10:00Z";
  a.step = "5m";
  auto now = utc(2026, 1, 1);
  auto series = concurrency_report(h.store(), parse_report_request(ReportKind::concurrency, a, now, ""), now);
  const auto& points = series.at("pools").as_array().at(0).at("points").as_array();
  ASSERT_EQ(points.size(), 2u);
  EXPECT_EQ(points[0].at("max"), 2);
  EXPECT_EQ(points[0].at("min"), 2);
  EXPECT_EQ(points[1].at("max"), 3);
  EXPECT_EQ(points[1].at("min"), 2);  // 1 and 2 never closed within the range

  a.window = "10m";
  auto peaks = peaks_report(h.store(), parse_report_request(ReportKind::peaks, a, now, ""), now);
  const auto& p = peaks.at("pools").as_array().at(0).as_object();
  EXPECT_EQ(p.at("peak"), 3);
  EXPECT_EQ(p.at("peak_at"), "2025-03-01T12:05:00.000Z");
  EXPECT_EQ(p.at("peak_until"), "2025-03-01T12:07:00.000Z");
  EXPECT_EQ(p.at("best_window").at("min"), 2);

  // A peak still held at the end of the range lasts until the end.
  a.to = "2025-03-01T12:06:00Z";
  auto held = peaks_report(h.store(), parse_report_request(ReportKind::peaks, a, now, ""), now);
  EXPECT_EQ(held.at("pools").as_array().at(0).at("peak_until"), "2025-03-01T12:06:00.000Z");
  EXPECT_EQ(held.at("pools").as_array().at(0).at("sessions").as_array().size(), 3u);
}

TEST(HistoryReport, SessionsAtAnInstantFollowTheHalfOpenRule) {
  TempHistory h;
  h.add(1, utc(2025, 3, 1, 11), utc(2025, 3, 1, 12));   // closed exactly at T
  h.add(2, utc(2025, 3, 1, 12), utc(2025, 3, 1, 13));   // opened exactly at T
  h.add(3, utc(2025, 3, 1, 12), utc(2025, 3, 1, 12));   // zero length at T: never open
  ReportArgs a;
  a.at = "2025-03-01T12:00:00Z";
  auto now = utc(2026, 1, 1);
  auto r = sessions_report(h.store(), parse_report_request(ReportKind::sessions, a, now, ""), now);
  ASSERT_EQ(r.at("count"), 1);
  EXPECT_EQ(r.at("sessions").as_array()[0].at("session_id"), 2);
  // In a range, the zero-length one counts where it happened.
  ReportArgs range;
  range.from = "2025-03-01T12:00:00Z";
  range.to = "2025-03-01T12:00:01Z";
  auto rr = sessions_report(h.store(), parse_report_request(ReportKind::sessions, range, now, ""), now);
  EXPECT_EQ(rr.at("count"), 2);
}
