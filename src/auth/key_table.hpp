#pragma once
// Maps a client's key to its tenant. Keys are held only as SHA-256 hashes and
// every stored hash is compared in constant time, so neither the table nor the
// time a lookup takes reveals a key. Immutable after construction: safe to
// share between threads.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.hpp"

namespace sluice::auth {

class KeyTable {
 public:
  explicit KeyTable(const std::vector<config::Tenant>& tenants);
  std::optional<std::string> tenant_for(std::string_view secret) const;
  bool empty() const { return entries_.empty(); }

 private:
  std::vector<std::pair<std::string, std::string>> entries_;  // (hash, tenant)
};

}  // namespace sluice::auth
