// Transparent upstream reconnect (docs/resume.md): the simulator drops the
// vendor's leg on cue; the client's leg stays open, the buffered audio is
// replayed to a new upstream, and every message the client gets is on one
// timeline. Timeouts unrelated to the drop (pings, close, liveness, the
// simulator's inactivity) are pushed far away.
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "sim/simulator.hpp"
#include "sim_counts.hpp"
#include "stack.hpp"
#include "test_cert.hpp"

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

// A client opens `target`, sends `first` (a text message, if any), streams
// `seconds` of audio at `speed` times real time, sends CloseStream and reads
// every message until the close.
struct Streamed {
  std::vector<json::object> messages;
  beast::error_code error;  // websocket::error::closed after a close frame
  int code = -1;            // the close code received
};
Streamed stream_through(Stack& s, const std::string& target, double seconds, double speed = 10,
                        const std::string& first = {}) {
  Streamed out;
  Client c;
  if (!c.open(s.port(), target, "Token k")) {
    out.error = c.error;
    return out;
  }
  if (!first.empty()) c.send_text(first);
  stream_audio(c, seconds, speed);
  c.send_text(R"({"type":"CloseStream"})");
  out.messages = read_all(c);
  out.error = c.error;
  out.code = static_cast<int>(c.ws.reason().code);
  return out;
}

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
  constexpr double kSent = 10;
  auto streamed = stream_through(s, kListen, kSent);
  ASSERT_EQ(streamed.error, websocket::error::closed) << streamed.error.message();
  EXPECT_EQ(streamed.code, 1000);
  const auto& all = streamed.messages;

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
// each message, turn_index continuous, the turn's start not repeated. The
// client's Configure (sent before the first EndOfTurn) still rules the new
// connection: the simulator reports end_of_turn_confidence 1.0 only under an
// eot_threshold of 0.95; and its answer to the replayed Configure is withheld.
TEST(Resume, FluxMidTurnKeepsItsCountersAndTurns) {
  Stack s(sim_with({"1@audio:3"}), resume_on());
  constexpr double kSent = 7;
  auto streamed = stream_through(s, kFlux, kSent, 10, R"({"type":"Configure","thresholds":{"eot_threshold":0.95}})");
  ASSERT_EQ(streamed.error, websocket::error::closed) << streamed.error.message();
  EXPECT_EQ(streamed.code, 0);  // Flux closes without a status
  const auto& all = streamed.messages;
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
      EXPECT_EQ(num(m.at("end_of_turn_confidence")), 1.0) << json::serialize(m);
      EXPECT_NEAR(num(m.at("audio_window_start")), eot_end, 1e-6) << json::serialize(m);
      eot_end = num(m.at("audio_window_end"));
      EXPECT_EQ(t, eots - 1);
    }
  }
  EXPECT_EQ(eots, 3);  // at 2, 4 and 6 s of the client's audio
  EXPECT_EQ(of_type(all, "ConfigureSuccess").size(), 1u);
  EXPECT_NEAR(eot_end, 6.0, 1e-6);
  auto evs = resume_events(s);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].fields.at("outcome"), "resumed");
  EXPECT_NEAR(num(evs[0].fields.at("offset_seconds")), 2.0, 1e-9);
  ASSERT_TRUE(eventually([&] { return s.registry().size() == 0 && sim_open(s) == 0; }));
}

// The vendor keeps counting the dropped stream for 1.5 s (its release delay)
// and the project's limit is 1, so every reconnect within that time meets a
// 429 and is tried again; the client streams in real time all along. The
// buffer holds 1 s: the audio from the last final to the oldest audio kept is
// lost, the offset still puts every later time at its place in the client's
// audio, and the event says how much was lost.
TEST(Resume, AGapLongerThanTheBufferCountsTheLostAudio) {
  auto sc = sim_with({"1@audio:3.5"});
  sc.default_limits[protocol::Family::streaming] = 1;
  sc.faults.stale_accounting = 1500ms;
  Stack s(sc, resume_on([](config::ResumeConfig& r) {
    r.buffer = config::Seconds(1);
    r.max_attempts = 40;
    r.backoff = config::Seconds(0.1);
    r.max_backoff = config::Seconds(0.1);
  }));
  constexpr double kSent = 7;
  auto streamed = stream_through(s, kListen, kSent, 1.0);
  ASSERT_EQ(streamed.error, websocket::error::closed) << streamed.error.message();
  EXPECT_EQ(streamed.code, 1000);
  const auto& all = streamed.messages;
  auto evs = resume_events(s);
  ASSERT_EQ(evs.size(), 1u);
  const auto& f = evs[0].fields;
  EXPECT_EQ(f.at("outcome"), "resumed");
  EXPECT_GT(f.at("attempts").to_number<int>(), 1);  // 429s while the vendor still counted the old stream
  EXPECT_GE(num(f.at("gap_ms")), 1000);
  double offset = num(f.at("offset_seconds")), lost = num(f.at("lost_seconds"));
  EXPECT_GT(lost, 0.4);
  EXPECT_NEAR(offset, 3.0 + lost, 1e-3);
  // The buffer held the last second before the reconnect: the offset is at most a frame past that.
  EXPECT_NEAR(num(f.at("replay_seconds")), 1.0, 0.1 + 1e-6);
  // Finals: the first ends at 3 s; the next starts at the offset (the lost
  // audio is a hole, not a shift), and the last ends at the audio sent.
  std::vector<std::pair<double, double>> finals;
  for (const auto& r : of_type(all, "Results"))
    if (r.at("is_final").as_bool()) finals.emplace_back(num(r.at("start")), num(r.at("start")) + num(r.at("duration")));
  ASSERT_GE(finals.size(), 2u);
  EXPECT_NEAR(finals[0].second, 3.0, 1e-6);
  EXPECT_NEAR(finals[1].first, offset, 1e-3);
  EXPECT_NEAR(finals.back().second, kSent, 1e-6);
  auto meta = of_type(all, "Metadata");
  ASSERT_EQ(meta.size(), 1u);
  EXPECT_NEAR(num(meta[0].at("duration")), kSent, 1e-6);
  ASSERT_TRUE(eventually([&] { return s.registry().size() == 0 && sim_open(s) == 0; }));
}

