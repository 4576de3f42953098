#include "protocol/credential.hpp"

#include <boost/beast/http/rfc7230.hpp>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <array>
#include <cctype>
#include <vector>

namespace sluice::protocol {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::optional<AuthScheme> scheme_from(std::string_view word) {
  if (iequals(word, "token")) return AuthScheme::token;
  if (iequals(word, "bearer")) return AuthScheme::bearer;
  return std::nullopt;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::array<unsigned char, SHA256_DIGEST_LENGTH> sha256(std::string_view s) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> out{};
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), out.data());
  return out;
}

std::string hex(const unsigned char* p, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(digits[p[i] >> 4]);
    out.push_back(digits[p[i] & 0xf]);
  }
  return out;
}

}  // namespace

std::string_view scheme_word(AuthScheme s) { return s == AuthScheme::bearer ? "bearer" : "token"; }

std::optional<Credential> parse_credential(std::string_view authorization,
                                           std::string_view subprotocols) {
  authorization = trim(authorization);
  if (!authorization.empty()) {
    // "<scheme> <credential>": one word, whitespace, the rest.
    auto space = authorization.find_first_of(" \t");
    if (space == std::string_view::npos) return std::nullopt;
    auto scheme = scheme_from(authorization.substr(0, space));
    auto secret = trim(authorization.substr(space));
    if (!scheme || secret.empty() || secret.find_first_of(" \t") != std::string_view::npos)
      return std::nullopt;
    return Credential{*scheme, std::string(secret), false, {}};
  }
  if (subprotocols.empty()) return std::nullopt;
  // Sec-WebSocket-Protocol is a comma-separated list of tokens; the scheme
  // word is followed by the credential as the next item.
  std::vector<std::string_view> items;
  for (auto item : boost::beast::http::token_list{subprotocols}) items.push_back(item);
  for (std::size_t i = 0; i + 1 < items.size(); ++i) {
    if (auto scheme = scheme_from(items[i])) {
      return Credential{*scheme, std::string(items[i + 1]), true, std::string(items[i])};
    }
  }
  return std::nullopt;
}

std::string fingerprint(std::string_view secret) {
  auto d = sha256(secret);
  return hex(d.data(), 6);
}

std::string key_hash(std::string_view secret) {
  auto d = sha256(secret);
  return "sha256:" + hex(d.data(), d.size());
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace sluice::protocol
