// Cluster mode end to end: gateways sharing one Redis (scripts/test-redis.sh)
// and one simulator, which judges whether the fleet ever passed the vendor's
// limit.
#include <atomic>
#include <limits>
#include <map>
#include <set>
#include <mutex>
#include <random>
#include <thread>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "child_process.hpp"
#include "cluster/lease_store.hpp"
#include "history/recorder.hpp"
#include "history/rollup.hpp"
#include "history/store.hpp"
#include "net/endpoint.hpp"
#include "postgres_schema.hpp"
#include "redis_test_env.hpp"
#include "run_sluice.hpp"
#include "sluice_binary.hpp"
#include "sim_counts.hpp"
#include "stack.hpp"

using namespace sluice;
using namespace sluice::testing;

namespace {

const std::string kListen = "/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000";

// An instance of the fleet: pool "streaming" at `limit` with a long queue,
// leases in Redis under `prefix`; upstream: `judge`'s simulator when given.
Stack::Tweak instance(const std::string& url, const std::string& prefix, const std::string& name, int limit,
                      Stack* judge = nullptr) {
  return [=](config::Config& c, Stack&) {
    c.pools = config::default_pools();
    for (auto& p : c.pools)
      if (p.name == "streaming") {
        p.limit = limit;
        p.queue_timeout = config::Seconds(30);
      }
    c.cluster.redis_url = url;
    c.cluster.instance = name;
    c.cluster.key_prefix = prefix;
    if (judge) c.upstream.url = "ws://" + net::to_string(judge->sim().endpoint());
  };
}

// One history for a fleet: a schema on the test's PostgreSQL when there is
// one (CI), else a SQLite file every instance writes.
struct SharedHistory {
  SharedHistory() {
    auto dir = std::filesystem::temp_directory_path() / "sluice-cluster-test";
    std::filesystem::create_directories(dir);
    url = (dir / ("fleet-" + unique_suffix() + ".db")).string();
    if (auto base = postgres_url()) {
      pg.emplace(*base);
      url = pg->url();
    }
  }
  ~SharedHistory() {
    std::error_code ec;
    if (!pg) std::filesystem::remove(url, ec);
  }
  // An instance's store: this history, under the instance's name.
  Stack::Tweak member(Stack::Tweak tweak, const std::string& name) const {
    return [tweak, name, url = url](config::Config& c, Stack& self) {
      tweak(c, self);
      c.store.url = url;
      c.store.instance = name;
    };
  }
  std::optional<PostgresSchema> pg;
  std::string url;
};

// Three instances on one Redis and one history, pool "streaming" at
// `limit`; A's simulator is the vendor for all three, with the same limit
// for the whole fleet.
struct ThreeInstances {
  ThreeInstances(const std::string& url, int limit)
      : prefix(unique_redis_prefix()),
        a(vendor(limit), shared.member(instance(url, prefix, "A", limit), "A")),
        b({}, shared.member(instance(url, prefix, "B", limit, &a), "B")),
        c({}, shared.member(instance(url, prefix, "C", limit, &a), "C")),
        probe(cluster::parse_redis_url(url), {.prefix = prefix}) {}
  static sim::SimConfig vendor(int limit) {
    sim::SimConfig sc;
    sc.default_limits[protocol::Family::streaming] = limit;
    return sc;
  }
  std::string prefix;
  SharedHistory shared;
  Stack a, b, c;
  cluster::LeaseStore probe;
  Stack* stacks[3] = {&a, &b, &c};
};

}  // namespace

TEST(Cluster, ThreeInstancesHoldTheVendorToItsLimitAndAdmitInTheFleetsArrivalOrder) {
  SLUICE_REQUIRE_REDIS(url);
  constexpr int L = 3;
  constexpr int kClients = 3 * L;
  ThreeInstances fleet(url, L);  // the vendor's real limit is L, for the whole fleet
  auto& a = fleet.a;
  auto& stacks = fleet.stacks;
  auto& probe = fleet.probe;

  // Client i arrives at instance i % 3, 150 ms after client i - 1: each
  // instance alone would admit all three of its own.
  std::vector<std::unique_ptr<Client>> clients(kClients);
  std::vector<std::jthread> threads;
  std::mutex m;
  std::vector<int> admitted;  // client numbers, in the order they got in
  std::atomic<int> refused{0};
  for (int i = 0; i < kClients; ++i) {
    clients[i] = std::make_unique<Client>();
    threads.emplace_back([&, i] {
      if (clients[i]->open(stacks[i % 3]->port(), kListen, "Token k")) {
        std::lock_guard l(m);
        admitted.push_back(i);
      } else {
        ++refused;
      }
    });
    // The first L take the fleet's room; each later one is on the wait list
    // before the next arrives.
    if (i < L)
      ASSERT_TRUE(eventually([&] {
        std::lock_guard l(m);
        return static_cast<int>(admitted.size()) == i + 1;
      }));
    else
      ASSERT_TRUE(eventually([&] { return probe.waiting("streaming") == i - L + 1; }))
          << "client " << i << " is not on the fleet's wait list";
  }
  auto count_admitted = [&] {
    std::lock_guard l(m);
    return static_cast<int>(admitted.size());
  };
  EXPECT_EQ(count_admitted(), L);
  EXPECT_EQ(probe.count("streaming"), L);
  // One leaves at a time, oldest first; each departure admits exactly the
  // next in arrival order, whichever instance it waits on.
  for (int k = 0; k < kClients - L; ++k) {
    int leaving;
    {
      std::lock_guard l(m);
      leaving = admitted[k];
    }
    clients[leaving]->send_text(R"({"type":"CloseStream"})");
    EXPECT_EQ(clients[leaving]->read_until_close(), 1000);
    ASSERT_TRUE(eventually([&] { return count_admitted() == L + k + 1; })) << "nobody got in after a release";
    EXPECT_LE(probe.count("streaming"), L);
  }
  threads.clear();
  EXPECT_EQ(refused.load(), 0);
  std::vector<int> expected(kClients);
  for (int i = 0; i < kClients; ++i) expected[i] = i;
  EXPECT_EQ(admitted, expected) << "not admitted in the fleet's arrival order";
  EXPECT_LE(sim_streaming(a, true), L) << "the vendor saw more than the fleet's limit";
  EXPECT_EQ(sim_429s(a), 0) << "a client got the vendor's 429";
  for (auto& cl : clients)
    if (cl->ws.is_open()) cl->ws.close(websocket::close_code::normal);
  EXPECT_TRUE(eventually([&] { return probe.count("streaming") == 0 && sim_streaming(a) == 0; }))
      << probe.count("streaming") << " fleet leases, " << sim_streaming(a) << " upstream streams";
  for (auto* s : stacks) EXPECT_EQ(s->gateway().admission().leases_in_use(), 0);

  // The fleet's history, in the one database: every stream once, with its
  // instance, and a peak of L for the fleet, whichever instance held them.
  for (auto* s : stacks) ASSERT_TRUE(s->gateway().recorder()->flush(10'000'000));
  history::OpenOptions reader;
  reader.read_only = true;
  history::Store store(fleet.shared.url, reader);
  const auto now = registry::wall_ns() / 1000;
  std::map<std::string, int> per_instance;
  for (const char* name : {"A", "B", "C"})
    store.sessions({.from = now - 600'000'000, .to = now + 1, .instance = name},
                   [&](history::SessionRecord&& r) { per_instance[name] += r.opened_at.has_value(); });
  EXPECT_EQ(per_instance, (std::map<std::string, int>{{"A", L}, {"B", L}, {"C", L}}));
  auto peak = [&](std::optional<std::string> instance) {
    auto pools = history::concurrency(store, now - 600'000'000, now + 1, 0, 600'000'000, std::string("streaming"),
                                      std::nullopt, now, instance);
    return pools.empty() ? 0 : pools.front().peak;
  };
  EXPECT_EQ(peak(std::nullopt), L) << "the fleet's peak in the history";
  for (const char* name : {"A", "B", "C"}) EXPECT_LE(peak(std::string(name)), L) << name;
}

