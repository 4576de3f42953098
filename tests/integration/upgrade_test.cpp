// The upgrade request is validated completely (method, Upgrade, Connection,
// key, version) before authentication, admission or any upstream work: a bad
// one costs no vendor handshake and leaves no history row.
#include <limits>

#include "history/store.hpp"
#include "stack.hpp"

using namespace sluice;
using namespace sluice::testing;

namespace {

const std::string kTarget = "/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000";

struct Answer {
  unsigned status = 0;
  std::string raw;  // head and body as received
};

// Sends `request` as it stands and reads the answer until the gateway closes.
Answer send_raw(unsigned short port, const std::string& request) {
  asio::io_context ioc;
  tcp::socket s(ioc);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  asio::write(s, asio::buffer(request));
  Answer a;
  char buf[4096];
  boost::system::error_code ec;
  while (!ec) {
    auto n = s.read_some(asio::buffer(buf), ec);
    a.raw.append(buf, n);
  }
  if (a.raw.size() > 12 && a.raw.starts_with("HTTP/1.1 ")) a.status = static_cast<unsigned>(std::stoi(a.raw.substr(9, 3)));
  return a;
}

std::string request(const std::string& method, const std::vector<std::string>& fields) {
  std::string r = method + " " + kTarget + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token k\r\n";
  for (const auto& f : fields) r += f + "\r\n";
  return r + "\r\n";
}

const std::string kUpgrade = "Upgrade: websocket", kConnection = "Connection: Upgrade",
                  kKey = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", kVersion = "Sec-WebSocket-Version: 13";

class Upgrade : public StackTest {};

}  // namespace

TEST_F(Upgrade, BadUpgradesAreRefusedBeforeAnyUpstreamWorkOrHistoryRow) {
  auto& s = start();
  struct Case {
    std::string name, request;
    unsigned status;
    std::string must_contain;
  };
  std::vector<Case> cases{
      {"no key", request("GET", {kUpgrade, kConnection, kVersion}), 400, "Sec-WebSocket-Key"},
      {"short key", request("GET", {kUpgrade, kConnection, "Sec-WebSocket-Key: c2hvcnQ=", kVersion}), 400,
       "Sec-WebSocket-Key"},
      {"wrong version", request("GET", {kUpgrade, kConnection, kKey, "Sec-WebSocket-Version: 8"}), 426,
       "Sec-WebSocket-Version: 13"},
      {"no version", request("GET", {kUpgrade, kConnection, kKey}), 426, "Sec-WebSocket-Version: 13"},
      {"not GET", request("POST", {kUpgrade, kConnection, kKey, kVersion, "Content-Length: 0"}), 405, "Allow: GET"},
      {"no Upgrade", request("GET", {kConnection, kKey, kVersion}), 426, "Upgrade"},
      {"no Connection", request("GET", {kUpgrade, kKey, kVersion}), 400, "Connection"},
  };
  for (const auto& c : cases) {
    auto a = send_raw(s.port(), c.request);
    EXPECT_EQ(a.status, c.status) << c.name << ": " << a.raw;
    EXPECT_NE(a.raw.find(c.must_contain), std::string::npos) << c.name << ": " << a.raw;
  }
  EXPECT_EQ(s.sim().stats().handshakes, 0) << "a bad upgrade reached the vendor";
  EXPECT_EQ(s.gateway().admission().status("streaming")->admitted_total, 0);

  // A good request right after is admitted (and is the only row).
  Client ok;
  ASSERT_TRUE(ok.open(s.port(), kTarget, "Token k")) << ok.error.message();
  ok.ws.close(websocket::close_code::normal);
  EXPECT_EQ(s.sim().stats().handshakes, 1);
  EXPECT_TRUE(eventually([&] { return s.registry().size() == 0; }));
  ASSERT_TRUE(s.recorder().flush(10'000'000));
  history::Store store(s.history_url(), {.read_only = true});
  history::SessionQuery q;
  q.from = 0;
  q.to = std::numeric_limits<history::Micros>::max() / 2;
  q.include_unopened = true;
  int rows = 0;
  store.sessions(q, [&](history::SessionRecord&&) { ++rows; });
  EXPECT_EQ(rows, 1) << "a refused upgrade left a history row";
}
