// The simulator's recognisers are pure: their output depends only on the
// audio received, so it is checked here without sockets.
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "sim/flux_recognizer.hpp"
#include "sim/listen_recognizer.hpp"
#include "sim/words.hpp"

namespace {

namespace json = boost::json;
using sluice::sim::FluxRecognizer;
using sluice::sim::ListenRecognizer;
using sluice::sim::StreamParams;

StreamParams linear16_16k() {
  StreamParams p;
  p.model = "nova-3";
  p.encoding = "linear16";
  p.sample_rate = 16000;
  p.bytes_per_second = 32000;
  return p;
}

std::vector<std::string> feed(ListenRecognizer& r, std::size_t total, std::size_t chunk) {
  std::vector<std::string> out;
  std::string frame(chunk, '\x01');
  for (std::size_t sent = 0; sent < total; sent += chunk) {
    auto n = std::min(chunk, total - sent);
    for (auto& m : r.on_audio(std::string_view(frame).substr(0, n))) out.push_back(std::move(m));
  }
  return out;
}

json::object obj(const std::string& text) { return json::parse(text).as_object(); }

TEST(sim_words, AreDeterministicAndInsideTheirWindow) {
  auto a = sluice::sim::utterance_words(7, 3, 0, 12.0, 15.0);
  auto b = sluice::sim::utterance_words(7, 3, 0, 12.0, 15.0);
  ASSERT_EQ(a.size(), 7u);
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].word, b[i].word);
    EXPECT_GE(a[i].start, 12.0);
    EXPECT_LT(a[i].start, a[i].end);
    EXPECT_LE(a[i].end, 15.0);
    if (i) {
      EXPECT_GE(a[i].start, a[i - 1].end);
    }
  }
  // A shorter window sees a prefix of the same words.
  auto prefix = sluice::sim::utterance_words(7, 3, 0, 12.0, 13.0);
  ASSERT_EQ(prefix.size(), 2u);
  EXPECT_EQ(prefix[1].word, a[1].word);
  EXPECT_EQ(sluice::sim::utterance_words(7, 3, 0, 12.0, 12.3).size(), 0u);
  EXPECT_DOUBLE_EQ(a[0].start, 12.04);  // rounded to the millisecond, not 12.041
}

TEST(sim_listen_recognizer, ResultsDependOnAudioNotOnChunking) {
  auto params = linear16_16k();
  params.interim_results = true;
  ListenRecognizer small(params, "id", 1, {}), large(params, "id", 1, {});
  auto finals = [](const std::vector<std::string>& messages) {
    std::vector<std::string> out;
    for (const auto& m : messages)
      if (obj(m).at("is_final") == true) out.push_back(m);
    return out;
  };
  auto a = feed(small, 32000 * 7, 640);    // 20 ms frames
  auto b = feed(large, 32000 * 7, 32000);  // 1 s frames
  EXPECT_EQ(finals(a), finals(b));
  ASSERT_EQ(finals(a).size(), 2u);  // at 3 s and 6 s
  EXPECT_EQ(small.close_stream(), large.close_stream());
}

TEST(sim_listen_recognizer, InterimsAboutEverySecondAndFinalsEveryThree) {
  auto params = linear16_16k();
  params.interim_results = true;
  ListenRecognizer r(params, "id", 1, {});
  auto messages = feed(r, 32000 * 3, 3200);
  ASSERT_EQ(messages.size(), 3u);
  auto i1 = obj(messages[0]), i2 = obj(messages[1]), f = obj(messages[2]);
  EXPECT_EQ(i1.at("is_final"), false);
  EXPECT_DOUBLE_EQ(i1.at("duration").to_number<double>(), 1.0);
  EXPECT_DOUBLE_EQ(i2.at("duration").to_number<double>(), 2.0);
  EXPECT_EQ(f.at("is_final"), true);
  EXPECT_EQ(f.at("speech_final"), true);
  EXPECT_DOUBLE_EQ(f.at("duration").to_number<double>(), 3.0);
}

TEST(sim_listen_recognizer, FinalizeAndCloseStream) {
  ListenRecognizer r(linear16_16k(), "req", 1, {});
  EXPECT_TRUE(r.finalize().empty());  // nothing pending
  feed(r, 16000, 3200);               // 0.5 s
  auto finalized = r.finalize();
  ASSERT_EQ(finalized.size(), 1u);
  auto f = obj(finalized[0]);
  EXPECT_EQ(f.at("from_finalize"), true);
  EXPECT_DOUBLE_EQ(f.at("duration").to_number<double>(), 0.5);
  feed(r, 8000, 8000);  // 0.25 s more
  auto closing = r.close_stream();
  ASSERT_EQ(closing.size(), 2u);
  auto last = obj(closing[0]);
  EXPECT_DOUBLE_EQ(last.at("start").to_number<double>(), 0.5);
  EXPECT_DOUBLE_EQ(last.at("duration").to_number<double>(), 0.25);
  EXPECT_EQ(last.at("from_finalize"), false);
  auto meta = obj(closing[1]);
  EXPECT_EQ(meta.at("type"), "Metadata");
  EXPECT_DOUBLE_EQ(meta.at("duration").to_number<double>(), 0.75);
  EXPECT_EQ(meta.at("request_id"), "req");
  EXPECT_EQ(meta.at("sha256").as_string().size(), 64u);
}

