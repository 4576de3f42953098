// The Deepgram simulator as a client sees it: real sockets on 127.0.0.1,
// port 0, a Beast client. Waits are for conditions with long deadlines;
// nothing asserts that something happens within a short time.
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "sim/simulator.hpp"
#include "sluice_binary.hpp"

extern char** environ;

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using sluice::protocol::Family;
using sluice::sim::SimConfig;
using sluice::sim::Simulator;
using sluice::sim::DropCue;
using sluice::sim::parse_drop_cue;

constexpr auto kIoTimeout = std::chrono::seconds(10);
constexpr std::string_view kNet0001 =
    "Deepgram did not receive audio data or a text message within the timeout window. See "
    "https://dpgr.am/net0001";

// A simulator running on its own io_context thread.
class RunningSim {
 public:
  explicit RunningSim(SimConfig config) : sim_(ioc_, std::move(config)) {
    sim_.start();
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~RunningSim() { stop(); }
  void stop() {
    sim_.stop();
    if (thread_.joinable()) thread_.join();
  }
  Simulator& sim() { return sim_; }
  tcp::endpoint endpoint() const { return sim_.endpoint(); }

 private:
  asio::io_context ioc_;
  Simulator sim_;
  std::thread thread_;
};

// Polls `condition` until it holds or a generous deadline passes.
bool eventually(const std::function<bool()>& condition, std::chrono::seconds deadline = 10s) {
  auto until = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < until) {
    if (condition()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return condition();
}

using Headers = std::vector<std::pair<std::string, std::string>>;

// A raw HTTP exchange, for refusals: the response with its body.
http::response<http::string_body> request(const tcp::endpoint& ep, http::verb verb,
                                          const std::string& target, const Headers& headers,
                                          bool upgrade = true) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  http::response<http::string_body> res;
  boost::system::error_code result;
  stream.expires_after(kIoTimeout);
  stream.async_connect(ep, [&](boost::system::error_code ec) { result = ec; });
  ioc.run();
  if (result) throw boost::system::system_error(result);
  http::request<http::empty_body> req{verb, target, 11};
  req.set(http::field::host, "127.0.0.1");
  if (upgrade) {
    req.set(http::field::connection, "Upgrade");
    req.set(http::field::upgrade, "websocket");
    req.set(http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
    req.set(http::field::sec_websocket_version, "13");
  }
  for (const auto& [k, v] : headers) req.set(k, v);
  beast::flat_buffer buffer;
  stream.expires_after(kIoTimeout);
  http::async_write(stream, req, [&](boost::system::error_code ec, std::size_t) {
    if (ec) {
      result = ec;
      return;
    }
    http::async_read(stream, buffer, res, [&](boost::system::error_code ec2, std::size_t) { result = ec2; });
  });
  ioc.restart();
  ioc.run();
  if (result) throw boost::system::system_error(result);
  return res;
}

json::object parse_object(std::string_view text) {
  auto v = json::parse(text);
  return v.as_object();
}

std::string str(const json::value& v) { return std::string(v.as_string()); }

// A WebSocket client; every operation has a deadline.
class Client {
 public:
  struct Message {
    boost::system::error_code ec;
    bool text = false;
    std::string data;
    json::object object() const { return parse_object(data); }
    std::string type() const { return text ? str(object().at("type")) : std::string("<binary>"); }
  };

  // Connects; returns the handshake's error (websocket::error::upgrade_declined for a refusal).
  boost::system::error_code connect(const tcp::endpoint& ep, const std::string& target,
                                    const Headers& headers) {
    boost::system::error_code result;
    auto& layer = beast::get_lowest_layer(ws_);
    layer.expires_after(kIoTimeout);
    layer.async_connect(ep, [&](boost::system::error_code ec) { result = ec; });
    run();
    if (result) return result;
    ws_.set_option(websocket::stream_base::decorator([headers](websocket::request_type& req) {
      for (const auto& [k, v] : headers) req.set(k, v);
    }));
    layer.expires_after(kIoTimeout);
    ws_.async_handshake(response_, "127.0.0.1", target, [&](boost::system::error_code ec) { result = ec; });
    run();
    return result;
  }

  const websocket::response_type& response() const { return response_; }

  Message read(std::chrono::seconds timeout = kIoTimeout) {
    Message m;
    beast::get_lowest_layer(ws_).expires_after(timeout);
    ws_.async_read(buffer_, [&](boost::system::error_code ec, std::size_t) { m.ec = ec; });
    run();
    if (!m.ec) {
      m.text = ws_.got_text();
      m.data = beast::buffers_to_string(buffer_.data());
    }
    buffer_.consume(buffer_.size());
    return m;
  }

  // Reads until a text message of `type` arrives (or the stream ends).
  Message read_until(const std::string& type, std::vector<Message>* seen = nullptr) {
    for (;;) {
      auto m = read();
      if (m.ec) return m;
      if (seen) seen->push_back(m);
      if (m.text && m.type() == type) return m;
    }
  }

  // Reads until the stream ends; returns the error that ended it.
  boost::system::error_code read_until_closed(std::vector<Message>* seen = nullptr) {
    for (;;) {
      auto m = read();
      if (m.ec) return m.ec;
      if (seen) seen->push_back(m);
    }
  }

  boost::system::error_code write(std::string_view data, bool text) {
    boost::system::error_code result;
    ws_.text(text);
    beast::get_lowest_layer(ws_).expires_after(kIoTimeout);
    ws_.async_write(asio::buffer(data.data(), data.size()),
                    [&](boost::system::error_code ec, std::size_t) { result = ec; });
    run();
    return result;
  }
  boost::system::error_code text(std::string_view data) { return write(data, true); }
  boost::system::error_code binary(std::string_view data) { return write(data, false); }

  boost::system::error_code close() {
    boost::system::error_code result;
    beast::get_lowest_layer(ws_).expires_after(kIoTimeout);
    ws_.async_close(websocket::close_code::normal, [&](boost::system::error_code ec) { result = ec; });
    run();
    return result;
  }

  websocket::close_reason reason() const { return ws_.reason(); }

 private:
  void run() {
    ioc_.restart();
    ioc_.run();
  }

  asio::io_context ioc_;
  websocket::stream<beast::tcp_stream> ws_{ioc_};
  websocket::response_type response_;
  beast::flat_buffer buffer_;
};

Headers token(const std::string& key) { return {{"Authorization", "Token " + key}}; }

// `seconds` of 16 kHz mono linear16 audio (a ramp, so its hash means something).
std::string audio(double seconds) {
  std::string out(static_cast<std::size_t>(seconds * 32000), '\0');
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>(i * 7);
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), d);
  std::string out;
  char hex[3];
  for (auto b : d) {
    std::snprintf(hex, sizeof hex, "%02x", b);
    out += hex;
  }
  return out;
}

