// cluster.redis_url: the forms operators write, and clear errors that never
// echo a password.
#include <gtest/gtest.h>

#include "cluster/redis.hpp"

using namespace sluice::cluster;

TEST(RedisUrl, ReadsHostPortPasswordAndDatabase) {
  auto u = parse_redis_url("redis://127.0.0.1");
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 6379);
  EXPECT_EQ(u.db, 0);
  EXPECT_TRUE(u.password.empty());
  EXPECT_EQ(u.redacted, "redis://127.0.0.1:6379/0");

  u = parse_redis_url("redis://:s%40cret@redis.internal:16379/3");
  EXPECT_EQ(u.host, "redis.internal");
  EXPECT_EQ(u.port, 16379);
  EXPECT_EQ(u.password, "s@cret");
  EXPECT_TRUE(u.user.empty());
  EXPECT_EQ(u.db, 3);
  EXPECT_EQ(u.redacted, "redis://:***@redis.internal:16379/3");

  u = parse_redis_url("redis://gateway:pw@10.0.0.5:6380/");
  EXPECT_EQ(u.user, "gateway");
  EXPECT_EQ(u.password, "pw");
  EXPECT_EQ(u.redacted, "redis://gateway:***@10.0.0.5:6380/0");

  // A password alone, as redis-cli -u reads redis://secret@host.
  u = parse_redis_url("redis://secret@h");
  EXPECT_TRUE(u.user.empty());
  EXPECT_EQ(u.password, "secret");
}

TEST(RedisUrl, RefusesWhatItCannotUseWithoutEchoingThePassword) {
  auto error = [](const char* text) {
    try {
      parse_redis_url(text);
    } catch (const RedisError& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_NE(error("not a url").find("not a URL"), std::string::npos);
  EXPECT_NE(error("rediss://:pw-123@h").find("scheme must be redis"), std::string::npos);
  EXPECT_EQ(error("rediss://:pw-123@h").find("pw-123"), std::string::npos);
  EXPECT_NE(error("redis://:pw-123@h/abc").find("database number"), std::string::npos);
  EXPECT_EQ(error("redis://:pw-123@h/abc").find("pw-123"), std::string::npos);
  EXPECT_NE(error("redis://h:0").find("bad port"), std::string::npos);
  EXPECT_NE(error("redis://h/0?timeout=1").find("query"), std::string::npos);
  EXPECT_NE(error("redis:///0").find("no host"), std::string::npos);
}
