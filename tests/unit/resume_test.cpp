// The replay buffer and the timeline of a resumable stream (session/resume.hpp).
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "session/frame.hpp"
#include "session/resume.hpp"

using namespace sluice::session;
namespace json = boost::json;

namespace {

const std::uint8_t kMask[4] = {0x37, 0xfa, 0x21, 0x3d};
constexpr double kBps = 32000;  // linear16, 16 kHz, mono

std::string audio_frame(std::size_t bytes, char fill = 'a') {
  std::string out;
  append_frame(out, opcode::binary, std::string(bytes, fill), kMask);
  return out;
}

std::string text_frame(std::string_view text) {
  std::string out;
  append_frame(out, opcode::text, text, kMask);
  return out;
}

void append(AudioLog& log, const std::string& bytes) {
  log.append(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
}

// The payloads of the client frames in `bytes`, unmasked.
std::vector<std::string> payloads(const std::string& bytes) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < bytes.size()) {
    FrameHeader h;
    auto p = reinterpret_cast<const std::uint8_t*>(bytes.data()) + at;
    EXPECT_EQ(parse_frame_header(p, bytes.size() - at, h), HeaderStatus::ok);
    std::string payload(reinterpret_cast<const char*>(p + h.header_size), h.length);
    if (h.masked) apply_mask(reinterpret_cast<std::uint8_t*>(payload.data()), payload.size(), h.mask, 0);
    out.push_back(payload);
    at += h.header_size + h.length;
  }
  return out;
}

json::object obj(const std::string& text) { return json::parse(text).as_object(); }

}  // namespace

TEST(AudioLog, CountsAudioPositionsAcrossSplitAppends) {
  AudioLog log(kBps, 2);
  auto bytes = audio_frame(3200) + text_frame(R"({"type":"KeepAlive"})") + audio_frame(3200, 'b');
  // Split at every few bytes: positions are the same.
  for (std::size_t at = 0; at < bytes.size(); at += 7) append(log, bytes.substr(at, 7));
  EXPECT_EQ(log.audio_end(), 6400u);
  EXPECT_EQ(log.begin(), 0u);
  EXPECT_EQ(log.end(), bytes.size());
  EXPECT_FALSE(log.ends_mid_frame());
  EXPECT_DOUBLE_EQ(log.seconds(log.audio_end()), 0.2);
}

TEST(AudioLog, ReleasesFinalizedFramesAndCutsTheReplayAtTheFinalizedPoint) {
  AudioLog log(kBps, 2);
  for (int i = 0; i < 10; ++i) append(log, audio_frame(3200, static_cast<char>('a' + i)));  // 10 x 100 ms
  // Finalized at 0.25 s: frames ending at or before it go; the third stays.
  log.release_until(log.audio_bytes(0.25), log.end());
  EXPECT_EQ(log.audio_begin(), 6400u);
  std::string head;
  std::uint64_t next = 0;
  auto start = log.replay_start(log.audio_bytes(0.25), head, next);
  EXPECT_EQ(start, 8000u);  // exactly 0.25 s
  auto first = payloads(head);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0], std::string(1600, 'c'));  // the second half of the third frame, masked afresh
  std::uint64_t audio = 0;
  auto rest = log.copy(next, 1 << 30, next, audio);
  EXPECT_EQ(next, log.end());
  EXPECT_EQ(audio, 7u * 3200);
  auto frames = payloads(rest);
  ASSERT_EQ(frames.size(), 7u);
  EXPECT_EQ(frames[0], std::string(3200, 'd'));
}

TEST(AudioLog, TrimKeepsWithinTheBoundButNeverDropsWhatIsStillToBeSent) {
  AudioLog log(kBps, 2);
  for (int i = 0; i < 10; ++i) append(log, audio_frame(3200));
  auto protect = log.begin() + 3 * (3200 + 4 + 4);  // three frames already sent (header 4 + mask 4)
  auto dropped = log.trim(log.audio_bytes(0.5), protect);
  EXPECT_EQ(dropped, 3u * 3200);  // only the three before `protect`
  EXPECT_EQ(log.audio_begin(), 3u * 3200);
  dropped = log.trim(log.audio_bytes(0.5), log.end());
  EXPECT_EQ(dropped, 2u * 3200);
  EXPECT_EQ(log.audio_end() - log.audio_begin(), 16000u);
  // A replay from an earlier point starts where the kept audio starts.
  std::string head;
  std::uint64_t next = 0;
  EXPECT_EQ(log.replay_start(0, head, next), 5u * 3200);
  EXPECT_TRUE(head.empty());
  EXPECT_EQ(next, log.begin());
}

