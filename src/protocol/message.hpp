#pragma once
// Cheap inspection of the text messages that cross the relay. Audio is never
// inspected; text messages are sniffed for their "type" without building the
// document, and only the rare messages the gateway must read (Metadata,
// Connected) are parsed in full.
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

// The value of a JSON text message's top-level "type" member, decoded, read
// without building the document: when the text opens with it (the usual case,
// `{"type":"KeepAlive"...`) by a scan of those bytes, else by Boost.JSON's SAX
// parser stopped at that member. Only what precedes the member is read, so a
// text cut short (the relay sniffs a long message's first 64 KiB) still
// sniffs. Empty when the text is not a JSON object, has no top-level "type"
// member before it ends or stops being valid JSON, or that member's value is
// not a string. A "type" inside a nested value never counts; with duplicate
// top-level "type" members, the first does. The fuzz target `sniff` checks
// this against Boost.JSON's reading of the same text.
std::string sniff_type(std::string_view text);

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
