// The gateway end to end on real sockets: relay fidelity, close codes,
// refusals, authentication, backpressure and the admin API.
#include <random>

#include "stack.hpp"

using namespace sluice;
using namespace sluice::testing;

namespace {

const std::string kListen = "/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000&channels=1";

// Every test ends with nothing left in the live registry; each runs with one
// I/O thread and with two.
class Gateway : public ThreadedStackTest {};

std::string random_bytes(std::mt19937& rng, std::size_t n) {
  std::string s(n, '\0');
  for (auto& ch : s) ch = static_cast<char>(rng() & 0xff);
  return s;
}

std::string random_text(std::mt19937& rng, std::size_t n) {
  std::string s = R"({"type":"Note","text":")";
  for (std::size_t i = 0; i < n; ++i) s.push_back(static_cast<char>('a' + rng() % 26));
  return s + "\"}";
}

}  // namespace

TEST_P(Gateway, RelaysRandomMessagesByteExactAndInOrderBothWays) {
  auto& s = start({}, with_tenant("acme", "client-key", via_test_upstream()));
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token client-key")) << c.error.message();
  EXPECT_EQ(c.response["dg-request-id"], "test-upstream-request");
  std::mt19937 rng(42);
  std::vector<Received> sent;
  for (int i = 0; i < 300; ++i) {
    bool text = rng() % 4 == 0;
    std::size_t size = (i == 7) ? 0 : (i == 8 ? 200000 : rng() % 5000);
    Received m{text, text ? random_text(rng, size) : random_bytes(rng, size)};
    if (m.text) c.send_text(m.data);
    else c.send_binary(m.data);
    sent.push_back(m);
  }
  // The echo upstream sends each message back: the client reads them in order.
  for (std::size_t i = 0; i < sent.size(); ++i) {
    auto m = c.read();
    ASSERT_TRUE(m) << "closed at message " << i << ": " << c.error.message();
    EXPECT_EQ(m->text, sent[i].text) << i;
    ASSERT_EQ(m->data, sent[i].data) << "message " << i << " differs";
  }
  auto got = s.test_upstream().received();
  ASSERT_EQ(got.size(), sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(got[i].text, sent[i].text);
    EXPECT_EQ(got[i].data, sent[i].data);
  }
  // The upstream got the injected key, not the client's.
  EXPECT_EQ(s.test_upstream().last_authorization(), "Token sim-key");
  EXPECT_EQ(s.test_upstream().last_target(), kListen);
  c.ws.close(websocket::close_code::normal);
}

TEST_P(Gateway, ClientCloseCodeAndReasonReachTheUpstream) {
  auto& s = start({}, via_test_upstream());
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k"));
  c.send_text("hello");
  ASSERT_TRUE(c.read());
  c.ws.close(websocket::close_reason(static_cast<websocket::close_code>(4001), "client says bye"));
  ASSERT_TRUE(eventually([&] { return s.test_upstream().close_code() != -1; }));
  EXPECT_EQ(s.test_upstream().close_code(), 4001);
  EXPECT_EQ(s.test_upstream().close_reason(), "client says bye");
}

TEST_P(Gateway, UpstreamCloseCodeAndReasonReachTheClient) {
  auto& s = start({}, via_test_upstream());
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k"));
  c.send_text("close:4002:upstream is done");
  EXPECT_EQ(c.read_until_close(), 4002);
  EXPECT_EQ(std::string(c.ws.reason().reason.c_str()), "upstream is done");
}

TEST_P(Gateway, UpstreamCloseWithoutStatusReachesTheClientWithoutStatus) {
  auto& s = start({}, via_test_upstream());
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k"));
  c.send_text("close-no-status");
  EXPECT_EQ(c.read_until_close(), static_cast<int>(websocket::close_code::none));
}