TEST(AudioLog, AFrameStillArrivingIsCopiedAsFarAsItCame) {
  AudioLog log(kBps, 2);
  auto f = audio_frame(3200);
  append(log, f.substr(0, 1000));
  EXPECT_TRUE(log.ends_mid_frame());
  EXPECT_EQ(log.audio_end(), 3200u);
  std::uint64_t next = 0, audio = 0;
  auto part = log.copy(log.begin(), 1 << 30, next, audio);
  EXPECT_EQ(part, f.substr(0, 1000));
  EXPECT_EQ(next, 1000u);
  append(log, f.substr(1000));
  auto rest = log.copy(next, 1 << 30, next, audio);
  EXPECT_EQ(part + rest, f);
  EXPECT_FALSE(log.ends_mid_frame());
}

TEST(Timeline, ListenBeforeAResumeOnlyFollowsTheFinals) {
  Timeline t(false);
  std::string out;
  EXPECT_EQ(t.read(R"({"type":"Results","is_final":false,"start":0.0,"duration":1.0})", out), Timeline::Action::pass);
  EXPECT_DOUBLE_EQ(t.finalized(), 0);
  EXPECT_EQ(t.read(R"({"type":"Results","is_final":true,"start":0.0,"duration":3.0})", out), Timeline::Action::pass);
  EXPECT_DOUBLE_EQ(t.finalized(), 3.0);
  EXPECT_TRUE(out.empty());
}

TEST(Timeline, ListenAfterAResumeShiftsEveryTime) {
  Timeline t(false);
  t.resumed(3.0);
  std::string out;
  ASSERT_EQ(t.read(R"({"type":"Results","is_final":true,"start":0.0,"duration":3.0,"channel":{"alternatives":[{"words":[{"word":"a","start":0.5,"end":0.75}]}]}})",
                   out),
            Timeline::Action::replace);
  auto r = obj(out);
  EXPECT_EQ(r.at("start").as_double(), 3.0);
  EXPECT_EQ(r.at("duration").as_double(), 3.0);
  auto w = r.at("channel").at("alternatives").at(0).at("words").at(0);
  EXPECT_EQ(w.at("start").as_double(), 3.5);
  EXPECT_EQ(w.at("end").as_double(), 3.75);
  EXPECT_DOUBLE_EQ(t.finalized(), 6.0);
  ASSERT_EQ(t.read(R"({"type":"SpeechStarted","timestamp":0.25})", out), Timeline::Action::replace);
  EXPECT_EQ(obj(out).at("timestamp").as_double(), 3.25);
  ASSERT_EQ(t.read(R"({"type":"UtteranceEnd","last_word_end":1.5})", out), Timeline::Action::replace);
  EXPECT_EQ(obj(out).at("last_word_end").as_double(), 4.5);
  ASSERT_EQ(t.read(R"({"type":"Metadata","duration":4.0})", out), Timeline::Action::replace);
  EXPECT_EQ(obj(out).at("duration").as_double(), 7.0);
  EXPECT_EQ(t.metadata_duration(), 7.0);
  EXPECT_EQ(t.read("not json", out), Timeline::Action::pass);
}

TEST(Timeline, FluxContinuesItsSequenceAndTurns) {
  Timeline t(true);
  std::string out;
  t.read(R"({"type":"Connected","sequence_id":0})", out);
  t.read(R"({"type":"TurnInfo","event":"StartOfTurn","turn_index":0,"sequence_id":1,"audio_window_start":0.0,"audio_window_end":0.0})", out);
  t.read(R"({"type":"TurnInfo","event":"EndOfTurn","turn_index":0,"sequence_id":2,"audio_window_start":0.0,"audio_window_end":2.0})", out);
  t.read(R"({"type":"TurnInfo","event":"StartOfTurn","turn_index":1,"sequence_id":3,"audio_window_start":2.0,"audio_window_end":2.0})", out);
  EXPECT_DOUBLE_EQ(t.finalized(), 2.0);
  t.resumed(2.0);
  EXPECT_EQ(t.read(R"({"type":"Connected","sequence_id":0})", out), Timeline::Action::drop);
  // The new upstream's turn 0 is the client's turn 1, whose start the client saw.
  EXPECT_EQ(t.read(R"({"type":"TurnInfo","event":"StartOfTurn","turn_index":0,"sequence_id":1,"audio_window_start":0.0,"audio_window_end":0.0})", out),
            Timeline::Action::drop);
  ASSERT_EQ(t.read(R"({"type":"TurnInfo","event":"Update","turn_index":0,"sequence_id":2,"audio_window_start":0.0,"audio_window_end":0.5,"words":[{"word":"x","start":0.1,"end":0.3}]})", out),
            Timeline::Action::replace);
  auto u = obj(out);
  EXPECT_EQ(u.at("sequence_id").as_int64(), 4);
  EXPECT_EQ(u.at("turn_index").as_int64(), 1);
  EXPECT_EQ(u.at("audio_window_start").as_double(), 2.0);
  EXPECT_EQ(u.at("audio_window_end").as_double(), 2.5);
  EXPECT_EQ(u.at("words").at(0).at("start").as_double(), 2.1);
  ASSERT_EQ(t.read(R"({"type":"TurnInfo","event":"EndOfTurn","turn_index":0,"sequence_id":3,"audio_window_start":0.0,"audio_window_end":2.0})", out),
            Timeline::Action::replace);
  EXPECT_EQ(obj(out).at("sequence_id").as_int64(), 5);
  EXPECT_DOUBLE_EQ(t.finalized(), 4.0);
  ASSERT_EQ(t.read(R"({"type":"TurnInfo","event":"StartOfTurn","turn_index":1,"sequence_id":4,"audio_window_start":2.0,"audio_window_end":2.0})", out),
            Timeline::Action::replace);
  EXPECT_EQ(obj(out).at("turn_index").as_int64(), 2);
  EXPECT_EQ(obj(out).at("sequence_id").as_int64(), 6);
}

