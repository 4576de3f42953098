#include <gtest/gtest.h>

#include <thread>

#include "registry/registry.hpp"

using namespace sluice::registry;

namespace {
SessionInfo info(Registry& r, std::string tenant, sluice::protocol::Endpoint ep) {
  SessionInfo i;
  i.id = r.next_id();
  i.tenant = std::move(tenant);
  i.endpoint = ep;
  i.accepted = wall_now();
  i.accepted_mono = mono_ns();
  return i;
}
}  // namespace

TEST(Registry, RegistrationLivesExactlyAsLongAsItsHolder) {
  Registry r;
  {
    auto a = r.add(info(r, "acme", sluice::protocol::Endpoint::listen_v1));
    EXPECT_EQ(r.size(), 1u);
    {
      auto b = r.add(info(r, "acme", sluice::protocol::Endpoint::listen_v2));
      EXPECT_EQ(r.size(), 2u);
      EXPECT_NE(a->info().id, b->info().id);
      EXPECT_TRUE(r.find(b->info().id));
    }
    EXPECT_EQ(r.size(), 1u);
    auto moved = std::move(a);
    EXPECT_EQ(r.size(), 1u);
  }
  EXPECT_EQ(r.size(), 0u);
}

TEST(Registry, FiltersByTenantPathStateAndIdleness) {
  Registry r(std::chrono::seconds(5));
  auto a = r.add(info(r, "acme", sluice::protocol::Endpoint::listen_v1));
  auto b = r.add(info(r, "globex", sluice::protocol::Endpoint::speak_v1));
  auto c = r.add(info(r, "acme", sluice::protocol::Endpoint::listen_v2));
  auto now = mono_ns();
  // a: open, audio just now. b: open, no audio for 60 s. c: still queued.
  a->set_state(SessionState::open);
  a->counters().upstream_open_ns = now - 100'000'000'000;
  a->counters().last_audio_ns = now;
  b->set_state(SessionState::open);
  b->counters().upstream_open_ns = now - 60'000'000'000;

  EXPECT_EQ(r.list().size(), 3u);
  EXPECT_EQ(r.list({.tenant = "acme"}).size(), 2u);
  EXPECT_EQ(r.list({.path = "/v1/speak"}).size(), 1u);
  EXPECT_EQ(r.list({.state = "queued"}).size(), 1u);
  auto idle = r.list({.state = "idle"});
  ASSERT_EQ(idle.size(), 1u);
  EXPECT_EQ(idle[0]->info().id, b->info().id);
  EXPECT_EQ(r.list({.state = "open"}).size(), 1u);
  auto idle30 = r.list({.idle_for = 30.0});
  ASSERT_EQ(idle30.size(), 1u);
  EXPECT_EQ(idle30[0]->info().tenant, "globex");
  EXPECT_EQ(r.list({.tenant = "acme", .idle_for = 30.0}).size(), 0u);
}

TEST(Registry, SteadyTimestampsShowAsWallTimesThroughTheSessionsAnchor) {
  SessionInfo i;
  i.accepted = Clock::time_point(std::chrono::seconds(1'800'000'000));
  i.accepted_mono = 5'000'000'000;
  const std::int64_t accepted = 1'800'000'000'000'000'000;
  EXPECT_EQ(i.accepted_ns(), accepted);
  EXPECT_EQ(i.to_wall_ns(0), 0);  // never stays never
  EXPECT_EQ(i.to_wall_ns(5'000'000'000), accepted);
  EXPECT_EQ(i.to_wall_ns(6'500'000'123), accepted + 1'500'000'123);
  EXPECT_DOUBLE_EQ(i.age_seconds(7'500'000'000), 2.5);
  // A wall-clock step moves neither: the anchor was taken once.
  set_wall_offset_for_tests(std::chrono::hours(2));
  EXPECT_EQ(i.to_wall_ns(6'500'000'123), accepted + 1'500'000'123);
  EXPECT_DOUBLE_EQ(i.age_seconds(7'500'000'000), 2.5);
  set_wall_offset_for_tests(std::chrono::nanoseconds(0));
}

TEST(Registry, WallClockStepMovesWallTimeOnlyAndLeavesIdlenessAlone) {
  Registry r(std::chrono::seconds(5));
  auto a = r.add(info(r, "acme", sluice::protocol::Endpoint::listen_v1));
  a->set_state(SessionState::open);
  a->counters().upstream_open_ns = mono_ns();
  sluice::registry::note_audio(a->counters(), mono_ns());
  const auto wall0 = wall_ns(), mono0 = mono_ns();
  constexpr std::int64_t two_hours = 7'200'000'000'000;
  set_wall_offset_for_tests(std::chrono::hours(2));
  const auto wall1 = wall_ns(), mono1 = mono_ns();
  EXPECT_GE(wall1 - wall0, two_hours);
  EXPECT_LT(mono1 - mono0, two_hours / 2);
  EXPECT_EQ(r.list({.state = "idle"}).size(), 0u);
  EXPECT_EQ(r.list({.idle_for = 60.0}).size(), 0u);
  EXPECT_LT(Registry::idle_seconds(a.entry(), mono1), 60);
  EXPECT_LT(a->info().age_seconds(mono1), 60);
  EXPECT_LT(a->idle_seconds_until(mono1), 60);
  set_wall_offset_for_tests(std::chrono::nanoseconds(0));
  EXPECT_LT(wall_ns() - wall0, two_hours / 2);
}

TEST(Registry, AudioSecondsFromFormatElseMetadata) {
  Registry r;
  auto i = info(r, "t", sluice::protocol::Endpoint::listen_v1);
  i.audio_bytes_per_second = 32000;
  auto raw = r.add(std::move(i));
  raw->counters().audio_bytes = 48000;
  raw->set_upstream_summary(9.0, 1);  // the declared format wins
  EXPECT_DOUBLE_EQ(raw->audio_seconds(), 1.5);

  auto container = r.add(info(r, "t", sluice::protocol::Endpoint::listen_v1));
  container->counters().audio_bytes = 48000;
  EXPECT_DOUBLE_EQ(container->audio_seconds(), 0);
  container->set_upstream_summary(3.25, 2);
  EXPECT_DOUBLE_EQ(container->audio_seconds(), 3.25);
}

TEST(Registry, EndRequestReachesTheSessionHandlerAndIsKeptUntilThereIsOne) {
  Registry r;
  auto a = r.add(info(r, "t", sluice::protocol::Endpoint::listen_v1));
  EXPECT_FALSE(a->request_end());  // not relaying yet: kept
  int calls = 0;
  a->set_end_handler([&] { ++calls; });
  EXPECT_EQ(calls, 1) << "an end requested before the handler was lost";
  EXPECT_TRUE(r.find(a->info().id)->request_end());
  EXPECT_EQ(calls, 2);
}

TEST(Registry, ConcurrentAddAndRemoveKeepsCount) {
  Registry r;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        auto reg = r.add(info(r, "t", sluice::protocol::Endpoint::listen_v1));
        reg->counters().client_messages.fetch_add(1);
        (void)r.list();
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(r.size(), 0u);
}