TEST_P(Gateway, FluxCloseStreamEndsWithoutStatus) {
  auto& s = start();
  Client c;
  ASSERT_TRUE(c.open(s.port(), "/v2/listen?model=flux-general-en&encoding=linear16&sample_rate=16000", "Token k"));
  ASSERT_TRUE(c.read_until_type("Connected"));
  c.send_binary(linear16_silence(1.0));
  c.send_text(R"({"type":"CloseStream"})");
  EXPECT_EQ(c.read_until_close(), static_cast<int>(websocket::close_code::none));
}

TEST_P(Gateway, EveryUpstreamRefusalPassesThroughWithBodyAndRequestId) {
  auto& s = start({}, via_test_upstream([](config::Config& c, Stack&) {
    c.upstream.retry_429.deadline = config::Seconds(0.3);
  }));
  for (int status : {400, 401, 402, 403, 500, 503}) {
    Client c;
    EXPECT_FALSE(c.open(s.port(), "/v1/listen?refuse=" + std::to_string(status), "Token k"));
    EXPECT_EQ(c.response.result_int(), static_cast<unsigned>(status));
    EXPECT_EQ(c.response["dg-request-id"], "refused-" + std::to_string(status));
    EXPECT_EQ(c.response["dg-error"], "refused with " + std::to_string(status));
    auto body = boost::json::parse(c.response.body()).as_object();
    EXPECT_EQ(body.at("err_code").as_string(), "TEST_REFUSAL");
    EXPECT_EQ(body.at("request_id").as_string(), "refused-" + std::to_string(status));
  }
  // A 429 is retried, then answered by the gateway, naming the vendor's last refusal.
  Client c;
  EXPECT_FALSE(c.open(s.port(), "/v1/listen?refuse=429", "Token k"));
  EXPECT_EQ(c.response.result_int(), 429u);
  EXPECT_EQ(c.response[http::field::retry_after], "1");
  auto body = boost::json::parse(c.response.body()).as_object();
  EXPECT_EQ(body.at("err_code").as_string(), "TOO_MANY_REQUESTS");
  auto sl = body.at("sluice").as_object();
  EXPECT_EQ(sl.at("reason").as_string(), "upstream_429");
  EXPECT_EQ(sl.at("upstream_request_id").as_string(), "refused-429");
  EXPECT_EQ(sl.at("pool").as_string(), "streaming");
  EXPECT_GE(s.gateway().events().count("upstream_429"), 1u);
}

TEST_P(Gateway, SimulatorConcurrencyLimitGivesTheClientTheGateways429NotTheVendors) {
  sim::SimConfig sc;
  sc.default_limits[protocol::Family::streaming] = 1;
  auto& s = start(sc, [](config::Config& c, Stack&) { c.upstream.retry_429.deadline = config::Seconds(0.5); });
  Client first;
  ASSERT_TRUE(first.open(s.port(), kListen, "Token k"));
  Client second;
  EXPECT_FALSE(second.open(s.port(), kListen, "Token k"));
  EXPECT_EQ(second.response.result_int(), 429u);
  EXPECT_FALSE(second.response[http::field::retry_after].empty());
  auto body = boost::json::parse(second.response.body()).as_object();
  EXPECT_EQ(body.at("err_code").as_string(), "TOO_MANY_REQUESTS");
  auto sl = body.at("sluice").as_object();
  EXPECT_EQ(sl.at("reason").as_string(), "upstream_429");
  EXPECT_EQ(sl.at("limit").to_number<int>(), 50);
  EXPECT_EQ(sl.at("effective_limit").to_number<int>(), 1);  // what the vendor held open
  EXPECT_EQ(sl.at("in_use").to_number<int>(), 2);
  EXPECT_GT(sl.at("waited_seconds").to_number<double>(), 0.0);
  EXPECT_FALSE(sl.at("upstream_request_id").as_string().empty());  // the vendor's dg-request-id
  first.ws.close(websocket::close_code::normal);
}