void send_audio(Client& c, std::string_view data, std::size_t chunk = 3200) {
  for (std::size_t off = 0; off < data.size(); off += chunk)
    ASSERT_FALSE(c.binary(data.substr(off, std::min(chunk, data.size() - off))));
}

SimConfig one_project(std::map<Family, int> limits = {}) {
  SimConfig c;
  c.projects.push_back({"p1", {"k1"}, std::move(limits)});
  return c;
}

constexpr const char* kListen = "/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000";

// --- handshake refusals ---------------------------------------------------------------

TEST(sim_handshake, MissingKeyIs401WithDeepgramBody) {
  RunningSim s{SimConfig{}};
  auto res = request(s.endpoint(), http::verb::get, kListen, {});
  EXPECT_EQ(res.result_int(), 401);
  auto body = parse_object(res.body());
  EXPECT_EQ(str(body.at("err_code")), "INVALID_AUTH");
  EXPECT_EQ(str(body.at("err_msg")), "Invalid credentials.");
  ASSERT_FALSE(res["dg-request-id"].empty());
  EXPECT_EQ(str(body.at("request_id")), std::string(res["dg-request-id"]));
  EXPECT_EQ(res["dg-error"], "Invalid credentials.");
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_EQ(s.sim().stats().unauthorized, 1);
  EXPECT_EQ(s.sim().stats().handshakes, 1);
}

TEST(sim_handshake, UnknownKeyIs401) {
  RunningSim s{one_project()};
  auto res = request(s.endpoint(), http::verb::get, kListen, token("nope"));
  EXPECT_EQ(res.result_int(), 401);
  EXPECT_EQ(str(parse_object(res.body()).at("err_code")), "INVALID_AUTH");
  // The secret-less forms are refused too.
  EXPECT_EQ(request(s.endpoint(), http::verb::get, kListen, {{"Authorization", "k1"}}).result_int(), 401);
  EXPECT_EQ(s.sim().stats().unauthorized, 2);
}

TEST(sim_handshake, EveryAuthFormIsAccepted) {
  RunningSim s{one_project()};
  struct Form {
    Headers headers;
    std::string echoed;  // expected Sec-WebSocket-Protocol of the 101
  };
  std::vector<Form> forms = {
      {{{"Authorization", "Token k1"}}, ""},
      {{{"Authorization", "token k1"}}, ""},
      {{{"Authorization", "Bearer k1"}}, ""},
      {{{"Authorization", "BEARER k1"}}, ""},
      {{{"Sec-WebSocket-Protocol", "token, k1"}}, "token"},
      {{{"Sec-WebSocket-Protocol", "bearer, k1"}}, "bearer"},
  };
  for (const auto& form : forms) {
    Client c;
    ASSERT_FALSE(c.connect(s.endpoint(), kListen, form.headers)) << form.headers[0].second;
    EXPECT_FALSE(c.response()["dg-request-id"].empty());
    EXPECT_EQ(c.response()[http::field::sec_websocket_protocol], form.echoed);
    EXPECT_EQ(c.response()[http::field::sec_websocket_protocol].find("k1"), std::string::npos);
    c.close();
  }
  EXPECT_EQ(s.sim().stats().projects.at("p1").at(Family::streaming).accepted, 6);
}

