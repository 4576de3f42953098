// The live command line against a running gateway: `sluice ls`, `pools`,
// `end` and `top`, with the admin token from the environment, and their
// answers to a gateway that refuses or cannot be reached.
#include <boost/json/parse.hpp>

#include "run_sluice.hpp"
#include "stack.hpp"

using namespace sluice;
using namespace sluice::testing;

namespace {

constexpr const char* kListen = "/v1/listen?encoding=linear16&sample_rate=16000";

Result cli(Stack& s, std::vector<std::string> args, const std::string& token = "admin-secret") {
  args.push_back("--admin");
  args.push_back("127.0.0.1:" + std::to_string(s.admin_port()));
  args.push_back("--token-file");
  args.push_back("/nonexistent/sluice-admin.token");
  return run_sluice(args, {"SLUICE_ADMIN_TOKEN=" + token});
}

}  // namespace

TEST(AdminCli, ListsShowsPoolsAndEndsAStreamGracefully) {
  Stack s;
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k"));
  c.send_binary(linear16_silence(1.0));
  ASSERT_TRUE(eventually([&] { return s.registry().size() == 1; }));
  auto id = std::to_string(s.registry().list()[0]->info().id);

  auto ls = cli(s, {"ls"});
  EXPECT_EQ(ls.status, 0) << ls.err;
  EXPECT_NE(ls.out.find("REQUEST ID"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find(" " + id + " "), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("streaming"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("/v1/listen"), std::string::npos) << ls.out;

  auto json = cli(s, {"ls", "--json", "--pool", "streaming"});
  ASSERT_EQ(json.status, 0) << json.err;
  auto sessions = boost::json::parse(json.out).at("sessions").as_array();
  ASSERT_EQ(sessions.size(), 1u);
  EXPECT_EQ(std::to_string(sessions[0].at("id").to_number<std::int64_t>()), id);
  auto none = cli(s, {"ls", "--json", "--pool", "agent"});
  ASSERT_EQ(none.status, 0) << none.err;
  EXPECT_TRUE(boost::json::parse(none.out).at("sessions").as_array().empty()) << none.out;

  auto pools = cli(s, {"pools"});
  EXPECT_EQ(pools.status, 0) << pools.err;
  EXPECT_NE(pools.out.find("EFFECTIVE"), std::string::npos) << pools.out;
  EXPECT_NE(pools.out.find("streaming"), std::string::npos) << pools.out;

  auto top = cli(s, {"top", "--count", "2", "--interval", "0.1"});
  EXPECT_EQ(top.status, 0) << top.err;
  auto first = top.out.find("sluice top: 1 stream(s)");
  ASSERT_NE(first, std::string::npos) << top.out;
  EXPECT_NE(top.out.find("sluice top: 1 stream(s)", first + 1), std::string::npos) << "one refresh only: " << top.out;

  auto end = cli(s, {"end", id});
  EXPECT_EQ(end.status, 0) << end.err;
  EXPECT_NE(end.out.find("closing"), std::string::npos) << end.out;
  auto meta = c.read_until_type("Metadata");
  ASSERT_TRUE(meta) << "no Metadata before close: " << c.error.message();
  EXPECT_EQ(c.read_until_close(), 1000);
  EXPECT_TRUE(eventually([&] { return s.registry().size() == 0; }));
}

TEST(AdminCli, SaysWhyWhenTheGatewayRefusesOrCannotBeReached) {
  Stack s;
  auto missing = cli(s, {"end", "987654"});
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.err.find("404"), std::string::npos) << missing.err;
  EXPECT_NE(missing.err.find("987654"), std::string::npos) << missing.err;

  auto wrong = cli(s, {"ls"}, "not-the-token");
  EXPECT_EQ(wrong.status, 2);
  EXPECT_NE(wrong.err.find("401"), std::string::npos) << wrong.err;
  EXPECT_EQ(wrong.err.find("not-the-token"), std::string::npos) << "the token was printed: " << wrong.err;

  auto notoken = run_sluice({"ls", "--admin", "127.0.0.1:" + std::to_string(s.admin_port()), "--token-file",
                             "/nonexistent/sluice-admin.token"},
                            {"SLUICE_ADMIN_TOKEN="});
  EXPECT_EQ(notoken.status, 2);
  EXPECT_NE(notoken.err.find("no admin token"), std::string::npos) << notoken.err;

  auto bad = cli(s, {"end", "seven"});
  EXPECT_NE(bad.status, 0);

  // A port nothing listens on: the listener of a stack that is gone.
  unsigned short gone_port;
  {
    Stack gone;
    gone_port = gone.admin_port();
  }
  auto unreachable = run_sluice({"pools", "--admin", "127.0.0.1:" + std::to_string(gone_port), "--timeout", "2"},
                                {"SLUICE_ADMIN_TOKEN=x"});
  EXPECT_EQ(unreachable.status, 3);
  EXPECT_NE(unreachable.err.find("cannot reach the admin API"), std::string::npos) << unreachable.err;
}
