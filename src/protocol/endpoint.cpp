#include "protocol/endpoint.hpp"

namespace sluice::protocol {

std::optional<Endpoint> endpoint_from_path(std::string_view path) {
  if (path == "/v1/listen") return Endpoint::listen_v1;
  if (path == "/v2/listen") return Endpoint::listen_v2;
  if (path == "/v1/speak") return Endpoint::speak_v1;
  if (path == "/v1/agent/converse") return Endpoint::agent;
  return std::nullopt;
}

std::string_view endpoint_path(Endpoint e) {
  switch (e) {
    case Endpoint::listen_v1: return "/v1/listen";
    case Endpoint::listen_v2: return "/v2/listen";
    case Endpoint::speak_v1: return "/v1/speak";
    case Endpoint::agent: return "/v1/agent/converse";
  }
  return {};
}

std::string_view endpoint_name(Endpoint e) {
  switch (e) {
    case Endpoint::listen_v1: return "listen.v1";
    case Endpoint::listen_v2: return "listen.v2";
    case Endpoint::speak_v1: return "speak.v1";
    case Endpoint::agent: return "agent";
  }
  return {};
}

Family endpoint_family(Endpoint e) {
  switch (e) {
    case Endpoint::listen_v1: return Family::streaming;
    case Endpoint::listen_v2: return Family::flux;
    case Endpoint::speak_v1: return Family::tts;
    case Endpoint::agent: return Family::agent;
  }
  return Family::streaming;
}

std::string_view family_name(Family f) {
  switch (f) {
    case Family::streaming: return "streaming";
    case Family::flux: return "flux";
    case Family::tts: return "tts";
    case Family::agent: return "agent";
  }
  return {};
}

std::optional<Family> family_from_name(std::string_view name) {
  for (Family f : {Family::streaming, Family::flux, Family::tts, Family::agent})
    if (family_name(f) == name) return f;
  return std::nullopt;
}

std::string_view close_message(Endpoint e) {
  switch (e) {
    case Endpoint::listen_v1:
    case Endpoint::listen_v2: return R"({"type":"CloseStream"})";
    case Endpoint::speak_v1: return R"({"type":"Close"})";
    case Endpoint::agent: return {};
  }
  return {};
}

bool is_flux_model(std::string_view model) { return model.starts_with("flux"); }

}  // namespace sluice::protocol
