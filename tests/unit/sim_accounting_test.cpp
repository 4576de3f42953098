// The simulator's books and its JSON writer.
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "sim/accounting.hpp"
#include "sim/admin.hpp"
#include "sim/json_text.hpp"

namespace {

using sluice::protocol::Family;
using sluice::sim::Accounting;
using sluice::sim::SimConfig;

TEST(sim_accounting, LimitsArePerProjectAndFamily) {
  boost::asio::io_context ioc;
  SimConfig config;
  config.projects.push_back({"a", {"ka"}, {{Family::streaming, 1}}});
  config.projects.push_back({"b", {"kb"}, {}});
  auto books = std::make_shared<Accounting>(ioc, config);
  EXPECT_EQ(books->project_for("ka"), "a");
  EXPECT_EQ(books->project_for("kb"), "b");
  EXPECT_FALSE(books->project_for("nope"));
  {
    auto first = books->try_acquire("a", Family::streaming);
    ASSERT_TRUE(first);
    EXPECT_FALSE(books->try_acquire("a", Family::streaming));
    auto flux = books->try_acquire("a", Family::flux);  // another pool
    EXPECT_TRUE(flux);
    auto other = books->try_acquire("b", Family::streaming);  // another project
    EXPECT_TRUE(other);
    auto s = books->snapshot();
    EXPECT_EQ(s.projects.at("a").at(Family::streaming).open, 1);
    EXPECT_EQ(s.projects.at("a").at(Family::streaming).refused_429, 1);
  }
  auto s = books->snapshot();
  EXPECT_EQ(s.projects.at("a").at(Family::streaming).open, 0);
  EXPECT_EQ(s.projects.at("a").at(Family::streaming).max_open, 1);
  books->reset_max();
  EXPECT_EQ(books->snapshot().projects.at("a").at(Family::streaming).max_open, 0);
}

TEST(sim_accounting, AnyKeyWithoutProjects) {
  boost::asio::io_context ioc;
  SimConfig config;
  config.default_limits[Family::tts] = 0;
  auto books = std::make_shared<Accounting>(ioc, config);
  EXPECT_EQ(books->project_for("anything"), "default");
  EXPECT_FALSE(books->try_acquire("default", Family::tts));
  EXPECT_TRUE(books->try_acquire("default", Family::agent));
}

TEST(sim_accounting, StaleAccountingReleasesLater) {
  boost::asio::io_context ioc;
  SimConfig config;
  config.faults.stale_accounting = std::chrono::milliseconds(20);
  auto books = std::make_shared<Accounting>(ioc, config);
  { auto lease = books->try_acquire("default", Family::streaming); }
  EXPECT_EQ(books->snapshot().projects.at("default").at(Family::streaming).open, 1);
  ioc.run();  // the stale timer
  EXPECT_EQ(books->snapshot().projects.at("default").at(Family::streaming).open, 0);
}

TEST(sim_accounting, StateJson) {
  sluice::sim::SimStats stats;
  stats.projects["p"][Family::flux] = {1, 2, 3, 4};
  stats.handshakes = 5;
  auto v = boost::json::parse(sluice::sim::stats_to_json(stats));
  EXPECT_EQ(v.at("projects").at("p").at("flux").at("max_open"), 2);
  EXPECT_EQ(v.at("projects").at("p").at("flux").at("refused_429"), 4);
  EXPECT_EQ(v.at("handshakes"), 5);
}

TEST(sim_json, NumbersArePlainDecimals) {
  boost::json::object o;
  o["a"] = 3.0;
  o["b"] = 12.08;
  o["c"] = 44.259937;
  o["d"] = 7;
  o["e"] = "x\"y";
  EXPECT_EQ(sluice::sim::to_json_text(o), R"({"a":3.0,"b":12.08,"c":44.259937,"d":7,"e":"x\"y"})");
  EXPECT_EQ(boost::json::parse(sluice::sim::to_json_text(boost::json::value(1e-7))).as_double(), 1e-7);
}

}  // namespace
