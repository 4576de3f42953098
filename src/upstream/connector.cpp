#include "upstream/connector.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/error.hpp>
#include <boost/url/parse.hpp>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <random>

namespace sluice::upstream {
namespace {

using tcp = asio::ip::tcp;
namespace http = beast::http;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string base64(const unsigned char* p, std::size_t n) {
  std::string out(4 * ((n + 2) / 3), '\0');
  auto len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), p, static_cast<int>(n));
  out.resize(static_cast<std::size_t>(len));
  return out;
}

std::string make_key() {
  std::array<unsigned char, 16> raw{};
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) {
    std::random_device rd;
    for (auto& b : raw) b = static_cast<unsigned char>(rd());
  }
  return base64(raw.data(), raw.size());
}

bool has_token(std::string_view list, std::string_view token) {
  // A comma-separated header value containing `token`, in any case.
  while (!list.empty()) {
    auto comma = list.find(',');
    auto item = list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (beast::iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

void capture_refusal(ConnectResult& out, const http::response<http::string_body>& res) {
  Refusal r;
  r.status = res.result_int();
  r.request_id = std::string(res["dg-request-id"]);
  r.dg_error = std::string(res["dg-error"]);
  r.content_type = std::string(res[http::field::content_type]);
  r.retry_after = std::string(res[http::field::retry_after]);
  r.body = res.body();
  out.refusal = std::move(r);
}

// The client side of the opening handshake on an open stream. On a 101 whose
// headers check out, the bytes read past the response go to out.pending.
template <class Stream>
asio::awaitable<void> handshake(Stream& stream, ConnectResult& out, const ConnectRequest& r) {
  auto key = make_key();
  http::request<http::empty_body> req{http::verb::get, r.target, 11};
  req.set(http::field::host, r.base.host_header);
  req.set(http::field::upgrade, "websocket");
  req.set(http::field::connection, "Upgrade");
  req.set(http::field::sec_websocket_key, key);
  req.set(http::field::sec_websocket_version, "13");
  req.set(http::field::authorization, r.authorization);
  req.set(http::field::user_agent, r.user_agent.empty() ? std::string("sluice/" SLUICE_VERSION) : r.user_agent);
  if (!r.session_header.empty()) req.set("x-deepgram-session-id", r.session_header);
  auto [wec, wn] = co_await http::async_write(stream, req, use_tuple);
  (void)wn;
  if (wec) {
    out.error = wec;
    co_return;
  }
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1024 * 1024);
  auto [rec, rn] = co_await http::async_read(stream, buf, parser, use_tuple);
  (void)rn;
  if (rec) {
    out.error = rec;
    co_return;
  }
  auto& res = parser.get();
  if (res.result() != http::status::switching_protocols) {
    capture_refusal(out, res);
    co_return;
  }
  if (!beast::iequals(res[http::field::upgrade], "websocket") || !has_token(res[http::field::connection], "upgrade") ||
      res[http::field::sec_websocket_accept] != websocket_accept(key) ||
      !res[http::field::sec_websocket_extensions].empty()) {
    out.error = beast::websocket::error::bad_sec_accept;
    co_return;
  }
  out.request_id = std::string(res["dg-request-id"]);
  auto data = buf.data();
  out.pending.assign(static_cast<const char*>(data.data()), data.size());
}

}  // namespace

std::string websocket_accept(std::string_view key) {
  static constexpr std::string_view guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string input(key);
  input.append(guid);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(input.data(), input.size(), md, &len, EVP_sha1(), nullptr);
  return base64(md, len);
}

std::optional<UpstreamBase> parse_upstream_base(std::string_view url) {
  auto r = boost::urls::parse_uri(url);
  if (!r) return std::nullopt;
  UpstreamBase b;
  auto scheme = r->scheme();
  if (scheme == "wss") b.tls = true;
  else if (scheme != "ws") return std::nullopt;
  b.host = r->host_address();
  if (b.host.empty()) return std::nullopt;
  b.port = r->has_port() ? std::string(r->port()) : (b.tls ? "443" : "80");
  b.host_header = std::string(r->encoded_host());
  if (r->has_port()) b.host_header += ":" + b.port;
  b.path_prefix = std::string(r->encoded_path());
  while (!b.path_prefix.empty() && b.path_prefix.back() == '/') b.path_prefix.pop_back();
  return b;
}

asio::awaitable<ConnectResult> connect(asio::any_io_executor executor, asio::ssl::context& tls,
                                       ConnectRequest r) {
  ConnectResult out;
  auto deadline = std::chrono::duration_cast<std::chrono::steady_clock::duration>(r.timeout);
  tcp::resolver resolver(executor);
  auto [rec, endpoints] = co_await resolver.async_resolve(r.base.host, r.base.port, use_tuple);
  if (rec) {
    out.error = rec;
    co_return out;
  }
  beast::tcp_stream stream(executor);
  stream.expires_after(deadline);
  auto [cec, ep] = co_await stream.async_connect(endpoints, use_tuple);
  if (cec) {
    out.error = cec;
    out.timed_out = cec == beast::error::timeout;
    co_return out;
  }
  stream.socket().set_option(tcp::no_delay(true));
  if (!r.base.tls) {
    co_await handshake(stream, out, r);
    if (out.ok()) {
      stream.expires_never();
      out.stream = std::make_unique<PlainStream>(stream.release_socket());
    }
  } else {
    auto ssl_ptr = std::make_unique<TlsStream>(std::move(stream), tls);
    auto& ssl = *ssl_ptr;
    // SNI, and verify the certificate against the host name.
    if (!SSL_set_tlsext_host_name(ssl.native_handle(), r.base.host.c_str())) {
      out.error = boost::system::error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category());
      co_return out;
    }
    ssl.set_verify_callback(asio::ssl::host_name_verification(r.base.host));
    auto [hec] = co_await ssl.async_handshake(asio::ssl::stream_base::client, use_tuple);
    if (hec) {
      out.error = hec;
      out.timed_out = hec == beast::error::timeout;
      co_return out;
    }
    co_await handshake(ssl, out, r);
    if (out.ok()) {
      beast::get_lowest_layer(ssl).expires_never();
      out.stream = std::move(ssl_ptr);
    }
  }
  if (out.error == beast::error::timeout) out.timed_out = true;
  co_return out;
}

}  // namespace sluice::upstream
