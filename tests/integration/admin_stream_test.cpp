// GET /api/v1/stream, the dashboard's Server-Sent Events: the token is
// required, a snapshot of pools and sessions comes about once a second,
// events come as they are recorded, the stream ends when the client goes and
// when the gateway stops (with its last chunk). With one I/O thread and two.
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "stack.hpp"

using namespace sluice;
using namespace sluice::testing;

namespace {

const std::string kListen = "/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000&channels=1";

struct Frame {
  std::string event;
  std::string id;
  std::string data;
};

// A client of the stream: reads with a deadline on each read, so a broken
// server fails the test instead of hanging it.
class StreamReader {
 public:
  explicit StreamReader(unsigned short port, const std::string& token = "admin-secret") {
    stream_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    http::request<http::empty_body> req{http::verb::get, "/api/v1/stream", 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::accept, "text/event-stream");
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    http::write(stream_, req);
    parser_.body_limit(boost::none);
    stream_.expires_after(std::chrono::seconds(10));
    http::async_read_header(stream_, buffer_, parser_, [this](beast::error_code ec, std::size_t) { error_ = ec; });
    ioc_.run();
  }

  const http::response<http::string_body>& response() const { return parser_.get(); }
  beast::error_code error() const { return error_; }
  bool done() const { return parser_.is_done(); }

  // Reads until a whole frame is there; nullopt at the end of the stream or on an error.
  std::optional<Frame> next() {
    for (;;) {
      auto& body = parser_.get().body();
      auto end = body.find("\n\n", consumed_);
      if (end != std::string::npos) {
        auto text = body.substr(consumed_, end - consumed_);
        consumed_ = end + 2;
        Frame f;
        std::size_t pos = 0;
        while (pos <= text.size()) {
          auto nl = text.find('\n', pos);
          auto line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
          if (line.starts_with("event: ")) f.event = line.substr(7);
          else if (line.starts_with("id: ")) f.id = line.substr(4);
          else if (line.starts_with("data: ")) f.data = line.substr(6);
          if (nl == std::string::npos) break;
          pos = nl + 1;
        }
        if (f.event.empty() && f.data.empty()) continue;  // "retry: ..."
        return f;
      }
      if (error_ || parser_.is_done()) return std::nullopt;
      stream_.expires_after(std::chrono::seconds(10));
      http::async_read_some(stream_, buffer_, parser_, [this](beast::error_code ec, std::size_t) { error_ = ec; });
      ioc_.restart();
      ioc_.run();
    }
  }

