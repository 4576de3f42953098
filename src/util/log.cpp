#include "util/log.hpp"

#include "util/json_text.hpp"

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>
#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <random>

namespace sluice::util::log {
namespace {

// The fields of the line being written on this thread (with_fields), read by
// the JSON formatter: spdlog's synchronous logger formats on the calling
// thread, inside the log call.
thread_local const boost::json::object* tl_fields = nullptr;

std::atomic<Format> g_format{Format::text};  // as setup() installed it

std::string draw_run_id() {
  std::random_device rd;
  std::uint64_t v = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  return fmt::format("{:012x}", v & 0xffffffffffffULL);
}

std::string iso_time(spdlog::log_clock::time_point t) {
  using namespace std::chrono;
  auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
  auto secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    boost::json::object o;
    o["time"] = iso_time(msg.time);
    auto level = spdlog::level::to_string_view(msg.level);
    o["level"] = std::string_view(level.data(), level.size());
    o["run"] = run_id();
    o["msg"] = std::string_view(msg.payload.data(), msg.payload.size());
    if (tl_fields)
      for (const auto& [k, v] : *tl_fields)
        if (!o.contains(k)) o[k] = v;
    auto line = json_text(o);
    dest.append(line.data(), line.data() + line.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

void append_text(std::string& out, const std::string& prefix, const boost::json::object& fields) {
  for (const auto& [k, v] : fields) {
    std::string key = prefix.empty() ? std::string(k) : prefix + "." + std::string(k);
    if (v.is_object()) {
      append_text(out, key, v.get_object());
      continue;
    }
    if (!out.empty()) out += ' ';
    out += key;
    out += '=';
    if (v.is_string()) {
      std::string_view s = v.get_string();
      if (s.empty()) out += "-";
      else if (s.find_first_of(" \"=") == std::string_view::npos) out += s;
      else out += boost::json::serialize(v);
    } else if (v.is_null()) {
      out += "-";
    } else {
      out += json_text(v);
    }
  }
}

}  // namespace

std::optional<Format> parse_format(std::string_view name) {
  if (name == "text") return Format::text;
  if (name == "json") return Format::json;
  return std::nullopt;
}

const std::string& run_id() {
  static const std::string id = draw_run_id();
  return id;
}

void setup(const std::string& level, Format format) {
  auto logger = spdlog::get("sluice");
  if (!logger) logger = spdlog::stderr_color_mt("sluice");
  if (format == Format::json)
    logger->set_formatter(std::make_unique<JsonFormatter>());
  else
    logger->set_formatter(std::make_unique<spdlog::pattern_formatter>(
        "%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ run=" + run_id() + " %v", spdlog::pattern_time_type::utc));
  g_format.store(format);
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

std::string text_fields(const boost::json::object& fields) {
  std::string out;
  append_text(out, "", fields);
  return out;
}

void with_fields(spdlog::level::level_enum level, std::string_view msg, const boost::json::object& fields) {
  auto logger = spdlog::default_logger_raw();
  if (!logger->should_log(level)) return;
  if (g_format.load() == Format::json) {
    tl_fields = &fields;
    logger->log(level, "{}", msg);
  } else {
    logger->log(level, "{}: {}", msg, text_fields(fields));
  }
  tl_fields = nullptr;
}

}  // namespace sluice::util::log
