// The admin API read and used while streams open, queue, stream and end on
// other threads: the registry's table and entries, admission's pools and
// queue, the event log and the history are read by the admin server while
// the sessions change them. Run with one I/O thread and with two (and with
// two under ThreadSanitizer: scripts/sanitize.sh).
#include <atomic>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "stack.hpp"

using namespace sluice;
using namespace sluice::testing;

namespace {

const std::string kListen = "/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000&channels=1";

class AdminWhileStreaming : public ThreadedStackTest {};

int sim_open(Stack& s) {
  int n = 0;
  for (auto& [project, families] : s.sim().stats().projects)
    for (auto& [family, counts] : families) n += counts.open;
  return n;
}

// What went wrong on a worker thread, reported by the test's thread (an
// assertion on another thread cannot end the test).
struct Failures {
  std::mutex m;
  std::vector<std::string> list;
  void add(std::string what) {
    std::lock_guard l(m);
    if (list.size() < 20) list.push_back(std::move(what));
  }
};

bool is_json_object(const std::string& body) {
  boost::system::error_code ec;
  auto v = boost::json::parse(body, ec);
  return !ec && v.is_object();
}

}  // namespace

TEST_P(AdminWhileStreaming, EveryAnswerIsWholeAndNothingIsLeftWhenTheStreamsEnd) {
  constexpr int kWorkers = 4;
  constexpr int kStreamsEach = 8;
  auto& s = start({}, [](config::Config& c, Stack&) {
    c.pools = config::default_pools();
    for (auto& p : c.pools)
      if (p.name == "streaming") {
        p.limit = 3;  // fewer than the workers: some streams wait in the queue
        p.queue_timeout = config::Seconds(10);
      }
  });
  Failures failures;
  std::atomic<int> streams_done{0}, streams_opened{0};

  // Streams: open, send a little audio, end in one of four ways.
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      std::mt19937 rng(static_cast<unsigned>(100 + w));
      for (int i = 0; i < kStreamsEach; ++i) {
        Client c;
        if (!c.open(s.port(), kListen, "Token k")) {
          failures.add("stream refused: " + std::to_string(c.response.result_int()) + " " + c.error.message());
          ++streams_done;
          continue;
        }
        ++streams_opened;
        beast::error_code ec;
        for (int f = 0; f < 3 && !ec; ++f) {
          c.ws.binary(true);
          c.ws.write(asio::buffer(linear16_silence(0.02)), ec);
        }
        switch (rng() % 4) {
          case 0:  // CloseStream: the vendor's finals, then its close
            c.ws.text(true);
            c.ws.write(asio::buffer(std::string(R"({"type":"CloseStream"})")), ec);
            c.read_until_close();
            break;
          case 1:
            c.ws.close(websocket::close_code::normal, ec);
            break;
          case 2:  // the client vanishes
            beast::get_lowest_layer(c.ws).socket().set_option(asio::socket_base::linger(true, 0), ec);
            beast::get_lowest_layer(c.ws).socket().close(ec);
            break;
          default:  // held open a moment (an operator may DELETE it), then CloseStream
            std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 200));
            c.ws.text(true);
            c.ws.write(asio::buffer(std::string(R"({"type":"CloseStream"})")), ec);
            if (!ec) c.read_until_close();
            break;
        }
        ++streams_done;
      }
    });
  }

  // Operators: read everything the API shows, end streams, change a limit,
  // while the streams above change it all. Bounded by the streams' end (and
  // a number of rounds).
  std::atomic<int> answers{0}, deletes{0};
  auto operator_loop = [&](int seed) {
    std::mt19937 rng(static_cast<unsigned>(seed));
    for (int round = 0; round < 400 && streams_done.load() < kWorkers * kStreamsEach; ++round) {
      auto list = admin_call(s.admin_port(), http::verb::get, "/api/v1/sessions");
      if (list.result_int() != 200 || !is_json_object(list.body())) {
        failures.add("sessions: " + std::to_string(list.result_int()) + " " + list.body());
        continue;
      }
      ++answers;
      auto sessions = boost::json::parse(list.body()).as_object().at("sessions").as_array();
      for (auto& sess : sessions) {
        auto id = std::to_string(sess.as_object().at("id").to_number<std::uint64_t>());
        auto one = admin_call(s.admin_port(), http::verb::get, "/api/v1/sessions/" + id);
        // The stream may have ended since the list.
        if (one.result_int() == 200 ? !is_json_object(one.body()) : one.result_int() != 404)
          failures.add("session " + id + ": " + std::to_string(one.result_int()) + " " + one.body());
        if (rng() % 4 == 0) {
          auto del = admin_call(s.admin_port(), http::verb::delete_, "/api/v1/sessions/" + id);
          if (del.result_int() == 202) ++deletes;
          else if (del.result_int() != 404)
            failures.add("DELETE " + id + ": " + std::to_string(del.result_int()) + " " + del.body());
        }
      }
      for (const char* path : {"/api/v1/pools", "/api/v1/pools/streaming", "/api/v1/events?limit=20",
                               "/api/v1/history/sessions?from=-1h&all=true"}) {
        auto res = admin_call(s.admin_port(), http::verb::get, path);
        if (res.result_int() != 200 || !is_json_object(res.body()))
          failures.add(std::string(path) + ": " + std::to_string(res.result_int()) + " " + res.body());
        else ++answers;
      }
      auto metrics = admin_call(s.admin_port(), http::verb::get, "/metrics", "");
      if (metrics.result_int() != 200 || metrics.body().find("sluice_") == std::string::npos)
        failures.add("metrics: " + std::to_string(metrics.result_int()));
      if (round % 5 == 0) {
        http::request<http::string_body> put{http::verb::put, "/api/v1/pools/streaming", 11};
        asio::io_context ioc;
        beast::tcp_stream st(ioc);
        st.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), s.admin_port()));
        put.set(http::field::host, "127.0.0.1");
        put.set(http::field::authorization, "Bearer admin-secret");
        put.body() = "{\"limit\": " + std::to_string(2 + rng() % 3) + "}";
        put.prepare_payload();
        http::write(st, put);
        beast::flat_buffer buf;
        http::response<http::string_body> res;
        http::read(st, buf, res);
        if (res.result_int() != 200) failures.add("PUT limit: " + std::to_string(res.result_int()) + " " + res.body());
      }
    }
  };
  std::thread op1(operator_loop, 1), op2(operator_loop, 2);
  for (auto& t : workers) t.join();
  op1.join();
  op2.join();

  for (auto& f : failures.list) ADD_FAILURE() << f;
  EXPECT_EQ(streams_done.load(), kWorkers * kStreamsEach);
  EXPECT_GT(streams_opened.load(), 0);
  EXPECT_GT(answers.load(), 0) << "the admin API answered nothing while the streams ran";
  // Everything the streams held is given back.
  EXPECT_TRUE(eventually([&] {
    return s.registry().size() == 0 && s.gateway().admission().leases_in_use() == 0 && sim_open(s) == 0;
  })) << s.registry().size() << " session(s), " << s.gateway().admission().leases_in_use() << " lease(s), "
      << sim_open(s) << " vendor stream(s) left";
  auto pools = admin_call(s.admin_port(), http::verb::get, "/api/v1/pools");
  ASSERT_EQ(pools.result_int(), 200u);
  EXPECT_EQ(boost::json::parse(pools.body()).as_object().at("leases").to_number<int>(), 0);
  std::printf("admin while streaming (%d thread(s)): %d streams, %d admin answers, %d DELETEs\n", GetParam(),
              streams_opened.load(), answers.load(), deletes.load());
}

INSTANTIATE_TEST_SUITE_P(Threads, AdminWhileStreaming, kIoThreads, io_threads_name);