TEST(sim_handshake, OverTheFamilyLimitIs429AtTheHandshake) {
  RunningSim s{one_project({{Family::streaming, 2}, {Family::tts, 0}})};
  Client a, b;
  ASSERT_FALSE(a.connect(s.endpoint(), kListen, token("k1")));
  ASSERT_FALSE(b.connect(s.endpoint(), kListen, token("k1")));

  auto res = request(s.endpoint(), http::verb::get, kListen, token("k1"));
  EXPECT_EQ(res.result_int(), 429);
  auto id = std::string(res["dg-request-id"]);
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(res["dg-error"], "Too many requests. Please try again later");
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_EQ(res.body(), R"({"err_code":"TOO_MANY_REQUESTS","err_msg":"Too many requests. Please try again later","request_id":")" +
                            id + "\"}");

  // Families are separate pools: Flux is still admitted.
  Client flux;
  EXPECT_FALSE(flux.connect(s.endpoint(), "/v2/listen?model=flux-general-en", token("k1")));
  // TTS spells its 429 differently.
  auto tts = request(s.endpoint(), http::verb::get, "/v1/speak", token("k1"));
  EXPECT_EQ(tts.result_int(), 429);
  auto tts_body = parse_object(tts.body());
  EXPECT_EQ(str(tts_body.at("err_code")), "Too Many Requests");
  EXPECT_EQ(str(tts_body.at("err_msg")), "Please try again later.");

  auto stats = s.sim().stats();
  const auto& streaming = stats.projects.at("p1").at(Family::streaming);
  EXPECT_EQ(streaming.open, 2);
  EXPECT_EQ(streaming.max_open, 2);
  EXPECT_EQ(streaming.accepted, 2);
  EXPECT_EQ(streaming.refused_429, 1);
  EXPECT_EQ(stats.projects.at("p1").at(Family::tts).refused_429, 1);
  EXPECT_EQ(stats.projects.at("p1").at(Family::flux).open, 1);

  a.close();
  b.close();
  flux.close();
  EXPECT_TRUE(eventually([&] { return s.sim().stats().projects.at("p1").at(Family::streaming).open == 0; }));
  EXPECT_EQ(s.sim().stats().projects.at("p1").at(Family::streaming).max_open, 2);
}

TEST(sim_handshake, BadRequestsAre400BeforeAdmission) {
  RunningSim s{one_project({{Family::streaming, 1}})};
  auto flux_on_v1 = request(s.endpoint(), http::verb::get, "/v1/listen?model=flux-general-en", token("k1"));
  EXPECT_EQ(flux_on_v1.result_int(), 400);
  EXPECT_EQ(str(parse_object(flux_on_v1.body()).at("err_code")), "V2_MODEL_ON_V1_LISTEN_ENDPOINT");
  EXPECT_FALSE(flux_on_v1["dg-request-id"].empty());

  auto bad_rate = request(s.endpoint(), http::verb::get, "/v1/listen?encoding=linear16&sample_rate=abc", token("k1"));
  EXPECT_EQ(bad_rate.result_int(), 400);
  auto body = parse_object(bad_rate.body());
  EXPECT_EQ(str(body.at("err_code")), "INVALID_QUERY_PARAMETER");
  EXPECT_NE(str(body.at("err_msg")).find("sample_rate"), std::string::npos);

  auto no_rate = request(s.endpoint(), http::verb::get, "/v1/listen?encoding=linear16", token("k1"));
  EXPECT_EQ(no_rate.result_int(), 400);
  EXPECT_NE(str(parse_object(no_rate.body()).at("err_msg")).find("sample_rate"), std::string::npos);

  auto bad_encoding = request(s.endpoint(), http::verb::get, "/v1/listen?encoding=mp5&sample_rate=8000", token("k1"));
  EXPECT_EQ(bad_encoding.result_int(), 400);
  EXPECT_NE(str(parse_object(bad_encoding.body()).at("err_msg")).find("encoding"), std::string::npos);

  EXPECT_EQ(request(s.endpoint(), http::verb::get, "/v2/listen", token("k1")).result_int(), 400);
  EXPECT_EQ(request(s.endpoint(), http::verb::get, "/v2/listen?model=nova-3", token("k1")).result_int(), 400);

  auto counts = s.sim().stats().projects.at("p1").at(Family::streaming);
  EXPECT_EQ(counts.accepted, 0);
  EXPECT_EQ(counts.refused_429, 0);
}

TEST(sim_handshake, OtherPathsAndPlainRequests) {
  RunningSim s{SimConfig{}};
  auto unknown = request(s.endpoint(), http::verb::get, "/v1/nothing", token("k"));
  EXPECT_EQ(unknown.result_int(), 404);
  EXPECT_FALSE(unknown["dg-request-id"].empty());
  auto plain = request(s.endpoint(), http::verb::get, "/v1/listen", token("k"), false);
  EXPECT_EQ(plain.result_int(), 426);
  EXPECT_NO_THROW(parse_object(plain.body()));
  EXPECT_EQ(request(s.endpoint(), http::verb::get, "/", {}, false).result_int(), 404);
}

