#include "upstream/connector.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/url/parse.hpp>

namespace sluice::upstream {
namespace {

using tcp = asio::ip::tcp;
namespace http = beast::http;
namespace websocket = beast::websocket;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

template <class Ws>
void decorate(Ws& ws, const ConnectRequest& r) {
  ws.set_option(websocket::stream_base::decorator([&r](websocket::request_type& req) {
    req.set(http::field::authorization, r.authorization);
    req.set(http::field::user_agent, r.user_agent.empty() ? std::string("sluice/" SLUICE_VERSION) : r.user_agent);
    if (!r.session_header.empty()) req.set("x-deepgram-session-id", r.session_header);
  }));
}

void capture_refusal(ConnectResult& out, const websocket::response_type& res) {
  Refusal r;
  r.status = res.result_int();
  r.request_id = std::string(res["dg-request-id"]);
  r.dg_error = std::string(res["dg-error"]);
  r.content_type = std::string(res[http::field::content_type]);
  r.retry_after = std::string(res[http::field::retry_after]);
  r.body = res.body();
  out.refusal = std::move(r);
}

template <class Ws>
asio::awaitable<void> handshake(Ws& ws, ConnectResult& out, const ConnectRequest& r) {
  decorate(ws, r);
  websocket::response_type res;
  auto [ec] = co_await ws.async_handshake(res, r.base.host_header, r.target, use_tuple);
  if (!ec) {
    out.request_id = std::string(res["dg-request-id"]);
    co_return;
  }
  if (ec == websocket::error::upgrade_declined && res.result_int() != 0) {
    capture_refusal(out, res);
    co_return;
  }
  out.error = ec;
}

}  // namespace

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
    auto ws = std::make_unique<PlainWs>(std::move(stream));
    co_await handshake(*ws, out, r);
    if (out.ok()) {
      beast::get_lowest_layer(*ws).expires_never();
      out.ws = std::move(ws);
    }
  } else {
    auto ws = std::make_unique<TlsWs>(std::move(stream), tls);
    auto& ssl = ws->next_layer();
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
    co_await handshake(*ws, out, r);
    if (out.ok()) {
      beast::get_lowest_layer(*ws).expires_never();
      out.ws = std::move(ws);
    }
  }
  if (out.error == beast::error::timeout) out.timed_out = true;
  co_return out;
}

}  // namespace sluice::upstream
