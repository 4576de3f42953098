// The sluice binary as users run it: memory under a reader that stops reading,
// TLS on both legs, and the command line's answers to bad input.
#include <cstdlib>
#include <filesystem>

#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include "child_process.hpp"
#include "stack.hpp"
#include "test_cert.hpp"
#include "sluice_binary.hpp"

using namespace sluice;
using namespace sluice::testing;

TEST(Process, ClientThatStopsReadingDoesNotGrowTheGatewaysMemory) {
  Stack s;  // only its echo upstream is used: it floods on request
  ChildProcess gw({SLUICE_BINARY, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--upstream",
                   s.test_upstream_url(), "--admin-token-file", "/tmp/sluice-test-admin.token", "--log-level", "warn"});
  auto m = gw.wait_for_line(R"(listening on 127\.0\.0\.1:(\d+) admin)");
  auto port = static_cast<unsigned short>(std::stoi(m[1]));
  Client c;
  ASSERT_TRUE(c.open(port, "/v1/speak", "Token k")) << c.error.message();
  // Warm up the relay so the baseline includes its steady-state buffers.
  c.send_text("warm-up");
  ASSERT_TRUE(c.read());
  auto baseline = gw.rss_kib();
  ASSERT_GT(baseline, 0);
  constexpr long long kFlood = 512LL * 1024 * 1024;
  c.send_text("flood:" + std::to_string(kFlood));  // and never read again
  ASSERT_TRUE(eventually([&] { return s.test_upstream().flood_sent.load() >= 4 * 1024 * 1024; }));
  // Let the upstream push for as long as the relay lets it.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  auto grown_kib = gw.rss_kib() - baseline;
  auto sent = s.test_upstream().flood_sent.load();
  // Without backpressure the whole flood would pass through the gateway's memory.
  EXPECT_LT(sent, 96LL * 1024 * 1024) << "the upstream was never paused";
  EXPECT_LT(grown_kib, 32 * 1024) << "gateway RSS grew by " << grown_kib << " KiB";
  beast::get_lowest_layer(c.ws).socket().set_option(asio::socket_base::linger(true, 0));
  beast::get_lowest_layer(c.ws).socket().close();
}

TEST(Process, BadConfigurationNamesTheKeyAndRefusesToStart) {
  auto dir = std::filesystem::temp_directory_path() / "sluice-badcfg";
  std::filesystem::create_directories(dir);
  auto file = dir / "bad.yaml";
  {
    std::ofstream f(file);
    f << "relay:\n  ping_interval: often\n";
  }
  auto cmd = std::string(SLUICE_BINARY) + " serve --config " + file.string() + " 2>" + (dir / "err").string();
  int rc = std::system(cmd.c_str());
  EXPECT_EQ(WEXITSTATUS(rc), 2);
  std::ifstream err(dir / "err");
  std::string text((std::istreambuf_iterator<char>(err)), {});
  EXPECT_NE(text.find("relay.ping_interval"), std::string::npos) << text;
}

TEST(Tls, TerminatesClientTlsAndVerifiesTheUpstreamCertificate) {
  TestCert tc;
  // Gateway B terminates TLS and relays to the simulator; gateway A relays to
  // B over wss://, verifying B's certificate.
  Stack b({}, [&](config::Config& c, Stack&) {
    c.tls.cert_file = tc.cert;
    c.tls.key_file = tc.key;
  });
  auto wss = "wss://127.0.0.1:" + std::to_string(b.port());
  Stack trusting({}, [&](config::Config& c, Stack&) {
    c.upstream.url = wss;
    c.upstream.ca_file = tc.cert;
  });
  Stack untrusting({}, [&](config::Config& c, Stack&) { c.upstream.url = wss; });

  Client ok;
  ASSERT_TRUE(ok.open(trusting.port(), "/v1/listen?encoding=linear16&sample_rate=16000", "Token k"))
      << ok.error.message() << " " << ok.response.result_int() << " " << ok.response.body();
  ok.send_binary(linear16_silence(0.5));
  ok.send_text(R"({"type":"CloseStream"})");
  auto meta = ok.read_until_type("Metadata");
  ASSERT_TRUE(meta);
  EXPECT_DOUBLE_EQ(meta->at("duration").to_number<double>(), 0.5);
  EXPECT_EQ(ok.read_until_close(), 1000);

  Client refused;
  EXPECT_FALSE(refused.open(untrusting.port(), "/v1/listen", "Token k"));
  EXPECT_EQ(refused.response.result_int(), 502u);
  EXPECT_NE(refused.response.body().find("UPSTREAM_UNAVAILABLE"), std::string::npos);

  // A TLS client straight to B.
  asio::io_context ioc;
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  ctx.load_verify_file(tc.cert);
  ctx.set_verify_mode(asio::ssl::verify_peer);
  websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws(ioc, ctx);
  beast::get_lowest_layer(ws).connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), b.port()));
  ws.next_layer().handshake(asio::ssl::stream_base::client);
  ws.set_option(websocket::stream_base::decorator(
      [](websocket::request_type& r) { r.set(http::field::authorization, "Token k"); }));
  ws.handshake("127.0.0.1", "/v2/listen?model=flux-general-en&encoding=linear16&sample_rate=16000");
  beast::flat_buffer buf;
  ws.read(buf);
  EXPECT_NE(beast::buffers_to_string(buf.data()).find("Connected"), std::string::npos);
  ws.close(websocket::close_code::normal);
  EXPECT_TRUE(eventually([&] { return b.registry().size() == 0 && trusting.registry().size() == 0; }));
}
