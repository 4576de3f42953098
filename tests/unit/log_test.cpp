// The log's text form of a session's fields, and JSON numbers as people
// write them.
#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include "config/config.hpp"
#include "util/json_text.hpp"
#include "util/log.hpp"

using namespace sluice;

TEST(JsonText, NumbersAsPeopleWriteThem) {
  EXPECT_EQ(util::json_text(boost::json::value(5.0)), "5");
  EXPECT_EQ(util::json_text(boost::json::value(0.25)), "0.25");
  EXPECT_EQ(util::json_text(boost::json::value(30)), "30");
  EXPECT_EQ(util::json_text(boost::json::value(-1.5)), "-1.5");
  EXPECT_EQ(util::json_text(boost::json::value(std::numeric_limits<double>::infinity())), "null");
  EXPECT_EQ(util::json_text(boost::json::value(5.0), util::Doubles::keep_point), "5.0");
  auto v = boost::json::parse(R"({"a":[1,2.5,{"b":"x\"y"}],"c":null,"d":true,"e":1e-7})");
  auto text = util::json_text(v);
  EXPECT_EQ(text, R"({"a":[1,2.5,{"b":"x\"y"}],"c":null,"d":true,"e":1e-07})");
  EXPECT_EQ(boost::json::parse(text), v);  // reads back to the same value
}

TEST(LogText, FlattensNestedFieldsAndQuotesWhatWouldBeAmbiguous) {
  boost::json::object o;
  o["id"] = 12;
  o["tenant"] = "acme";
  o["model"] = "";
  o["user_agent"] = "Deepgram SDK/3 (node)";
  o["note"] = "a=b";
  o["request_id"] = nullptr;
  o["age_seconds"] = 2.0;
  boost::json::object counters;
  counters["audio_bytes"] = 6400;
  o["counters"] = std::move(counters);
  EXPECT_EQ(util::log::text_fields(o),
            R"x(id=12 tenant=acme model=- user_agent="Deepgram SDK/3 (node)" note="a=b" request_id=- age_seconds=2 )x"
            "counters.audio_bytes=6400");
}

TEST(LogText, Formats) {
  EXPECT_EQ(util::log::parse_format("json"), util::log::Format::json);
  EXPECT_EQ(util::log::parse_format("text"), util::log::Format::text);
  EXPECT_FALSE(util::log::parse_format("xml"));
  EXPECT_EQ(util::log::run_id().size(), 12u);
  EXPECT_EQ(util::log::run_id(), util::log::run_id());
}

TEST(LogConfig, FormatIsTextOrJson) {
  EXPECT_EQ(config::parse_config("log:\n  format: json\n").log.format, "json");
  EXPECT_EQ(config::parse_config("{}").log.format, "text");
  try {
    config::parse_config("log:\n  format: xml\n");
    FAIL() << "accepted log.format: xml";
  } catch (const config::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("log.format"), std::string::npos) << e.what();
  }
}
