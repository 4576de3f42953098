// Deadlines run on the steady clock: a step of the wall clock (an NTP step,
// an operator setting the date) neither reaps a healthy stream nor stretches
// what is shown or recorded of it.
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <limits>
#include <map>
#include <thread>

#include "history/store.hpp"
#include "registry/registry.hpp"
#include "stack.hpp"

namespace sluice::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

const std::string kListen = "/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000";

// Shifts the gateway's wall clock while it lives.
struct WallJump {
  explicit WallJump(std::chrono::nanoseconds by) { registry::set_wall_offset_for_tests(by); }
  ~WallJump() { registry::set_wall_offset_for_tests(std::chrono::nanoseconds(0)); }
  WallJump(const WallJump&) = delete;
  WallJump& operator=(const WallJump&) = delete;
};

// True when `cond` holds at every poll during `span` (polled every 20 ms).
bool holds_for(const std::function<bool()>& cond, std::chrono::milliseconds span) {
  auto end = std::chrono::steady_clock::now() + span;
  while (std::chrono::steady_clock::now() < end) {
    if (!cond()) return false;
    std::this_thread::sleep_for(20ms);
  }
  return cond();
}

std::optional<history::SessionRecord> row_of(const std::string& url, std::int64_t session_id) {
  history::Store store(url, {.read_only = true});
  std::optional<history::SessionRecord> out;
  store.sessions({.from = 0, .to = std::numeric_limits<history::Micros>::max() / 2}, [&](history::SessionRecord&& r) {
    if (r.session_id == session_id) out = std::move(r);
  });
  return out;
}

}  // namespace

TEST(GatewayClock, WallClockJumpNeitherReapsAHealthyStreamNorStretchesItsRecord) {
  sim::SimConfig sc;
  sc.inactivity_timeout = std::chrono::seconds(60);
  Stack s(sc, [](config::Config& c, Stack&) {
    c.pools = config::default_pools();
    for (auto& p : c.pools) {
      p.max_duration = config::Seconds(60);
      p.idle_close_after = config::Seconds(60);
    }
  });
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k"));
  const auto id = std::stoll(std::string(c.response["x-sluice-session-id"]));
  auto entry = s.registry().find(static_cast<registry::SessionId>(id));
  ASSERT_TRUE(entry);
  c.send_binary(linear16_silence(0.2));
  // Open (the client may see the 101 a moment before) and its audio counted.
  ASSERT_TRUE(eventually([&] {
    return entry->state() == registry::SessionState::open && entry->counters().audio_messages.load() == 1;
  }));

  {
    WallJump jump(2h);
    // The control task wakes once a second: three ticks see the new wall time.
    EXPECT_TRUE(holds_for(
        [&] {
          return s.gateway().events().count("reap") == 0 && entry->state() == registry::SessionState::open;
        },
        3000ms))
        << "reaped: " << s.gateway().events().count("reap") << ", state "
        << registry::state_name(entry->state());

    // What the admin API shows is the stream's own timeline.
    auto res = admin_call(s.admin_port(), http::verb::get, "/api/v1/sessions/" + std::to_string(id));
    ASSERT_EQ(res.result_int(), 200u) << res.body();
    auto shown = json::parse(res.body()).as_object();
    EXPECT_LT(shown.at("age_seconds").to_number<double>(), 60) << res.body();
    EXPECT_LT(shown.at("idle_seconds").to_number<double>(), 60) << res.body();

    // Still relayed both ways: more audio, then the vendor's Metadata.
    c.send_binary(linear16_silence(0.3));
    c.send_text(R"({"type":"CloseStream"})");
    auto meta = c.read_until_type("Metadata");
    ASSERT_TRUE(meta) << c.error.message();
    EXPECT_DOUBLE_EQ(meta->at("duration").to_number<double>(), 0.5);
    EXPECT_EQ(c.read_until_close(), 1000);
    ASSERT_TRUE(eventually([&] { return s.registry().size() == 0; }));
  }
  EXPECT_EQ(s.gateway().events().count("reap"), 0u);

  // The recorded row: completed, with its real (seconds-long) durations.
  ASSERT_TRUE(s.recorder().flush(10'000'000));
  auto r = row_of(s.history_url(), id);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->outcome, history::Outcome::completed) << r->outcome_reason;
  ASSERT_TRUE(r->opened_at && r->closed_at && r->first_audio_at && r->last_audio_at);
  EXPECT_LE(r->accepted_at, *r->opened_at);
  EXPECT_LE(*r->opened_at, *r->first_audio_at);
  EXPECT_LE(*r->last_audio_at, *r->closed_at);
  EXPECT_LT(*r->closed_at - *r->opened_at, 60'000'000);
  EXPECT_LT(*r->last_audio_at - *r->first_audio_at, 60'000'000);
  EXPECT_LT(r->last_seen_at - r->accepted_at, 60'000'000);
  EXPECT_LT(r->idle_seconds, 60);
}

}  // namespace sluice::testing
