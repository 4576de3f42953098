#include "loadgen/report_format.hpp"

#include <fmt/format.h>

namespace sluice::loadgen {
namespace {

boost::json::object latency_json(const LatencySummary& s) {
  boost::json::object o;
  o["count"] = s.count;
  o["p50_us"] = s.p50_us;
  o["p90_us"] = s.p90_us;
  o["p99_us"] = s.p99_us;
  o["p999_us"] = s.p999_us;
  o["max_us"] = s.max_us;
  o["mean_us"] = s.mean_us;
  return o;
}

std::string latency_row(std::string_view name, const LatencySummary& s) {
  return fmt::format("  {:<22}{:>10}{:>10.0f}{:>10.0f}{:>10.0f}{:>10.0f}{:>10.0f}\n", name, s.count, s.p50_us,
                     s.p90_us, s.p99_us, s.p999_us, s.max_us);
}

}  // namespace

boost::json::object report_json(const LoadReport& r) {
  const auto& c = r.config;
  boost::json::object config;
  config["url"] = c.url;
  config["streams"] = c.streams;
  config["frame_bytes"] = c.frame_bytes;
  config["interval_ms"] = c.interval.count();
  config["duration_s"] = std::chrono::duration<double>(c.duration).count();
  config["ramp_per_second"] = c.ramp;
  config["threads"] = c.threads;
  config["idle"] = c.idle;

  boost::json::object o;
  o["config"] = std::move(config);
  o["connects_ok"] = r.connects_ok;
  o["connects_failed"] = r.connects_failed;
  o["connect_seconds"] = r.connect_seconds;
  o["handshakes_per_second"] = r.handshakes_per_second;
  o["handshake"] = latency_json(r.handshake);
  o["connect_generator_cpu_percent"] = r.connect_cpu_percent;
  o["frames_sent"] = r.frames_sent;
  o["frames_answered"] = r.frames_answered;
  o["frames_lost"] = r.frames_lost;
  o["echoes_reordered"] = r.echoes_reordered;
  o["echoes_unknown"] = r.echoes_unknown;
  o["other_messages"] = r.other_messages;
  o["late_sends"] = r.late_sends;
  o["streams_closed"] = r.streams_closed;
  o["streams_ended_early"] = r.streams_ended_early;
  o["rtt"] = latency_json(r.rtt);
  o["rtt_window"] = latency_json(r.rtt_window);
  boost::json::object window;
  window["seconds"] = r.window_seconds;
  window["frames_answered"] = r.window_frames_answered;
  window["generator_cpu_percent"] = r.window_cpu_percent;
  boost::json::array watched;
  for (const auto& w : r.watched) {
    boost::json::object p;
    p["pid"] = w.pid;
    p["connect_cpu_percent"] = w.connect_cpu_percent;
    p["cpu_seconds"] = w.cpu_seconds;
    p["cpu_percent"] = w.cpu_percent;
    p["rss_before_kib"] = w.rss_before_kib;
    p["rss_peak_kib"] = w.rss_peak_kib;
    p["rss_end_kib"] = w.rss_end_kib;
    watched.push_back(std::move(p));
  }
  window["watched"] = std::move(watched);
  o["window"] = std::move(window);
  o["generator_cpu_seconds"] = r.cpu_seconds;
  o["generator_cpu_percent"] = r.cpu_percent;
  o["wall_seconds"] = r.wall_seconds;
  boost::json::array errors;
  for (const auto& [what, n] : r.errors) errors.push_back(boost::json::object{{"error", what}, {"count", n}});
  o["errors"] = std::move(errors);
  return o;
}

std::string report_table(const LoadReport& r) {
  const auto& c = r.config;
  std::string out;
  auto line = [&out](const std::string& s) { out += s + "\n"; };
  if (c.idle)
    line(fmt::format("{} idle streams held {:.1f} s, ramp {}/s, {} thread(s)", c.streams,
                     std::chrono::duration<double>(c.duration).count(), c.ramp, c.threads));
  else
    line(fmt::format("{} streams x {} B every {} ms for {:.1f} s, ramp {}/s, {} thread(s)", c.streams, c.frame_bytes,
                     c.interval.count(), std::chrono::duration<double>(c.duration).count(), c.ramp, c.threads));
  line(fmt::format("  url                   {}", c.url));
  line(fmt::format("  connects              {} ok, {} failed; {:.0f} handshakes/s over {:.2f} s (generator CPU {:.1f} %)",
                   r.connects_ok, r.connects_failed, r.handshakes_per_second, r.connect_seconds,
                   r.connect_cpu_percent));
  line(fmt::format("  streams               {} closed after CloseStream, {} ended early", r.streams_closed,
                   r.streams_ended_early));
  if (!c.idle) {
    line(fmt::format("  frames                {} sent, {} answered, {} lost, {} reordered, {} unknown, {} late",
                     r.frames_sent, r.frames_answered, r.frames_lost, r.echoes_reordered, r.echoes_unknown,
                     r.late_sends));
  }
  if (r.other_messages) line(fmt::format("  other messages        {}", r.other_messages));
  out += fmt::format("  {:<22}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}\n", "latency (us)", "count", "p50", "p90", "p99",
                     "p99.9", "max");
  out += latency_row("handshake", r.handshake);
  if (!c.idle) {
    out += latency_row("rtt, all frames", r.rtt);
    out += latency_row("rtt, measured window", r.rtt_window);
  }
  if (r.window_seconds > 0)
    line(fmt::format("  measured window       {:.2f} s, {} frames answered, generator CPU {:.1f} %", r.window_seconds,
                     r.window_frames_answered, r.window_cpu_percent));
  else
    line("  measured window       none (the ramp outlasted the first stream)");
  for (const auto& w : r.watched) {
    line(fmt::format("  watched pid {:<10}CPU {:.1f} % in the window ({:.2f} s), {:.1f} % while connecting; RSS {} KiB "
                     "before, {} KiB peak, {} KiB at end",
                     w.pid, w.cpu_percent, w.cpu_seconds, w.connect_cpu_percent, w.rss_before_kib, w.rss_peak_kib,
                     w.rss_end_kib));
  }
  line(fmt::format("  generator             {:.2f} s CPU over {:.2f} s wall ({:.1f} % of one core)", r.cpu_seconds,
                   r.wall_seconds, r.cpu_percent));
  for (const auto& [what, n] : r.errors) line(fmt::format("  error x{:<6}         {}", n, what));
  return out;
}

}  // namespace sluice::loadgen
