#pragma once
// A Deepgram-compatible streaming server for tests, demos and benchmarks: the
// same paths, auth forms, handshake refusals, messages and close behaviour as
// the vendor (see docs/simulator.md), with per-project concurrency limits per
// service family, fault injection, and its ground truth on an admin endpoint.
// Thread safety: all methods may be called from any thread; the simulator runs
// on the io_context it is given.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "protocol/endpoint.hpp"

namespace sluice::sim {

struct SimProject {
  std::string name;
  std::vector<std::string> keys;  // API keys (plain) that belong to this project
  // Concurrent streams allowed per family; a family absent here is unlimited.
  std::map<protocol::Family, int> limits;
};

struct SimFaults {
  std::chrono::milliseconds handshake_delay{0};  // before answering any upgrade
  double drop_probability = 0;  // per second of stream: close with 1011 mid-stream
  std::chrono::milliseconds read_delay{0};  // pause before reading each client message
  std::chrono::milliseconds stale_accounting{0};  // keep counting a stream after it closed
};

struct SimConfig {
  boost::asio::ip::tcp::endpoint listen{boost::asio::ip::make_address("127.0.0.1"), 0};
  boost::asio::ip::tcp::endpoint admin_listen{boost::asio::ip::make_address("127.0.0.1"), 0};
  // Projects and their keys. When empty, any key is accepted into one project
  // named "default" with the default limits below.
  std::vector<SimProject> projects;
  std::map<protocol::Family, int> default_limits;  // for the open "default" project
  std::chrono::milliseconds inactivity_timeout{10000};  // NET-0001
  SimFaults faults;
  bool bench = false;  // answer each binary frame at once with an Echo text message
  unsigned seed = 0;   // 0: random
};

// Ground truth, per project and family.
struct SimFamilyCounts {
  int open = 0;      // streams counted now (including stale ones)
  int max_open = 0;  // the maximum ever counted
  long long accepted = 0;
  long long refused_429 = 0;
};

struct SimStats {
  std::map<std::string, std::map<protocol::Family, SimFamilyCounts>> projects;
  long long handshakes = 0;  // upgrade requests received (any outcome)
  long long unauthorized = 0;
};

class Simulator {
 public:
  Simulator(boost::asio::io_context& ioc, SimConfig config);  // binds both listeners
  ~Simulator();
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  void start();
  void stop();  // stops accepting and closes open streams

  boost::asio::ip::tcp::endpoint endpoint() const;
  boost::asio::ip::tcp::endpoint admin_endpoint() const;
  SimStats stats() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::sim
