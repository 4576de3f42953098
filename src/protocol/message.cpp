#include "protocol/message.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

namespace sluice::protocol {
namespace {
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
}  // namespace

std::string_view sniff_type(std::string_view text) {
  constexpr std::string_view key = "\"type\"";
  auto pos = text.find(key);
  if (pos == std::string_view::npos) return {};
  pos += key.size();
  while (pos < text.size() && is_space(text[pos])) ++pos;
  if (pos >= text.size() || text[pos] != ':') return {};
  ++pos;
  while (pos < text.size() && is_space(text[pos])) ++pos;
  if (pos >= text.size() || text[pos] != '"') return {};
  ++pos;
  auto end = text.find('"', pos);
  if (end == std::string_view::npos) return {};
  return text.substr(pos, end - pos);
}

MessageType classify(std::string_view type) {
  if (type == "KeepAlive") return MessageType::keep_alive;
  if (type == "Finalize") return MessageType::finalize;
  if (type == "CloseStream" || type == "Close") return MessageType::close_stream;
  if (type == "Metadata") return MessageType::metadata;
  if (type == "Connected" || type == "Welcome") return MessageType::connected;
  if (type == "Results" || type == "TurnInfo") return MessageType::results;
  return MessageType::other;
}

std::optional<UpstreamSummary> read_summary(std::string_view text) {
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const auto& o = v.get_object();
  UpstreamSummary s;
  if (auto* id = o.if_contains("request_id"); id && id->is_string())
    s.request_id = std::string(id->get_string());
  if (auto* d = o.if_contains("duration"); d && d->is_number())
    s.duration = d->to_number<double>();
  if (auto* c = o.if_contains("channels"); c && c->is_number())
    s.channels = static_cast<int>(c->to_number<double>());
  return s;
}

}  // namespace sluice::protocol
