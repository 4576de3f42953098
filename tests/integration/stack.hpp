#pragma once
// Runs a gateway, the simulator and a programmable test upstream in this
// process on 127.0.0.1 (port 0), with blocking WebSocket clients for tests.
// The three share one io_context, run by as many threads as the gateway's
// configuration says (`threads`, 1 unless a tweak sets it): with 2, every
// connection runs on a strand of its own, as in `sluice serve --threads 2`.
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "net/listener.hpp"
#include "protocol/credential.hpp"
#include "admission/controller.hpp"
#include "events/event_log.hpp"
#include "history/recorder.hpp"
#include "registry/registry.hpp"
#include "server/gateway.hpp"
#include "sim/simulator.hpp"
#include "test_upstream.hpp"

namespace sluice::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

// Polls `cond` until it holds or a generous deadline passes.
inline bool eventually(const std::function<bool()>& cond, std::chrono::seconds limit = std::chrono::seconds(20)) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

class Stack {
 public:
  // `sim_config` configures the simulator; `tweak` adjusts the gateway config
  // (whose upstream is the simulator unless tweak points it elsewhere).
  using Tweak = std::function<void(config::Config&, Stack&)>;
  explicit Stack(sim::SimConfig sim_config = {}, const Tweak& tweak = {}) {
    sim_ = std::make_unique<sim::Simulator>(ioc_, std::move(sim_config));
    sim_->start();
    upstream_ = std::make_unique<TestUpstream>(ioc_);
    config::Config c;
    c.listen = "127.0.0.1:0";
    c.admin.listen = "127.0.0.1:0";
    c.admin.token = "admin-secret";
    c.upstream.url = "ws://" + net::to_string(sim_->endpoint());
    c.upstream.api_key = "sim-key";
    c.client.handshake_timeout = std::chrono::seconds(5);
    // Each stack records its history in a directory of its own.
    char dir[] = "/tmp/sluice-test-XXXXXX";
    if (!::mkdtemp(dir)) throw std::runtime_error("mkdtemp failed");
    data_dir_ = dir;
    c.store.data_dir = data_dir_;
    c.store.flush_interval = std::chrono::milliseconds(50);
    if (tweak) tweak(c, *this);
    history_url_ = c.store.effective_url();
    const int threads = std::max(1, c.threads);
    gateway_ = std::make_unique<server::Gateway>(ioc_, std::move(c));
    gateway_->start();
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { ioc_.run(); });
  }

  ~Stack() {
    on_io([this] {
      gateway_->stop();
      sim_->stop();
      upstream_->stop();
    });
    work_.reset();
    ioc_.stop();
    for (auto& t : threads_) t.join();
    gateway_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(data_dir_, ignored);
  }

  // Runs fn on an I/O thread and waits for it.
  void on_io(std::function<void()> fn) {
    std::promise<void> done;
    asio::post(ioc_, [&] {
      fn();
      done.set_value();
    });
    done.get_future().wait();
  }

  unsigned short port() const { return gateway_->endpoint().port(); }
  unsigned short admin_port() const { return gateway_->admin_endpoint().port(); }
  sim::Simulator& sim() { return *sim_; }
  TestUpstream& test_upstream() { return *upstream_; }
  std::string test_upstream_url() const { return "ws://127.0.0.1:" + std::to_string(upstream_->port()); }
  registry::Registry& registry() { return gateway_->registry(); }
  server::Gateway& gateway() { return *gateway_; }
  history::Recorder& recorder() { return *gateway_->recorder(); }
  // The history database this stack records to (removed with the stack).
  const std::string& history_url() const { return history_url_; }
  const std::string& data_dir() const { return data_dir_; }

 private:
  asio::io_context ioc_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{asio::make_work_guard(ioc_)};
  std::unique_ptr<sim::Simulator> sim_;
  std::unique_ptr<TestUpstream> upstream_;
  std::unique_ptr<server::Gateway> gateway_;
  std::vector<std::thread> threads_;
  std::string data_dir_, history_url_;
};

// A fixture for tests that run one Stack: start() builds it, and every test
// ends with nothing left in the live registry.
class StackTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (stack_) {
      EXPECT_TRUE(eventually([&] { return stack_->registry().size() == 0; }))
          << stack_->registry().size() << " session(s) still registered";
    }
    stack_.reset();
  }
  Stack& start(sim::SimConfig sc = {}, const Stack::Tweak& tweak = {}) {
    stack_ = std::make_unique<Stack>(std::move(sc), tweak);
    return *stack_;
  }
  std::unique_ptr<Stack> stack_;
};