// --- /v1/listen -----------------------------------------------------------------------

TEST(sim_listen, ListenGivesInterimAndFinalResultsThenMetadataOnCloseStream) {
  RunningSim s{SimConfig{}};
  Client c;
  ASSERT_FALSE(c.connect(s.endpoint(), std::string(kListen) + "&interim_results=true&punctuate=true", token("k")));
  auto request_id = std::string(c.response()["dg-request-id"]);
  ASSERT_FALSE(request_id.empty());

  auto sent = audio(4.0);
  send_audio(c, sent);
  std::vector<Client::Message> seen;
  auto final = c.read_until("Results", &seen);
  while (!final.ec && final.object().at("is_final") != true) final = c.read_until("Results", &seen);
  ASSERT_FALSE(final.ec);
  // An interim came first, about every second of audio.
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen.front().object().at("is_final"), false);

  auto r = final.object();
  EXPECT_EQ(r.at("speech_final"), true);
  EXPECT_EQ(r.at("from_finalize"), false);
  EXPECT_DOUBLE_EQ(r.at("start").to_number<double>(), 0.0);
  EXPECT_DOUBLE_EQ(r.at("duration").to_number<double>(), 3.0);
  EXPECT_EQ(r.at("channel_index"), (json::array{0, 1}));
  const auto& md = r.at("metadata").as_object();
  EXPECT_EQ(str(md.at("request_id")), request_id);
  EXPECT_EQ(str(md.at("model_info").at("arch")), "nova-3");
  EXPECT_FALSE(str(md.at("model_uuid")).empty());
  const auto& alt = r.at("channel").at("alternatives").as_array().at(0).as_object();
  EXPECT_FALSE(str(alt.at("transcript")).empty());
  const auto& words = alt.at("words").as_array();
  ASSERT_FALSE(words.empty());
  for (const auto& w : words) {
    double ws = w.at("start").to_number<double>(), we = w.at("end").to_number<double>();
    EXPECT_GE(ws, 0.0);
    EXPECT_LE(ws, we);
    EXPECT_LE(we, 3.0);
    EXPECT_FALSE(str(w.at("punctuated_word")).empty());
  }

  ASSERT_FALSE(c.text(R"({"type":"CloseStream"})"));
  seen.clear();
  auto metadata = c.read_until("Metadata", &seen);
  ASSERT_FALSE(metadata.ec);
  // The pending second was finalised before the summary.
  bool last_second = false;
  for (const auto& m : seen)
    if (m.text && m.type() == "Results" && m.object().at("is_final") == true)
      last_second = m.object().at("start").to_number<double>() == 3.0 &&
                    m.object().at("duration").to_number<double>() == 1.0;
  EXPECT_TRUE(last_second);
  auto meta = metadata.object();
  EXPECT_DOUBLE_EQ(meta.at("duration").to_number<double>(), 4.0);
  EXPECT_EQ(meta.at("channels"), 1);
  EXPECT_EQ(str(meta.at("request_id")), request_id);
  EXPECT_EQ(str(meta.at("transaction_key")), "deprecated");
  EXPECT_EQ(str(meta.at("sha256")), sha256_hex(sent));
  EXPECT_EQ(str(meta.at("created")).size(), 24u);  // 2026-08-25T21:11:31.685Z

  EXPECT_EQ(c.read_until_closed(), websocket::error::closed);
  EXPECT_EQ(c.reason().code, websocket::close_code::normal);
}

TEST(sim_listen, FinalizeFlushesPendingAudio) {
  RunningSim s{SimConfig{}};
  Client c;
  ASSERT_FALSE(c.connect(s.endpoint(), kListen, token("k")));
  send_audio(c, audio(1.5));
  ASSERT_FALSE(c.text(R"({"type":"KeepAlive"})"));
  ASSERT_FALSE(c.text(R"({"type":"Finalize"})"));
  auto m = c.read_until("Results");
  ASSERT_FALSE(m.ec);
  auto r = m.object();
  EXPECT_EQ(r.at("from_finalize"), true);
  EXPECT_EQ(r.at("is_final"), true);
  EXPECT_DOUBLE_EQ(r.at("duration").to_number<double>(), 1.5);
  c.close();
}

TEST(sim_listen, VadEventsAndUtteranceEnd) {
  RunningSim s{SimConfig{}};
  Client c;
  ASSERT_FALSE(c.connect(s.endpoint(), std::string(kListen) + "&vad_events=true&utterance_end_ms=1000", token("k")));
  send_audio(c, audio(3.2));
  auto started = c.read_until("SpeechStarted");
  ASSERT_FALSE(started.ec);
  EXPECT_DOUBLE_EQ(started.object().at("timestamp").to_number<double>(), 0.0);
  auto end = c.read_until("UtteranceEnd");
  ASSERT_FALSE(end.ec);
  EXPECT_LE(end.object().at("last_word_end").to_number<double>(), 3.0);
  c.close();
}

