#include "sim/models.hpp"

#include <openssl/sha.h>

#include <cstdio>

#include "protocol/errors.hpp"

namespace sluice::sim {

std::string stable_uuid(std::string_view text) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), d);
  return protocol::format_uuid(d);
}

ModelInfo listen_model_info(std::string_view model) {
  ModelInfo info;
  std::string m(model);
  info.uuid = stable_uuid("sluice-sim-listen:" + m);
  info.version = "2025-01-01.0";
  // Deepgram names a model "<variant>-<arch>": nova-3 → general-nova-3,
  // nova-2-phonecall → 2-phonecall-nova (its captures show exactly that form).
  if (m.starts_with("nova-")) {
    auto dash = m.find('-', 5);
    std::string arch = dash == std::string::npos ? m : m.substr(0, dash);
    std::string variant = dash == std::string::npos ? "general" : m.substr(dash + 1);
    info.arch = arch;
    info.name = arch == "nova-2" ? "2-" + variant + "-nova" : variant + "-" + arch;
  } else {
    info.arch = m.starts_with("flux") ? "flux" : m;
    info.name = m;
  }
  return info;
}

ModelInfo speak_model_info(std::string_view model) {
  ModelInfo info;
  std::string m(model);
  info.name = m;
  info.version = "2025-01-01.0";
  info.arch = m.starts_with("aura-2") ? "aura-2" : "aura";
  info.uuid = stable_uuid("sluice-sim-speak:" + m);
  return info;
}

}  // namespace sluice::sim