// StackTest run once per I/O thread count (the parameter): one thread, where
// connections use the io_context's executor, and two, where each connection
// has a strand and the registry, admission and the admin API are reached from
// both threads. Instantiate with
//   INSTANTIATE_TEST_SUITE_P(Threads, Suite, kIoThreads, io_threads_name);
class ThreadedStackTest : public StackTest, public ::testing::WithParamInterface<int> {
 protected:
  Stack& start(sim::SimConfig sc = {}, const Stack::Tweak& tweak = {}) {
    const int threads = GetParam();
    return StackTest::start(std::move(sc), [=](config::Config& c, Stack& s) {
      c.threads = threads;
      if (tweak) tweak(c, s);
    });
  }
};
inline const auto kIoThreads = ::testing::Values(1, 2);
inline std::string io_threads_name(const ::testing::TestParamInfo<int>& info) {
  return "Threads" + std::to_string(info.param);
}

// Tweaks for Stack: the programmable echo upstream instead of the simulator;
// the number of I/O threads; a tenant with a key (virtual-key mode).
inline Stack::Tweak via_test_upstream(Stack::Tweak more = {}) {
  return [more](config::Config& c, Stack& s) {
    c.upstream.url = s.test_upstream_url();
    if (more) more(c, s);
  };
}
// The gateway's I/O threads (config `threads`).
inline Stack::Tweak with_threads(int threads, Stack::Tweak more = {}) {
  return [=](config::Config& c, Stack& s) {
    c.threads = threads;
    if (more) more(c, s);
  };
}
inline Stack::Tweak with_tenant(const std::string& name, const std::string& key, Stack::Tweak more = {}) {
  return [=](config::Config& c, Stack& s) {
    c.tenants.push_back({name, {protocol::key_hash(key)}});
    if (more) more(c, s);
  };
}

// A blocking client connection through the gateway.
struct Client {
  asio::io_context ioc;
  websocket::stream<beast::tcp_stream> ws{ioc};
  websocket::response_type response;
  beast::error_code error;

  // Opens `target` on 127.0.0.1:port; returns false (response/error set) if
  // the upgrade was refused.
  bool open(unsigned short port, const std::string& target, const std::string& authorization,
            const std::string& subprotocol = "") {
    beast::get_lowest_layer(ws).connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    ws.set_option(websocket::stream_base::decorator([=](websocket::request_type& req) {
      if (!authorization.empty()) req.set(http::field::authorization, authorization);
      if (!subprotocol.empty()) req.set(http::field::sec_websocket_protocol, subprotocol);
      req.set(http::field::user_agent, "sluice-test/1");
    }));
    ws.handshake(response, "127.0.0.1:" + std::to_string(port), target, error);
    if (!error) beast::get_lowest_layer(ws).expires_never();
    return !error;
  }

  void send_text(const std::string& s) {
    ws.text(true);
    ws.write(asio::buffer(s));
  }
  void send_binary(const std::string& s) {
    ws.binary(true);
    ws.write(asio::buffer(s));
  }
  // Reads one message; nullopt when the connection closed (then ws.reason()).
  std::optional<Received> read() {
    beast::flat_buffer b;
    ws.read(b, error);
    if (error) return std::nullopt;
    return Received{ws.got_text(), beast::buffers_to_string(b.data())};
  }
  // Reads until a text message of the given type arrives; nullopt if closed first.
  std::optional<boost::json::object> read_until_type(const std::string& type) {
    for (;;) {
      auto m = read();
      if (!m) return std::nullopt;
      if (!m->text) continue;
      auto v = boost::json::parse(m->data);
      if (v.is_object() && v.as_object().contains("type") && v.as_object().at("type").as_string() == type)
        return v.as_object();
    }
  }
  // Reads and discards until the close; returns the close code received.
  int read_until_close() {
    while (read()) {
    }
    return error == websocket::error::closed ? static_cast<int>(ws.reason().code) : -1;
  }
};

// A blocking HTTP call to the admin API.
inline http::response<http::string_body> admin_call(unsigned short port, http::verb verb, const std::string& target,
                                                    const std::string& token = "admin-secret") {
  asio::io_context ioc;
  beast::tcp_stream s(ioc);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, "127.0.0.1");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  req.keep_alive(false);
  http::write(s, req);
  beast::flat_buffer b;
  http::response<http::string_body> res;
  http::read(s, b, res);
  return res;
}

inline std::string linear16_silence(double seconds, int rate = 16000) {
  return std::string(static_cast<std::size_t>(seconds * rate) * 2, '\0');
}

}  // namespace sluice::testing
