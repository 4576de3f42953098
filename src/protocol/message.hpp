#pragma once
// Cheap inspection of the text messages that cross the relay. Audio is never
// inspected; text messages are sniffed for their "type" without parsing, and
// only the rare messages the gateway must read (Metadata, Connected) are
// parsed in full.
#include <optional>
#include <string>
#include <string_view>

namespace sluice::protocol {

enum class MessageType {
  other,        // any type the gateway does not act on
  keep_alive,   // client: KeepAlive
  finalize,     // client: Finalize
  close_stream, // client: CloseStream (listen) or Close (speak)
  metadata,     // upstream: Metadata (listen: end-of-stream summary; speak: on connect)
  connected,    // upstream: Connected (Flux) / Welcome (agent)
  results,      // upstream: Results / TurnInfo
};

// The value of the first "type" member of a JSON text message, found by a
// scan rather than a parse; empty when there is none.
std::string_view sniff_type(std::string_view text);

MessageType classify(std::string_view type);

// What the gateway reads out of an upstream Metadata or Connected message.
struct UpstreamSummary {
  std::string request_id;
  std::optional<double> duration;  // seconds of audio processed
  std::optional<int> channels;
};

// Parses a Metadata/Connected message (Boost.JSON). nullopt if it is not JSON.
std::optional<UpstreamSummary> read_summary(std::string_view text);

}  // namespace sluice::protocol
