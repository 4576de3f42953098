#include "loadgen/load_generator.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/url/parse.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <thread>
#include <variant>

#include "loadgen/latency_histogram.hpp"
#include "loadgen/process_sample.hpp"

namespace sluice::loadgen {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using WsStream = websocket::stream<beast::tcp_stream>;
using namespace asio::experimental::awaitable_operators;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
constexpr std::string_view kCloseStream = R"({"type":"CloseStream"})";
constexpr std::size_t kMaxFrameBytes = 1 << 20;
constexpr std::size_t kMaxDistinctErrors = 20;

std::uint64_t to_ns(Clock::time_point t) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

// Where the streams go, from the URL.
struct Target {
  tcp::endpoint endpoint;
  std::string host;    // Host header: the URL's authority
  std::string target;  // path and query
};

std::variant<Target, std::string> parse_target(const std::string& url) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) return "not a URL: " + url;
  const auto& u = *parsed;
  if (u.scheme() != "ws") return "only ws:// URLs are supported, got " + std::string(u.scheme());
  if (u.has_userinfo()) return "a URL with user information is not supported";
  boost::system::error_code ec;
  asio::ip::address address;
  switch (u.host_type()) {
    case boost::urls::host_type::ipv4: address = asio::ip::make_address(u.host_address(), ec); break;
    case boost::urls::host_type::ipv6: address = asio::ip::make_address(u.host_address(), ec); break;
    case boost::urls::host_type::name:
      if (u.host() != "localhost") return "the host must be a loopback address (127.0.0.0/8, ::1 or localhost)";
      address = asio::ip::make_address("127.0.0.1");
      break;
    default: return "the host must be a loopback address (127.0.0.0/8, ::1 or localhost)";
  }
  if (ec || !address.is_loopback())
    return "the host must be a loopback address (127.0.0.0/8, ::1 or localhost), got " + std::string(u.host());
  unsigned short port = 80;
  if (u.has_port()) {
    if (u.port_number() == 0) return "bad port in " + url;
    port = u.port_number();
  }
  Target t;
  t.endpoint = tcp::endpoint(address, port);
  t.host = std::string(u.encoded_host_and_port());
  t.target = u.encoded_path().empty() ? "/" : std::string(u.encoded_path());
  if (u.has_query()) t.target += "?" + std::string(u.encoded_query());
  return t;
}

