#pragma once
// What the simulator reports about the model a stream asked for: the
// model_info and model_uuid fields of Results, Metadata and TTS Metadata.
#include <string>
#include <string_view>

namespace sluice::sim {

struct ModelInfo {
  std::string name;     // Deepgram's internal name, e.g. "general-nova-3"
  std::string version;  // e.g. "2025-04-17.21547"
  std::string arch;     // e.g. "nova-3"
  std::string uuid;     // stable per model name, so every stream reports the same one
};

// For a listen model as given in `model=` (nova-3, nova-2-phonecall, flux-general-en, …).
ModelInfo listen_model_info(std::string_view model);

// For a speak model (aura-2-thalia-en, aura-asteria-en, …).
ModelInfo speak_model_info(std::string_view model);

// A UUID-shaped string derived from `text` (SHA-256), stable across runs.
std::string stable_uuid(std::string_view text);

}  // namespace sluice::sim
