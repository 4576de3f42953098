#include "session/upgrade.hpp"

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/url/parse.hpp>
#include <fmt/format.h>
#include <openssl/evp.h>

#include <array>
#include <charconv>

#include "protocol/audio.hpp"
#include "protocol/errors.hpp"

namespace sluice::session {
namespace {

namespace http = boost::beast::http;

// Query parameters recorded with a session: they classify a stream (model,
// format, features) and never carry secrets or URLs.
constexpr std::array kClassifyingParams{
    "model",          "encoding",      "sample_rate",       "channels",     "multichannel",
    "language",       "version",       "tier",              "diarize",      "interim_results",
    "punctuate",      "smart_format",  "endpointing",       "utterance_end_ms", "vad_events",
    "redact",         "numerals",      "profanity_filter",  "eot_threshold", "eager_eot_threshold",
    "eot_timeout_ms", "speed",         "mip_opt_out",       "detect_entities", "keyterm",
    "language_hint",  "filler_words",  "dictation",         "measurements", "paragraphs"};

// A client's text as an error message may show it: printable ASCII (others
// as '?'), at most 64 characters. Error bodies are JSON, which must be valid
// UTF-8, and dg-error is a header.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64)) out.push_back(c >= 0x20 && c < 0x7F ? c : '?');
  if (s.size() > 64) out += "...";
  return out;
}

int to_int(std::string_view s, int fallback) {
  int v = fallback;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return (ec == std::errc() && p == s.data() + s.size()) ? v : fallback;
}

}  // namespace

bool is_classifying(std::string_view key) {
  for (auto k : kClassifyingParams)
    if (key == k) return true;
  return false;
}

HttpRefusal sluice_error(unsigned status, std::string_view code, std::string_view message) {
  HttpRefusal r;
  r.status = status;
  r.body = protocol::error_body(code, message, protocol::make_uuid());
  r.dg_error = std::string(message);
  return r;
}

std::optional<HttpRefusal> check_upgrade(const UpgradeRequest& req) {
  if (req.method() != http::verb::get) {
    auto r = sluice_error(405, "METHOD_NOT_ALLOWED",
                          fmt::format("sluice: a WebSocket upgrade is a GET request, not {}", printable(req.method_string())));
    r.headers.emplace_back("Allow", "GET");
    return r;
  }
  // HTTP/1.1 (RFC 6455 4.1; Beast's parser reads only 1.0 and 1.1) with a
  // Host field (RFC 6455 4.2.1, RFC 9112 3.2): Beast's accept refuses
  // anything else.
  if (req.version() != 11) return sluice_error(400, "Bad Request", "sluice: a WebSocket upgrade needs HTTP/1.1");
  if (req.find(http::field::host) == req.end())
    return sluice_error(400, "Bad Request", "sluice: a WebSocket upgrade needs a Host field");
  if (!http::token_list(req[http::field::upgrade]).exists("websocket")) {
    auto r = sluice_error(426, "UPGRADE_REQUIRED",
                          "sluice: this endpoint streams over WebSocket; send a WebSocket upgrade request "
                          "(Upgrade: websocket)");
    r.headers.emplace_back("Upgrade", "websocket");
    return r;
  }
  if (!http::token_list(req[http::field::connection]).exists("upgrade"))
    return sluice_error(400, "Bad Request", "sluice: a WebSocket upgrade needs Connection: Upgrade");
  auto key = req[http::field::sec_websocket_key];
  unsigned char decoded[24];
  if (key.size() != 24 || !key.ends_with("==") ||
      EVP_DecodeBlock(decoded, reinterpret_cast<const unsigned char*>(key.data()), 24) != 18)
    return sluice_error(400, "Bad Request",
                        key.empty() ? "sluice: a WebSocket upgrade needs a Sec-WebSocket-Key"
                                    : "sluice: Sec-WebSocket-Key must be 16 bytes in base64");
  if (req[http::field::sec_websocket_version] != "13") {
    auto r = sluice_error(426, "UPGRADE_REQUIRED",
                          fmt::format("sluice: unsupported Sec-WebSocket-Version '{}'; this server speaks 13",
                                      printable(req[http::field::sec_websocket_version])));
    r.headers.emplace_back("Sec-WebSocket-Version", "13");
    return r;
  }
  return std::nullopt;
}

RouteResult read_route(const UpgradeRequest& req) {
  RouteResult out;
  auto url = boost::urls::parse_origin_form(req.target());
  if (!url) {
    out.refusal = sluice_error(400, "Bad Request", "sluice: malformed request target");
    return out;
  }
  out.path = std::string(url->encoded_path());
  auto endpoint = protocol::endpoint_from_path(url->encoded_path());
  if (!endpoint) {
    out.refusal = sluice_error(404, "NOT_FOUND",
                               fmt::format("sluice: no streaming endpoint at {}; expected /v1/listen, "
                                           "/v2/listen, /v1/speak or /v1/agent/converse",
                                           out.path));
    return out;
  }
  if (auto bad = check_upgrade(req)) {
    out.refusal = std::move(bad);
    out.logged = true;
    return out;
  }
  Route route{*endpoint, std::string(req.target()), {}, {}, {}, 0};
  std::string encoding;
  int sample_rate = 0, channels = 1;
  for (auto p : url->params()) {
    route.all_params.emplace_back(p.key, p.value);
    if (!is_classifying(p.key)) continue;
    if (p.key == "model") route.model = p.value;
    if (p.key == "encoding") encoding = p.value;
    if (p.key == "sample_rate") sample_rate = to_int(p.value, 0);
    if (p.key == "channels") channels = to_int(p.value, 1);
    route.params.emplace_back(p.key, p.value);
  }
  route.audio_bytes_per_second = protocol::bytes_per_second(encoding, sample_rate, channels);
  if (route.audio_bytes_per_second > 0)
    route.audio_block_bytes = static_cast<unsigned>(route.audio_bytes_per_second / sample_rate);
  out.route = std::move(route);
  return out;
}

}  // namespace sluice::session
