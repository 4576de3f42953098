#pragma once
// CPU time and resident memory of a process, read from /proc (another
// process) or getrusage (this one). Linux only.
#include <sys/types.h>

#include <optional>

namespace sluice::loadgen {

struct ProcessSample {
  double cpu_seconds = 0;  // user + system
  long rss_kib = 0;        // resident set size now
};

// /proc/PID/stat (utime + stime) and /proc/PID/statm; nothing if the process is gone.
std::optional<ProcessSample> sample_process(pid_t pid);

// This process's user + system CPU time, from getrusage(RUSAGE_SELF).
double self_cpu_seconds();

// Raises this process's soft limit on open files to its hard limit.
void raise_open_file_limit();

}  // namespace sluice::loadgen
