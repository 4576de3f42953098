#pragma once
// Deepgram's streaming endpoints, the service family each is limited under,
// and the message that asks each to finish gracefully.
#include <optional>
#include <string_view>

namespace sluice::protocol {

enum class Endpoint { listen_v1, listen_v2, speak_v1, agent };

// Deepgram limits concurrency per project and per service family.
enum class Family { streaming, flux, tts, agent };

std::optional<Endpoint> endpoint_from_path(std::string_view path);
std::string_view endpoint_path(Endpoint e);
std::string_view endpoint_name(Endpoint e);  // "listen.v1", "listen.v2", "speak.v1", "agent"
Family endpoint_family(Endpoint e);
std::string_view family_name(Family f);  // "streaming", "flux", "tts", "agent"
std::optional<Family> family_from_name(std::string_view name);

// The text message that makes the endpoint flush its final results and close
// ({"type":"CloseStream"} for listen, {"type":"Close"} for speak); empty for
// the agent, which has no such message.
std::string_view close_message(Endpoint e);

// True when `model` names a Flux model (only valid on /v2/listen).
bool is_flux_model(std::string_view model);

}  // namespace sluice::protocol
