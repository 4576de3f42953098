#pragma once
// Runs a sluice binary as a child process, reads the line in which it reports
// its listening ports, and kills it when destroyed.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace sluice::testing {

class ChildProcess {
 public:
  explicit ChildProcess(std::vector<std::string> args) {
    // A gateway started by a test records its history under /tmp unless the
    // test chose a place, never in the working directory.
    if (!std::getenv("SLUICE_DATA_DIR")) {
      static std::string dir = [] {
        char d[] = "/tmp/sluice-proc-XXXXXX";
        return std::string(::mkdtemp(d) ? d : "/tmp");
      }();
      ::setenv("SLUICE_DATA_DIR", dir.c_str(), 0);
    }
    int out[2];
    if (pipe(out) != 0) throw std::runtime_error("pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ) != 0)
      throw std::runtime_error("cannot start " + args[0]);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    out_ = fdopen(out[0], "r");
  }
  ~ChildProcess() { stop(); }

  // Reads stdout lines until one matches `pattern`; returns its captures.
  std::smatch wait_for_line(const std::string& pattern) {
    std::regex re(pattern);
    char line[4096];
    while (std::fgets(line, sizeof line, out_)) {
      last_ = line;
      std::smatch m;
      if (std::regex_search(last_, m, re)) return m;
    }
    throw std::runtime_error("process ended before printing " + pattern);
  }

  pid_t pid() const { return pid_; }

  // Resident set size in KiB, from /proc.
  long rss_kib() const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    std::string key;
    while (in >> key) {
      if (key == "VmRSS:") {
        long v = 0;
        in >> v;
        return v;
      }
      std::string rest;
      std::getline(in, rest);
    }
    return -1;
  }

  int stop(int sig = SIGTERM) {
    if (pid_ <= 0) return status_;
    kill(pid_, sig);
    waitpid(pid_, &status_, 0);
    pid_ = -1;
    if (out_) fclose(out_);
    out_ = nullptr;
    return status_;
  }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  std::string last_;
  int status_ = 0;
};

}  // namespace sluice::testing