TEST_P(Gateway, FluxModelOnV1ListenIs400FromUpstream) {
  auto& s = start();
  Client c;
  EXPECT_FALSE(c.open(s.port(), "/v1/listen?model=flux-general-en", "Token k"));
  EXPECT_EQ(c.response.result_int(), 400u);
}

TEST_P(Gateway, UnknownKeyIs401AndNoUpstreamConnectionIsMade) {
  auto& s = start({}, with_tenant("acme", "good-key"));
  for (std::string auth : {"Token bad-key", "", "Bearer bad", "Basic abc"}) {
    Client c;
    EXPECT_FALSE(c.open(s.port(), kListen, auth));
    EXPECT_EQ(c.response.result_int(), 401u) << auth;
    auto body = boost::json::parse(c.response.body()).as_object();
    EXPECT_EQ(body.at("err_code").as_string(), "INVALID_AUTH");
  }
  EXPECT_EQ(s.sim().stats().handshakes, 0);
  // The good key works, in every form.
  for (auto [auth, proto] : std::vector<std::pair<std::string, std::string>>{
           {"Token good-key", ""}, {"bearer good-key", ""}, {"", "token, good-key"}, {"", "bearer, good-key"}}) {
    Client c;
    ASSERT_TRUE(c.open(s.port(), kListen, auth, proto)) << auth << proto << " " << c.error.message();
    if (!proto.empty())
      EXPECT_EQ(c.response[http::field::sec_websocket_protocol], proto.substr(0, proto.find(',')));
    else
      EXPECT_TRUE(c.response[http::field::sec_websocket_protocol].empty());
    auto sessions = s.registry().list();
    ASSERT_EQ(sessions.size(), 1u);
    EXPECT_EQ(sessions[0]->info().tenant, "acme");
    c.ws.close(websocket::close_code::normal);
    ASSERT_TRUE(eventually([&] { return s.registry().size() == 0; }));
  }
  EXPECT_EQ(s.sim().stats().handshakes, 4);
}

TEST_P(Gateway, PassThroughForwardsTheClientsKeyAndNamesTheTenantByFingerprint) {
  auto& s = start({}, via_test_upstream());
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token my-own-deepgram-key"));
  EXPECT_EQ(s.test_upstream().last_authorization(), "Token my-own-deepgram-key");
  auto sessions = s.registry().list();
  ASSERT_EQ(sessions.size(), 1u);
  EXPECT_EQ(sessions[0]->info().tenant, "fp:" + protocol::fingerprint("my-own-deepgram-key"));
  c.ws.close(websocket::close_code::normal);
}

TEST_P(Gateway, UnknownPathIs404WithJsonAndPlainGetIs426) {
  auto& s = start();
  Client c;
  EXPECT_FALSE(c.open(s.port(), "/v1/projects", "Token k"));
  EXPECT_EQ(c.response.result_int(), 404u);
  EXPECT_TRUE(boost::json::parse(c.response.body()).as_object().contains("err_msg"));

  asio::io_context ioc;
  beast::tcp_stream st(ioc);
  st.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), s.port()));
  http::request<http::empty_body> req{http::verb::get, "/v1/listen", 11};
  req.set(http::field::host, "x");
  http::write(st, req);
  beast::flat_buffer b;
  http::response<http::string_body> res;
  http::read(st, b, res);
  EXPECT_EQ(res.result_int(), 426u);
}

TEST_P(Gateway, SilentClientIsDisconnectedAtTheHandshakeDeadline) {
  auto& s = start({}, [](config::Config& c, Stack&) { c.client.handshake_timeout = std::chrono::milliseconds(200); });
  asio::io_context ioc;
  tcp::socket sock(ioc);
  sock.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), s.port()));
  char byte;
  beast::error_code ec;
  sock.read_some(asio::buffer(&byte, 1), ec);  // blocks until the gateway gives up on us
  EXPECT_TRUE(ec == asio::error::eof || ec == asio::error::connection_reset) << ec.message();
}

