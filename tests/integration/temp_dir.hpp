#pragma once
// A fresh directory under /tmp for one test, removed with everything in it.
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace sluice::testing {

struct TempDir {
  std::filesystem::path dir;
  TempDir() {
    char d[] = "/tmp/sluice-test-XXXXXX";
    dir = ::mkdtemp(d);
  }
  ~TempDir() { std::filesystem::remove_all(dir); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  // Writes `content` to the file `name` in it (replacing it); returns its path.
  std::string write(const std::string& name, const std::string& content) const {
    std::ofstream(dir / name) << content;
    return (dir / name).string();
  }
};

}  // namespace sluice::testing
