// Fuzz target `sniff`: protocol::sniff_type (the relay's reading of a text
// message's "type") against Boost.JSON's reading of the same text.
//
// The oracle is sniff_type's contract (src/protocol/message.hpp):
//   - a text Boost.JSON parses (boost::json::parse, default options) as an
//     object: sniff_type returns the value of its top-level "type" member,
//     decoded, when that value is a string; empty when it has none or its
//     value is not a string. With duplicate top-level "type" members the
//     first counts (Boost.JSON's document keeps the last; RFC 8259 leaves
//     duplicates to the reader), so the reference reads the members in order
//     with Boost.JSON's SAX parser and, for a single "type", checks that it
//     agrees with the document;
//   - valid JSON that is not an object: empty;
//   - anything else (a message cut at the relay's 64 KiB sniff limit, or not
//     JSON): the first top-level "type" member completed before the text ends
//     or stops being valid JSON, read the same way; empty when there is none.
// classify() of the result is checked to be a pure function of it.
#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/message.hpp"

namespace {

namespace json = boost::json;
using boost::system::error_code;

[[noreturn]] void fail(const char* what, std::string_view text, std::string_view got, std::string_view want) {
  std::fprintf(stderr, "sniff oracle: %s\n  text: %.*s\n  sniff_type: '%.*s'\n  expected: '%.*s'\n", what,
               static_cast<int>(std::min<std::size_t>(text.size(), 400)), text.data(), static_cast<int>(got.size()),
               got.data(), static_cast<int>(want.size()), want.data());
  std::abort();
}

// Every top-level "type" member, in order: whether its value is a string,
// and the string (decoded).
struct TypeMember {
  bool is_string = false;
  std::string value;
};

class Members {
 public:
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);

  std::vector<TypeMember> found;

  bool on_document_begin(error_code&) { return true; }
  bool on_document_end(error_code&) { return true; }
  bool on_object_begin(error_code&) { return open(true); }
  bool on_object_end(std::size_t, error_code&) { return close(); }
  bool on_array_begin(error_code&) { return open(false); }
  bool on_array_end(std::size_t, error_code&) { return close(); }
  bool on_key_part(json::string_view s, std::size_t, error_code&) {
    key_.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, error_code&) {
    key_.append(s.data(), s.size());
    type_next_ = depth_ == 1 && root_object_ && key_ == "type";
    key_.clear();
    return true;
  }
  bool on_string_part(json::string_view s, std::size_t, error_code&) {
    if (type_next_ && depth_ == 1) string_.append(s.data(), s.size());
    return true;
  }
  bool on_string(json::string_view s, std::size_t, error_code&) {
    if (type_next_ && depth_ == 1) {
      string_.append(s.data(), s.size());
      found.push_back({true, std::move(string_)});
    }
    string_.clear();
    type_next_ = false;
    return true;
  }
  bool on_number_part(json::string_view, error_code&) { return true; }
  bool on_int64(std::int64_t, json::string_view, error_code&) { return scalar(); }
  bool on_uint64(std::uint64_t, json::string_view, error_code&) { return scalar(); }
  bool on_double(double, json::string_view, error_code&) { return scalar(); }
  bool on_bool(bool, error_code&) { return scalar(); }
  bool on_null(error_code&) { return scalar(); }
  bool on_comment_part(json::string_view, error_code&) { return true; }
  bool on_comment(json::string_view, error_code&) { return true; }

 private:
  bool open(bool object) {
    if (type_next_ && depth_ == 1) found.push_back({false, {}});
    type_next_ = false;
    if (depth_ == 0) root_object_ = object;
    ++depth_;
    return true;
  }
  bool close() {
    --depth_;
    return true;
  }
  bool scalar() {
    if (type_next_ && depth_ == 1) found.push_back({false, {}});
    type_next_ = false;
    return true;
  }

  int depth_ = 0;
  bool root_object_ = false;
  bool type_next_ = false;
  std::string key_, string_;
};

// The top-level "type" members Boost.JSON's SAX parser reads from the text,
// up to its end (`complete`: the text is the whole document) or to where it
// stops being valid JSON.
std::vector<TypeMember> type_members(std::string_view text, bool complete) {
  json::basic_parser<Members> p{json::parse_options{}};
  error_code ec;
  p.write_some(!complete, text.data(), text.size(), ec);
  return std::move(p.handler().found);
}

std::string expected_of(const std::vector<TypeMember>& members) {
  if (members.empty() || !members.front().is_string) return {};
  return members.front().value;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::string got(sluice::protocol::sniff_type(text));
  error_code ec;
  auto doc = json::parse(text, ec);
  std::string want;
  if (!ec) {
    if (doc.is_object()) {
      auto members = type_members(text, true);
      want = expected_of(members);
      if (members.size() == 1) {
        // The SAX reading agrees with the document's.
        const auto* t = doc.get_object().if_contains("type");
        if (!t) fail("reference: the document has no \"type\"", text, got, want);
        if (t->is_string() != members.front().is_string ||
            (t->is_string() && std::string_view(t->get_string()) != members.front().value))
          fail("reference: SAX and document disagree", text, got, want);
      }
    }
    if (got != want) fail("disagrees with Boost.JSON's document", text, got, want);
  } else {
    want = expected_of(type_members(text, false));
    if (got != want) fail("disagrees with Boost.JSON on a text that is not (complete) JSON", text, got, want);
  }
  if (sluice::protocol::classify(got) != sluice::protocol::classify(want)) fail("classify", text, got, want);
  return 0;
}
