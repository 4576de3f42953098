// The gateway's log as users run it: every line carries the run id, a stream
// gets one line when it opens and one when it ends with every field of the
// session, as text or as one JSON object per line (log.format).
#include <boost/json/parse.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "child_process.hpp"
#include "stack.hpp"
#include "sluice_binary.hpp"

using namespace sluice;
using namespace sluice::testing;

namespace {

std::vector<std::string> lines_of(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

struct Run {
  std::filesystem::path dir, err;
  std::unique_ptr<ChildProcess> gw;
  unsigned short port = 0;
};

// `sluice serve` with its bundled simulator, stderr to a file.
Run start(const std::string& format) {
  Run r;
  char d[] = "/tmp/sluice-log-XXXXXX";
  r.dir = ::mkdtemp(d);
  r.err = r.dir / "stderr";
  std::string cmd = "cd " + r.dir.string() + " && exec env -u DEEPGRAM_API_KEY " + SLUICE_BINARY +
                    " serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --admin-token-file admin.token" +
                    (format.empty() ? "" : " --log-format " + format) + " 2>" + r.err.string();
  r.gw = std::make_unique<ChildProcess>(std::vector<std::string>{"/bin/sh", "-c", cmd});
  auto m = r.gw->wait_for_line(R"(listening on 127\.0\.0\.1:(\d+) admin)");
  r.port = static_cast<unsigned short>(std::stoi(m[1]));
  return r;
}

// One stream: 0.5 s of audio, CloseStream, the vendor's close.
std::string stream_one(unsigned short port) {
  Client c;
  EXPECT_TRUE(c.open(port, "/v1/listen?encoding=linear16&sample_rate=16000", "Token k")) << c.error.message();
  c.send_binary(linear16_silence(0.5));
  c.send_text(R"({"type":"CloseStream"})");
  EXPECT_EQ(c.read_until_close(), 1000);
  return std::string(c.response["x-sluice-session-id"]);
}

}  // namespace

TEST(Logging, JsonLinesCarryTheRunAndEachStreamOpensAndEndsWithEveryField) {
  auto r = start("json");
  auto id = stream_one(r.port);
  ASSERT_FALSE(id.empty());
  const std::string opened = "[S" + id + "] opened", ended_prefix = "[S" + id + "] ";
  boost::json::object open_line, end_line;
  ASSERT_TRUE(eventually([&] {
    for (const auto& line : lines_of(r.err)) {
      auto o = boost::json::parse(line).as_object();
      auto msg = std::string(o.at("msg").as_string());
      if (msg == opened) open_line = o;
      else if (msg.starts_with(ended_prefix) && o.contains("outcome")) end_line = o;
    }
    return !open_line.empty() && !end_line.empty();
  })) << "no opened or ending line for S" << id;
  r.gw->stop();

  // Every line: one object with time, level, run and msg; one run id.
  auto lines = lines_of(r.err);
  ASSERT_GE(lines.size(), 3u);
  std::set<std::string> runs;
  int opened_lines = 0, ending_lines = 0;
  for (const auto& line : lines) {
    boost::json::object o;
    ASSERT_NO_THROW(o = boost::json::parse(line).as_object()) << line;
    for (auto key : {"time", "level", "run", "msg"}) ASSERT_TRUE(o.contains(key)) << key << " missing: " << line;
    runs.insert(std::string(o.at("run").as_string()));
    auto msg = std::string(o.at("msg").as_string());
    if (msg == opened) ++opened_lines;
    if (msg.starts_with(ended_prefix) && o.contains("outcome")) ++ending_lines;
  }
  EXPECT_EQ(runs.size(), 1u);
  EXPECT_TRUE(std::regex_match(*runs.begin(), std::regex("[0-9a-f]{12}"))) << *runs.begin();
  EXPECT_EQ(opened_lines, 1);
  EXPECT_EQ(ending_lines, 1);

  // The session's fields, as /api/v1/sessions shows them, on both lines.
  for (auto* o : {&open_line, &end_line}) {
    EXPECT_EQ(o->at("id").to_number<std::int64_t>(), std::stoll(id));
    for (auto key : {"tenant", "pool", "path", "model", "params", "client_address", "user_agent", "request_id",
                     "state", "accepted_at", "upstream_open_at", "age_seconds", "counters", "audio_seconds"})
      EXPECT_TRUE(o->contains(key)) << key;
  }
  EXPECT_EQ(open_line.at("request_id"), end_line.at("request_id"));
  EXPECT_FALSE(end_line.at("request_id").as_string().empty());
  EXPECT_EQ(end_line.at("outcome").as_string(), "completed");
  EXPECT_EQ(end_line.at("closed_by").as_string(), "upstream");
  EXPECT_EQ(end_line.at("close_code").to_number<int>(), 1000);
  EXPECT_GE(end_line.at("counters").at("audio_messages").to_number<int>(), 1);
  EXPECT_EQ(end_line.at("audio_seconds").to_number<double>(), 0.5);
  // Numbers as people write them, not 5E-1.
  bool exponent = false;
  for (const auto& line : lines) exponent |= std::regex_search(line, std::regex(R"(:-?[0-9.]+E[-+]?[0-9])"));
  EXPECT_FALSE(exponent);
  std::filesystem::remove_all(r.dir);
}

TEST(Logging, TextLinesCarryTheRunAndEachStreamOpensAndEndsAtTheDefaultLevel) {
  auto a = start("");
  auto id = stream_one(a.port);
  const std::string opened = "[S" + id + "] opened: ", ended = "[S" + id + "] closed by upstream";
  ASSERT_TRUE(eventually([&] {
    auto text = lines_of(a.err);
    return std::any_of(text.begin(), text.end(), [&](auto& l) { return l.find(ended) != std::string::npos; });
  }));
  a.gw->stop();
  std::set<std::string> runs;
  const std::regex prefix(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \w+ run=([0-9a-f]{12}) )");
  int opened_lines = 0, ending_lines = 0;
  for (const auto& line : lines_of(a.err)) {
    std::smatch m;
    ASSERT_TRUE(std::regex_search(line, m, prefix)) << line;
    runs.insert(m[1]);
    if (line.find(opened) != std::string::npos) {
      ++opened_lines;
      EXPECT_NE(line.find(" request_id="), std::string::npos) << line;
      EXPECT_NE(line.find(" params.sample_rate=16000"), std::string::npos) << line;
    }
    if (line.find(ended) != std::string::npos) {
      ++ending_lines;
      EXPECT_NE(line.find(" outcome=completed"), std::string::npos) << line;
      EXPECT_NE(line.find(" audio_seconds=0.5"), std::string::npos) << line;
      EXPECT_NE(line.find(" counters.audio_messages="), std::string::npos) << line;
    }
  }
  EXPECT_EQ(runs.size(), 1u);
  EXPECT_EQ(opened_lines, 1);
  EXPECT_EQ(ending_lines, 1);

  // Another start is another run: its stream 1 is not the first run's.
  auto b = start("");
  stream_one(b.port);
  b.gw->stop();
  std::smatch m;
  auto first = lines_of(b.err).at(0);
  ASSERT_TRUE(std::regex_search(first, m, prefix));
  EXPECT_FALSE(runs.count(m[1])) << "two starts drew the same run id";
  std::filesystem::remove_all(a.dir);
  std::filesystem::remove_all(b.dir);
}
