#pragma once
// Classifies a stream into a pool by ordered rules on its path and query
// parameters (first match wins). Immutable: safe to share between threads.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.hpp"

namespace sluice::admission {

class Classifier {
 public:
  explicit Classifier(std::vector<config::PoolConfig> pools) : pools_(std::move(pools)) {}

  // The pool for a stream, or nullopt when no rule matches.
  std::optional<std::string> classify(std::string_view path,
                                      const std::vector<std::pair<std::string, std::string>>& params) const;

 private:
  std::vector<config::PoolConfig> pools_;
};

// A parameter pattern: exact, or a prefix when it ends with '*'.
bool pattern_matches(std::string_view pattern, std::string_view value);

}  // namespace sluice::admission
