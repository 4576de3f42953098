#pragma once
// The forms in which a client presents a key, as Deepgram accepts them:
// `Authorization: Token K`, `Authorization: Bearer K` (scheme matched without
// regard to case), or the browser form `Sec-WebSocket-Protocol: token, K`
// (or `bearer, K`).
#include <optional>
#include <string>
#include <string_view>

namespace sluice::protocol {

enum class AuthScheme { token, bearer };

struct Credential {
  AuthScheme scheme = AuthScheme::token;
  std::string secret;
  bool via_subprotocol = false;  // the browser form: echo the scheme word back
  // The browser form's scheme word exactly as the client offered it ("token",
  // "Token", ...): the subprotocol to select, since a client fails the
  // connection if the server selects one it did not offer (RFC 6455 4.1).
  std::string subprotocol;
};

std::string_view scheme_word(AuthScheme s);  // "token" / "bearer"

// Parses the credential out of the two headers a WebSocket upgrade may carry
// it in. The Authorization header wins when both are present. Returns nullopt
// when neither carries a well-formed credential.
std::optional<Credential> parse_credential(std::string_view authorization,
                                           std::string_view subprotocols);

// A short, non-reversible fingerprint of a secret (first 12 hex digits of its
// SHA-256), the only form in which a key may appear in logs, rows or replies.
std::string fingerprint(std::string_view secret);

// "sha256:<64 hex>" of a secret: the form client keys are stored in config.
std::string key_hash(std::string_view secret);

// Compares two equal-length byte strings in constant time.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace sluice::protocol