// The vendor's inactivity close (1011 NET-0001) is the stream's end: not
// resumed; the client gets it as it was.
TEST(Resume, TheVendorsInactivityCloseIsNotResumed) {
  auto sc = sim_with({});
  sc.inactivity_timeout = 300ms;
  Stack s(sc, resume_on());
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k")) << c.error.message();
  stream_audio(c, 0.5);
  EXPECT_EQ(c.read_until_close(), 1011);
  EXPECT_NE(std::string(c.ws.reason().reason.c_str()).find("net0001"), std::string::npos) << c.ws.reason().reason;
  EXPECT_TRUE(resume_events(s).empty());
  EXPECT_EQ(s.sim().stats().streams, 1u);
  ASSERT_TRUE(eventually([&] { return s.registry().size() == 0; }));
}

namespace {

// The echo upstream closes on command; every upgrade after the first is
// refused with `status`.
void drop_and_refuse(int status, int expect_attempts, std::string_view expect_outcome) {
  Stack s({}, via_test_upstream(resume_on([](config::ResumeConfig& r) { r.max_attempts = 3; })));
  s.test_upstream().refuse_after(1, status);
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k")) << c.error.message();
  c.send_binary(silence(0.1));
  ASSERT_TRUE(c.read());  // the echo
  c.send_text("close:1011:NET-0000 test upstream failure");
  EXPECT_EQ(c.read_until_close(), 1011);  // the original close, passed on
  EXPECT_EQ(std::string(c.ws.reason().reason.c_str()), "NET-0000 test upstream failure");
  auto evs = resume_events(s);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].fields.at("outcome"), json::value(expect_outcome));
  EXPECT_EQ(evs[0].fields.at("attempts"), expect_attempts);
  EXPECT_NE(evs[0].fields.at("detail").as_string().find(std::to_string(status)), std::string::npos);
  EXPECT_EQ(s.test_upstream().upgrades.load(), 1 + expect_attempts);
  ASSERT_TRUE(eventually([&] { return s.registry().size() == 0 && s.gateway().admission().leases_in_use() == 0; }));
  auto pools = json::parse(admin_call(s.admin_port(), http::verb::get, "/api/v1/pools/streaming").body()).as_object();
  EXPECT_EQ(pools.at("resume").at("enabled"), true) << json::serialize(pools);
  EXPECT_EQ(pools.at("resume").at("max_attempts"), 3);
  auto metrics = admin_call(s.admin_port(), http::verb::get, "/metrics").body();
  EXPECT_NE(metrics.find("sluice_resumes_total{pool=\"streaming\",outcome=\"" + std::string(expect_outcome) + "\"} 1"),
            std::string::npos)
      << metrics.substr(metrics.find("sluice_resumes_total"), 600);
}

}  // namespace

TEST(Resume, A4xxOnReconnectIsNotRetried) { drop_and_refuse(401, 1, "refused"); }

TEST(Resume, ExhaustedAttemptsPassTheOriginalCloseToTheClient) { drop_and_refuse(503, 3, "exhausted"); }

