#pragma once
// The Redis server the cluster tests run against: SLUICE_TEST_REDIS_URL, set
// by scripts/test.sh from scripts/test-redis.sh. Without it the tests skip,
// except under CI, where a missing server is a failure.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <thread>

// Polls `cond` every 10 ms until it holds or `bound` passes.
inline bool poll_until(const std::function<bool()>& cond,
                       std::chrono::milliseconds bound = std::chrono::milliseconds(5000)) {
  auto end = std::chrono::steady_clock::now() + bound;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

inline std::optional<std::string> redis_url() {
  const char* url = std::getenv("SLUICE_TEST_REDIS_URL");
  if (url && *url) return std::string(url);
  return std::nullopt;
}

// A key prefix no other test (or run) shares.
inline std::string unique_redis_prefix() {
  static std::atomic<int> counter{0};
  std::random_device rd;
  return "sluice-test:" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
         std::to_string(rd() % 100000);
}

#define SLUICE_REQUIRE_REDIS(url_var)                                                                       \
  auto url_var##_opt = redis_url();                                                                         \
  if (!url_var##_opt) {                                                                                     \
    const char* ci = std::getenv("CI");                                                                     \
    if (ci && std::string(ci) == "true")                                                                    \
      FAIL() << "SLUICE_TEST_REDIS_URL is not set (CI=true): scripts/test.sh starts Redis with "           \
                "scripts/test-redis.sh and sets it";                                                        \
    GTEST_SKIP() << "SLUICE_TEST_REDIS_URL is not set; run scripts/test-redis.sh start and export "        \
                    "SLUICE_TEST_REDIS_URL=<the URL it prints> to run the cluster tests";                   \
  }                                                                                                         \
  const std::string url_var = *url_var##_opt