LatencySummary summarize(const LatencyHistogram& h) {
  auto us = [](std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
  LatencySummary s;
  s.count = h.count();
  s.p50_us = us(h.quantile(0.50));
  s.p90_us = us(h.quantile(0.90));
  s.p99_us = us(h.quantile(0.99));
  s.p999_us = us(h.quantile(0.999));
  s.max_us = us(h.max());
  s.mean_us = h.mean() / 1000.0;
  return s;
}

// One io_context and its thread, with the books of the streams it runs.
// Written only from that thread; the atomics are also read by the monitor.
struct Worker {
  asio::io_context ioc{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard{asio::make_work_guard(ioc)};
  std::thread thread;

  std::atomic<std::uint64_t> frames_sent{0};
  std::atomic<std::uint64_t> frames_answered{0};
  std::uint64_t frames_lost = 0, reordered = 0, unknown = 0, other = 0, late = 0;
  long closed = 0, ended_early = 0;
  LatencyHistogram rtt, rtt_window, handshake;
  std::map<std::string, long> errors;

  void note_error(std::string what) {
    auto it = errors.find(what);
    if (it != errors.end()) ++it->second;
    else if (errors.size() < kMaxDistinctErrors) errors.emplace(std::move(what), 1);
    else ++errors["(other errors)"];
  }
};

// Shared by every stream: configuration (read only) and progress counters.
struct Run {
  LoadConfig config;
  Target target;
  std::string authorization;
  std::vector<unsigned char> payload;  // the frame after its 8-byte timestamp: zeros (silence)
  std::vector<std::unique_ptr<Worker>> workers;

  std::atomic<int> pending{0};           // handshakes in flight
  std::atomic<int> handshakes_done{0};   // ok or failed
  std::atomic<int> connects_ok{0};
  std::atomic<int> finished{0};          // streams whose coroutine has ended
  std::atomic<std::uint64_t> first_connect_ns{0};
  std::atomic<std::uint64_t> last_handshake_ns{0};
  std::atomic<std::uint64_t> window_start_ns{0};  // every handshake done
  std::atomic<std::uint64_t> window_end_ns{0};    // the first stream stops sending

  void note_connect_start(std::uint64_t ns) {
    std::uint64_t zero = 0;
    first_connect_ns.compare_exchange_strong(zero, ns);
  }

  void note_handshake_done(bool ok, std::uint64_t ns) {
    if (ok) {
      connects_ok.fetch_add(1);
      std::uint64_t zero = 0;
      window_end_ns.compare_exchange_strong(
          zero, ns + static_cast<std::uint64_t>(std::chrono::nanoseconds(config.duration).count()));
    }
    auto last = last_handshake_ns.load();
    while (last < ns && !last_handshake_ns.compare_exchange_weak(last, ns)) {
    }
    if (handshakes_done.fetch_add(1) + 1 == config.streams) window_start_ns.store(to_ns(Clock::now()));
  }

  std::uint64_t frames_answered() const {
    std::uint64_t n = 0;
    for (const auto& w : workers) n += w->frames_answered.load(std::memory_order_relaxed);
    return n;
  }
};

// One stream's state shared by its sender and its reader (same thread).
struct StreamState {
  explicit StreamState(const asio::any_io_executor& ex) : signal(ex) {}
  asio::steady_timer signal;  // the sender waits on it; the reader cancels it to wake the sender
  std::array<unsigned char, 8> header{};
  std::uint64_t sent = 0;
  std::uint64_t answered = 0;
  std::uint64_t first_sent = 0, last_sent = 0;  // send timestamps, strictly increasing
  std::uint64_t last_echo = 0;                  // highest timestamp echoed so far
  bool draining = false;    // the sender waits for the last echoes
  bool close_sent = false;  // CloseStream is on its way
  bool reader_done = false;
  bool ended_early = false;
};

// Waits until `deadline` or until the reader cancels the signal.
asio::awaitable<void> wait_for_reader(StreamState& st, Clock::time_point deadline) {
  if (st.reader_done) co_return;
  st.signal.expires_at(deadline);
  co_await st.signal.async_wait(use_nothrow);
}

std::optional<std::uint64_t> parse_echo(std::string_view text) {
  constexpr std::string_view key = R"("t":")";
  auto at = text.find(key);
  if (at == std::string_view::npos || text.size() < at + key.size() + 16) return std::nullopt;
  std::array<unsigned char, 8> bytes{};
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const char* p = text.data() + at + key.size();
  for (std::size_t i = 0; i < 8; ++i) {
    int hi = hex(p[2 * i]), lo = hex(p[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    bytes[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  std::uint64_t t;
  std::memcpy(&t, bytes.data(), sizeof t);
  return t;
}

// Sends a frame every interval from opened + phase until opened + duration,
// waits for the last echoes, sends CloseStream and lets the server close
// (closing itself if the server does not).
asio::awaitable<void> send_frames(Run& run, Worker& w, WsStream& ws, StreamState& st, Clock::time_point opened,
                                  std::chrono::nanoseconds phase) {
  const auto& c = run.config;
  const auto end = opened + c.duration;
  if (c.idle) {
    co_await wait_for_reader(st, end);
  } else {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (auto next = opened + phase; next < end; next += c.interval) {
      timer.expires_at(next);
      co_await timer.async_wait(use_nothrow);
      if (st.reader_done) break;
      auto now = Clock::now();
      if (now - next > c.interval) ++w.late;
      auto t = std::max(to_ns(now), st.last_sent + 1);
      std::memcpy(st.header.data(), &t, sizeof t);
      if (st.sent == 0) st.first_sent = t;
      st.last_sent = t;
      ++st.sent;
      w.frames_sent.fetch_add(1, std::memory_order_relaxed);
      std::array<asio::const_buffer, 2> frame{asio::buffer(st.header), asio::buffer(run.payload)};
      ws.binary(true);
      auto [ec, n] = co_await ws.async_write(frame, use_nothrow);
      if (ec) {
        if (!st.reader_done) w.note_error("write: " + ec.message());
        beast::get_lowest_layer(ws).close();  // ends the reader too
        co_return;
      }
    }
    if (!st.reader_done && st.answered < st.sent) {
      st.draining = true;
      co_await wait_for_reader(st, Clock::now() + c.drain_timeout);
      st.draining = false;
    }
  }
  if (st.reader_done) co_return;

  st.close_sent = true;
  ws.text(true);
  auto [ec, n] = co_await ws.async_write(asio::buffer(kCloseStream.data(), kCloseStream.size()), use_nothrow);
  if (ec) {
    if (!st.reader_done) w.note_error("write CloseStream: " + ec.message());
    beast::get_lowest_layer(ws).close();
    co_return;
  }
  co_await wait_for_reader(st, Clock::now() + c.drain_timeout);
  if (!st.reader_done) {
    w.note_error("no close from the server after CloseStream: closed by the generator");
    co_await ws.async_close(websocket::close_code::normal, use_nothrow);
  }
}

// Reads until the stream closes; matches each echo to its frame.
asio::awaitable<void> read_echoes(Run& run, Worker& w, WsStream& ws, StreamState& st) {
  beast::flat_buffer buffer;
  for (;;) {
    buffer.clear();
    auto [ec, n] = co_await ws.async_read(buffer, use_nothrow);
    if (ec) {
      if (!st.close_sent) {
        st.ended_early = true;
        if (ec == websocket::error::closed)
          w.note_error("closed by the server before CloseStream: " + std::to_string(ws.reason().code) + " " +
                       std::string(ws.reason().reason.data(), ws.reason().reason.size()));
        else
          w.note_error("read: " + ec.message());
      } else if (ec == websocket::error::closed) {
        ++w.closed;
      } else if (ec != asio::error::operation_aborted) {
        w.note_error("read after CloseStream: " + ec.message());
      }
      break;
    }
    auto now = to_ns(Clock::now());
    if (!ws.got_text()) {
      ++w.other;
      continue;
    }
    auto data = buffer.cdata();
    auto t = parse_echo(std::string_view(static_cast<const char*>(data.data()), data.size()));
    if (!t) {
      ++w.other;
      continue;
    }
    if (st.sent == 0 || *t < st.first_sent || *t > st.last_sent) {
      ++w.unknown;
      continue;
    }
    if (*t <= st.last_echo) ++w.reordered;
    else st.last_echo = *t;
    ++st.answered;
    w.frames_answered.fetch_add(1, std::memory_order_relaxed);
    w.rtt.record(now - *t);
    auto window_start = run.window_start_ns.load(std::memory_order_relaxed);
    if (window_start != 0 && *t >= window_start && *t < run.window_end_ns.load(std::memory_order_relaxed))
      w.rtt_window.record(now - *t);
    if (st.draining && st.answered >= st.sent) st.signal.cancel();
  }
  st.reader_done = true;
  st.signal.cancel();
}

asio::awaitable<void> run_stream(Run& run, Worker& w, std::chrono::nanoseconds phase) {
  const auto& c = run.config;
  WsStream ws(co_await asio::this_coro::executor);
  auto& socket_stream = beast::get_lowest_layer(ws);
  auto start = Clock::now();
  run.note_connect_start(to_ns(start));

  // Connect and upgrade, within the handshake timeout.
  socket_stream.expires_after(c.handshake_timeout);
  auto [ec] = co_await socket_stream.async_connect(run.target.endpoint, use_nothrow);
  websocket::response_type response;
  if (!ec) {
    socket_stream.socket().set_option(tcp::no_delay(true), ec);
    ws.auto_fragment(false);
    ws.secure_prng(false);  // frame masks need no cryptographic quality here
    ws.set_option(websocket::stream_base::decorator([&run](websocket::request_type& req) {
      req.set(http::field::user_agent, "sluice-loadgen");
      if (!run.authorization.empty()) req.set(http::field::authorization, run.authorization);
    }));
    std::tie(ec) = co_await ws.async_handshake(response, run.target.host, run.target.target, use_nothrow);
  }
  run.pending.fetch_sub(1);
  auto opened = Clock::now();
  if (ec) {
    if (ec == websocket::error::upgrade_declined)
      w.note_error("handshake refused: HTTP " + std::to_string(response.result_int()));
    else
      w.note_error("connect or handshake: " + ec.message());
    run.note_handshake_done(false, to_ns(opened));
    co_return;
  }
  w.handshake.record(to_ns(opened) - to_ns(start));
  run.note_handshake_done(true, to_ns(opened));

  socket_stream.expires_never();
  websocket::stream_base::timeout timeouts{};
  timeouts.handshake_timeout = c.drain_timeout;  // also bounds the close handshake
  timeouts.idle_timeout = websocket::stream_base::none();
  timeouts.keep_alive_pings = false;
  ws.set_option(timeouts);

  StreamState st(ws.get_executor());
  co_await (send_frames(run, w, ws, st, opened, phase) && read_echoes(run, w, ws, st));
  if (st.ended_early) ++w.ended_early;
  if (st.sent > st.answered) w.frames_lost += st.sent - st.answered;
}

// Opens the streams at the configured rate, at most max_pending_handshakes at a time.
asio::awaitable<void> launch_streams(Run& run) {
  const auto& c = run.config;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  std::mt19937_64 rng(c.seed ? c.seed : std::random_device{}());
  std::uniform_int_distribution<std::int64_t> phase(
      0, std::max<std::int64_t>(0, std::chrono::nanoseconds(c.interval).count() - 1));
  auto t0 = Clock::now();
  for (int i = 0; i < c.streams; ++i) {
    if (c.ramp > 0) {
      timer.expires_at(t0 + std::chrono::nanoseconds(static_cast<std::int64_t>(i * 1e9 / c.ramp)));
      co_await timer.async_wait(use_nothrow);
    }
    while (run.pending.load() >= c.max_pending_handshakes) {
      timer.expires_after(std::chrono::milliseconds(1));
      co_await timer.async_wait(use_nothrow);
    }
    run.pending.fetch_add(1);
    auto& w = *run.workers[static_cast<std::size_t>(i) % run.workers.size()];
    asio::co_spawn(w.ioc, run_stream(run, w, std::chrono::nanoseconds(phase(rng))),
                   [&run, &w](std::exception_ptr e) {
                     if (e) {
                       try {
                         std::rethrow_exception(e);
                       } catch (const std::exception& x) {
                         w.note_error(std::string("stream failed: ") + x.what());
                       }
                     }
                     run.finished.fetch_add(1);
                   });
  }
}

// Samples one watched process at the run's milestones.
class ProcessWatch {
 public:
  explicit ProcessWatch(int pid) : before_(sample_process(pid)) {
    record_.pid = pid;
    if (before_) record_.rss_before_kib = record_.rss_peak_kib = before_->rss_kib;
  }
  bool alive_at_start() const { return before_.has_value(); }
  const WatchedProcess& record() const { return record_; }

  // Every handshake is done, `seconds` after the start.
  void connected(double seconds) {
    auto now = sample_process(record_.pid);
    if (now && before_) record_.connect_cpu_percent = 100.0 * (now->cpu_seconds - before_->cpu_seconds) / seconds;
    window_start_ = now;
  }
  void tick() {
    if (auto now = sample_process(record_.pid)) record_.rss_peak_kib = std::max(record_.rss_peak_kib, now->rss_kib);
  }
  void window_closed(double window_seconds) {
    auto now = sample_process(record_.pid);
    if (!now || !window_start_) return;
    record_.rss_peak_kib = std::max(record_.rss_peak_kib, now->rss_kib);
    record_.cpu_seconds = now->cpu_seconds - window_start_->cpu_seconds;
    record_.cpu_percent = 100.0 * record_.cpu_seconds / window_seconds;
    record_.rss_end_kib = now->rss_kib;
  }

 private:
  std::optional<ProcessSample> before_, window_start_;
  WatchedProcess record_;
};

// An upper bound on the run's length, past which the monitor stops it.
Clock::duration deadline_for(const LoadConfig& c) {
  using Seconds = std::chrono::duration<double>;
  Seconds handshakes = c.ramp > 0 ? Seconds(c.streams / c.ramp) + Seconds(c.handshake_timeout)
                                  : Seconds(c.handshake_timeout) *
                                        std::ceil(static_cast<double>(c.streams) / c.max_pending_handshakes);
  return std::chrono::duration_cast<Clock::duration>(handshakes + c.duration + 3 * c.drain_timeout +
                                                     std::chrono::seconds(10));
}

}  // namespace

std::optional<std::string> validate(const LoadConfig& c) {
  if (c.streams < 1 || c.streams > kMaxStreams)
    return "streams must be between 1 and " + std::to_string(kMaxStreams);
  if (c.duration <= std::chrono::milliseconds(0) || c.duration > kMaxDuration)
    return "duration must be more than 0 and at most " + std::to_string(kMaxDuration.count()) + " s";
  if (c.frame_bytes < 8 || c.frame_bytes > kMaxFrameBytes)
    return "frame bytes must be between 8 (the timestamp) and " + std::to_string(kMaxFrameBytes);
  if (c.interval < std::chrono::milliseconds(1) || c.interval > std::chrono::minutes(1))
    return "the interval must be between 1 ms and 60 s";
  if (!(c.ramp >= 0) || !std::isfinite(c.ramp)) return "the ramp must be 0 (as fast as possible) or more";
  if (c.threads < 1 || c.threads > 64) return "threads must be between 1 and 64";
  if (c.max_pending_handshakes < 1) return "at least one handshake must be allowed in flight";
  if (c.handshake_timeout <= std::chrono::milliseconds(0) || c.drain_timeout <= std::chrono::milliseconds(0))
    return "timeouts must be positive";
  if (c.watch_pids.size() > 8) return "at most 8 processes can be watched";
  for (int pid : c.watch_pids)
    if (pid <= 0) return "bad process id " + std::to_string(pid);
  auto target = parse_target(c.url);
  if (auto* error = std::get_if<std::string>(&target)) return *error;
  return std::nullopt;
}

LoadReport run_load(LoadConfig config) {
  if (auto error = validate(config)) throw std::invalid_argument(*error);
  raise_open_file_limit();
  auto progress = std::move(config.on_progress);
  auto say = [&progress](const std::string& line) {
    if (progress) progress(line);
  };

  Run run;
  run.config = std::move(config);
  const auto& c = run.config;
  run.target = std::get<Target>(parse_target(c.url));
  if (!c.key.empty()) run.authorization = "Token " + c.key;
  run.payload.assign(c.frame_bytes - 8, 0);
  for (int i = 0; i < c.threads; ++i) run.workers.push_back(std::make_unique<Worker>());

  LoadReport report;
  std::vector<ProcessWatch> watches;
  for (int pid : c.watch_pids) watches.emplace_back(pid);
  const auto t0 = Clock::now();
  const double cpu0 = self_cpu_seconds();
  auto seconds_since_t0 = [&t0] { return std::chrono::duration<double>(Clock::now() - t0).count(); };

  asio::co_spawn(run.workers.front()->ioc, launch_streams(run), asio::detached);
  for (auto& w : run.workers) w->thread = std::thread([&ioc = w->ioc] { ioc.run(); });

  // Monitor: every 10 ms, mark the window's edges and sample the watched
  // process. The window opens when every handshake is done and closes when
  // the first stream stops sending.
  enum class Window { before, open, done };
  Window window = Window::before;
  double window_cpu0 = 0, window_t0 = 0;
  std::uint64_t window_answered0 = 0;
  bool timed_out = false;
  const auto deadline = t0 + deadline_for(c);
  while (run.finished.load() < c.streams) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (window == Window::before && run.window_start_ns.load() != 0) {
      auto connect_seconds = seconds_since_t0();
      report.connect_cpu_percent = 100.0 * (self_cpu_seconds() - cpu0) / connect_seconds;
      for (auto& w : watches) w.connected(connect_seconds);
      auto ok = run.connects_ok.load();
      say(fmt::format("opened {}/{} streams ({} failed) in {:.2f} s", ok, c.streams, c.streams - ok,
                      connect_seconds));
      if (ok > 0 && run.window_end_ns.load() > run.window_start_ns.load() + 10'000'000) {
        window = Window::open;
        window_t0 = connect_seconds;
        window_cpu0 = self_cpu_seconds();
        window_answered0 = run.frames_answered();
        say("measured window open");
      } else {
        window = Window::done;
        say("no measured window: the ramp outlasted the first stream");
      }
    } else if (window == Window::open) {
      for (auto& w : watches) w.tick();
      if (to_ns(Clock::now()) >= run.window_end_ns.load()) {
        window = Window::done;
        report.window_seconds = seconds_since_t0() - window_t0;
        report.window_frames_answered = run.frames_answered() - window_answered0;
        report.window_cpu_percent = 100.0 * (self_cpu_seconds() - window_cpu0) / report.window_seconds;
        for (auto& w : watches) w.window_closed(report.window_seconds);
        say(fmt::format("measured window closed after {:.2f} s", report.window_seconds));
      }
    }
    if (Clock::now() > deadline) {
      timed_out = true;
      break;
    }
  }
  for (const auto& w : watches)
    if (w.alive_at_start()) report.watched.push_back(w.record());
  for (auto& w : run.workers) {
    w->guard.reset();
    if (timed_out) w->ioc.stop();
  }
  for (auto& w : run.workers) w->thread.join();

  report.wall_seconds = seconds_since_t0();
  report.cpu_seconds = self_cpu_seconds() - cpu0;
  report.cpu_percent = 100.0 * report.cpu_seconds / report.wall_seconds;

  LatencyHistogram rtt, rtt_window, handshake;
  std::map<std::string, long> errors;
  for (auto& w : run.workers) {
    report.frames_sent += w->frames_sent.load();
    report.frames_answered += w->frames_answered.load();
    report.frames_lost += w->frames_lost;
    report.echoes_reordered += w->reordered;
    report.echoes_unknown += w->unknown;
    report.other_messages += w->other;
    report.late_sends += w->late;
    report.streams_closed += w->closed;
    report.streams_ended_early += w->ended_early;
    rtt.merge(w->rtt);
    rtt_window.merge(w->rtt_window);
    handshake.merge(w->handshake);
    for (auto& [what, n] : w->errors) errors[what] += n;
  }
  if (timed_out) {
    errors["run stopped at its deadline with " + std::to_string(c.streams - run.finished.load()) +
           " stream(s) still open"] += 1;
    // Frames still unanswered in the streams that never ended.
    report.frames_lost = report.frames_sent - std::min(report.frames_sent, report.frames_answered);
  }
  report.rtt = summarize(rtt);
  report.rtt_window = summarize(rtt_window);
  report.handshake = summarize(handshake);
  report.connects_ok = run.connects_ok.load();
  report.connects_failed = run.handshakes_done.load() - report.connects_ok;
  if (run.last_handshake_ns.load() > run.first_connect_ns.load())
    report.connect_seconds = static_cast<double>(run.last_handshake_ns.load() - run.first_connect_ns.load()) / 1e9;
  if (report.connect_seconds > 0)
    report.handshakes_per_second = static_cast<double>(report.connects_ok) / report.connect_seconds;
  report.errors.assign(errors.begin(), errors.end());
  report.config = run.config;
  return report;
}

}  // namespace sluice::loadgen