TEST(Cluster, RedisUnreachableRefusesWith503WhenConfiguredTo) {
  // Nothing listens on port 1; no server needed.
  Stack s({}, [](config::Config& c, Stack&) {
    c.cluster.redis_url = "redis://:pw-not-shown@127.0.0.1:1/0";
    c.cluster.instance = "lonely";
    c.cluster.on_redis_loss = "refuse";
  });
  Client client;
  ASSERT_FALSE(client.open(s.port(), kListen, "Token k"));
  EXPECT_EQ(client.response.result_int(), 503);
  auto body = boost::json::parse(client.response.body()).as_object();
  EXPECT_EQ(body.at("sluice").as_object().at("reason").as_string(), "cluster_unavailable");
  EXPECT_EQ(client.response.body().find("pw-not-shown"), std::string::npos);
  EXPECT_EQ(sim_streaming(s), 0);
}

TEST(Cluster, RedisUnreachableAdmitsUpToTheLocalShare) {
  Stack s({}, [](config::Config& c, Stack&) {
    c.pools = config::default_pools();
    for (auto& p : c.pools)
      if (p.name == "streaming") p.limit = 4;
    c.cluster.redis_url = "redis://127.0.0.1:1/0";
    c.cluster.instance = "alone";
    c.cluster.on_redis_loss = "local_share";
    c.cluster.expected_instances = 2;  // a share of 4 / 2
  });
  Client one, two, three;
  ASSERT_TRUE(one.open(s.port(), kListen, "Token k"));
  ASSERT_TRUE(two.open(s.port(), kListen, "Token k"));
  ASSERT_FALSE(three.open(s.port(), kListen, "Token k"));
  EXPECT_EQ(three.response.result_int(), 503);
  EXPECT_EQ(sim_streaming(s), 2);
  one.ws.close(websocket::close_code::normal);
  two.ws.close(websocket::close_code::normal);
  EXPECT_TRUE(eventually([&] { return s.gateway().admission().leases_in_use() == 0 && sim_streaming(s) == 0; }));
}