TEST(sim_listen, InactivityClosesWithNet0001AfterMetadata) {
  SimConfig config;
  config.inactivity_timeout = 300ms;
  RunningSim s{config};
  Client c;
  ASSERT_FALSE(c.connect(s.endpoint(), kListen, token("k")));
  auto first = c.read();
  ASSERT_FALSE(first.ec);
  EXPECT_EQ(first.type(), "Metadata");
  EXPECT_DOUBLE_EQ(first.object().at("duration").to_number<double>(), 0.0);
  EXPECT_EQ(c.read_until_closed(), websocket::error::closed);
  EXPECT_EQ(c.reason().code, websocket::close_code::internal_error);
  EXPECT_EQ(std::string_view(c.reason().reason.data(), c.reason().reason.size()), kNet0001);
}

TEST(sim_listen, BenchEchoesTheFirstEightBytes) {
  SimConfig config;
  config.bench = true;
  RunningSim s{config};
  Client c;
  ASSERT_FALSE(c.connect(s.endpoint(), kListen, token("k")));
  std::string frame = "\x01\x23\x45\x67\x89\xab\xcd\xef" + std::string(3192, '\0');
  ASSERT_FALSE(c.binary(frame));
  auto m = c.read();
  ASSERT_FALSE(m.ec);
  EXPECT_EQ(m.data, R"({"type":"Echo","t":"0123456789abcdef"})");
  ASSERT_FALSE(c.text(R"({"type":"CloseStream"})"));
  EXPECT_EQ(c.read_until_closed(), websocket::error::closed);
  EXPECT_EQ(c.reason().code, websocket::close_code::normal);
}

// --- /v2/listen -----------------------------------------------------------------------

TEST(sim_flux, FluxTurnsAndCloseWithoutStatus) {
  RunningSim s{SimConfig{}};
  Client c;
  ASSERT_FALSE(c.connect(s.endpoint(), "/v2/listen?model=flux-general-en&encoding=linear16&sample_rate=16000",
                         token("k")));
  auto connected = c.read();
  ASSERT_FALSE(connected.ec);
  EXPECT_EQ(connected.type(), "Connected");
  EXPECT_EQ(connected.object().at("sequence_id"), 0);
  EXPECT_EQ(str(connected.object().at("request_id")), std::string(c.response()["dg-request-id"]));

  send_audio(c, audio(2.6));
  std::vector<Client::Message> seen;
  auto eot = c.read_until("TurnInfo", &seen);
  while (!eot.ec && str(eot.object().at("event")) != "EndOfTurn") eot = c.read_until("TurnInfo", &seen);
  ASSERT_FALSE(eot.ec);
  EXPECT_EQ(str(seen.front().object().at("event")), "StartOfTurn");
  EXPECT_GE(seen.size(), 3u);
  auto e = eot.object();
  EXPECT_EQ(e.at("turn_index"), 0);
  EXPECT_DOUBLE_EQ(e.at("audio_window_start").to_number<double>(), 0.0);
  EXPECT_DOUBLE_EQ(e.at("audio_window_end").to_number<double>(), 2.0);
  EXPECT_FALSE(str(e.at("transcript")).empty());
  std::int64_t expected_sequence = 1;
  for (const auto& m : seen) EXPECT_EQ(m.object().at("sequence_id"), expected_sequence++);

  ASSERT_FALSE(c.text(R"({"type":"Configure","thresholds":{"eot_threshold":0.8}})"));
  auto configured = c.read_until("ConfigureSuccess");
  ASSERT_FALSE(configured.ec);
  EXPECT_DOUBLE_EQ(configured.object().at("thresholds").at("eot_threshold").to_number<double>(), 0.8);

  ASSERT_FALSE(c.text(R"({"type":"CloseStream"})"));
  seen.clear();
  EXPECT_EQ(c.read_until_closed(&seen), websocket::error::closed);
  EXPECT_EQ(c.reason().code, websocket::close_code::none);
  for (const auto& m : seen) EXPECT_NE(str(m.object().at("event")), "EndOfTurn");
}

// --- /v1/speak and the agent ------------------------------------------------------------

TEST(sim_speak, SpeakFlushSendsAudioThenFlushed) {
  RunningSim s{SimConfig{}};
  Client c;
  ASSERT_FALSE(c.connect(s.endpoint(), "/v1/speak?model=aura-2-thalia-en", token("k")));
  auto metadata = c.read();
  ASSERT_FALSE(metadata.ec);
  EXPECT_EQ(metadata.type(), "Metadata");
  EXPECT_EQ(str(metadata.object().at("model_name")), "aura-2-thalia-en");

  ASSERT_FALSE(c.text(R"({"type":"Speak","text":"Hello world"})"));
  ASSERT_FALSE(c.text(R"({"type":"Flush"})"));
  std::size_t audio_bytes = 0;
  for (;;) {
    auto m = c.read();
    ASSERT_FALSE(m.ec);
    if (!m.text) {
      EXPECT_LE(m.data.size(), 8192u);
      audio_bytes += m.data.size();
      continue;
    }
    EXPECT_EQ(m.type(), "Flushed");
    EXPECT_EQ(m.object().at("sequence_id"), 0);
    break;
  }
  // 11 characters × 60 ms at 24 kHz linear16.
  EXPECT_EQ(audio_bytes, 11u * 1440u * 2u);

  ASSERT_FALSE(c.text(R"({"type":"Speak","text":"dropped"})"));
  ASSERT_FALSE(c.text(R"({"type":"Clear"})"));
  auto cleared = c.read();
  ASSERT_FALSE(cleared.ec);
  EXPECT_EQ(cleared.type(), "Cleared");

  ASSERT_FALSE(c.text(R"({"type":"Close"})"));
  EXPECT_EQ(c.read_until_closed(), websocket::error::closed);
  EXPECT_EQ(c.reason().code, websocket::close_code::normal);
}

