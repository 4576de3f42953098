#pragma once
// What every connection of one simulator shares: its configuration (read
// only), its books and its set of open connections (both thread-safe). Each
// connection coroutine holds a shared_ptr to it, so a connection never
// outlives what it uses.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <cstdint>
#include <memory>

#include "sim/accounting.hpp"
#include "sim/connection_set.hpp"
#include "sim/drops.hpp"
#include "sim/simulator.hpp"

namespace sluice::sim {

struct SimCore {
  SimCore(boost::asio::io_context& ioc, SimConfig config);

  const SimConfig config;
  const std::uint64_t seed;  // config.seed, or a random one when that is 0
  std::shared_ptr<Accounting> accounting;
  std::shared_ptr<ConnectionSet> connections;
  std::atomic<std::uint64_t> next_connection{1};
  std::shared_ptr<Drops> drops;
  std::atomic<std::uint64_t> streams{0};  // accepted so far: a stream's number is the count with it
};

// The Deepgram-facing listener's connection: HTTP upgrade, refusals, then
// the endpoint's stream.
boost::asio::awaitable<void> serve_stream_connection(std::shared_ptr<SimCore> core,
                                                     boost::asio::ip::tcp::socket socket);

// The admin listener's connection: plain HTTP JSON.
boost::asio::awaitable<void> serve_admin_connection(std::shared_ptr<SimCore> core,
                                                    boost::asio::ip::tcp::socket socket);

}  // namespace sluice::sim
