// Transparent upstream reconnect (docs/resume.md): the simulator drops the
// vendor's leg on cue; the client's leg stays open, the buffered audio is
// replayed to a new upstream, and every message the client gets is on one
// timeline. Timeouts unrelated to the drop (pings, close, liveness, the
// simulator's inactivity) are pushed far away.
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "sim/simulator.hpp"
#include "sim_counts.hpp"
#include "stack.hpp"

using namespace sluice;
using namespace sluice::testing;

namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr double kBytesPerSecond = 32000;  // linear16, 16 kHz, mono
const std::string kListen =
    "/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000&channels=1&interim_results=true&vad_events=true"
    "&utterance_end_ms=1000";
const std::string kFlux = "/v2/listen?model=flux-general-en&encoding=linear16&sample_rate=16000";

sim::SimConfig sim_with(std::vector<std::string> cues) {
  sim::SimConfig sc;
  sc.inactivity_timeout = 60000ms;
  for (const auto& c : cues) sc.faults.drops.push_back(*sim::parse_drop_cue(c).cue);
  return sc;
}

Stack::Tweak resume_on(std::function<void(config::ResumeConfig&)> more = {}) {
  return [more](config::Config& c, Stack&) {
    c.relay.ping_interval = 60s;
    c.relay.close_timeout = 60s;
    c.relay.close_grace = 60s;
    c.pools = config::default_pools();
    for (auto& p : c.pools) {
      p.liveness_timeout = 60s;
      p.resume.enabled = true;
      p.resume.backoff = std::chrono::duration<double>(0.05);
      if (more) more(p.resume);
    }
  };
}

std::string silence(double seconds) {
  return std::string(static_cast<std::size_t>(std::llround(seconds * kBytesPerSecond)), '\x01');
}

// Sends `seconds` of audio in 100 ms frames, about `speed` times real time.
void stream_audio(Client& c, double seconds, double speed = 10) {
  auto frame = silence(0.1);
  for (int i = 0; i < static_cast<int>(std::llround(seconds * 10)); ++i) {
    c.send_binary(frame);
    std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int>(100000 / speed)));
  }
}

std::vector<json::object> read_all(Client& c) {
  std::vector<json::object> out;
  while (auto m = c.read()) {
    if (!m->text) continue;
    auto v = json::parse(m->data);
    if (v.is_object()) out.push_back(v.as_object());
  }
  return out;
}

double num(const json::value& v) { return v.to_number<double>(); }

std::vector<json::object> of_type(const std::vector<json::object>& all, std::string_view type) {
  std::vector<json::object> out;
  for (const auto& m : all)
    if (m.at("type").as_string() == type) out.push_back(m);
  return out;
}

int sim_open(Stack& s) {
  int n = 0;
  for (auto& [project, families] : s.sim().stats().projects)
    for (auto& [f, c] : families) n += c.open;
  return n;
}

std::vector<events::Event> resume_events(Stack& s) { return s.gateway().events().list({.type = "resume"}); }

}  // namespace

