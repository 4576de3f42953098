#include <gtest/gtest.h>

#include "auth/key_table.hpp"
#include "protocol/credential.hpp"

using namespace sluice::protocol;

TEST(Credential, TokenHeader) {
  auto c = parse_credential("Token abc123", "");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->scheme, AuthScheme::token);
  EXPECT_EQ(c->secret, "abc123");
  EXPECT_FALSE(c->via_subprotocol);
}

TEST(Credential, BearerHeaderAnyCase) {
  for (auto h : {"Bearer eyJ.x.y", "bearer eyJ.x.y", "BEARER eyJ.x.y", "  Bearer   eyJ.x.y  "}) {
    auto c = parse_credential(h, "");
    ASSERT_TRUE(c) << h;
    EXPECT_EQ(c->scheme, AuthScheme::bearer);
    EXPECT_EQ(c->secret, "eyJ.x.y");
  }
  auto c = parse_credential("tOkEn k", "");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->scheme, AuthScheme::token);
}

TEST(Credential, MalformedHeaderIsRejected) {
  EXPECT_FALSE(parse_credential("abc123", ""));            // no scheme
  EXPECT_FALSE(parse_credential("Basic dXNlcjpw", ""));    // other scheme
  EXPECT_FALSE(parse_credential("Token", ""));             // no credential
  EXPECT_FALSE(parse_credential("Token a b", ""));         // two words
  EXPECT_FALSE(parse_credential("", ""));                  // nothing
}

TEST(Credential, BrowserSubprotocolForms) {
  auto c = parse_credential("", "token, KEY1");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->scheme, AuthScheme::token);
  EXPECT_EQ(c->secret, "KEY1");
  EXPECT_TRUE(c->via_subprotocol);

  c = parse_credential("", "bearer,JWT.a.b");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->scheme, AuthScheme::bearer);
  EXPECT_EQ(c->secret, "JWT.a.b");

  // The JS SDK in a browser puts its own protocols around the pair.
  c = parse_credential("", "x-app, token, KEY2, x-deepgram-session-id, 1234");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->secret, "KEY2");

  EXPECT_FALSE(parse_credential("", "token"));   // scheme without key
  EXPECT_FALSE(parse_credential("", "chat, v2"));
}

// Found by the fuzz target `upgrade`: the scheme word is matched without
// regard to case, but sluice selected it in lower case, which a client that
// offered "Token" did not offer (RFC 6455 4.1: it fails the connection).
TEST(Credential, TheSubprotocolToSelectIsTheOneOffered) {
  auto c = parse_credential("", "x-app, Token, KEY2, x-deepgram-session-id, 1234");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->scheme, AuthScheme::token);
  EXPECT_EQ(c->subprotocol, "Token");
  c = parse_credential("", "BEARER, jwt");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->subprotocol, "BEARER");
  c = parse_credential("Token k", "token, other");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->subprotocol, "");  // the header's credential: no subprotocol selected
}

TEST(Credential, HeaderWinsOverSubprotocol) {
  auto c = parse_credential("Token fromheader", "token, fromprotocol");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->secret, "fromheader");
  EXPECT_FALSE(c->via_subprotocol);
}

TEST(Credential, FingerprintAndHashHideTheKey) {
  auto fp = fingerprint("secret-key");
  EXPECT_EQ(fp.size(), 12u);
  EXPECT_EQ(fp.find("secret"), std::string::npos);
  EXPECT_EQ(fp, fingerprint("secret-key"));
  EXPECT_NE(fp, fingerprint("secret-kez"));
  auto h = key_hash("secret-key");
  EXPECT_EQ(h.size(), 71u);
  EXPECT_TRUE(h.starts_with("sha256:"));
}

TEST(Credential, ConstantTimeEqual) {
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
}

TEST(KeyTable, MapsKeysToTenantsByHash) {
  sluice::config::Tenant a{"acme", {key_hash("k-acme-1"), key_hash("k-acme-2")}};
  sluice::config::Tenant b{"globex", {key_hash("k-globex")}};
  sluice::auth::KeyTable table({a, b});
  EXPECT_EQ(table.tenant_for("k-acme-2").value_or(""), "acme");
  EXPECT_EQ(table.tenant_for("k-globex").value_or(""), "globex");
  EXPECT_FALSE(table.tenant_for("k-unknown"));
  EXPECT_FALSE(table.tenant_for(""));
}