TEST(Cluster, AKilledInstancesLeasesReturnWithinTheExpiryAndItsWaitersGetIn) {
  SLUICE_REQUIRE_REDIS(url);
  constexpr int L = 2;
  const auto prefix = unique_redis_prefix();
  // One history for the fleet: the test's PostgreSQL when there is one (CI),
  // else a SQLite file both processes write.
  SharedHistory shared;
  if (!shared.pg && in_ci()) FAIL() << kNoPostgresInCi;
  const std::string history_url = shared.url;
  auto dir = std::filesystem::temp_directory_path() / "sluice-cluster-test";
  auto short_leases = [&](const std::string& name, Stack* judge) {
    return [=](config::Config& c, Stack& self) {
      instance(url, prefix, name, L, judge)(c, self);
      c.cluster.lease_ttl = config::Seconds(1.5);
      c.cluster.renew_interval = config::Seconds(0.5);
      c.store.url = history_url;
      c.store.instance = name;
      c.store.heartbeat = config::Seconds(0.2);
      c.store.stale_after = config::Seconds(1);
    };
  };
  sim::SimConfig sc;
  sc.default_limits[protocol::Family::streaming] = L;
  Stack b(sc, short_leases("B", nullptr));
  cluster::LeaseStore probe(cluster::parse_redis_url(url), {.prefix = prefix});

  // Instance A is a process of its own, relaying to B's simulator.
  auto file = (dir / ("a-" + std::to_string(::getpid()) + ".yaml")).string();
  {
    std::ofstream f(file);
    f << "listen: 127.0.0.1:0\nadmin: {listen: 127.0.0.1:0, token: t}\n"
      << "pools:\n  - name: streaming\n    match: {path: /v1/listen}\n    limit: " << L
      << "\n    queue_timeout: 30s\n"
      << "cluster:\n  redis_url: \"" << url << "\"\n  instance: A\n  key_prefix: \"" << prefix
      << "\"\n  lease_ttl: 1.5s\n  renew_interval: 0.5s\n"
      << "store:\n  url: \"" << history_url << "\"\n  instance: A\n  heartbeat: 200ms\n  stale_after: 1s\n";
  }
  ChildProcess a({SLUICE_BINARY, "serve", "--config", file, "--upstream", "ws://" + net::to_string(b.sim().endpoint())});
  auto a_port = static_cast<unsigned short>(std::stoi(a.wait_for_line(R"(listening on 127\.0\.0\.1:(\d+) admin)")[1]));
  Client x, y;
  ASSERT_TRUE(x.open(a_port, kListen, "Token k"));
  ASSERT_TRUE(y.open(a_port, kListen, "Token k"));
  EXPECT_EQ(probe.count("streaming"), L);
  history::OpenOptions reader;
  reader.read_only = true;
  auto a_rows = [&](history::Outcome outcome) {
    history::Store store(history_url, reader);
    int n = 0;
    store.sessions({.from = 0, .to = std::numeric_limits<history::Micros>::max() / 2, .instance = "A"},
                   [&](history::SessionRecord&& r) { n += r.outcome == outcome; });
    return n;
  };
  ASSERT_TRUE(poll_until([&] { return a_rows(history::Outcome::open) == L; })) << "A's open streams are not recorded";

  // A client on B waits for the fleet.
  Client waiting;
  std::atomic<bool> in{false};
  std::jthread t([&] { in = waiting.open(b.port(), kListen, "Token k"); });
  ASSERT_TRUE(poll_until([&] { return probe.waiting("streaming") == 1; })) << "B's client is not waiting in the fleet";

  // kill -9: A releases nothing; its sockets close, so the vendor's count
  // falls at once, and the fleet's follows at the leases' expiry.
  auto killed = std::chrono::steady_clock::now();
  a.stop(SIGKILL);
  ASSERT_TRUE(poll_until([&] { return in.load(); }, std::chrono::milliseconds(1500 + 3000)))
      << "B's waiter did not get in within the lease expiry and a margin";
  auto waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  RecordProperty("seconds_from_kill_to_admission", std::to_string(waited));
  EXPECT_TRUE(poll_until([&] { return probe.count("streaming") == sim_streaming(b); }))
      << probe.count("streaming") << " fleet leases, " << sim_streaming(b) << " upstream streams";
  EXPECT_EQ(probe.count("streaming"), 1);
  // B notices that A went silent and ends A's rows: A never starts again.
  EXPECT_TRUE(poll_until([&] { return a_rows(history::Outcome::interrupted) == L; }, std::chrono::seconds(10)))
      << a_rows(history::Outcome::interrupted) << " of A's " << L << " streams marked interrupted";
  EXPECT_EQ(a_rows(history::Outcome::open), 0);
  EXPECT_TRUE(poll_until([&] { return b.gateway().recorder()->stats().interrupted_by_sweep >= L; }))
      << "B did not count the rows it marked";
  t.join();
  waiting.ws.close(websocket::close_code::normal);
  EXPECT_TRUE(poll_until([&] { return probe.count("streaming") == 0 && sim_streaming(b) == 0; }));
  std::filesystem::remove(file);
}

namespace {

boost::json::object admin_json(Stack& s, http::verb verb, const std::string& target, unsigned expected) {
  auto res = admin_call(s.admin_port(), verb, target);
  EXPECT_EQ(res.result_int(), expected) << target << "\n" << res.body();
  auto v = boost::json::parse(res.body());
  return v.is_object() ? v.as_object() : boost::json::object{};
}

std::string session_id_of(const Client& c) { return std::string(c.response["x-sluice-session-id"]); }

// The fleet's sessions as one instance's API lists them: instance -> ids.
std::map<std::string, std::set<std::string>> fleet_sessions(Stack& s, const std::string& query = "") {
  auto o = admin_json(s, http::verb::get, "/api/v1/sessions?scope=cluster" + query, 200);
  std::map<std::string, std::set<std::string>> out;
  if (!o.contains("sessions")) return out;
  for (const auto& v : o.at("sessions").as_array())
    out[std::string(v.at("instance").as_string())].insert(std::to_string(v.at("id").to_number<std::uint64_t>()));
  return out;
}

}  // namespace