TEST(sim_listen_recognizer, MultichannelAnswersPerChannel) {
  auto params = linear16_16k();
  params.channels = 2;
  params.multichannel = true;
  params.bytes_per_second = 64000;
  ListenRecognizer r(params, "id", 1, {});
  auto messages = feed(r, 64000 * 3, 6400);
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(obj(messages[0]).at("channel_index"), (json::array{0, 2}));
  EXPECT_EQ(obj(messages[1]).at("channel_index"), (json::array{1, 2}));
  auto meta = obj(r.close_stream().back());
  EXPECT_DOUBLE_EQ(meta.at("duration").to_number<double>(), 3.0);
  EXPECT_EQ(meta.at("channels"), 2);
}

TEST(sim_listen_recognizer, MetadataWithoutAudioHasNoModels) {
  ListenRecognizer r(linear16_16k(), "id", 1, {});
  auto meta = obj(r.metadata());
  EXPECT_DOUBLE_EQ(meta.at("duration").to_number<double>(), 0.0);
  EXPECT_FALSE(meta.contains("models"));
}

TEST(sim_flux_recognizer, TurnsAreSequencedAndPacedByAudio) {
  auto params = linear16_16k();
  params.model = "flux-general-en";
  FluxRecognizer r(params, "id", 1);
  auto connected = obj(r.connected());
  EXPECT_EQ(connected.at("sequence_id"), 0);
  auto messages = r.on_audio(32000 * 2);  // exactly one turn
  std::vector<std::string> events;
  std::int64_t sequence = 1;
  for (const auto& m : messages) {
    auto o = obj(m);
    EXPECT_EQ(o.at("sequence_id"), sequence++);
    events.push_back(std::string(o.at("event").as_string()));
  }
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.front(), "StartOfTurn");
  EXPECT_EQ(events.back(), "EndOfTurn");
  EXPECT_EQ(std::count(events.begin(), events.end(), "Update"), 7);  // every 0.25 s
  auto eot = obj(messages.back());
  EXPECT_EQ(eot.at("turn_index"), 0);
  EXPECT_DOUBLE_EQ(eot.at("audio_window_end").to_number<double>(), 2.0);
  // The next audio starts turn 1.
  auto next = r.on_audio(3200);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(obj(next[0]).at("turn_index"), 1);
}

TEST(sim_flux_recognizer, CloseStreamReportsPendingAudioWithoutEndOfTurn) {
  auto params = linear16_16k();
  params.model = "flux-general-en";
  FluxRecognizer r(params, "id", 1);
  r.connected();
  r.on_audio(32000);  // 1 s
  EXPECT_TRUE(r.close_stream().empty());  // 1 s was just reported by an Update
  r.on_audio(3200);
  auto closing = r.close_stream();
  ASSERT_EQ(closing.size(), 1u);
  auto u = obj(closing[0]);
  EXPECT_EQ(u.at("event"), "Update");
  EXPECT_DOUBLE_EQ(u.at("audio_window_end").to_number<double>(), 1.1);
}

TEST(sim_flux_recognizer, EagerEndOfTurnMatchesEndOfTurn) {
  auto params = linear16_16k();
  params.model = "flux-general-en";
  params.eager_eot_threshold = 0.5;
  FluxRecognizer r(params, "id", 1);
  std::string eager, end;
  for (const auto& m : r.on_audio(32000 * 2)) {
    auto o = obj(m);
    if (o.at("event") == "EagerEndOfTurn") eager = std::string(o.at("transcript").as_string());
    if (o.at("event") == "EndOfTurn") end = std::string(o.at("transcript").as_string());
  }
  EXPECT_FALSE(eager.empty());
  EXPECT_EQ(eager, end);
}

TEST(sim_flux_recognizer, ConfigureAndForceEndTurn) {
  auto params = linear16_16k();
  params.model = "flux-general-en";
  FluxRecognizer r(params, "id", 1);
  auto ok = obj(r.configure(R"({"type":"Configure","thresholds":{"eot_threshold":0.8},"keyterms":["sluice"]})"));
  EXPECT_EQ(ok.at("type"), "ConfigureSuccess");
  EXPECT_EQ(ok.at("keyterms"), (json::array{"sluice"}));
  EXPECT_EQ(obj(r.configure(R"({"type":"Configure","thresholds":{"eot_threshold":"high"}})")).at("type"),
            "ConfigureFailure");
  EXPECT_TRUE(r.force_end_turn().empty());  // no turn yet
  r.on_audio(16000);
  auto forced = r.force_end_turn();
  ASSERT_EQ(forced.size(), 1u);
  EXPECT_EQ(obj(forced[0]).at("trigger"), "manual");
}

}  // namespace
