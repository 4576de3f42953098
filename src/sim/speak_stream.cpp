// /v1/speak (Aura): text in, raw audio out.
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <spdlog/spdlog.h>

#include <deque>

#include "sim/json_text.hpp"
#include "sim/models.hpp"
#include "sim/streams.hpp"
#include "sim/tone.hpp"

namespace sluice::sim {
namespace json = boost::json;
using Kind = StreamEvent::Kind;

namespace {

// Deepgram allows 20 Flush messages per 60 s, then warns.
constexpr std::size_t kFlushLimit = 20;
constexpr auto kFlushWindow = std::chrono::seconds(60);

std::string warning(std::string_view code, std::string_view description) {
  json::object o;
  o["type"] = "Warning";
  o["description"] = description;
  o["code"] = code;
  return to_json_text(o);
}

std::string sequenced(std::string_view type, std::uint64_t sequence_id) {
  json::object o;
  o["type"] = type;
  o["sequence_id"] = sequence_id;
  return to_json_text(o);
}

// Sends the audio for `text` in chunks, each write awaited: a client that
// stops reading stops the synthesis.
asio::awaitable<bool> speak(StreamIo& io, Tone& tone, std::string_view text) {
  auto remaining = tone.bytes_for(kSecondsPerCharacter * static_cast<double>(character_count(text)));
  auto chunk_max = kMaxAudioChunk - kMaxAudioChunk % tone.sample_width();
  std::string chunk;
  while (remaining > 0) {
    auto n = std::min(remaining, chunk_max);
    tone.fill(chunk, n);
    if (!co_await io.send_binary(chunk.data(), chunk.size())) co_return false;
    remaining -= n;
  }
  co_return true;
}

}  // namespace

asio::awaitable<void> serve_speak(StreamIo& io, const StreamParams& params, const StreamContext& ctx) {
  auto model = speak_model_info(params.model);
  {
    json::object o;
    o["type"] = "Metadata";
    o["request_id"] = ctx.request_id;
    o["model_name"] = model.name;
    o["model_version"] = model.version;
    o["model_uuid"] = model.uuid;
    if (!co_await io.send_text(to_json_text(o))) co_return;
  }
  Tone tone(params.encoding, params.sample_rate);
  std::string pending;  // text received since the last Flush or Clear
  std::uint64_t sequence_id = 0;
  std::deque<std::chrono::steady_clock::time_point> flushes;
  for (;;) {
    auto event = co_await io.next();
    if (event.kind == Kind::client_gone) co_return;
    if (event.kind != Kind::text && event.kind != Kind::binary) {
      co_await io.end(event);
      co_return;
    }
    if (event.kind == Kind::binary) {
      if (!co_await io.send_text(warning("UNEXPECTED_BINARY", "Binary messages are not accepted on /v1/speak."))) co_return;
      continue;
    }
    boost::system::error_code ec;
    auto v = json::parse(event.data, ec);
    const json::object* msg = (!ec && v.is_object()) ? &v.get_object() : nullptr;
    const json::value* type_value = msg ? msg->if_contains("type") : nullptr;
    std::string_view type = type_value && type_value->is_string() ? std::string_view(type_value->get_string()) : "";
    if (type == "Speak") {
      auto* text = msg->if_contains("text");
      if (!text || !text->is_string()) {
        if (!co_await io.send_text(warning("INVALID_MESSAGE", "Speak needs a string `text`."))) co_return;
        continue;
      }
      pending += std::string_view(text->get_string());
    } else if (type == "Flush") {
      auto now = std::chrono::steady_clock::now();
      while (!flushes.empty() && now - flushes.front() >= kFlushWindow) flushes.pop_front();
      if (flushes.size() >= kFlushLimit) {
        // The flush is refused; its text stays pending for the next one.
        if (!co_await io.send_text(warning("FLUSH_LIMIT_EXCEEDED",
                                           "Too many Flush messages: at most 20 per 60 seconds.")))
          co_return;
        continue;
      }
      flushes.push_back(now);
      std::string text = std::move(pending);
      pending.clear();
      if (!co_await speak(io, tone, text)) co_return;
      if (!co_await io.send_text(sequenced("Flushed", sequence_id++))) co_return;
    } else if (type == "Clear") {
      pending.clear();
      if (!co_await io.send_text(sequenced("Cleared", sequence_id++))) co_return;
    } else if (type == "Close") {
      if (co_await speak(io, tone, pending)) co_await io.close(websocket::close_code::normal);
      co_return;
    } else if (type != "KeepAlive") {
      if (!co_await io.send_text(warning("UNPARSABLE_CLIENT_MESSAGE", "The message was not understood."))) co_return;
    }
  }
}

}  // namespace sluice::sim
