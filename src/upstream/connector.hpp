#pragma once
// Opens the vendor-side WebSocket: resolve, connect, TLS (verified, with SNI)
// and the upgrade (Beast's HTTP, RFC 6455 4.1 checks), with the real
// credential injected. Captures what the vendor answered so a refusal can be
// passed to the client as it was. On success the caller gets the bare stream
// and any bytes that came after the 101: the relay walks frames itself.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <variant>

namespace sluice::upstream {

namespace beast = boost::beast;
namespace asio = boost::asio;

using PlainStream = asio::ip::tcp::socket;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;
using UpstreamStream = std::variant<std::unique_ptr<PlainStream>, std::unique_ptr<TlsStream>>;

// Where a stream goes: parsed once from a ws:// or wss:// base URL.
struct UpstreamBase {
  bool tls = false;
  std::string host;
  std::string port;
  std::string path_prefix;  // without a trailing slash
  std::string host_header;  // host[:port] as the Host header carries it
};

// Parses a ws:// or wss:// URL with Boost.URL; nullopt if it is not one.
std::optional<UpstreamBase> parse_upstream_base(std::string_view url);

struct ConnectRequest {
  UpstreamBase base;
  std::string target;         // path and query, query untouched
  std::string authorization;  // the header value to inject ("Token …")
  std::string user_agent;     // passed on from the client, if any
  std::string session_header; // x-deepgram-session-id, passed on if any
  std::chrono::duration<double> timeout{10};
};

// The vendor's answer when it did not upgrade.
struct Refusal {
  unsigned status = 0;
  std::string request_id;    // dg-request-id
  std::string dg_error;      // dg-error
  std::string content_type;
  std::string body;
  std::string retry_after;
};

struct ConnectResult {
  UpstreamStream stream;          // set on success: the upgraded connection
  std::string pending;            // bytes read after the 101 (the first frames)
  std::string request_id;         // dg-request-id of the 101
  std::optional<Refusal> refusal; // the vendor answered, but not 101
  boost::system::error_code error;  // no answer: resolve/connect/TLS failure or timeout
  bool timed_out = false;
  bool ok() const { return !refusal && !error; }
};

// Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2).
std::string websocket_accept(std::string_view key);

asio::awaitable<ConnectResult> connect(asio::any_io_executor executor, asio::ssl::context& tls,
                                       ConnectRequest request);

}  // namespace sluice::upstream