TEST_P(Gateway, OversizedMessageClosesWith1009AndAReason) {
  auto& s = start({}, via_test_upstream([](config::Config& c, Stack&) { c.relay.max_message_bytes = 1000; }));
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k"));
  c.send_binary(std::string(999, 'a'));
  ASSERT_TRUE(c.read());
  c.send_binary(std::string(5000, 'a'));
  EXPECT_EQ(c.read_until_close(), static_cast<int>(websocket::close_code::too_big));
  EXPECT_NE(std::string(c.ws.reason().reason.c_str()).find("1000 bytes"), std::string::npos);
}

TEST_P(Gateway, RegistryTracksCountersRequestIdAndAudioSeconds) {
  auto& s = start();
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen + "&interim_results=true", "Token k"));
  auto request_id = std::string(c.response["dg-request-id"]);
  ASSERT_FALSE(request_id.empty());
  for (int i = 0; i < 10; ++i) c.send_binary(linear16_silence(0.1));  // 1 s of audio
  c.send_text(R"({"type":"KeepAlive"})");
  c.send_text(R"({"type":"Finalize"})");
  auto sessions = s.registry().list();
  ASSERT_EQ(sessions.size(), 1u);
  auto e = sessions[0];
  ASSERT_TRUE(eventually([&] { return e->counters().finalize.load() == 1; }));
  EXPECT_EQ(e->request_id(), request_id);
  EXPECT_EQ(e->counters().audio_messages.load(), 10u);
  EXPECT_EQ(e->counters().audio_bytes.load(), 32000u);
  EXPECT_EQ(e->counters().keep_alive.load(), 1u);
  EXPECT_EQ(e->counters().client_messages.load(), 12u);
  EXPECT_DOUBLE_EQ(e->audio_seconds(), 1.0);
  EXPECT_EQ(e->info().model, "nova-3");
  EXPECT_EQ(e->info().user_agent, "sluice-test/1");
  EXPECT_EQ(e->state(), registry::SessionState::open);
  c.send_text(R"({"type":"CloseStream"})");
  auto meta = c.read_until_type("Metadata");
  ASSERT_TRUE(meta);
  EXPECT_EQ(meta->at("request_id").as_string(), request_id);
  EXPECT_EQ(c.read_until_close(), 1000);
  EXPECT_EQ(e->counters().close_stream.load(), 1u);
  EXPECT_GT(e->counters().upstream_messages.load(), 0u);
}

TEST_P(Gateway, AdminDeleteEndsTheSessionWithFinalMetadata) {
  auto& s = start();
  Client c;
  ASSERT_TRUE(c.open(s.port(), kListen, "Token k"));
  c.send_binary(linear16_silence(2.0));
  ASSERT_TRUE(eventually([&] {
    auto l = s.registry().list();
    return l.size() == 1 && l[0]->counters().audio_bytes.load() == 64000;
  }));
  auto id = s.registry().list()[0]->info().id;
  auto res = admin_call(s.admin_port(), http::verb::delete_, "/api/v1/sessions/" + std::to_string(id));
  EXPECT_EQ(res.result_int(), 202u) << res.body();
  auto meta = c.read_until_type("Metadata");
  ASSERT_TRUE(meta) << "no Metadata before close: " << c.error.message();
  EXPECT_DOUBLE_EQ(meta->at("duration").to_number<double>(), 2.0);
  EXPECT_EQ(c.read_until_close(), 1000);
}

