#include "auth/key_table.hpp"

#include "protocol/credential.hpp"

namespace sluice::auth {

KeyTable::KeyTable(const std::vector<config::Tenant>& tenants) {
  for (const auto& t : tenants)
    for (const auto& h : t.key_hashes) entries_.emplace_back(h, t.name);
}

std::optional<std::string> KeyTable::tenant_for(std::string_view secret) const {
  auto hash = protocol::key_hash(secret);
  const std::string* found = nullptr;
  // No early exit: every entry is compared.
  for (const auto& [h, tenant] : entries_)
    if (protocol::constant_time_equal(h, hash)) found = &tenant;
  if (!found) return std::nullopt;
  return *found;
}

}  // namespace sluice::auth
