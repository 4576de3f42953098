#include <gtest/gtest.h>

#include "sim/drops.hpp"

using namespace sluice::sim;
using namespace std::chrono_literals;

TEST(sim_drops, CuesParseAndPrintBack) {
  auto a = parse_drop_cue("2@audio:3.5/reset");
  ASSERT_TRUE(a.cue) << a.error;
  EXPECT_EQ(a.cue->stream, 2u);
  EXPECT_EQ(a.cue->after_audio_seconds, 3.5);
  EXPECT_FALSE(a.cue->after);
  EXPECT_EQ(a.cue->how, DropCue::How::reset);
  EXPECT_EQ(format_drop_cue(*a.cue), "2@audio:3.5/reset");
  auto b = parse_drop_cue("time:10");
  ASSERT_TRUE(b.cue) << b.error;
  EXPECT_EQ(b.cue->stream, 0u);
  EXPECT_EQ(b.cue->after, 10000ms);
  EXPECT_EQ(b.cue->how, DropCue::How::internal_error);
  EXPECT_EQ(format_drop_cue(*b.cue), "time:10/1011");
  for (auto how : {"1011", "1012", "1013", "cut", "reset"}) {
    auto c = parse_drop_cue(std::string("audio:1/") + how);
    ASSERT_TRUE(c.cue) << how;
    EXPECT_EQ(drop_how_name(c.cue->how), how);
  }
}

TEST(sim_drops, BadCuesSayWhatIsWrong) {
  for (auto [text, why] : std::initializer_list<std::pair<const char*, const char*>>{
           {"", "no 'audio:' or 'time:'"},
           {"0@audio:1", "positive integer"},
           {"x@audio:1", "positive integer"},
           {"audio:-1", "0 or more"},
           {"audio:abc", "0 or more"},
           {"audio:1/1000", "unknown HOW '1000'"},
           {"volume:1", "unknown cue 'volume'"},
       }) {
    auto p = parse_drop_cue(text);
    EXPECT_FALSE(p.cue) << text;
    EXPECT_NE(p.error.find(why), std::string::npos) << text << ": " << p.error;
    EXPECT_NE(p.error.find("[STREAM@](audio|time):SECONDS[/HOW]"), std::string::npos) << p.error;
  }
}

TEST(sim_drops, ACueIsDueForItsStreamOnly) {
  Drops d({*parse_drop_cue("2@audio:1").cue});
  EXPECT_TRUE(d.any());
  EXPECT_FALSE(d.due(1, 5.0, 0s));
  EXPECT_FALSE(d.due(2, 0.99, 100s));
  EXPECT_TRUE(d.due(2, 1.0, 0s));
  d.add(*parse_drop_cue("time:2/cut").cue);  // every stream
  auto c = d.due(7, 0, 2s);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->how, DropCue::How::cut);
  EXPECT_FALSE(Drops({}).any());
}