  // The next frame of type `event` for which `pred` holds, skipping others.
  std::optional<Frame> next_matching(const std::string& event,
                                     const std::function<bool(const boost::json::object&)>& pred = {}) {
    for (int i = 0; i < 1000; ++i) {
      auto f = next();
      if (!f) return std::nullopt;
      if (f->event != event) continue;
      if (!pred || pred(boost::json::parse(f->data).as_object())) return f;
    }
    return std::nullopt;
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

 private:
  asio::io_context ioc_;
  beast::tcp_stream stream_{ioc_};
  beast::flat_buffer buffer_;
  http::response_parser<http::string_body> parser_;
  beast::error_code error_;
  std::size_t consumed_ = 0;
};

// sluice_admin_event_streams from /metrics.
int event_streams(Stack& s) {
  auto body = admin_call(s.admin_port(), http::verb::get, "/metrics").body();
  const std::string name = "\nsluice_admin_event_streams ";
  auto pos = body.find(name);
  if (pos == std::string::npos) return -1;
  return std::stoi(body.substr(pos + name.size()));
}

class AdminStream : public ThreadedStackTest {};

TEST_P(AdminStream, RequiresTheToken) {
  auto& s = start();
  auto res = admin_call(s.admin_port(), http::verb::get, "/api/v1/stream", "");
  EXPECT_EQ(res.result_int(), 401u);
  EXPECT_EQ(res.body().find("admin-secret"), std::string::npos);
  res = admin_call(s.admin_port(), http::verb::get, "/api/v1/stream", "wrong");
  EXPECT_EQ(res.result_int(), 401u);
  res = admin_call(s.admin_port(), http::verb::post, "/api/v1/stream");
  EXPECT_EQ(res.result_int(), 405u);
  EXPECT_EQ(event_streams(s), 0);
}

TEST_P(AdminStream, TheDashboardIsServedWithoutTheTokenAndIsOnlyThePage) {
  auto& s = start();
  auto page = admin_call(s.admin_port(), http::verb::get, "/", "");
  EXPECT_EQ(page.result_int(), 200u);
  EXPECT_EQ(page[http::field::content_type], "text/html; charset=utf-8");
  EXPECT_NE(page["Content-Security-Policy"].find("default-src 'self'"), std::string::npos);
  EXPECT_NE(page.body().find("/dashboard/app.js"), std::string::npos);
  for (const std::string path : {"/dashboard/app.js", "/dashboard/uPlot.iife.min.js"}) {
    auto res = admin_call(s.admin_port(), http::verb::get, path, "");
    EXPECT_EQ(res.result_int(), 200u) << path;
    EXPECT_EQ(res[http::field::content_type], "text/javascript; charset=utf-8") << path;
    EXPECT_GT(res.body().size(), 1000u) << path;
  }
  auto css = admin_call(s.admin_port(), http::verb::get, "/dashboard/uPlot.min.css", "");
  EXPECT_EQ(css.result_int(), 200u);
  EXPECT_EQ(css[http::field::content_type], "text/css; charset=utf-8");
  // Nothing else is public, and the page holds no data and no token.
  EXPECT_EQ(admin_call(s.admin_port(), http::verb::get, "/dashboard/nothing.js", "").result_int(), 404u);
  EXPECT_EQ(admin_call(s.admin_port(), http::verb::post, "/", "").result_int(), 404u);
  EXPECT_EQ(page.body().find("admin-secret"), std::string::npos);
}

TEST_P(AdminStream, SnapshotsShowStreamsAndEventsArriveAsRecorded) {
  auto& s = start();
  StreamReader r(s.admin_port());
  ASSERT_FALSE(r.error()) << r.error().message();
  EXPECT_EQ(r.response().result_int(), 200u);
  EXPECT_EQ(r.response()[http::field::content_type], "text/event-stream");
  EXPECT_TRUE(r.response().chunked());
  EXPECT_EQ(r.response()[http::field::cache_control], "no-store");

  // The first frame is a snapshot of the pools, the sessions and readiness.
  auto first = r.next();
  ASSERT_TRUE(first) << r.error().message();
  EXPECT_EQ(first->event, "snapshot");
  auto snap = boost::json::parse(first->data).as_object();
  EXPECT_TRUE(snap.at("pools").is_array());
  EXPECT_TRUE(snap.at("sessions").as_array().empty());
  EXPECT_TRUE(snap.at("ready").as_bool());
  EXPECT_TRUE(snap.at("time").is_string());
  EXPECT_TRUE(eventually([&] { return event_streams(s) == 1; }));

  // A stream opened through the gateway is in a later snapshot, with its pool's count.
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k"));
  c.send_binary(linear16_silence(0.1));
  auto with = r.next_matching("snapshot", [](const boost::json::object& o) {
    return o.at("sessions").as_array().size() == 1 &&
           o.at("sessions").as_array()[0].as_object().at("state").as_string() != "connecting";
  });
  ASSERT_TRUE(with) << r.error().message();
  auto o = boost::json::parse(with->data).as_object();
  auto& sess = o.at("sessions").as_array()[0].as_object();
  EXPECT_EQ(sess.at("request_id").as_string(), c.response["dg-request-id"]);
  EXPECT_TRUE(sess.contains("keep_alive_only"));
  int in_use = 0;
  for (auto& p : o.at("pools").as_array()) in_use += p.as_object().at("in_use").to_number<int>();
  EXPECT_EQ(in_use, 1);

  // An event arrives as it is recorded, with its id.
  boost::json::object fields;
  fields["note"] = "from the test";
  auto recorded = s.gateway().events().record("config_reload", std::move(fields));
  auto ev = r.next_matching("event", [](const boost::json::object& e) {
    return e.at("type").as_string() == "config_reload" && e.contains("note");
  });
  ASSERT_TRUE(ev) << r.error().message();
  EXPECT_EQ(ev->id, std::to_string(recorded.id));
  EXPECT_EQ(boost::json::parse(ev->data).as_object().at("id").to_number<std::uint64_t>(), recorded.id);

  // Ending the stream through the API is seen in the snapshots too.
  auto del = admin_call(s.admin_port(), http::verb::delete_, "/api/v1/sessions/" + std::to_string(sess.at("id").to_number<std::uint64_t>()));
  EXPECT_EQ(del.result_int(), 202u);
  EXPECT_EQ(c.read_until_close(), 1000);
  ASSERT_TRUE(r.next_matching("snapshot", [](const boost::json::object& o) { return o.at("sessions").as_array().empty(); }));

  // The client goes: the server notices at its next write and lets the stream go.
  r.close();
  EXPECT_TRUE(eventually([&] { return event_streams(s) == 0; }));
  // The admin server still answers.
  EXPECT_EQ(admin_call(s.admin_port(), http::verb::get, "/api/v1/pools").result_int(), 200u);
}

TEST_P(AdminStream, EndsWithItsLastChunkWhenTheGatewayStops) {
  auto& s = start();
  StreamReader a(s.admin_port());
  StreamReader b(s.admin_port());
  ASSERT_TRUE(a.next());
  ASSERT_TRUE(b.next());
  EXPECT_TRUE(eventually([&] { return event_streams(s) == 2; }));
  s.on_io([&] { s.gateway().stop(); });
  for (auto* r : {&a, &b}) {
    ASSERT_TRUE(r->next_matching("end")) << r->error().message();
    EXPECT_FALSE(r->next());
    EXPECT_TRUE(r->done()) << "no last chunk: " << r->error().message();
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, AdminStream, kIoThreads, io_threads_name);

}  // namespace