// What reading and rewriting cost per message, printed (not asserted: the
// figures are for docs/resume.md): a final Results of ten words as the
// simulator sends it, read before a resume (parsed, finalized point
// followed) and after one (parsed, rewritten, serialized).
TEST(Timeline, CostPerMessage) {
  json::array words;
  for (int i = 0; i < 10; ++i)
    words.push_back(json::object{{"word", "word"}, {"start", 0.31 * i}, {"end", 0.31 * i + 0.25},
                                 {"confidence", 0.98}, {"punctuated_word", "Word"}});
  json::object alt{{"transcript", "word word word word word word word word word word"}, {"confidence", 0.98},
                   {"words", std::move(words)}};
  json::object r{{"type", "Results"}, {"channel_index", json::array{0, 1}}, {"duration", 3.0}, {"start", 0.0},
                 {"is_final", true}, {"speech_final", true},
                 {"channel", json::object{{"alternatives", json::array{std::move(alt)}}}},
                 {"metadata", json::object{{"request_id", "2c7b7c9e-1b1f-4a4e-9f44-5b1e3c3b6f1a"},
                                           {"model_uuid", "1dbdfb4d-85b2-4659-9b4a-58d6c0b0e7d0"}}},
                 {"from_finalize", false}};
  auto text = json::serialize(r);
  constexpr int kN = 20000;
  auto time = [&](Timeline& t) {
    std::string out;
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kN; ++i) t.read(text, out);
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / kN;
  };
  Timeline before(false), after(false);
  after.resumed(12.5);
  std::string out;
  ASSERT_EQ(after.read(text, out), Timeline::Action::replace);
  double read_us = time(before), rewrite_us = time(after);
  std::printf("timeline: a %zu-byte final Results: %.2f us to read before a resume, %.2f us to rewrite after one\n",
              text.size(), read_us, rewrite_us);
  EXPECT_GT(rewrite_us, 0);
}

TEST(AudioLog, FluxConfigureOutlivesTheAudioAroundIt) {
  AudioLog log(kBps, 2, true);
  append(log, audio_frame(3200));
  auto configure = text_frame(R"({"type":"Configure","thresholds":{"eot_threshold":0.8}})");
  append(log, configure);
  append(log, text_frame(R"({"type":"ForceEndTurn"})"));
  append(log, audio_frame(3200));
  log.release_until(log.audio_bytes(0.2), log.end());
  EXPECT_EQ(log.begin(), log.end());
  ASSERT_EQ(log.kept_configures().size(), 1u);
  EXPECT_EQ(log.kept_configures()[0], configure);  // as it arrived, masked
  AudioLog listen(kBps, 2);
  append(listen, configure);
  listen.release_until(0, listen.end());
  EXPECT_TRUE(listen.kept_configures().empty());
}

TEST(Timeline, FluxWithholdsTheAnswersToReplayedConfigures) {
  Timeline t(true);
  std::string out;
  t.read(R"({"type":"Connected","sequence_id":0})", out);
  t.resumed(1.0);
  t.withhold_configure_answers(1);
  EXPECT_EQ(t.read(R"({"type":"Connected","sequence_id":0})", out), Timeline::Action::drop);
  EXPECT_EQ(t.read(R"({"type":"ConfigureSuccess","sequence_id":1})", out), Timeline::Action::drop);
  // The client's own Configure, later, is answered as usual.
  ASSERT_EQ(t.read(R"({"type":"ConfigureSuccess","sequence_id":2})", out), Timeline::Action::replace);
  EXPECT_EQ(obj(out).at("sequence_id").as_int64(), 1);
}
