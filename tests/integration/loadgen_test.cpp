// The load generator against the simulator's bench mode, in this process:
// every frame is answered, in order. Tiny and untimed: it checks counts only.
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "loadgen/latency_histogram.hpp"
#include "loadgen/load_generator.hpp"
#include "sim/simulator.hpp"

namespace {

using namespace std::chrono_literals;
using sluice::loadgen::LoadConfig;

// A bench-mode simulator on 127.0.0.1, port 0, on its own thread.
class BenchSim {
 public:
  BenchSim() : sim_(ioc_, config()) {
    sim_.start();
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~BenchSim() {
    sim_.stop();
    thread_.join();
  }
  std::string url() const {
    return "ws://127.0.0.1:" + std::to_string(sim_.endpoint().port()) +
           "/v1/listen?encoding=linear16&sample_rate=16000";
  }

 private:
  static sluice::sim::SimConfig config() {
    sluice::sim::SimConfig c;
    c.bench = true;
    return c;
  }
  boost::asio::io_context ioc_;
  sluice::sim::Simulator sim_;
  std::thread thread_;
};

LoadConfig tiny_load(const BenchSim& sim) {
  LoadConfig c;
  c.url = sim.url();
  c.key = "bench-key";
  c.streams = 5;
  c.frame_bytes = 640;
  c.interval = 100ms;
  c.duration = 1000ms;  // 10 frames per stream
  c.ramp = 0;
  c.seed = 1;
  return c;
}

TEST(Loadgen, EveryFrameIsAnsweredInOrder) {
  BenchSim sim;
  auto c = tiny_load(sim);
  c.watch_pids = {static_cast<int>(getpid())};  // this process runs the simulator
  auto r = sluice::loadgen::run_load(c);
  EXPECT_EQ(r.connects_ok, 5);
  EXPECT_EQ(r.connects_failed, 0);
  EXPECT_EQ(r.frames_sent, 50u);
  EXPECT_EQ(r.frames_answered, 50u);
  EXPECT_EQ(r.frames_lost, 0u);
  EXPECT_EQ(r.echoes_reordered, 0u);
  EXPECT_EQ(r.echoes_unknown, 0u);
  EXPECT_EQ(r.rtt.count, 50u);
  EXPECT_EQ(r.streams_closed, 5);
  EXPECT_EQ(r.streams_ended_early, 0);
  EXPECT_TRUE(r.errors.empty()) << r.errors.front().first;
  ASSERT_EQ(r.watched.size(), 1u);
  EXPECT_GT(r.watched[0].rss_before_kib, 0);
}

TEST(Loadgen, TwoThreadsAndIdleStreams) {
  BenchSim sim;
  auto c = tiny_load(sim);
  c.threads = 2;
  c.idle = true;
  c.duration = 300ms;
  auto r = sluice::loadgen::run_load(c);
  EXPECT_EQ(r.connects_ok, 5);
  EXPECT_EQ(r.frames_sent, 0u);
  EXPECT_EQ(r.streams_closed, 5);
  EXPECT_EQ(r.streams_ended_early, 0);
}

TEST(Loadgen, HistogramQuantilesAreWithinOnePercent) {
  sluice::loadgen::LatencyHistogram h;
  EXPECT_EQ(h.quantile(0.5), 0u);
  for (std::uint64_t v = 1; v <= 100000; ++v) h.record(v * 1000);  // 1 us .. 100 ms
  EXPECT_EQ(h.count(), 100000u);
  EXPECT_EQ(h.max(), 100000000u);
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    double expected = q * 100000 * 1000;
    EXPECT_NEAR(static_cast<double>(h.quantile(q)), expected, expected * 0.01) << q;
  }
  EXPECT_EQ(h.quantile(1.0), h.max());
  sluice::loadgen::LatencyHistogram small;
  for (std::uint64_t v : {3, 7, 200}) small.record(v);  // exact below 256 ns
  EXPECT_EQ(small.quantile(0.0), 3u);
  EXPECT_EQ(small.quantile(0.5), 7u);
  h.merge(small);
  EXPECT_EQ(h.count(), 100003u);
}

TEST(Loadgen, RefusesWhatIsOutOfBounds) {
  LoadConfig c;
  c.url = "ws://127.0.0.1:1/v1/listen";
  EXPECT_FALSE(sluice::loadgen::validate(c));
  c.streams = 20001;
  EXPECT_TRUE(sluice::loadgen::validate(c));
  c.streams = 10;
  c.duration = 601s;
  EXPECT_TRUE(sluice::loadgen::validate(c));
  c.duration = 1s;
  for (const char* url : {"ws://10.0.0.1:80/", "ws://192.168.1.1/", "ws://example.com/", "wss://127.0.0.1/",
                          "ws://[::2]:80/", "http://127.0.0.1/"}) {
    c.url = url;
    EXPECT_TRUE(sluice::loadgen::validate(c)) << url;
  }
  for (const char* url : {"ws://127.0.0.1:8080/v1/listen", "ws://127.1.2.3:80/", "ws://[::1]:8080/x?y=1",
                          "ws://localhost:9/"}) {
    c.url = url;
    EXPECT_FALSE(sluice::loadgen::validate(c)) << url;
  }
  c.url = "ws://127.0.0.1:8080/";
  c.frame_bytes = 4;
  EXPECT_TRUE(sluice::loadgen::validate(c));
}

}  // namespace