TEST(Cluster, AnyInstancesApiShowsTheFleetsSessionsAndEndsOneHeldElsewhere) {
  SLUICE_REQUIRE_REDIS(url);
  constexpr int L = 4;
  ThreeInstances fleet(url, L);
  auto& a = fleet.a;
  auto& b = fleet.b;
  auto& c = fleet.c;
  auto& probe = fleet.probe;
  Client x, y, z;
  ASSERT_TRUE(x.open(a.port(), kListen, "Token k"));
  ASSERT_TRUE(y.open(a.port(), kListen, "Token k"));
  ASSERT_TRUE(z.open(b.port(), kListen, "Token k"));
  const std::map<std::string, std::set<std::string>> all{{"A", {session_id_of(x), session_id_of(y)}},
                                                         {"B", {session_id_of(z)}}};
  // C holds none of them, and lists them all, each with its instance.
  ASSERT_TRUE(poll_until([&] { return fleet_sessions(c) == all; })) << "C's fleet view never showed all three";
  auto listed = admin_json(c, http::verb::get, "/api/v1/sessions?scope=cluster", 200);
  EXPECT_EQ(listed.at("scope"), "cluster");
  EXPECT_EQ(listed.at("count"), 3);
  std::map<std::string, std::int64_t> per_instance;
  for (const auto& i : listed.at("instances").as_array())
    per_instance[std::string(i.at("instance").as_string())] = i.at("sessions").as_int64();
  EXPECT_EQ(per_instance, (std::map<std::string, std::int64_t>{{"A", 2}, {"B", 1}, {"C", 0}}));
  for (const auto& v : listed.at("sessions").as_array()) {
    EXPECT_EQ(v.at("pool"), "streaming") << v;
    EXPECT_EQ(v.at("state"), "open") << v;
  }
  // The list's filters hold for the fleet too.
  EXPECT_EQ(fleet_sessions(c, "&pool=streaming"), all);
  EXPECT_TRUE(fleet_sessions(c, "&state=queued").empty());
  EXPECT_TRUE(fleet_sessions(c, "&path=/v1/speak").empty());
  // Without scope, an instance lists its own alone, as ever.
  EXPECT_EQ(admin_json(a, http::verb::get, "/api/v1/sessions", 200).at("count"), 2);

  // One session held by B, through C.
  auto one = admin_json(c, http::verb::get, "/api/v1/sessions/" + session_id_of(z) + "?instance=B", 200);
  EXPECT_EQ(one.at("instance"), "B");
  EXPECT_EQ(one.at("request_id"), boost::json::value(std::string(z.response["dg-request-id"])));

  // The fleet's use of each pool, through C: two instances hold leases.
  auto pools = admin_json(c, http::verb::get, "/api/v1/pools", 200);
  EXPECT_EQ(pools.at("instance"), "C");
  EXPECT_EQ(pools.at("fleet_leases"), 3);
  EXPECT_EQ(pools.at("leases"), 0);  // C's own
  for (const auto& p : pools.at("pools").as_array()) {
    if (p.at("name") != "streaming") continue;
    EXPECT_EQ(p.at("fleet").at("in_use"), 3) << p;
    EXPECT_EQ(p.at("fleet").at("waiting"), 0) << p;
    EXPECT_EQ(p.at("fleet").at("instances"), (boost::json::object{{"A", 2}, {"B", 1}})) << p;
  }

  // The same from the command line.
  auto cli = [&](std::vector<std::string> args) {
    args.insert(args.end(), {"--admin", "127.0.0.1:" + std::to_string(c.admin_port())});
    return run_sluice(args, {"SLUICE_ADMIN_TOKEN=admin-secret"});
  };
  auto ls = cli({"ls", "--cluster"});
  EXPECT_EQ(ls.status, 0) << ls.err;
  EXPECT_NE(ls.out.find("INSTANCE"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("\nB "), std::string::npos) << ls.out;
  auto pools_cli = cli({"pools"});
  EXPECT_NE(pools_cli.out.find("A=2 B=1"), std::string::npos) << pools_cli.out;
  auto unknown = cli({"end", "1", "--instance", "nobody"});
  EXPECT_EQ(unknown.status, 1) << unknown.out << unknown.err;
  EXPECT_NE(unknown.err.find("no instance 'nobody'"), std::string::npos) << unknown.err;

  // C ends a stream A holds: A closes it as its own DELETE would.
  auto del = admin_json(c, http::verb::delete_, "/api/v1/sessions/" + session_id_of(x) + "?instance=A", 202);
  EXPECT_EQ(del.at("instance"), "A");
  EXPECT_EQ(del.at("status"), "requested");
  EXPECT_EQ(x.read_until_close(), 1000);
  ASSERT_TRUE(poll_until([&] { return fleet_sessions(c).size() == 2 && fleet_sessions(c)["A"].size() == 1; }));
  EXPECT_TRUE(poll_until([&] { return probe.count("streaming") == 2; }));

  // What cannot be done says so.
  admin_json(c, http::verb::delete_, "/api/v1/sessions/1?instance=nobody", 404);
  admin_json(c, http::verb::get, "/api/v1/sessions/999999?instance=B", 404);
  admin_json(c, http::verb::get, "/api/v1/sessions?scope=everywhere", 400);
  admin_json(c, http::verb::get, "/api/v1/sessions/1?shard=2", 400);
  Stack alone;
  auto refused = admin_json(alone, http::verb::get, "/api/v1/sessions?scope=cluster", 400);
  EXPECT_NE(std::string(refused.at("message").as_string()).find("cluster.redis_url"), std::string::npos) << refused;
  admin_json(alone, http::verb::delete_, "/api/v1/sessions/1?instance=A", 400);

  // An instance that stops leaves the view at once, not at its expiry.
  z.ws.close(websocket::close_code::normal);
  y.ws.close(websocket::close_code::normal);
  ASSERT_TRUE(poll_until([&] { return fleet_sessions(c).empty(); }));
}

// Waiting times across instances: arrivals skewed 1:4:1 over A, B and C, more
// than the pool can take, each stream held a while. The fleet's wait list
// admits in arrival order, so a client's wait depends on when it came, not
// where: the per-instance means are reported (the spread) and the order is
// checked.
TEST(Cluster, WaitingTimesDependOnArrivalNotOnTheInstance) {
  SLUICE_REQUIRE_REDIS(url);
  constexpr int L = 2;
  constexpr int kClients = 24;
  ThreeInstances fleet(url, L);
  auto& a = fleet.a;
  auto& stacks = fleet.stacks;
  const char* names[] = {"A", "B", "C"};
  using Clock = std::chrono::steady_clock;
  struct Outcome {
    int instance = 0;
    Clock::time_point arrived, admitted;
    bool in = false;
  };
  std::vector<Outcome> out(kClients);
  std::vector<std::jthread> threads;
  for (int i = 0; i < kClients; ++i) {
    int at = (i % 6 == 0) ? 0 : (i % 6 == 3) ? 2 : 1;  // A, B, B, C, B, B, ...
    out[i].instance = at;
    out[i].arrived = Clock::now();
    threads.emplace_back([&, i, at] {
      Client cl;
      if (!cl.open(stacks[at]->port(), kListen, "Token k")) return;
      out[i].admitted = Clock::now();
      out[i].in = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the stream's life
      cl.send_text(R"({"type":"CloseStream"})");
      cl.read_until_close();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
  }
  threads.clear();
  double sum[3] = {0, 0, 0}, most[3] = {0, 0, 0};
  int n[3] = {0, 0, 0};
  for (const auto& o : out) {
    ASSERT_TRUE(o.in) << "a client was not admitted";
    double w = std::chrono::duration<double>(o.admitted - o.arrived).count();
    sum[o.instance] += w;
    most[o.instance] = std::max(most[o.instance], w);
    ++n[o.instance];
  }
  std::string report;
  double lo = 1e9, hi = 0;
  for (int k = 0; k < 3; ++k) {
    double mean = sum[k] / n[k];
    lo = std::min(lo, mean);
    hi = std::max(hi, mean);
    report += fmt::format("{}{}: {} clients, mean wait {:.3f} s, max {:.3f} s", k ? "; " : "", names[k], n[k], mean,
                          most[k]);
  }
  RecordProperty("waits_by_instance", report);
  RecordProperty("spread_of_mean_waits_seconds", std::to_string(hi - lo));
  std::printf("waiting times: %s; spread of the means %.3f s\n", report.c_str(), hi - lo);
  // No client overtook an earlier one (beyond the few milliseconds between
  // a grant and its client's clock reading).
  for (int i = 0; i < kClients; ++i)
    for (int j = i + 1; j < kClients; ++j)
      EXPECT_GE(out[j].admitted + std::chrono::milliseconds(20), out[i].admitted)
          << "client " << j << " (at " << names[out[j].instance] << ") got in before client " << i << " (at "
          << names[out[i].instance] << ")";
  EXPECT_LE(sim_streaming(a, true), L);
  EXPECT_EQ(sim_429s(a), 0);
}

// The vendor counts the fleet's streams, so an upstream 429 on one instance
// names the holders on every instance.
TEST(Cluster, AnUpstream429NamesThePoolsHoldersOnEveryInstance) {
  SLUICE_REQUIRE_REDIS(url);
  const auto prefix = unique_redis_prefix();
  sim::SimConfig sc;
  sc.default_limits[protocol::Family::streaming] = 2;  // the vendor's; the pools say 5
  auto member = [&](const std::string& name, Stack* judge) {
    return [=](config::Config& c, Stack& self) {
      instance(url, prefix, name, 5, judge)(c, self);
      c.upstream.retry_429.initial_backoff = config::Seconds(0.05);
      c.upstream.retry_429.max_backoff = config::Seconds(0.2);
      c.upstream.retry_429.deadline = config::Seconds(20);
    };
  };
  Stack a(sc, member("A", nullptr));
  Stack b({}, member("B", &a));
  cluster::LeaseStore probe(cluster::parse_redis_url(url), {.prefix = prefix});
  // Traffic outside the fleet holds one of the vendor's two slots.
  Client outside;
  ASSERT_TRUE(outside.open(a.sim().endpoint().port(), kListen, "Token k"));
  Client g1;
  ASSERT_TRUE(g1.open(a.port(), kListen, "Token k"));
  // B's stream has the fleet's lease and meets the vendor's 429.
  Client g2;
  std::jthread t([&] { g2.open(b.port(), kListen, "Token k"); });
  ASSERT_TRUE(eventually([&] { return b.gateway().events().count("upstream_429") > 0; }));
  auto ev = b.gateway().events().list({.type = "upstream_429"}).front();
  ASSERT_TRUE(ev.fields.contains("fleet_holders")) << boost::json::serialize(ev.fields);
  std::map<std::string, std::string> holders;  // instance -> session
  for (const auto& h : ev.fields.at("fleet_holders").as_array())
    holders[std::string(h.at("instance").as_string())] = std::string(h.at("session").as_string());
  EXPECT_EQ(holders.size(), 2u) << boost::json::serialize(ev.fields);
  EXPECT_EQ(holders["A"], session_id_of(g1)) << boost::json::serialize(ev.fields);
  EXPECT_TRUE(holders.contains("B")) << boost::json::serialize(ev.fields);
  // The local snapshot is still there: B's own stream.
  EXPECT_EQ(ev.fields.at("sessions").as_array().size(), 1u);
  // Nothing released explains the refusal: the fleet's effective limit, not
  // B's alone, falls to what the fleet holds besides the refused stream.
  EXPECT_EQ(ev.fields.at("fleet_effective_limit"), 1) << boost::json::serialize(ev.fields);
  EXPECT_EQ(probe.lowered_limit("streaming"), 1);
  EXPECT_EQ(b.gateway().admission().status("streaming")->effective_limit, 5);
  auto pools = admin_json(a, http::verb::get, "/api/v1/pools", 200);
  for (const auto& p : pools.at("pools").as_array()) {
    if (p.at("name") == "streaming") {
      EXPECT_EQ(p.at("fleet").at("effective_limit"), 1) << p;
    }
  }
  // So a new stream on A waits in the fleet rather than meeting the vendor's 429.
  const auto refusals = sim_429s(a);
  {
    Client g3;
    std::jthread t3([&] { g3.open(a.port(), kListen, "Token k"); });
    ASSERT_TRUE(poll_until([&] { return probe.waiting("streaming") == 1; })) << "A's new stream is not waiting";
    EXPECT_EQ(sim_429s(a), refusals);
    beast::get_lowest_layer(g3.ws).socket().shutdown(tcp::socket::shutdown_both);  // it gives up
    t3.join();
  }
  EXPECT_TRUE(poll_until([&] { return probe.waiting("streaming") == 0; }));
  // The outside stream leaves: B's retry gets through, and the vendor's
  // acceptance gives the fleet its limit back.
  outside.ws.close(websocket::close_code::normal);
  t.join();
  EXPECT_FALSE(g2.error) << g2.response.result_int();
  EXPECT_TRUE(poll_until([&] { return !probe.lowered_limit("streaming"); })) << "the fleet's limit stayed lowered";
  g1.ws.close(websocket::close_code::normal);
  g2.ws.close(websocket::close_code::normal);
  EXPECT_TRUE(poll_until([&] { return probe.count("streaming") == 0; }));
}

// The vendor keeps counting a closed stream for a while (stale accounting).
// That delay is the fleet's: a release on A explains a 429 met on B (B
// released nothing itself), and once learned, a release on C cools before
// a stream waiting on A takes its room, so the vendor refuses nobody.
TEST(Cluster, TheReleaseDelayIsLearnedAndHeldByTheWholeFleet) {
  SLUICE_REQUIRE_REDIS(url);
  constexpr int L = 6;
  constexpr auto kStale = std::chrono::milliseconds(2000);
  const auto prefix = unique_redis_prefix();
  auto member = [&](const std::string& name, Stack* judge) {
    return [=](config::Config& c, Stack& self) {
      instance(url, prefix, name, L, judge)(c, self);
      for (auto& p : c.pools)
        if (p.name == "streaming") p.queue_timeout = config::Seconds(60);  // unrelated timeouts far away
      c.upstream.retry_429.initial_backoff = config::Seconds(0.1);
      c.upstream.retry_429.max_backoff = config::Seconds(1);
      c.upstream.retry_429.deadline = config::Seconds(60);
    };
  };
  sim::SimConfig sc;
  sc.default_limits[protocol::Family::streaming] = L;
  sc.faults.stale_accounting = kStale;
  sc.inactivity_timeout = std::chrono::seconds(600);
  Stack a(sc, member("A", nullptr));
  Stack b({}, member("B", &a));
  Stack c({}, member("C", &a));
  cluster::LeaseStore probe(cluster::parse_redis_url(url), {.prefix = prefix});
  Stack* stacks[3] = {&a, &b, &c};
  // The pool is full: two streams on each instance.
  std::vector<std::unique_ptr<Client>> open[3];
  for (int i = 0; i < 3; ++i)
    for (int k = 0; k < 2; ++k) {
      open[i].push_back(std::make_unique<Client>());
      ASSERT_TRUE(open[i].back()->open(stacks[i]->port(), kListen, "Token k"));
    }
  ASSERT_EQ(probe.count("streaming"), L);
  EXPECT_EQ(b.gateway().admission().status("streaming")->release_delay_seconds, 0) << "nothing learned yet";

  // Phase 1: a stream waits on B; one on A ends. The fleet gives B the room,
  // and the vendor, still counting A's stream, refuses it: A's release
  // explains it, so the fleet learns a lower bound rather than lowering its
  // limit, and B's stream gets in once the vendor lets A's go.
  Client waiter_b;
  std::jthread tb([&] { waiter_b.open(b.port(), kListen, "Token k"); });
  ASSERT_TRUE(poll_until([&] { return probe.waiting("streaming") == 1; }));
  open[0][0]->ws.close(websocket::close_code::normal);
  tb.join();
  ASSERT_FALSE(waiter_b.error) << waiter_b.response.result_int();
  const auto refused_phase1 = sim_429s(a);
  EXPECT_GT(refused_phase1, 0) << "the vendor never refused: nothing was learned";
  auto events = b.gateway().events().list({.type = "upstream_429"});
  ASSERT_FALSE(events.empty());
  for (const auto& e : events) {
    EXPECT_TRUE(e.fields.at("explained_by_releases").as_bool()) << boost::json::serialize(e.fields);
    EXPECT_EQ(e.fields.at("fleet_effective_limit"), L) << boost::json::serialize(e.fields);
  }
  EXPECT_FALSE(probe.lowered_limit("streaming")) << "a stale count lowered the fleet's limit";
  auto learned = probe.delay("streaming", std::nullopt);
  ASSERT_TRUE(learned.lower);
  EXPECT_GT(learned.delay, kStale / 2);
  EXPECT_LT(learned.delay, kStale * 2);
  // Every instance shows the fleet's delay, A and C too (they met no 429).
  EXPECT_TRUE(poll_until([&] {
    for (auto* s : stacks) {
      auto st = s->gateway().admission().status("streaming");
      if (!st || !st->release_delay_lower_seconds || st->release_delay_seconds <= 1.0) return false;
    }
    return true;
  })) << "an instance does not show the fleet's release delay";
  auto pools = admin_json(c, http::verb::get, "/api/v1/pools", 200);
  for (const auto& p : pools.at("pools").as_array())
    if (p.at("name") == "streaming") {
      EXPECT_NEAR(p.at("fleet").at("release_delay_seconds").to_number<double>(),
                  std::chrono::duration<double>(learned.delay).count(), 0.5)
          << p;
      EXPECT_EQ(p.at("release_delay_source"), "learned") << p;
    }

  // Phase 2: a stream waits on A; one on C ends. Its slot cools for the
  // fleet's delay, so A's stream waits for it instead of meeting the
  // vendor's 429, though A never saw C's release.
  const auto delay = probe.delay("streaming", std::nullopt).delay;
  Client waiter_a;
  std::jthread ta([&] { waiter_a.open(a.port(), kListen, "Token k"); });
  ASSERT_TRUE(poll_until([&] { return probe.waiting("streaming") == 1; }));
  const auto released = std::chrono::steady_clock::now();
  open[2][0]->ws.close(websocket::close_code::normal);
  EXPECT_TRUE(poll_until([&] { return probe.delay("streaming", std::nullopt).cooling == 1; }))
      << "C's release is not cooling in the fleet";
  ta.join();
  const auto waited = std::chrono::steady_clock::now() - released;
  ASSERT_FALSE(waiter_a.error) << waiter_a.response.result_int();
  EXPECT_EQ(sim_429s(a), refused_phase1) << "a stream was admitted into a slot the vendor still counted";
  EXPECT_GE(waited, delay - std::chrono::milliseconds(100)) << "the slot did not cool";
  EXPECT_LE(sim_streaming(a, true), L);
  std::printf("fleet release delay: vendor stale %lld ms, learned %lld ms (lower %lld ms) from %lld vendor 429s on B "
              "after a release on A; a stream on A admitted %lld ms after a release on C, with no 429\n",
              static_cast<long long>(kStale.count()), static_cast<long long>(learned.delay.count()),
              static_cast<long long>(learned.lower->count()), static_cast<long long>(refused_phase1),
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()));

  waiter_a.ws.close(websocket::close_code::normal);
  waiter_b.ws.close(websocket::close_code::normal);
  for (auto& v : open)
    for (auto& cl : v)
      if (cl->ws.is_open()) cl->ws.close(websocket::close_code::normal);
  EXPECT_TRUE(poll_until([&] { return probe.count("streaming") == 0; }));
}

// A drain (SIGTERM) refuses the streams waiting for the fleet's room at
// once, as it does those in an instance's own queue; their queue timeout is
// far away.
TEST(Cluster, ADrainRefusesTheFleetsWaitersAtOnce) {
  SLUICE_REQUIRE_REDIS(url);
  const auto prefix = unique_redis_prefix();
  Stack s({}, instance(url, prefix, "A", 1));
  cluster::LeaseStore probe(cluster::parse_redis_url(url), {.prefix = prefix});
  Client holder, waiter;
  ASSERT_TRUE(holder.open(s.port(), kListen, "Token k"));
  std::atomic<bool> done{false};
  std::jthread t([&] {
    waiter.open(s.port(), kListen, "Token k");
    done = true;
  });
  ASSERT_TRUE(poll_until([&] { return probe.waiting("streaming") == 1; })) << "the second stream is not waiting";
  s.on_io([&] { s.gateway().stop_accepting(); });
  ASSERT_TRUE(poll_until([&] { return done.load(); }, std::chrono::seconds(5))) << "the waiter was not refused";
  t.join();
  EXPECT_EQ(waiter.response.result_int(), 503);
  EXPECT_TRUE(poll_until([&] { return probe.waiting("streaming") == 0; })) << "its place on the fleet's list stayed";
  holder.ws.close(websocket::close_code::normal);
  EXPECT_TRUE(poll_until([&] { return probe.count("streaming") == 0; }));
}

TEST(Cluster, ChaosOnThreeInstancesStrandsNoLease) {
  SLUICE_REQUIRE_REDIS(url);
  constexpr int L = 4;
  constexpr int kWorkers = 9;  // three per instance
  constexpr int kRounds = 10;  // streams per worker
  const auto prefix = unique_redis_prefix();
  auto chaotic = [&](const std::string& name, Stack* judge) {
    return [=](config::Config& c, Stack& self) {
      instance(url, prefix, name, L, judge)(c, self);
      for (auto& p : c.pools)
        if (p.name == "streaming") {
          p.queue_timeout = config::Seconds(1);
          p.max_queue = 4;
        }
    };
  };
  sim::SimConfig sc;
  sc.default_limits[protocol::Family::streaming] = L;
  sc.faults.drop_probability = 0.5;  // per second of stream: 1011 mid-stream
  sc.faults.handshake_delay = std::chrono::milliseconds(20);
  Stack a(sc, chaotic("A", nullptr));
  Stack b({}, chaotic("B", &a));
  Stack c({}, chaotic("C", &a));
  Stack* stacks[] = {&a, &b, &c};
  cluster::LeaseStore probe(cluster::parse_redis_url(url), {.prefix = prefix});

  std::atomic<bool> sampling{true};
  std::atomic<int> samples{0}, over_limit{0}, legs_without_lease{0}, max_fleet{0};
  std::thread sampler([&] {
    cluster::LeaseStore reader(cluster::parse_redis_url(url), {.prefix = prefix});
    while (sampling) {
      int fleet = reader.count("streaming");
      if (fleet > L) ++over_limit;
      for (auto* s : stacks) {
        auto [leases, legs] = s->gateway().admission().leases_and_legs();
        if (legs > leases) ++legs_without_lease;
      }
      max_fleet = std::max(max_fleet.load(), fleet);
      ++samples;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  std::atomic<int> opened{0}, gateway_429{0}, other{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      std::mt19937 r(1000 + w);
      auto port = stacks[w % 3]->port();
      for (int i = 0; i < kRounds; ++i) {
        int action = static_cast<int>(r() % 4);
        if (action == 3) {  // abandon while queued (or just after the upgrade request)
          asio::io_context ioc;
          tcp::socket sock(ioc);
          sock.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
          std::string req = "GET " + kListen + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                            "Authorization: Token k\r\n\r\n";
          asio::write(sock, asio::buffer(req));
          std::this_thread::sleep_for(std::chrono::milliseconds(r() % 30));
          sock.set_option(asio::socket_base::linger(true, 0));
          sock.close();
          continue;
        }
        Client cl;
        if (!cl.open(port, kListen, "Token k")) {
          (cl.response.result_int() == 429 ? gateway_429 : other)++;
          continue;
        }
        ++opened;
        bool alive = true;
        int frames = 1 + static_cast<int>(r() % 24);
        for (int f = 0; f < frames && alive; ++f) {
          beast::error_code ec;
          cl.ws.binary(true);
          cl.ws.write(asio::buffer(linear16_silence(0.05)), ec);
          alive = !ec;
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        if (!alive) continue;  // the vendor dropped it
        beast::error_code ec;
        if (action == 0) {  // the client process dies: RST
          beast::get_lowest_layer(cl.ws).socket().set_option(asio::socket_base::linger(true, 0));
          beast::get_lowest_layer(cl.ws).socket().close();
        } else if (action == 1) {
          cl.ws.close(websocket::close_code::normal, ec);
        } else {
          cl.ws.text(true);
          cl.ws.write(asio::buffer(std::string(R"({"type":"CloseStream"})")), ec);
          cl.read_until_close();
        }
      }
    });
  }
  for (auto& t : workers) t.join();
  EXPECT_TRUE(poll_until([&] { return probe.count("streaming") == 0 && sim_streaming(a) == 0; },
                         std::chrono::milliseconds(10000)))
      << probe.count("streaming") << " fleet leases, " << sim_streaming(a) << " upstream streams at the end";
  sampling = false;
  sampler.join();
  EXPECT_GT(samples.load(), 100);
  EXPECT_GT(opened.load(), kWorkers);
  EXPECT_EQ(over_limit.load(), 0) << "the fleet held more than the limit";
  EXPECT_EQ(legs_without_lease.load(), 0) << "an upstream leg without a lease";
  EXPECT_EQ(max_fleet.load(), L) << "the fleet never filled: the test did not press";
  EXPECT_LE(sim_streaming(a, true), L) << "the vendor saw more than the fleet's limit";
  EXPECT_EQ(sim_429s(a), 0) << "a client got the vendor's 429";
  EXPECT_EQ(other.load(), 0) << "a refusal other than the gateway's 429";
  for (auto* s : stacks) EXPECT_EQ(s->gateway().admission().leases_in_use(), 0);
  RecordProperty("opened", opened.load());
  RecordProperty("gateway_429", gateway_429.load());
  RecordProperty("samples", samples.load());
}

namespace {

// A Redis server of the test's own on `port`, without persistence: stopping
// and starting it is a Redis that restarted empty.
class OwnRedis {
 public:
  explicit OwnRedis(int port) : port_(port) { start(); }
  void start() {
    process_ = std::make_unique<ChildProcess>(std::vector<std::string>{
        "/usr/bin/redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "", "--appendonly",
        "no", "--loglevel", "notice"});
    process_->wait_for_line("Ready to accept connections");
  }
  void kill() { process_->stop(SIGKILL); }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }

 private:
  int port_;
  std::unique_ptr<ChildProcess> process_;
};

int free_port() {
  asio::io_context ioc;
  tcp::acceptor a(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

Stack::Tweak on_own_redis(const std::string& url, const std::string& mode) {
  return [=](config::Config& c, Stack&) {
    c.pools = config::default_pools();
    for (auto& p : c.pools)
      if (p.name == "streaming") p.limit = 4;
    c.cluster.redis_url = url;
    c.cluster.instance = "solo";
    c.cluster.on_redis_loss = mode;
    c.cluster.expected_instances = 2;  // local share: 4 / 2
    c.cluster.lease_ttl = config::Seconds(1.5);
    c.cluster.renew_interval = config::Seconds(0.3);
    c.cluster.redis_timeout = config::Seconds(0.2);
  };
}

// The fleet's count, or -1 while the server is away (the probe reconnects at
// its next call).
int fleet_count(cluster::LeaseStore& probe, const std::string& pool = "streaming") {
  try {
    return probe.count(pool);
  } catch (const cluster::RedisError&) {
    return -1;
  }
}

std::string readyz(Stack& s) {
  auto res = admin_call(s.admin_port(), http::verb::get, "/readyz", "");
  return std::to_string(res.result_int()) + " " + res.body();
}

}  // namespace

TEST(Cluster, RedisLostAndBackWithLocalShareCountsEveryOpenStreamAgain) {
  OwnRedis redis(free_port());
  Stack s({}, on_own_redis(redis.url(), "local_share"));
  cluster::LeaseStore probe(cluster::parse_redis_url(redis.url()), {});
  ASSERT_TRUE(poll_until([&] { return readyz(s).starts_with("200 ready"); })) << readyz(s);
  Client before;
  ASSERT_TRUE(before.open(s.port(), kListen, "Token k"));
  EXPECT_EQ(fleet_count(probe), 1);

  redis.kill();
  ASSERT_TRUE(poll_until([&] { return readyz(s).starts_with("200 degraded"); })) << readyz(s);
  // The local share is 2: one more gets in, the next is refused.
  Client during, over;
  ASSERT_TRUE(during.open(s.port(), kListen, "Token k"));
  ASSERT_FALSE(over.open(s.port(), kListen, "Token k"));
  EXPECT_EQ(over.response.result_int(), 503);
  auto metrics = admin_call(s.admin_port(), http::verb::get, "/metrics", "").body();
  EXPECT_NE(metrics.find("sluice_cluster_redis_up 0"), std::string::npos);
  EXPECT_NE(metrics.find("sluice_cluster_local_share_admissions_total 1"), std::string::npos);
  // Only the acquire Redis answered is timed (the first stream's).
  EXPECT_NE(metrics.find("sluice_cluster_acquire_seconds_count 1\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("sluice_cluster_acquire_seconds_bucket{le=\"+Inf\"} 1\n"), std::string::npos) << metrics;

  // Back, empty: both open streams are counted again, neither restarted.
  redis.start();
  EXPECT_TRUE(poll_until([&] { return fleet_count(probe) == 2; }))
      << fleet_count(probe) << " fleet leases for 2 open streams";
  EXPECT_TRUE(poll_until([&] { return readyz(s).starts_with("200 ready"); })) << readyz(s);
  EXPECT_EQ(sim_streaming(s), 2);
  before.ws.close(websocket::close_code::normal);
  during.ws.close(websocket::close_code::normal);
  EXPECT_TRUE(poll_until([&] { return fleet_count(probe) == 0 && sim_streaming(s) == 0; }))
      << fleet_count(probe) << " fleet leases left";
}

TEST(Cluster, RedisLostAndBackWithRefuseAdmitsNothingMeanwhile) {
  OwnRedis redis(free_port());
  Stack s({}, on_own_redis(redis.url(), "refuse"));
  cluster::LeaseStore probe(cluster::parse_redis_url(redis.url()), {});
  ASSERT_TRUE(poll_until([&] { return readyz(s).starts_with("200 ready"); })) << readyz(s);
  Client before;
  ASSERT_TRUE(before.open(s.port(), kListen, "Token k"));

  redis.kill();
  ASSERT_TRUE(poll_until([&] { return readyz(s).starts_with("503"); })) << readyz(s);
  Client during;
  ASSERT_FALSE(during.open(s.port(), kListen, "Token k"));
  EXPECT_EQ(during.response.result_int(), 503);
  EXPECT_NE(during.response.body().find("cluster_unavailable"), std::string::npos);
  // The open stream goes on.
  before.send_binary(linear16_silence(0.2));

  redis.start();
  EXPECT_TRUE(poll_until([&] { return fleet_count(probe) == 1; })) << "the open stream was not counted again";
  EXPECT_TRUE(poll_until([&] { return readyz(s).starts_with("200 ready"); })) << readyz(s);
  Client after;
  EXPECT_TRUE(after.open(s.port(), kListen, "Token k"));
  EXPECT_EQ(fleet_count(probe), 2);
  before.send_text(R"({"type":"CloseStream"})");
  auto meta = before.read_until_type("Metadata");
  ASSERT_TRUE(meta);
  EXPECT_DOUBLE_EQ(meta->at("duration").to_number<double>(), 0.2);
  after.ws.close(websocket::close_code::normal);
  EXPECT_TRUE(poll_until([&] { return fleet_count(probe) == 0 && sim_streaming(s) == 0; }));
}
