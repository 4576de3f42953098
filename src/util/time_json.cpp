#include "util/time_json.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <ctime>

namespace sluice::util {

std::string format_time(std::int64_t ns) {
  auto secs = static_cast<std::time_t>(ns / 1000000000);
  auto ms = (ns / 1000000) % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z", tm, ms);
}

boost::json::value time_json(std::int64_t ns) {
  if (ns == 0) return nullptr;
  return boost::json::value(format_time(ns));
}

}  // namespace sluice::util
