// /v1/agent/converse: a voice agent that answers every ~2 s of user audio.
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <spdlog/spdlog.h>

#include <cmath>

#include "protocol/audio.hpp"
#include "sim/json_text.hpp"
#include "sim/streams.hpp"
#include "sim/tone.hpp"
#include "sim/words.hpp"

namespace sluice::sim {
namespace json = boost::json;
using Kind = StreamEvent::Kind;

namespace {

constexpr double kUserTurnSeconds = 2.0;

std::string typed(std::string_view type) {
  json::object o;
  o["type"] = type;
  return to_json_text(o);
}

std::string conversation_text(std::string_view role, std::string_view content) {
  json::object o;
  o["type"] = "ConversationText";
  o["role"] = role;
  o["content"] = content;
  return to_json_text(o);
}

std::string error_message(std::string_view code, std::string_view description) {
  json::object o;
  o["type"] = "Error";
  o["description"] = description;
  o["code"] = code;
  return to_json_text(o);
}

// A string member of a JSON object, or `fallback`.
std::string string_at(const json::object& o, std::initializer_list<const char*> path,
                      std::string fallback) {
  const json::object* at = &o;
  const json::value* v = nullptr;
  for (auto key : path) {
    if (!at) return fallback;
    v = at->if_contains(key);
    if (!v) return fallback;
    at = v->is_object() ? &v->get_object() : nullptr;
  }
  return v && v->is_string() ? std::string(v->get_string()) : fallback;
}

int int_at(const json::object& o, std::initializer_list<const char*> path, int fallback) {
  const json::object* at = &o;
  const json::value* v = nullptr;
  for (auto key : path) {
    if (!at) return fallback;
    v = at->if_contains(key);
    if (!v) return fallback;
    at = v->is_object() ? &v->get_object() : nullptr;
  }
  return v && v->is_number() ? static_cast<int>(v->to_number<double>()) : fallback;
}

// What the simulator takes from a Settings message. (Read outside the
// coroutine: g++ 12 cannot keep initializer lists in a coroutine frame.)
struct AgentSettings {
  double input_bytes_per_second = 32000;
  std::string output_encoding = "linear16";
  int output_sample_rate = 24000;
  std::string greeting;
};

AgentSettings read_settings(const json::object& msg) {
  AgentSettings s;
  auto encoding = string_at(msg, {"audio", "input", "encoding"}, "linear16");
  int rate = int_at(msg, {"audio", "input", "sample_rate"}, 16000);
  double bps = protocol::bytes_per_second(encoding, rate, 1);
  if (bps > 0) s.input_bytes_per_second = bps;
  s.output_encoding = string_at(msg, {"audio", "output", "encoding"}, "linear16");
  s.output_sample_rate = int_at(msg, {"audio", "output", "sample_rate"}, 24000);
  s.greeting = string_at(msg, {"agent", "greeting"}, "");
  return s;
}

std::string member(const json::object& msg, const char* name) { return string_at(msg, {name}, ""); }

// The agent's side of a turn: its text, then its speech.
asio::awaitable<bool> agent_says(StreamIo& io, Tone& tone, const std::string& text) {
  if (!co_await io.send_text(conversation_text("assistant", text))) co_return false;
  json::object started;
  started["type"] = "AgentStartedSpeaking";
  started["total_latency"] = 0.45;
  started["tts_latency"] = 0.15;
  started["ttt_latency"] = 0.3;
  if (!co_await io.send_text(to_json_text(started))) co_return false;
  auto remaining = tone.bytes_for(kSecondsPerCharacter * static_cast<double>(character_count(text)));
  auto chunk_max = kMaxAudioChunk - kMaxAudioChunk % tone.sample_width();
  std::string chunk;
  while (remaining > 0) {
    auto n = std::min(remaining, chunk_max);
    tone.fill(chunk, n);
    if (!co_await io.send_binary(chunk.data(), chunk.size())) co_return false;
    remaining -= n;
  }
  co_return co_await io.send_text(typed("AgentAudioDone"));
}

}  // namespace

asio::awaitable<void> serve_agent(StreamIo& io, const StreamParams&, const StreamContext& ctx) {
  {
    json::object o;
    o["type"] = "Welcome";
    o["request_id"] = ctx.request_id;
    if (!co_await io.send_text(to_json_text(o))) co_return;
  }
  bool settings_applied = false;
  double input_bytes_per_second = 32000;
  Tone tone("linear16", 24000);
  std::uint64_t heard = 0;  // bytes of the user's current turn
  bool user_speaking = false;
  std::uint64_t turn = 0;
  for (;;) {
    auto event = co_await io.next();
    if (event.kind == Kind::client_gone) co_return;
    if (event.kind == Kind::binary) {
      // Audio before Settings has no declared format; the simulator ignores it.
      if (!settings_applied || event.data.empty()) continue;
      if (!user_speaking) {
        user_speaking = true;
        if (!co_await io.send_text(typed("UserStartedSpeaking"))) co_return;
      }
      heard += event.data.size();
      if (static_cast<double>(heard) >= kUserTurnSeconds * input_bytes_per_second) {
        heard = 0;
        user_speaking = false;
        auto said = sentence(ctx.seed, 2 * turn);
        auto reply = sentence(ctx.seed, 2 * turn + 1);
        ++turn;
        if (!co_await io.send_text(conversation_text("user", said))) co_return;
        if (!co_await io.send_text(typed("AgentThinking"))) co_return;
        if (!co_await agent_says(io, tone, reply)) co_return;
      }
      continue;
    }
    if (event.kind != Kind::text) {
      co_await io.end(event);
      co_return;
    }
    boost::system::error_code ec;
    auto v = json::parse(event.data, ec);
    if (ec || !v.is_object()) {
      if (!co_await io.send_text(error_message("UNPARSABLE_CLIENT_MESSAGE",
                                               "We could not parse the client message.")))
        co_return;
      continue;
    }
    const auto& msg = v.get_object();
    auto type = member(msg, "type");
    if (type == "Settings") {
      auto settings = read_settings(msg);
      input_bytes_per_second = settings.input_bytes_per_second;
      tone = Tone(settings.output_encoding, settings.output_sample_rate);
      settings_applied = true;
      if (!co_await io.send_text(typed("SettingsApplied"))) co_return;
      if (!settings.greeting.empty() && !co_await agent_says(io, tone, settings.greeting)) co_return;
    } else if (type == "InjectUserMessage") {
      auto content = member(msg, "content");
      auto reply = sentence(ctx.seed, 2 * turn + 1);
      ++turn;
      if (!co_await io.send_text(conversation_text("user", content))) co_return;
      if (!co_await agent_says(io, tone, reply)) co_return;
    } else if (type == "InjectAgentMessage") {
      if (!co_await agent_says(io, tone, member(msg, "message"))) co_return;
    } else if (type.starts_with("Update") && type.size() > 6) {
      // UpdatePrompt → PromptUpdated, UpdateSpeak → SpeakUpdated, …
      if (!co_await io.send_text(typed(type.substr(6) + "Updated"))) co_return;
    }
    // KeepAlive, FunctionCallResponse and the rest need no answer.
  }
}

}  // namespace sluice::sim
