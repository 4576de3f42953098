#include "loadgen/process_sample.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace sluice::loadgen {

std::optional<ProcessSample> sample_process(pid_t pid) {
  auto dir = "/proc/" + std::to_string(pid);
  std::ifstream stat_file(dir + "/stat");
  std::string stat;
  if (!std::getline(stat_file, stat)) return std::nullopt;
  // The command name (field 2) may hold spaces: the fields after it start
  // after the last ')'. There, utime and stime are the 12th and 13th.
  auto close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(close + 1));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 1; i <= 13 && fields >> field; ++i) {
    if (i == 12) utime = std::stoull(field);
    if (i == 13) stime = std::stoull(field);
  }
  std::ifstream statm_file(dir + "/statm");
  long size_pages = 0, resident_pages = 0;
  if (!(statm_file >> size_pages >> resident_pages)) return std::nullopt;

  static const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  static const long page_kib = sysconf(_SC_PAGESIZE) / 1024;
  return ProcessSample{static_cast<double>(utime + stime) / ticks, resident_pages * page_kib};
}

double self_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return seconds(u.ru_utime) + seconds(u.ru_stime);
}

void raise_open_file_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
}

}  // namespace sluice::loadgen