TEST_P(Gateway, AdminApiListsFiltersAndRequiresItsToken) {
  auto& s = start({}, with_tenant("acme", "ka", [](config::Config& c, Stack&) {
                    c.tenants.push_back({"globex", {protocol::key_hash("kg")}});
                  }));
  EXPECT_EQ(admin_call(s.admin_port(), http::verb::get, "/api/v1/sessions", "").result_int(), 401u);
  EXPECT_EQ(admin_call(s.admin_port(), http::verb::get, "/api/v1/sessions", "wrong").result_int(), 401u);
  EXPECT_EQ(admin_call(s.admin_port(), http::verb::get, "/healthz", "").result_int(), 200u);
  EXPECT_EQ(admin_call(s.admin_port(), http::verb::get, "/readyz", "").result_int(), 200u);

  Client a, g;
  ASSERT_TRUE(a.open(s.port(), kListen, "Token ka"));
  ASSERT_TRUE(g.open(s.port(), "/v1/speak?model=aura-2-thalia-en", "Token kg"));
  auto list = [&](const std::string& q) {
    auto res = admin_call(s.admin_port(), http::verb::get, "/api/v1/sessions" + q);
    EXPECT_EQ(res.result_int(), 200u) << res.body();
    return boost::json::parse(res.body()).as_object();
  };
  EXPECT_EQ(list("").at("count").to_number<std::uint64_t>(), 2u);
  auto acme = list("?tenant=acme");
  ASSERT_EQ(acme.at("count").to_number<std::uint64_t>(), 1u);
  auto sess = acme.at("sessions").as_array()[0].as_object();
  EXPECT_EQ(sess.at("path").as_string(), "/v1/listen");
  EXPECT_EQ(sess.at("model").as_string(), "nova-3");
  EXPECT_EQ(sess.at("params").as_object().at("sample_rate").as_string(), "16000");
  EXPECT_FALSE(sess.at("request_id").is_null());
  EXPECT_EQ(list("?path=/v1/speak").at("count").to_number<std::uint64_t>(), 1u);
  EXPECT_EQ(list("?state=open").at("count").to_number<std::uint64_t>(), 2u);
  EXPECT_EQ(list("?idle_for=3600").at("count").to_number<std::uint64_t>(), 0u);
  EXPECT_EQ(admin_call(s.admin_port(), http::verb::get, "/api/v1/sessions?state=sleepy").result_int(), 400u);
  EXPECT_EQ(admin_call(s.admin_port(), http::verb::get, "/api/v1/sessions?bogus=1").result_int(), 400u);
  auto id = sess.at("id").to_number<std::uint64_t>();
  auto one = admin_call(s.admin_port(), http::verb::get, "/api/v1/sessions/" + std::to_string(id));
  EXPECT_EQ(one.result_int(), 200u);
  EXPECT_EQ(boost::json::parse(one.body()).as_object().at("tenant").as_string(), "acme");
  EXPECT_EQ(admin_call(s.admin_port(), http::verb::get, "/api/v1/sessions/999999").result_int(), 404u);
  EXPECT_EQ(admin_call(s.admin_port(), http::verb::get, "/api/v1/sessions/abc").result_int(), 400u);
  // No secret of any kind in the API's answers.
  auto all = admin_call(s.admin_port(), http::verb::get, "/api/v1/sessions").body();
  EXPECT_EQ(all.find("sim-key"), std::string::npos);
  EXPECT_EQ(all.find("\"ka\""), std::string::npos);
  a.ws.close(websocket::close_code::normal);
  g.ws.close(websocket::close_code::normal);
}

TEST_P(Gateway, ClientThatVanishesFreesTheUpstreamAndTheRegistry) {
  auto& s = start();
  {
    Client c;
    ASSERT_TRUE(c.open(s.port(), kListen, "Token k"));
    c.send_binary(linear16_silence(0.5));
    ASSERT_TRUE(eventually([&] { return s.sim().stats().projects["default"][protocol::Family::streaming].open == 1; }));
    // Reset the TCP connection without a close frame.
    beast::get_lowest_layer(c.ws).socket().set_option(asio::socket_base::linger(true, 0));
    beast::get_lowest_layer(c.ws).socket().close();
  }
  EXPECT_TRUE(eventually([&] { return s.sim().stats().projects["default"][protocol::Family::streaming].open == 0; }));
}

INSTANTIATE_TEST_SUITE_P(Threads, Gateway, kIoThreads, io_threads_name);