TEST(sim_agent, AgentAnswersUserAudio) {
  RunningSim s{SimConfig{}};
  Client c;
  ASSERT_FALSE(c.connect(s.endpoint(), "/v1/agent/converse", token("k")));
  auto welcome = c.read();
  ASSERT_FALSE(welcome.ec);
  EXPECT_EQ(welcome.type(), "Welcome");
  ASSERT_FALSE(c.text(R"({"type":"Settings","audio":{"input":{"encoding":"linear16","sample_rate":16000},)"
                      R"("output":{"encoding":"linear16","sample_rate":24000}}})"));
  ASSERT_FALSE(c.read_until("SettingsApplied").ec);
  ASSERT_FALSE(c.text(R"({"type":"KeepAlive"})"));
  send_audio(c, audio(2.0));
  auto user = c.read_until("ConversationText");
  ASSERT_FALSE(user.ec);
  EXPECT_EQ(str(user.object().at("role")), "user");
  ASSERT_FALSE(c.read_until("AgentStartedSpeaking").ec);
  auto m = c.read();
  ASSERT_FALSE(m.ec);
  EXPECT_FALSE(m.text);
  ASSERT_FALSE(c.read_until("AgentAudioDone").ec);
  c.close();
}

// --- faults, accounting, admin, stop ------------------------------------------------------

TEST(sim_faults, StaleAccountingKeepsCountingAfterClose) {
  auto config = one_project({{Family::streaming, 1}});
  config.faults.stale_accounting = 2s;
  RunningSim s{config};
  auto open = [&] { return s.sim().stats().projects.at("p1").at(Family::streaming).open; };
  {
    Client c;
    ASSERT_FALSE(c.connect(s.endpoint(), kListen, token("k1")));
    ASSERT_FALSE(c.text(R"({"type":"CloseStream"})"));
    EXPECT_EQ(c.read_until_closed(), websocket::error::closed);
  }
  // The socket is gone but the vendor still counts it: the next stream is refused.
  EXPECT_EQ(open(), 1);
  EXPECT_EQ(request(s.endpoint(), http::verb::get, kListen, token("k1")).result_int(), 429);
  EXPECT_TRUE(eventually([&] { return open() == 0; }));
  Client again;
  EXPECT_FALSE(again.connect(s.endpoint(), kListen, token("k1")));
  again.close();
}

TEST(sim_faults, DropFaultClosesWith1011) {
  SimConfig config;
  config.faults.drop_probability = 1.0;
  RunningSim s{config};
  Client c;
  ASSERT_FALSE(c.connect(s.endpoint(), kListen, token("k")));
  EXPECT_EQ(c.read_until_closed(), websocket::error::closed);
  EXPECT_EQ(c.reason().code, websocket::close_code::internal_error);
  EXPECT_NE(std::string_view(c.reason().reason.data(), c.reason().reason.size()).find("NET-0000"), std::string_view::npos);
}

// POSTs a JSON body to the simulator's admin listener.
http::response<http::string_body> post_json(const tcp::endpoint& ep, const std::string& target, const std::string& body) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.expires_after(kIoTimeout);
  stream.connect(ep);
  http::request<http::string_body> req{http::verb::post, target, 11};
  req.set(http::field::host, "127.0.0.1");
  req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  return res;
}

// Sends audio frame by frame (0.1 s each) until `seconds` or a write fails
// (the stream was dropped meanwhile).
void send_until_dropped(Client& c, double seconds) {
  auto a = audio(seconds);
  for (std::size_t off = 0; off < a.size(); off += 3200)
    if (c.binary(std::string_view(a).substr(off, std::min<std::size_t>(3200, a.size() - off)))) return;
}

