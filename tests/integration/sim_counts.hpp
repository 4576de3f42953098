#pragma once
// The simulator as judge: its streaming streams now (or at most), and the
// 429s it answered, over every project.
#include "stack.hpp"

namespace sluice::testing {

inline int sim_streaming(Stack& s, bool max = false) {
  int n = 0;
  for (auto& [project, families] : s.sim().stats().projects) {
    auto it = families.find(protocol::Family::streaming);
    if (it != families.end()) n += max ? it->second.max_open : it->second.open;
  }
  return n;
}

inline long long sim_429s(Stack& s) {
  long long n = 0;
  for (auto& [project, families] : s.sim().stats().projects)
    for (auto& [f, c] : families) n += c.refused_429;
  return n;
}

}  // namespace sluice::testing