// Over wss: the vendor here is a second gateway with TLS on its client side,
// in front of the simulator, so the leg that drops and reconnects is TLS.
TEST(Resume, ATlsUpstreamIsResumedToo) {
  TestCert cert;
  Stack vendor(sim_with({"1@audio:2/reset"}), [&](config::Config& c, Stack&) {
    c.tls.cert_file = cert.cert;
    c.tls.key_file = cert.key;
    c.relay.ping_interval = 60s;
  });
  Stack s({}, [&](config::Config& c, Stack& st) {
    resume_on()(c, st);
    c.upstream.url = "wss://127.0.0.1:" + std::to_string(vendor.port());
    c.upstream.ca_file = cert.cert;
  });
  constexpr double kSent = 5;
  auto streamed = stream_through(s, kListen, kSent);
  ASSERT_EQ(streamed.error, websocket::error::closed) << streamed.error.message();
  EXPECT_EQ(streamed.code, 1000);
  const auto& all = streamed.messages;
  auto evs = resume_events(s);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].fields.at("outcome"), "resumed");
  auto meta = of_type(all, "Metadata");
  ASSERT_EQ(meta.size(), 1u);
  EXPECT_NEAR(num(meta[0].at("duration")), kSent, 1e-6);
  ASSERT_TRUE(eventually([&] { return s.registry().size() == 0 && vendor.registry().size() == 0; }));
}

// Chaos with resume on, on two I/O threads: the vendor drops streams at
// random (half of them each second) while clients come and go every way they
// can. No client sees a
// 1011, the legs never outnumber the leases nor the leases the limit, and
// nothing is held at the end.
TEST(Resume, ChaosWithDropsNoClientSeesA1011) {
  constexpr int L = 4;
  constexpr int kStreams = 60;
  constexpr int kWorkers = 6;
  sim::SimConfig sc;
  sc.inactivity_timeout = 60000ms;
  sc.default_limits[protocol::Family::streaming] = L;
  sc.faults.drop_probability = 0.5;
  Stack s(sc, [&](config::Config& c, Stack& st) {
    resume_on()(c, st);
    c.threads = 2;  // each connection on a strand of its own
    for (auto& p : c.pools)
      if (p.name == "streaming") {
        p.limit = L;
        p.queue_timeout = config::Seconds(10);
      }
  });
  std::atomic<bool> sampling{true};
  std::atomic<int> samples{0}, violations{0};
  std::thread sampler([&] {
    while (sampling) {
      auto [leases, legs] = s.gateway().admission().leases_and_legs();
      if (legs > leases || leases > L) ++violations;
      ++samples;
      std::this_thread::sleep_for(2ms);
    }
  });
  std::atomic<int> closes_1011{0}, normal{0}, kills{0}, clean{0}, lost_writes{0};
  std::vector<std::thread> workers;
  std::mt19937 rng(11);
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, seed = rng()] {
      std::mt19937 r(seed);
      for (int i = 0; i < kStreams / kWorkers; ++i) {
        Client c;
        if (!c.open(s.port(), kListen, "Token k")) continue;
        int frames = 10 + static_cast<int>(r() % 30);  // 0.5 to 2 s of audio in 50 ms frames
        bool alive = true;
        for (int f = 0; f < frames && alive; ++f) {
          beast::error_code ec;
          c.ws.binary(true);
          c.ws.write(asio::buffer(silence(0.05)), ec);
          alive = !ec;
          std::this_thread::sleep_for(50ms);
        }
        if (!alive) {
          ++lost_writes;
          continue;
        }
        switch (r() % 4) {
          case 0:  // the client process dies: RST
            beast::get_lowest_layer(c.ws).socket().set_option(asio::socket_base::linger(true, 0));
            beast::get_lowest_layer(c.ws).socket().close();
            ++kills;
            break;
          case 1: {
            beast::error_code ec;
            c.ws.close(websocket::close_code::normal, ec);
            ++clean;
            break;
          }
          default: {
            c.send_text(R"({"type":"CloseStream"})");
            int code = c.read_until_close();
            if (code == 1011) ++closes_1011;
            else if (code == 1000) ++normal;
            break;
          }
        }
      }
    });
  }
  for (auto& t : workers) t.join();
  bool drained = eventually([&] {
    auto [leases, legs] = s.gateway().admission().leases_and_legs();
    return leases == 0 && legs == 0 && sim_open(s) == 0 && s.registry().size() == 0;
  });
  sampling = false;
  sampler.join();
  std::size_t resumed = 0;
  for (const auto& e : resume_events(s)) resumed += e.fields.at("outcome") == "resumed";
  std::printf("resume chaos: %d streams, %zu vendor drops, %zu resumed, %zu resume events; %d CloseStream ends "
              "with 1000, %d with 1011; %d RST kills, %d clean closes; %d samples, %d violations\n",
              kStreams, s.sim().stats().drops.size(), resumed, resume_events(s).size(), normal.load(),
              closes_1011.load(), kills.load(), clean.load(), samples.load(), violations.load());
  EXPECT_TRUE(drained);
  EXPECT_EQ(closes_1011.load(), 0);
  EXPECT_EQ(lost_writes.load(), 0);
  EXPECT_GT(resumed, 5u);
  EXPECT_EQ(violations.load(), 0);
  EXPECT_GT(samples.load(), 10);
}
