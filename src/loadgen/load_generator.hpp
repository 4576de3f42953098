#pragma once
// A load generator for real-time WebSocket streams: opens N streams to one
// ws:// URL on loopback at a configured rate, sends a B-byte binary frame every
// T ms on each (phases spread at random) for D seconds, then CloseStream, and
// measures each frame's round trip against an endpoint that echoes it (the
// simulator's bench mode: {"type":"Echo","t":"<first 8 bytes in hex>"}). The
// first 8 bytes of every frame are its send time (steady clock, ns).
//
// Streams are spread over `threads` io_contexts, one thread each; a stream
// lives on one of them, so it needs no strand. run_load blocks until every
// stream has ended (each is bounded by timeouts).
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::loadgen {

inline constexpr int kMaxStreams = 20000;
inline constexpr std::chrono::seconds kMaxDuration{600};

struct LoadConfig {
  std::string url = "ws://127.0.0.1:8080/v1/listen?encoding=linear16&sample_rate=16000";
  int streams = 10;
  std::size_t frame_bytes = 3200;  // at least 8: the send timestamp
  std::chrono::milliseconds interval{100};
  std::chrono::milliseconds duration{10000};  // per stream, from its handshake
  double ramp = 100;  // streams opened per second; 0: as fast as possible
  std::string key;    // sent as "Authorization: Token KEY" when not empty
  int threads = 1;
  bool idle = false;  // hold the streams open for `duration` without sending frames
  int max_pending_handshakes = 256;  // handshakes in flight at once
  std::chrono::milliseconds handshake_timeout{10000};  // TCP connect + WebSocket upgrade
  std::chrono::milliseconds drain_timeout{5000};  // for the last echoes, then for the server's close
  std::vector<int> watch_pids;  // processes whose CPU and RSS to report (e.g. the proxy, the upstream)
  unsigned seed = 0;  // for the phases; 0: random
  // Called from the thread that runs run_load at each phase change (streams
  // open, window start and end) with one short line of text.
  std::function<void(std::string_view)> on_progress;
};

// Checks the bounds and the URL (ws://, a literal loopback address or
// "localhost"); returns what is wrong, or nothing.
std::optional<std::string> validate(const LoadConfig& config);

struct LatencySummary {
  std::uint64_t count = 0;
  double p50_us = 0, p90_us = 0, p99_us = 0, p999_us = 0, max_us = 0, mean_us = 0;
};

// A watched process, over the measured window unless said otherwise.
struct WatchedProcess {
  int pid = 0;
  double connect_cpu_percent = 0;  // of one core, from the start until every handshake was done
  double cpu_seconds = 0;    // utime + stime spent in the window
  double cpu_percent = 0;    // of one core
  long rss_before_kib = 0;   // before the first stream was opened
  long rss_peak_kib = 0;     // highest sample in the window (every 10 ms)
  long rss_end_kib = 0;      // at the end of the window
};

struct LoadReport {
  LoadConfig config;  // as run (on_progress cleared)

  // Handshakes.
  long connects_ok = 0;
  long connects_failed = 0;
  double connect_seconds = 0;         // first connect started to last handshake done
  double handshakes_per_second = 0;   // connects_ok / connect_seconds
  LatencySummary handshake;           // connect + upgrade, per stream
  double connect_cpu_percent = 0;     // this process, of one core, until every handshake was done

  // Frames (none in idle mode).
  std::uint64_t frames_sent = 0;
  std::uint64_t frames_answered = 0;
  std::uint64_t frames_lost = 0;         // sent and never answered
  std::uint64_t echoes_reordered = 0;    // answered after a later frame's echo
  std::uint64_t echoes_unknown = 0;      // an echo of no frame this stream sent
  std::uint64_t other_messages = 0;      // any other message from the server
  std::uint64_t late_sends = 0;          // sent more than one interval behind schedule
  LatencySummary rtt;                    // every answered frame
  LatencySummary rtt_window;             // frames sent inside the measured window

  // Stream endings.
  long streams_closed = 0;        // closed by the server after CloseStream (or by us after the drain)
  long streams_ended_early = 0;   // closed or broken before their duration was over

  // The measured window: from the moment every handshake is done to the
  // moment the first stream stops sending. Zero when the ramp is longer than
  // the duration (there is then no moment with every stream open).
  double window_seconds = 0;
  std::uint64_t window_frames_answered = 0;
  double window_cpu_percent = 0;  // this process, of one core
  std::vector<WatchedProcess> watched;  // in the order of config.watch_pids; a process gone at the start is left out

  // This process, whole run.
  double cpu_seconds = 0;
  double wall_seconds = 0;
  double cpu_percent = 0;  // of one core

  std::vector<std::pair<std::string, long>> errors;  // distinct messages and their counts
};

// Runs the load; blocks until every stream has ended. Throws
// std::invalid_argument when validate() finds a fault.
LoadReport run_load(LoadConfig config);

}  // namespace sluice::loadgen
