#include "admission/classifier.hpp"

namespace sluice::admission {

bool pattern_matches(std::string_view pattern, std::string_view value) {
  if (!pattern.empty() && pattern.back() == '*') return value.starts_with(pattern.substr(0, pattern.size() - 1));
  return pattern == value;
}

std::optional<std::string> Classifier::classify(
    std::string_view path, const std::vector<std::pair<std::string, std::string>>& params) const {
  for (const auto& pool : pools_) {
    if (!pool.match.path.empty() && pool.match.path != path) continue;
    bool ok = true;
    for (const auto& [key, pattern] : pool.match.params) {
      bool found = false;
      for (const auto& [k, v] : params)
        if (k == key && pattern_matches(pattern, v)) found = true;
      if (!found) {
        ok = false;
        break;
      }
    }
    if (ok) return pool.name;
  }
  return std::nullopt;
}

}  // namespace sluice::admission