// /v1/listen dropped twice (a 1011 after 4 s of audio, then an RST 2.5 s into
// the second connection): the client sees no close and no error; the finals
// tile its audio without a gap or an overlap, their words' times strictly
// increase, and Metadata covers all of the audio it sent.
TEST(Resume, ListenSurvivesTwoDropsOnOneTimeline) {
  Stack s(sim_with({"1@audio:4", "2@audio:2.5/reset"}), resume_on());
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k")) << c.error.message();
  constexpr double kSent = 10;
  stream_audio(c, kSent);
  c.send_text(R"({"type":"CloseStream"})");
  auto all = read_all(c);
  ASSERT_EQ(c.error, websocket::error::closed) << c.error.message();
  EXPECT_EQ(c.ws.reason().code, websocket::close_code::normal);

  auto results = of_type(all, "Results");
  double end = 0, last_word = -1;
  int finals = 0;
  for (const auto& r : results) {
    if (!r.at("is_final").as_bool()) continue;
    ++finals;
    double start = num(r.at("start")), duration = num(r.at("duration"));
    EXPECT_NEAR(start, end, 1e-6) << "finals must tile the audio: " << json::serialize(r);
    end = start + duration;
    for (const auto& w : r.at("channel").at("alternatives").at(0).at("words").as_array()) {
      double ws = num(w.at("start")), we = num(w.at("end"));
      EXPECT_GT(ws, last_word) << json::serialize(r);
      EXPECT_GE(ws, start - 1e-6);
      EXPECT_LE(we, end + 1e-6);
      last_word = ws;
    }
  }
  EXPECT_NEAR(end, kSent, 1e-6);
  EXPECT_GE(finals, 4);
  for (const auto& sp : of_type(all, "SpeechStarted")) EXPECT_LE(num(sp.at("timestamp")), kSent);
  auto meta = of_type(all, "Metadata");
  ASSERT_EQ(meta.size(), 1u);
  EXPECT_NEAR(num(meta[0].at("duration")), kSent, 1e-6);

  auto st = s.sim().stats();
  ASSERT_EQ(st.drops.size(), 2u);
  EXPECT_EQ(st.streams, 3u);
  auto evs = resume_events(s);
  ASSERT_EQ(evs.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& f = evs[i].fields;
    EXPECT_EQ(f.at("outcome"), "resumed");
    EXPECT_EQ(f.at("old_request_id"), json::value(st.drops[i].request_id));
    EXPECT_EQ(f.at("attempts"), 1);
    EXPECT_EQ(f.at("lost_seconds"), 0.0);
    EXPECT_NEAR(num(f.at("offset_seconds")), 3.0, 1e-9);  // the first final ended at 3 s
  }
  EXPECT_EQ(evs[0].fields.at("close_code"), 1011);
  EXPECT_TRUE(evs[1].fields.at("close_code").is_null());
  EXPECT_EQ(evs[0].fields.at("new_request_id"), json::value(st.drops[1].request_id));
  // Nothing was left behind.
  ASSERT_TRUE(eventually([&] { return s.registry().size() == 0 && sim_open(s) == 0; }));
}

// Flux dropped in the middle of a turn: one Connected, sequence_id up by one
// each message, turn_index continuous, the turn's start not repeated.
TEST(Resume, FluxMidTurnKeepsItsCountersAndTurns) {
  Stack s(sim_with({"1@audio:3"}), resume_on());
  Client c;
  ASSERT_TRUE(c.open(s.port(), kFlux, "Token k")) << c.error.message();
  constexpr double kSent = 7;
  stream_audio(c, kSent);
  c.send_text(R"({"type":"CloseStream"})");
  auto all = read_all(c);
  ASSERT_EQ(c.error, websocket::error::closed) << c.error.message();
  EXPECT_EQ(c.ws.reason().code, websocket::close_code::none);  // Flux closes without a status
  EXPECT_EQ(of_type(all, "Connected").size(), 1u);
  std::int64_t seq = -1, turn = 0;
  double eot_end = 0;
  int eots = 0, starts = 0;
  for (const auto& m : all) {
    if (m.contains("sequence_id")) {
      EXPECT_EQ(m.at("sequence_id").to_number<std::int64_t>(), seq + 1) << json::serialize(m);
      seq = m.at("sequence_id").to_number<std::int64_t>();
    }
    if (m.at("type") != "TurnInfo") continue;
    auto t = m.at("turn_index").to_number<std::int64_t>();
    EXPECT_TRUE(t == turn || t == turn + 1) << json::serialize(m);
    turn = t;
    if (m.at("event") == "StartOfTurn") {
      ++starts;
      EXPECT_EQ(t, starts - 1) << "one StartOfTurn per turn";
    }
    if (m.at("event") == "EndOfTurn") {
      ++eots;
      EXPECT_NEAR(num(m.at("audio_window_start")), eot_end, 1e-6) << json::serialize(m);
      eot_end = num(m.at("audio_window_end"));
      EXPECT_EQ(t, eots - 1);
    }
  }
  EXPECT_EQ(eots, 3);  // at 2, 4 and 6 s of the client's audio
  EXPECT_NEAR(eot_end, 6.0, 1e-6);
  auto evs = resume_events(s);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].fields.at("outcome"), "resumed");
  EXPECT_NEAR(num(evs[0].fields.at("offset_seconds")), 2.0, 1e-9);
  ASSERT_TRUE(eventually([&] { return s.registry().size() == 0 && sim_open(s) == 0; }));
}
