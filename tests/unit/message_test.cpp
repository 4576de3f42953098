#include <gtest/gtest.h>

#include "protocol/audio.hpp"
#include "protocol/endpoint.hpp"
#include "protocol/message.hpp"

using namespace sluice::protocol;

TEST(Sniff, FindsTypeCheaply) {
  EXPECT_EQ(sniff_type(R"({"type":"KeepAlive"})"), "KeepAlive");
  EXPECT_EQ(sniff_type(R"({ "type" : "CloseStream" })"), "CloseStream");
  EXPECT_EQ(sniff_type("{\n  \"type\":\t\"Finalize\", \"channel\": 0}"), "Finalize");
  EXPECT_EQ(sniff_type(R"({"channel":0,"type":"Finalize"})"), "Finalize");
  EXPECT_EQ(sniff_type(R"({"text":"hello"})"), "");
  EXPECT_EQ(sniff_type(R"({"type":5})"), "");
  EXPECT_EQ(sniff_type(R"({"type":"unterminated)"), "");
  EXPECT_EQ(sniff_type(""), "");
  EXPECT_EQ(sniff_type("not json at all"), "");
}

// Found by the fuzz target `sniff`: the scan took the first "type" key
// anywhere in the text, so a text that is not an object, or a "type" nested
// in a member before the top-level one, sniffed as a type the message does
// not have; and a value written with escapes read as its raw text.
TEST(Sniff, ReadsOnlyTheTopLevelTypeMember) {
  EXPECT_EQ(sniff_type(R"([{"type":"x"}])"), "");
  EXPECT_EQ(sniff_type(R"({"settings":{"type":"CloseStream"},"type":"Configure"})"), "Configure");
  EXPECT_EQ(sniff_type(R"({"provider":{"type":"open_ai"}})"), "");
  EXPECT_EQ(sniff_type(R"({"type":{"type":"KeepAlive"}})"), "");
  EXPECT_EQ(sniff_type(R"({"a":"type","type":"KeepAlive"})"), "KeepAlive");
  EXPECT_EQ(sniff_type(R"({"type":"Keep\u0041live"})"), "KeepAlive");
  EXPECT_EQ(sniff_type(R"({"\u0074ype":"Finalize"})"), "Finalize");
  EXPECT_EQ(sniff_type(R"({"type":"a\"b"})"), "a\"b");
  EXPECT_EQ(sniff_type(R"(garbage "type":"KeepAlive")"), "");
  EXPECT_EQ(sniff_type(R"({"x":1 "type":"KeepAlive"})"), "");  // not JSON before the member
  // Duplicates: the first top-level member counts.
  EXPECT_EQ(sniff_type(R"({"type":"A","type":"B"})"), "A");
  // A message cut at the sniff limit still sniffs from what precedes the cut.
  EXPECT_EQ(sniff_type(R"({"channel":{"alternatives":[]},"type":"Results","words":[{"w)"), "Results");
}

TEST(Sniff, Classifies) {
  EXPECT_EQ(classify("KeepAlive"), MessageType::keep_alive);
  EXPECT_EQ(classify("Finalize"), MessageType::finalize);
  EXPECT_EQ(classify("CloseStream"), MessageType::close_stream);
  EXPECT_EQ(classify("Close"), MessageType::close_stream);
  EXPECT_EQ(classify("Metadata"), MessageType::metadata);
  EXPECT_EQ(classify("Connected"), MessageType::connected);
  EXPECT_EQ(classify("Results"), MessageType::results);
  EXPECT_EQ(classify("Speak"), MessageType::other);
  EXPECT_EQ(classify(""), MessageType::other);
}

TEST(Summary, ReadsMetadata) {
  auto s = read_summary(
      R"({"type":"Metadata","transaction_key":"deprecated","request_id":"a1b2","duration":44.259937,"channels":2})");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->request_id, "a1b2");
  ASSERT_TRUE(s->duration);
  EXPECT_DOUBLE_EQ(*s->duration, 44.259937);
  EXPECT_EQ(s->channels.value_or(0), 2);
  auto c = read_summary(R"({"type":"Connected","request_id":"r-9","sequence_id":0})");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->request_id, "r-9");
  EXPECT_FALSE(c->duration);
  EXPECT_FALSE(read_summary("{not json"));
}

TEST(Endpoints, PathsFamiliesAndCloseMessages) {
  EXPECT_EQ(endpoint_from_path("/v1/listen"), Endpoint::listen_v1);
  EXPECT_EQ(endpoint_from_path("/v2/listen"), Endpoint::listen_v2);
  EXPECT_EQ(endpoint_from_path("/v1/speak"), Endpoint::speak_v1);
  EXPECT_EQ(endpoint_from_path("/v1/agent/converse"), Endpoint::agent);
  EXPECT_FALSE(endpoint_from_path("/v1/listen/"));
  EXPECT_FALSE(endpoint_from_path("/v1/projects"));
  EXPECT_EQ(endpoint_family(Endpoint::listen_v2), Family::flux);
  EXPECT_EQ(close_message(Endpoint::listen_v1), R"({"type":"CloseStream"})");
  EXPECT_EQ(close_message(Endpoint::speak_v1), R"({"type":"Close"})");
  EXPECT_TRUE(close_message(Endpoint::agent).empty());
  EXPECT_EQ(family_from_name("tts"), Family::tts);
  EXPECT_FALSE(family_from_name("nova"));
}

TEST(Audio, BytesPerSecond) {
  EXPECT_DOUBLE_EQ(bytes_per_second("linear16", 16000, 1), 32000);
  EXPECT_DOUBLE_EQ(bytes_per_second("linear16", 8000, 2), 32000);
  EXPECT_DOUBLE_EQ(bytes_per_second("mulaw", 8000, 1), 8000);
  EXPECT_DOUBLE_EQ(bytes_per_second("linear32", 48000, 1), 192000);
  EXPECT_DOUBLE_EQ(bytes_per_second("opus", 48000, 1), 0);
  EXPECT_DOUBLE_EQ(bytes_per_second("", 0, 1), 0);
}