// Drops on cue: by audio position or by time, for one stream or live-armed,
// with each way a vendor's connection can end; each recorded with the audio
// the stream had received.
TEST(sim_faults, DropCuesEndTheChosenStreamAtItsAudioPositionOrTime) {
  SimConfig config;
  config.inactivity_timeout = std::chrono::milliseconds(60000);  // unrelated timeouts far away
  config.faults.drops = {*parse_drop_cue("2@audio:1.0").cue, *parse_drop_cue("3@time:0.2/1012").cue};
  RunningSim s{config};
  // Stream 1: no cue; it ends normally.
  {
    Client c;
    ASSERT_FALSE(c.connect(s.endpoint(), kListen, token("k")));
    send_audio(c, audio(1.5));
    ASSERT_FALSE(c.text(R"({"type":"CloseStream"})"));
    auto m = c.read_until("Metadata");
    ASSERT_FALSE(m.ec);
    EXPECT_EQ(c.read_until_closed(), websocket::error::closed);
    EXPECT_EQ(c.reason().code, websocket::close_code::normal);
  }
  // Stream 2: 1011 NET-0000 right after its first second of audio.
  {
    Client c;
    ASSERT_FALSE(c.connect(s.endpoint(), kListen, token("k")));
    send_until_dropped(c, 3.0);
    EXPECT_EQ(c.read_until_closed(), websocket::error::closed);
    EXPECT_EQ(c.reason().code, websocket::close_code::internal_error);
  }
  // Stream 3: 1012 after 0.2 s, with no audio at all.
  {
    Client c;
    ASSERT_FALSE(c.connect(s.endpoint(), kListen, token("k")));
    EXPECT_EQ(c.read_until_closed(), websocket::error::closed);
    EXPECT_EQ(c.reason().code, websocket::close_code::service_restart);
  }
  // Stream 4, armed live: an RST, no close frame.
  s.sim().add_drop(*parse_drop_cue("4@audio:0.5/reset").cue);
  {
    Client c;
    ASSERT_FALSE(c.connect(s.endpoint(), kListen, token("k")));
    send_until_dropped(c, 2.0);
    auto ec = c.read_until_closed();
    EXPECT_NE(ec, websocket::error::closed) << "a close frame came";
  }
  // Stream 5, armed through the admin listener for the next stream: a FIN, no close frame.
  auto admin = s.sim().admin_endpoint();
  auto armed = post_json(admin, "/drops", R"({"at":"next@audio:0.3/cut"})");
  ASSERT_EQ(armed.result_int(), 200) << armed.body();
  EXPECT_EQ(parse_object(armed.body()).at("armed"), "5@audio:0.3/cut");
  {
    Client c;
    ASSERT_FALSE(c.connect(s.endpoint(), kListen, token("k")));
    send_until_dropped(c, 2.0);
    auto ec = c.read_until_closed();
    EXPECT_NE(ec, websocket::error::closed) << "a close frame came";
  }
  auto bad = post_json(admin, "/drops", R"({"at":"2@sometime:1"})");
  EXPECT_EQ(bad.result_int(), 400);
  EXPECT_NE(bad.body().find("[STREAM@](audio|time):SECONDS"), std::string::npos) << bad.body();

  auto st = s.sim().stats();
  EXPECT_EQ(st.streams, 5u);
  ASSERT_EQ(st.drops.size(), 4u);
  EXPECT_EQ(st.drops[0].stream, 2u);
  EXPECT_DOUBLE_EQ(st.drops[0].audio_seconds, 1.0);
  EXPECT_EQ(st.drops[0].how, DropCue::How::internal_error);
  EXPECT_EQ(st.drops[1].stream, 3u);
  EXPECT_DOUBLE_EQ(st.drops[1].audio_seconds, 0);
  EXPECT_GE(st.drops[1].after_seconds, 0.2);
  EXPECT_EQ(st.drops[1].how, DropCue::How::service_restart);
  EXPECT_EQ(st.drops[2].stream, 4u);
  EXPECT_DOUBLE_EQ(st.drops[2].audio_seconds, 0.5);
  EXPECT_EQ(st.drops[2].how, DropCue::How::reset);
  EXPECT_EQ(st.drops[3].stream, 5u);
  EXPECT_NEAR(st.drops[3].audio_seconds, 0.3, 0.1 + 1e-9);  // within the frame that reached it
  EXPECT_EQ(st.drops[3].how, DropCue::How::cut);
  for (const auto& d : st.drops) EXPECT_FALSE(d.request_id.empty());
  auto listed = parse_object(request(admin, http::verb::get, "/drops", {}, false).body());
  EXPECT_EQ(listed.at("streams"), 5);
  ASSERT_EQ(listed.at("drops").as_array().size(), 4u);
  EXPECT_EQ(listed.at("drops").as_array()[2].at("how"), "reset");
  EXPECT_EQ(listed.at("drops").as_array()[0].at("audio_seconds"), 1.0);
}

TEST(sim_faults, HandshakeDelayAndSlowReaderStillServe) {
  SimConfig config;
  config.faults.handshake_delay = 100ms;
  config.faults.read_delay = 5ms;
  RunningSim s{config};
  Client c;
  auto before = std::chrono::steady_clock::now();
  ASSERT_FALSE(c.connect(s.endpoint(), kListen, token("k")));
  EXPECT_GE(std::chrono::steady_clock::now() - before, 100ms);
  send_audio(c, audio(0.5));
  ASSERT_FALSE(c.text(R"({"type":"CloseStream"})"));
  auto metadata = c.read_until("Metadata");
  ASSERT_FALSE(metadata.ec);
  EXPECT_DOUBLE_EQ(metadata.object().at("duration").to_number<double>(), 0.5);
}

