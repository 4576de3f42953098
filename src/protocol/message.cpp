#include "protocol/message.hpp"

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

namespace sluice::protocol {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

using boost::system::error_code;

// Boost.JSON SAX events, stopped at the value of the top-level "type" member
// (or at the first sign the text is not an object).
class TypeFinder {
 public:
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);

  std::string type;
  bool found = false;  // `type` holds the member's whole string value

  bool on_document_begin(error_code&) { return true; }
  bool on_document_end(error_code&) { return true; }
  bool on_object_begin(error_code&) { return open(); }
  bool on_object_end(std::size_t, error_code&) { return close(); }
  bool on_array_begin(error_code&) { return depth_ > 0 && open(); }  // a top-level array: not an object
  bool on_array_end(std::size_t, error_code&) { return close(); }
  bool on_key_part(boost::json::string_view s, std::size_t, error_code&) {
    if (depth_ == 1) key_.append(s.data(), s.size());
    return true;
  }
  bool on_key(boost::json::string_view s, std::size_t, error_code&) {
    if (depth_ == 1) {
      key_.append(s.data(), s.size());
      type_next_ = key_ == "type";
      key_.clear();
    }
    return true;
  }
  bool on_string_part(boost::json::string_view s, std::size_t, error_code&) {
    if (depth_ == 1 && type_next_) type.append(s.data(), s.size());
    return true;
  }
  bool on_string(boost::json::string_view s, std::size_t, error_code&) {
    if (depth_ != 1 || !type_next_) return depth_ > 0;
    type.append(s.data(), s.size());
    found = true;
    return false;  // done
  }
  bool on_number_part(boost::json::string_view, error_code&) { return true; }
  bool on_int64(std::int64_t, boost::json::string_view, error_code&) { return scalar(); }
  bool on_uint64(std::uint64_t, boost::json::string_view, error_code&) { return scalar(); }
  bool on_double(double, boost::json::string_view, error_code&) { return scalar(); }
  bool on_bool(bool, error_code&) { return scalar(); }
  bool on_null(error_code&) { return scalar(); }
  bool on_comment_part(boost::json::string_view, error_code&) { return true; }
  bool on_comment(boost::json::string_view, error_code&) { return true; }

 private:
  // The "type" member's value is not a string, or the text not an object: done.
  bool open() {
    if (depth_ == 1 && type_next_) return false;
    ++depth_;
    return true;
  }
  bool close() {
    --depth_;
    return true;
  }
  bool scalar() { return depth_ > 1 || (depth_ == 1 && !type_next_); }

  int depth_ = 0;
  bool type_next_ = false;
  std::string key_;
};

}  // namespace

std::string sniff_type(std::string_view text) {
  // The usual case: {"type":"Word" at the start, the value plain ASCII.
  std::size_t i = 0;
  auto skip = [&] {
    while (i < text.size() && is_space(text[i])) ++i;
  };
  skip();
  if (i < text.size() && text[i] == '{') {
    ++i;
    skip();
    if (text.substr(i).starts_with("\"type\"")) {
      i += 6;
      skip();
      if (i < text.size() && text[i] == ':') {
        ++i;
        skip();
        if (i < text.size() && text[i] == '"') {
          auto begin = ++i;
          while (i < text.size() && text[i] != '"' && text[i] != '\\' && text[i] >= 0x20 && text[i] < 0x7F) ++i;
          if (i < text.size() && text[i] == '"') return std::string(text.substr(begin, i - begin));
        }
      }
    }
  } else {
    return {};  // not an object
  }
  // No "type" key anywhere, even written with escapes: nothing to parse for.
  if (text.find("\"type\"") == std::string_view::npos && text.find('\\') == std::string_view::npos) return {};
  boost::json::basic_parser<TypeFinder> parser{boost::json::parse_options{}};
  error_code ec;
  parser.write_some(true, text.data(), text.size(), ec);
  return parser.handler().found ? std::move(parser.handler().type) : std::string();
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
