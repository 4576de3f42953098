#include "session/relay.hpp"

#include <random>

namespace sluice::session::relay_detail {

void random_mask(std::uint8_t* out) {
  // Masking keys must be unpredictable to the peer's intermediaries (RFC 6455
  // 10.3), not secret: a per-thread generator seeded from the OS suffices.
  thread_local std::mt19937 rng(std::random_device{}());
  auto v = static_cast<std::uint32_t>(rng());
  std::memcpy(out, &v, 4);
}

}  // namespace sluice::session::relay_detail
