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
#include <cstdint>
#include <optional>
#include <string_view>
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

// A cue to end a stream abnormally, so tests are deterministic: the
// `stream`-th stream the simulator accepts (1-based, every endpoint counted;
// 0: every stream) is ended `how` once it has received `after_audio_seconds`
// of audio (the frame that reaches it is processed first) or `after` has
// passed since it opened, whichever comes first. Text form (parse_drop_cue):
// "[STREAM@](audio|time):SECONDS[/HOW]", e.g. "2@audio:3.5/reset".
struct DropCue {
  enum class How {
    internal_error,   // close 1011 "NET-0000 …" (the vendor's internal error)
    service_restart,  // close 1012
    try_again_later,  // close 1013
    cut,              // TCP FIN without a close frame (the client sees 1006)
    reset,            // TCP RST without a close frame
  };
  std::uint64_t stream = 0;
  std::optional<double> after_audio_seconds;
  std::optional<std::chrono::milliseconds> after;
  How how = How::internal_error;
};
std::string_view drop_how_name(DropCue::How how);  // "1011", "1012", "1013", "cut", "reset"
// The text form above; an error message (naming what is wrong) otherwise.
struct DropCueParse {
  std::optional<DropCue> cue;
  std::string error;
};
DropCueParse parse_drop_cue(std::string_view text);
std::string format_drop_cue(const DropCue& cue);

// A stream the simulator ended on cue (or at random: drop_probability).
struct SimDrop {
  std::uint64_t stream = 0;  // its number, as cues count
  std::string request_id;
  protocol::Family family{};
  double audio_seconds = 0;  // audio it had received when it was dropped
  double after_seconds = 0;  // since it opened
  DropCue::How how = DropCue::How::internal_error;
  bool random = false;  // drop_probability, not a cue
};

struct SimFaults {
  std::chrono::milliseconds handshake_delay{0};  // before answering any upgrade
  double drop_probability = 0;  // per second of stream: close with 1011 mid-stream
  std::chrono::milliseconds read_delay{0};  // pause before reading each client message
  std::chrono::milliseconds stale_accounting{0};  // keep counting a stream after it closed
  std::vector<DropCue> drops;                     // more may be added live (Simulator::add_drop)
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
  std::uint64_t streams = 0;   // streams accepted (the last stream number given)
  std::vector<SimDrop> drops;  // in the order they happened
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
  // Arms a cue from now on; a `stream` already accepted and still open is
  // watched too. Returns the cue as armed.
  DropCue add_drop(DropCue cue);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::sim
