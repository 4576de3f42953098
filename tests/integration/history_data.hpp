#pragma once
// A small history database for the read-side tests: streams on 2025-03-01,
// far from the times a running gateway records, written with history::Store
// as the gateway would.
//
//   id    tenant  pool       path        open (UTC)         close
//   1001  acme    streaming  /v1/listen  11:50              12:10
//   1002  globex  streaming  /v1/listen  12:00 exactly      12:20
//   1003  acme    streaming  /v1/listen  11:30              12:00 exactly
//   1004  acme    streaming  /v1/listen  12:05              12:07
//   1005  acme    tts        /v1/speak   12:01              12:02
//   1006  acme    streaming  /v1/listen  never (refused at 12:03)
//   1008  acme    streaming  /v1/listen  22:30              23:30 (00:30 next day in Berlin)
//   1007  acme    agent      /v1/agent   2025-03-02 06:00   still open (only with `still_open`)
//
// At 12:00 exactly 1001 and 1002 are open (1002 opened then; 1003 closed
// then). Streaming peaks at 3 (1001, 1002, 1004) from 12:05 to 12:07.
#include <filesystem>
#include <optional>
#include <string>
#include <unistd.h>

#include "history/records.hpp"
#include "history/store.hpp"
#include "history/timespec.hpp"

namespace sluice::testing {

inline history::Micros utc_time(unsigned d, int h, int m, int s = 0) {
  return (history::days_from_civil(2025, 3, d) * 86400 + h * 3600 + m * 60 + s) * 1'000'000LL;
}

struct HistoryData {
  std::filesystem::path dir;
  std::string db;
  std::int64_t run_id = 0;

  explicit HistoryData(const std::string& name, bool still_open = true) {
    dir = std::filesystem::temp_directory_path() / ("sluice-" + name + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    db = (dir / "history.db").string();
    history::Store store(db);
    history::RunRecord run;
    run.instance = "history-test";
    run.version = "test";
    run.pid = 1;
    run.started_at = utc_time(1, 11, 0);
    run_id = store.begin_run(run);
    history::WriteBatch b;
    b.sessions.push_back(session(1001, "acme", "streaming", "/v1/listen", utc_time(1, 11, 50), utc_time(1, 12, 10)));
    b.sessions.push_back(session(1002, "globex", "streaming", "/v1/listen", utc_time(1, 12, 0), utc_time(1, 12, 20)));
    b.sessions.push_back(session(1003, "acme", "streaming", "/v1/listen", utc_time(1, 11, 30), utc_time(1, 12, 0)));
    b.sessions.push_back(session(1004, "acme", "streaming", "/v1/listen", utc_time(1, 12, 5), utc_time(1, 12, 7)));
    b.sessions.push_back(session(1005, "acme", "tts", "/v1/speak", utc_time(1, 12, 1), utc_time(1, 12, 2)));
    auto refused = session(1006, "acme", "streaming", "/v1/listen", std::nullopt, std::nullopt);
    refused.accepted_at = refused.last_seen_at = utc_time(1, 12, 3);
    refused.closed_at = utc_time(1, 12, 3);
    refused.outcome = history::Outcome::refused;
    refused.outcome_reason = "pool streaming is full";
    refused.close_code.reset();
    refused.closed_by.clear();
    b.sessions.push_back(refused);
    b.sessions.push_back(session(1008, "acme", "streaming", "/v1/listen", utc_time(1, 22, 30), utc_time(1, 23, 30)));
    if (still_open) b.sessions.push_back(session(1007, "acme", "agent", "/v1/agent", utc_time(2, 6, 0), std::nullopt));
    for (auto& s : b.sessions) s.run_id = run_id;
    store.write(b);
    if (!still_open) store.end_run(run_id, utc_time(2, 0, 0));
  }

  ~HistoryData() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  // A stream with one minute of audio per ten minutes open.
  static history::SessionRecord session(std::int64_t id, const std::string& tenant, const std::string& pool,
                                        const std::string& path, std::optional<history::Micros> opened,
                                        std::optional<history::Micros> closed) {
    history::SessionRecord s;
    s.session_id = id;
    s.request_id = "req-" + std::to_string(id);
    s.tenant = tenant;
    s.pool = pool;
    s.path = path;
    s.model = "nova-3";
    s.params = R"({"model":"nova-3","encoding":"linear16"})";
    s.client_address = "127.0.0.1:40000";
    s.user_agent = "history-test, \"quoted\"";
    s.accepted_at = opened.value_or(0) - 50'000;
    s.admitted_at = opened ? std::optional(*opened - 40'000) : std::nullopt;
    s.opened_at = opened;
    s.closed_at = closed;
    s.last_seen_at = closed.value_or(opened.value_or(0));
    if (closed) {
      s.close_code = 1000;
      s.closed_by = "client";
      s.outcome = history::Outcome::completed;
      s.audio_seconds = static_cast<double>(*closed - *opened) / 1e6 / 10;
    }
    s.client_messages = 10;
    s.client_bytes = 3200;
    return s;
  }
};

}  // namespace sluice::testing