TEST(sim_admin, AdminEndpoint) {
  auto config = one_project({{Family::streaming, 5}});
  RunningSim s{config};
  auto admin = s.sim().admin_endpoint();
  EXPECT_EQ(request(admin, http::verb::get, "/healthz", {}, false).result_int(), 200);
  {
    Client a, b;
    ASSERT_FALSE(a.connect(s.endpoint(), kListen, token("k1")));
    ASSERT_FALSE(b.connect(s.endpoint(), kListen, token("k1")));
    a.close();
    b.close();
  }
  ASSERT_TRUE(eventually([&] { return s.sim().stats().projects.at("p1").at(Family::streaming).open == 0; }));
  auto state = request(admin, http::verb::get, "/state", {}, false);
  EXPECT_EQ(state.result_int(), 200);
  auto o = parse_object(state.body());
  const auto& streaming = o.at("projects").at("p1").at("streaming");
  EXPECT_EQ(streaming.at("open"), 0);
  EXPECT_EQ(streaming.at("max_open"), 2);
  EXPECT_EQ(streaming.at("accepted"), 2);
  EXPECT_EQ(streaming.at("refused_429"), 0);
  EXPECT_EQ(o.at("handshakes"), 2);
  EXPECT_EQ(o.at("unauthorized"), 0);

  EXPECT_EQ(request(admin, http::verb::post, "/reset-max", {}, false).result_int(), 200);
  EXPECT_EQ(s.sim().stats().projects.at("p1").at(Family::streaming).max_open, 0);
  EXPECT_EQ(request(admin, http::verb::get, "/reset-max", {}, false).result_int(), 405);
  EXPECT_EQ(request(admin, http::verb::get, "/nothing", {}, false).result_int(), 404);
}

TEST(sim_stop, StopClosesOpenStreamsAndEndsTheRunLoop) {
  RunningSim s{SimConfig{}};
  Client listen, speak;
  ASSERT_FALSE(listen.connect(s.endpoint(), kListen, token("k")));
  ASSERT_FALSE(speak.connect(s.endpoint(), "/v1/speak", token("k")));
  // A connection that never sends its request.
  asio::io_context idle_ioc;
  tcp::socket idle(idle_ioc);
  idle.connect(s.endpoint());
  // stop() joins the io_context thread, so it returns only once every
  // connection has ended; the clients answer the close meanwhile.
  std::thread stopper([&] { s.stop(); });
  EXPECT_EQ(listen.read_until_closed(), websocket::error::closed);
  EXPECT_EQ(listen.reason().code, websocket::close_code::going_away);
  EXPECT_EQ(speak.read_until_closed(), websocket::error::closed);
  stopper.join();
}

// --- the command ----------------------------------------------------------------------

struct Process {
  pid_t pid = -1;
  FILE* out = nullptr;
};

Process spawn(const std::vector<std::string>& args) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  Process p;
  EXPECT_EQ(posix_spawn(&p.pid, argv[0], &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  p.out = fdopen(fds[0], "r");
  return p;
}

int wait_exit(Process& p) {
  int status = 0;
  waitpid(p.pid, &status, 0);
  fclose(p.out);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(sim_command, PrintsItsEndpointsAndStopsOnSigterm) {
  auto p = spawn({SLUICE_BINARY, "sim", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--key",
                  "acme:k1", "--limit", "streaming=1", "--log-level", "warn"});
  char line[256] = {};
  ASSERT_NE(fgets(line, sizeof line, p.out), nullptr);
  unsigned port = 0, admin_port = 0;
  ASSERT_EQ(std::sscanf(line, "sluice sim listening on 127.0.0.1:%u admin 127.0.0.1:%u", &port, &admin_port), 2)
      << line;
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port));
  {
    Client c;
    EXPECT_FALSE(c.connect(ep, kListen, token("k1")));
    EXPECT_EQ(request(ep, http::verb::get, kListen, token("k1")).result_int(), 429);
    EXPECT_EQ(request(ep, http::verb::get, kListen, token("other")).result_int(), 401);
    kill(p.pid, SIGTERM);
    EXPECT_EQ(c.read_until_closed(), websocket::error::closed);
  }
  EXPECT_EQ(wait_exit(p), 0);
}

TEST(sim_command, BadValuesNameTheOption) {
  for (const auto& [option, value] : std::vector<std::pair<std::string, std::string>>{
           {"--limit", "nope=1"}, {"--listen", "localhost"}, {"--drop-probability", "2"}, {"--key", ":k"}}) {
    auto p = spawn({SLUICE_BINARY, "sim", option, value});
    std::string output;
    char buf[512];
    while (fgets(buf, sizeof buf, p.out)) output += buf;
    EXPECT_NE(wait_exit(p), 0) << option;
    EXPECT_NE(output.find(option), std::string::npos) << output;
  }
}

}  // namespace
