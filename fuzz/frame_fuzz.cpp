// Fuzz target `frame`: the relay's RFC 6455 frame walker (session/frame.hpp)
// against a reference decoding of the same bytes.
//
// Each input is one direction of a connection (a client's masked frames or
// the vendor's unmasked ones), a message size limit, and a byte stream: the
// input's own bytes (raw mode) or frames encoded from descriptions in the
// input (structured mode, which reaches long payloads, the 64 KiB sniff limit
// and the size limits). The stream is walked the way the relay walks it
// (session/relay.hpp: read, walk, forward [0, forward), carry [carry_from,
// n), stop at a close or a protocol error) three ways: in one read, in reads
// split at points taken from the input, and (for short streams) one byte per
// read. Every walk is compared with a reference decoder written here from RFC
// 6455 over the whole stream:
//   - the bytes forwarded so far are exactly the data frames' bytes (headers
//     and payloads, untouched) before the point reached, up to a message over
//     the limit;
//   - the messages reported in each walk are exactly the messages (kind,
//     size, unmasked text up to FrameWalker::kSniffLimit) that end within it;
//   - pings (the last one's payload), pongs, the close frame (code, reason,
//     or malformed) and "too big" are reported in the walk where they end;
//   - a protocol error stops the walk no later than the read that completes
//     the offending header, with one of the reasons that header violates;
//   - mid_frame, the carried bytes (a header's first bytes, fewer than
//     kMaxFrameHeader), in_message() and discarding() match the stream's
//     state at the point reached.
// So the walk's result is the same however the stream is split.
//
// Deliberate differences from a full RFC 6455 endpoint, not checked here: the
// relay does not validate UTF-8 in text messages or close reasons (the
// endpoints do; the relay passes frames through unchanged).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "session/frame.hpp"

using namespace sluice::session;

namespace {

[[noreturn]] void fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "frame oracle: %s: %s\n", what, detail.c_str());
  std::abort();
}
#define CHECK(cond, detail)                 \
  do {                                      \
    if (!(cond)) fail(#cond, (detail));     \
  } while (0)

std::string num(std::uint64_t v) { return std::to_string(v); }

// ---------------------------------------------------------------------------
// The reference: RFC 6455 section 5 over the whole stream.

enum Reason : int {
  kBadLength,      // 5.2: 64-bit length with its top bit set, or not the shortest form
  kRsv,            // 5.2: RSV1-3 without a negotiated extension
  kUnknownOpcode,  // 5.2: reserved opcodes 0x3-0x7, 0xB-0xF
  kBadControl,     // 5.5: control frames are not fragmented and carry at most 125 bytes
  kMask,           // 5.1: a client masks every frame, a server none
  kContinuation,   // 5.4: a continuation frame with no message begun
  kInterleaved,    // 5.4: a new data message before the last one's final frame
};

std::optional<Reason> reason_of(std::string_view error) {
  if (error == "bad frame length") return kBadLength;
  if (error == "reserved bits set") return kRsv;
  if (error == "unknown opcode") return kUnknownOpcode;
  if (error == "bad control frame") return kBadControl;
  if (error == "unmasked frame from a client" || error == "masked frame from a server") return kMask;
  if (error == "continuation frame without a message") return kContinuation;
  if (error == "new message before the last one ended") return kInterleaved;
  return std::nullopt;
}

struct RefMessage {
  bool text = false;
  std::uint64_t size = 0;
  std::string sniffed;
  bool operator==(const RefMessage&) const = default;
};

struct RefEvent {
  enum Kind { message, ping, pong, close, too_big } kind;
  std::size_t at = 0;  // the stream position by which it must be reported
  RefMessage msg;      // message
  std::string payload; // ping: payload; close: payload
};

struct RefFrame {
  std::size_t start = 0, header_end = 0, end = 0;  // header_end/end may lie past the stream's end
  bool data = false;
  bool forwarded = false;  // a data frame the walker must keep (not after "too big")
  bool fin = false;
  bool starts_message = false;
};

struct Reference {
  std::vector<RefEvent> events;  // in order of `at`
  std::vector<RefFrame> frames;  // in order
  // The walk must stop: at a close frame (stop_at = its end) or a protocol
  // error (reported once the stream reaches past error_start, and no later
  // than the read reaching error_deadline).
  enum Stop { none, close, error } stop = none;
  std::size_t stop_at = 0;  // close: frame end; error: the frame's start
  std::size_t error_deadline = 0;
  std::set<int> error_reasons;
  // A close frame's reading (RFC 6455 5.5.1, 7.4).
  bool close_malformed = false;
  bool close_has_code = false;
  std::uint16_t close_code = 0;
  std::string close_reason;
};

bool valid_close_code(unsigned c) {
  // RFC 6455 7.4.1/7.4.2 and the IANA registry: what a peer may send.
  return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

Reference decode(const std::vector<std::uint8_t>& s, bool client, std::uint64_t max_message) {
  Reference ref;
  const std::size_t n = s.size();
  bool in_message = false, discard = false, text = false;
  std::uint64_t size = 0;
  std::string sniffed;
  std::size_t pos = 0;
  while (pos < n) {
    const std::size_t start = pos;
    if (n - start < 2) {
      ref.frames.push_back({start, start + 2, start + 2});
      break;
    }
    const bool fin = s[start] & 0x80;
    const unsigned rsv = (s[start] >> 4) & 7;
    const unsigned op = s[start] & 0x0F;
    const bool masked = s[start + 1] & 0x80;
    std::uint64_t len = s[start + 1] & 0x7F;
    std::size_t hl = 2;
    bool bad_length = false;
    if (len == 126) {
      hl = 4;
      if (n - start >= 4) {
        len = (std::uint64_t{s[start + 2]} << 8) | s[start + 3];
        bad_length = len < 126;
      }
    } else if (len == 127) {
      hl = 10;
      if (n - start >= 10) {
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | s[start + 2 + static_cast<std::size_t>(i)];
        bad_length = (len >> 63) != 0 || len <= 0xFFFF;
      }
    }
    if (bad_length) {
      // Found as soon as the length field is complete, before any mask.
      ref.stop = Reference::error;
      ref.stop_at = start;
      ref.error_deadline = start + hl;
      ref.error_reasons = {kBadLength};
      ref.frames.push_back({start, start + hl, start + hl});  // carried until then
      if (rsv) ref.error_reasons.insert(kRsv);
      if ((op >= 3 && op <= 7) || op >= 0xB) ref.error_reasons.insert(kUnknownOpcode);
      if (masked != client) ref.error_reasons.insert(kMask);
      return ref;
    }
    if (masked) hl += 4;
    if (n - start < hl) {
      ref.frames.push_back({start, start + hl, start + hl});
      break;
    }
    const std::size_t header_end = start + hl;
    std::set<int> reasons;
    if (rsv) reasons.insert(kRsv);
    if ((op >= 3 && op <= 7) || op >= 0xB) reasons.insert(kUnknownOpcode);
    if (op >= 8 && (!fin || len > 125)) reasons.insert(kBadControl);
    if (masked != client) reasons.insert(kMask);
    if (op == 0 && !in_message) reasons.insert(kContinuation);
    if ((op == 1 || op == 2) && in_message) reasons.insert(kInterleaved);
    if (!reasons.empty()) {
      ref.stop = Reference::error;
      ref.stop_at = start;
      ref.error_deadline = header_end;
      ref.error_reasons = std::move(reasons);
      ref.frames.push_back({start, header_end, header_end});  // carried until then
      return ref;
    }
    std::uint8_t mask[4] = {0, 0, 0, 0};
    if (masked) std::memcpy(mask, &s[header_end - 4], 4);
    const std::size_t avail = static_cast<std::size_t>(std::min<std::uint64_t>(len, n - header_end));
    const bool complete = avail == len;
    RefFrame f{start, header_end, header_end + static_cast<std::size_t>(len)};
    f.fin = fin;
    if (op < 8) {
      f.data = true;
      std::uint64_t total = (op == 0 ? size : 0) + len;
      if (total > max_message && !discard) {
        discard = true;
        ref.events.push_back({RefEvent::too_big, header_end});
      }
      if (op != 0) {
        in_message = true;
        f.starts_message = true;
        text = op == 1;
        size = 0;
        sniffed.clear();
      }
      f.forwarded = !discard;
      for (std::size_t i = 0; i < avail && !discard && text && sniffed.size() < FrameWalker::kSniffLimit; ++i)
        sniffed.push_back(static_cast<char>(s[header_end + i] ^ mask[i & 3]));
      ref.frames.push_back(f);
      if (!complete) break;
      pos = header_end + avail;
      if (!discard) size += len;
      if (fin) {
        in_message = false;
        if (!discard) ref.events.push_back({RefEvent::message, pos, RefMessage{text, size, sniffed}});
      }
      continue;
    }
    // A control frame.
    ref.frames.push_back(f);
    if (!complete) break;
    std::string payload(avail, '\0');
    for (std::size_t i = 0; i < avail; ++i) payload[i] = static_cast<char>(s[header_end + i] ^ mask[i & 3]);
    pos = header_end + avail;
    if (op == 9) ref.events.push_back({RefEvent::ping, pos, {}, payload});
    if (op == 10) ref.events.push_back({RefEvent::pong, pos});
    if (op == 8) {
      ref.events.push_back({RefEvent::close, pos, {}, payload});
      ref.stop = Reference::close;
      ref.stop_at = pos;
      if (payload.size() == 1) {
        ref.close_malformed = true;
      } else if (payload.size() >= 2) {
        ref.close_has_code = true;
        ref.close_code = static_cast<std::uint16_t>((std::uint8_t(payload[0]) << 8) | std::uint8_t(payload[1]));
        ref.close_reason = payload.substr(2);
        ref.close_malformed = !valid_close_code(ref.close_code);
      }
      return ref;
    }
  }
  return ref;
}

// ---------------------------------------------------------------------------
// Walking the stream as the relay does, checking each walk.

class Run {
 public:
  Run(const Reference& ref, const std::vector<std::uint8_t>& stream, bool client, std::uint64_t max_message)
      : ref_(ref), stream_(stream), walker_(client, max_message) {
    for (const auto& f : ref_.frames)
      if (f.data && f.forwarded) {
        auto b = std::min(f.end, stream_.size());
        expected_forward_.insert(expected_forward_.end(), stream_.begin() + static_cast<std::ptrdiff_t>(f.start),
                                 stream_.begin() + static_cast<std::ptrdiff_t>(b));
      }
  }

  // Walks the stream in reads of the given sizes (cycled).
  void walk(const std::vector<std::size_t>& sizes) {
    std::vector<std::uint8_t> carry;
    std::size_t fed = 0, k = 0;
    while (fed < stream_.size()) {
      auto take = std::min(sizes[k++ % sizes.size()], stream_.size() - fed);
      // A buffer of exactly the bytes read (after the carried ones), as the
      // relay's: a read past its end is AddressSanitizer's to report.
      std::vector<std::uint8_t> buf(carry.size() + take);
      if (!carry.empty()) std::memcpy(buf.data(), carry.data(), carry.size());
      std::memcpy(buf.data() + carry.size(), stream_.data() + fed, take);
      fed += take;
      std::vector<RefMessage> got;
      auto r = walker_.walk(buf.data(), buf.size(), [&](bool text, std::uint64_t size, std::string_view sniffed) {
        got.push_back({text, size, std::string(sniffed)});
      });
      CHECK(r.forward <= buf.size() && r.carry_from <= buf.size(), "result out of range");
      forwarded_.insert(forwarded_.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(r.forward));
      if (r.stop != WalkStop::none) {
        check_stop(r, got, fed);
        return;
      }
      check_walk(r, got, fed, buf.size());
      walker_.ping_pending = false;  // as the relay does after a walk
      walker_.pong_seen = false;
      carry.assign(buf.begin() + static_cast<std::ptrdiff_t>(r.carry_from), buf.end());
      prev_fed_ = fed;
    }
    CHECK(ref_.stop == Reference::none, "the stream ended without the walker stopping at a " +
                                            std::string(ref_.stop == Reference::close ? "close frame" : "protocol error") +
                                            " at " + num(ref_.stop_at));
  }

 private:
  // The stream position up to which the walker has taken everything.
  void check_walk(const FrameWalker::Result& r, const std::vector<RefMessage>& got, std::size_t fed, std::size_t n) {
    if (ref_.stop == Reference::close)
      CHECK(ref_.stop_at > fed, "no stop at the close frame ending at " + num(ref_.stop_at));
    if (ref_.stop == Reference::error)
      CHECK(ref_.error_deadline > fed, "no protocol error for the frame at " + num(ref_.stop_at));
    CHECK(r.forward <= r.carry_from, "forwarded bytes overlap the carried ones");
    auto carry = n - r.carry_from;
    CHECK(carry == expected_carry(fed), "carried " + num(carry) + " bytes at " + num(fed) + ", expected " +
                                            num(expected_carry(fed)));
    CHECK(carry < kMaxFrameHeader, "carried " + num(carry) + " bytes: more than a header");
    auto point = fed - carry;
    check_reports(r, got, point, fed);
    CHECK(r.mid_frame == mid_frame(point), "mid_frame " + num(r.mid_frame) + " at " + num(point));
    auto [in_message, discarding] = state(point);
    CHECK(walker_.in_message() == in_message, "in_message at " + num(point));
    CHECK(walker_.discarding() == discarding, "discarding at " + num(point));
    prev_point_ = point;
  }

  void check_stop(const FrameWalker::Result& r, const std::vector<RefMessage>& got, std::size_t fed) {
    CHECK(!r.mid_frame, "mid_frame after a stop");
    if (r.stop == WalkStop::close) {
      CHECK(ref_.stop == Reference::close, "a close stop at " + num(fed) + " where the reference has none");
      CHECK(prev_fed_ < ref_.stop_at && ref_.stop_at <= fed, "a close stop in the wrong read");
      check_reports(r, got, ref_.stop_at, fed);
      CHECK(walker_.close_malformed == ref_.close_malformed, "close_malformed");
      if (!ref_.close_malformed) {
        CHECK(walker_.close.has_code == ref_.close_has_code, "close has_code");
        CHECK(walker_.close.code == ref_.close_code, "close code");
        CHECK(walker_.close.reason == ref_.close_reason, "close reason");
      }
      return;
    }
    CHECK(r.stop == WalkStop::protocol_error, "unknown stop");
    CHECK(ref_.stop == Reference::error,
          "a protocol error (" + std::string(walker_.error()) + ") at " + num(fed) + " where the reference has none");
    CHECK(fed > ref_.stop_at, "a protocol error before the offending frame began");
    auto reason = reason_of(walker_.error());
    CHECK(reason.has_value(), "unknown error text '" + std::string(walker_.error()) + "'");
    CHECK(ref_.error_reasons.count(*reason), "error '" + std::string(walker_.error()) +
                                                 "' is not one of the offending header's violations");
    check_reports(r, got, ref_.stop_at, fed);
  }

  // What a walk reported (messages, control frames, too_big, forwarded
  // bytes), against the reference events in (prev_point_, point].
  void check_reports(const FrameWalker::Result& r, const std::vector<RefMessage>& got, std::size_t point,
                     std::size_t fed) {
    std::vector<RefMessage> want;
    const RefEvent* last_ping = nullptr;
    bool pong = false, too_big = false;
    while (event_ < ref_.events.size() && ref_.events[event_].at <= point) {
      const auto& e = ref_.events[event_++];
      switch (e.kind) {
        case RefEvent::message: want.push_back(e.msg); break;
        case RefEvent::ping: last_ping = &e; break;
        case RefEvent::pong: pong = true; break;
        case RefEvent::too_big: too_big = true; break;
        case RefEvent::close: break;
      }
    }
    CHECK(got.size() == want.size(), "reported " + num(got.size()) + " messages up to " + num(point) + ", expected " +
                                         num(want.size()) + " (read ending at " + num(fed) + ")");
    for (std::size_t i = 0; i < got.size(); ++i) {
      CHECK(got[i].text == want[i].text, "message kind");
      CHECK(got[i].size == want[i].size, "message size " + num(got[i].size) + ", expected " + num(want[i].size));
      CHECK(got[i].sniffed == want[i].sniffed, "message text");
    }
    CHECK(walker_.ping_pending == (last_ping != nullptr), "ping_pending up to " + num(point));
    if (last_ping) CHECK(walker_.ping_payload == last_ping->payload, "ping payload");
    CHECK(walker_.pong_seen == pong, "pong_seen up to " + num(point));
    CHECK(r.too_big == too_big, "too_big up to " + num(point));
    auto want_forward = forward_below(point);
    CHECK(forwarded_.size() == want_forward, "forwarded " + num(forwarded_.size()) + " bytes up to " + num(point) +
                                                 ", expected " + num(want_forward));
    CHECK(want_forward == 0 || std::memcmp(forwarded_.data(), expected_forward_.data(), want_forward) == 0,
          "forwarded bytes differ");
  }

  // Data bytes before `point` that are forwarded (`point` never decreases).
  std::size_t forward_below(std::size_t point) {
    const auto n = stream_.size();
    while (fwd_frame_ < ref_.frames.size() && std::min(ref_.frames[fwd_frame_].end, n) <= point) {
      const auto& f = ref_.frames[fwd_frame_++];
      if (f.data && f.forwarded) fwd_sum_ += std::min(f.end, n) - f.start;
    }
    auto total = fwd_sum_;
    if (fwd_frame_ < ref_.frames.size()) {
      const auto& f = ref_.frames[fwd_frame_];
      if (f.data && f.forwarded && f.start < point) total += point - f.start;
    }
    return total;
  }

  // The first frame not complete at `pos` (frames are contiguous; `pos`
  // never decreases for one cursor).
  const RefFrame* frame_at(std::size_t pos, std::size_t& cursor) const {
    while (cursor < ref_.frames.size() && ref_.frames[cursor].end <= pos) ++cursor;
    return cursor < ref_.frames.size() ? &ref_.frames[cursor] : nullptr;
  }

  // A read ending inside a header leaves that header's first bytes carried.
  std::size_t expected_carry(std::size_t fed) {
    auto* f = frame_at(fed - 1, carry_cursor_);
    if (f && f->start < fed && fed < f->header_end) return fed - f->start;
    return 0;
  }

  // The forwarded bytes end inside a data frame that is forwarded.
  bool mid_frame(std::size_t point) {
    auto* f = frame_at(point, mid_cursor_);
    return f && f->data && f->forwarded && f->header_end <= point && point < f->end;
  }

  // (in_message, discarding) once the walker has taken [0, point).
  std::pair<bool, bool> state(std::size_t point) {
    auto header = [](const RefFrame& f, bool& in_message, bool& discarding) {
      if (!f.data) return;
      if (f.starts_message) in_message = true;
      if (!f.forwarded) discarding = true;
    };
    while (state_cursor_ < ref_.frames.size() && ref_.frames[state_cursor_].end <= point) {
      const auto& f = ref_.frames[state_cursor_++];
      header(f, in_message_, discarding_);
      if (f.data && f.fin) in_message_ = false;
    }
    bool in_message = in_message_, discarding = discarding_;
    if (state_cursor_ < ref_.frames.size() && ref_.frames[state_cursor_].header_end <= point)
      header(ref_.frames[state_cursor_], in_message, discarding);
    return {in_message, discarding};
  }

  const Reference& ref_;
  const std::vector<std::uint8_t>& stream_;
  FrameWalker walker_;
  std::vector<std::uint8_t> expected_forward_;
  std::vector<std::uint8_t> forwarded_;
  std::size_t event_ = 0;
  std::size_t fwd_frame_ = 0, fwd_sum_ = 0;
  std::size_t carry_cursor_ = 0, mid_cursor_ = 0, state_cursor_ = 0;
  bool in_message_ = false, discarding_ = false;
  std::size_t prev_fed_ = 0, prev_point_ = 0;
};

// ---------------------------------------------------------------------------
// The input.

struct Reader {
  const std::uint8_t* p;
  std::size_t n;
  bool empty() const { return n == 0; }
  std::uint8_t byte() {
    if (!n) return 0;
    --n;
    return *p++;
  }
  std::uint64_t bytes(int k) {
    std::uint64_t v = 0;
    for (int i = 0; i < k; ++i) v = (v << 8) | byte();
    return v;
  }
};

constexpr std::size_t kStructuredCap = 300'000;

// Frames from descriptions: per frame, its first header byte as given, a
// control byte (length form, wrong masking, a stream cut inside the payload,
// payload filling), the length, a mask key when masked, and the payload.
std::vector<std::uint8_t> encode(Reader in, bool client) {
  std::vector<std::uint8_t> out;
  static constexpr std::string_view kJson = R"({"type":"KeepAlive"} )";
  while (!in.empty() && out.size() < kStructuredCap) {
    const std::uint8_t b0 = in.byte();
    const std::uint8_t ctl = in.byte();
    const bool masked = client != ((ctl & 8) != 0);
    const bool cut = ctl & 16;
    const unsigned fill = ctl >> 5;
    const std::uint8_t m = masked ? 0x80 : 0;
    std::uint64_t len = 0;
    out.push_back(b0);
    switch (ctl & 7) {
      case 0:
        len = in.byte() % 126;
        out.push_back(static_cast<std::uint8_t>(m | len));
        break;
      case 1:
        len = 126 + in.bytes(2) % (65536 - 126);
        out.insert(out.end(), {static_cast<std::uint8_t>(m | 126), static_cast<std::uint8_t>(len >> 8),
                               static_cast<std::uint8_t>(len)});
        break;
      case 2:
      case 4:
      case 5:
        len = (ctl & 7) == 2 ? 65536 + in.bytes(3) % 200'000 : (ctl & 7) == 4 ? in.bytes(2) : (1ull << 63) | in.bytes(2);
        out.push_back(static_cast<std::uint8_t>(m | 127));
        for (int i = 7; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(len >> (8 * i)));
        break;
      case 3:  // a short length in the 16-bit form
        len = in.byte() % 126;
        out.insert(out.end(), {static_cast<std::uint8_t>(m | 126), 0, static_cast<std::uint8_t>(len)});
        break;
      case 6:  // the second header byte as given; what follows is the next description's
        out.push_back(in.byte());
        continue;
      case 7:  // the stream ends inside this header
        return out;
    }
    std::uint8_t key[4] = {0, 0, 0, 0};
    if (masked) {
      for (auto& b : key) b = in.byte();
      out.insert(out.end(), key, key + 4);
    }
    std::uint64_t plen = cut ? len / 2 : len;
    bool last = cut;
    if (plen > kStructuredCap - std::min(out.size(), kStructuredCap)) {
      plen = kStructuredCap - std::min(out.size(), kStructuredCap);
      last = true;
    }
    for (std::uint64_t i = 0; i < plen; ++i) {
      std::uint8_t b = 0;
      switch (fill) {
        case 0: b = in.empty() ? static_cast<std::uint8_t>('a' + i % 26) : in.byte(); break;
        case 1: b = 'a'; break;
        case 2: b = static_cast<std::uint8_t>(kJson[i % kJson.size()]); break;
        case 3: b = 0; break;
        default: b = static_cast<std::uint8_t>(i * 31 + fill); break;
      }
      out.push_back(b ^ key[i & 3]);
    }
    if (last) break;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  Reader in{data, size};
  const std::uint8_t flags = in.byte();
  const bool client = flags & 1;
  const bool structured = flags & 2;
  static constexpr std::uint64_t kLimits[] = {1, 125, 126, 4096, 65535, 65536, 70'000, 4u << 20};
  const std::uint64_t max_message = kLimits[(flags >> 2) & 7];
  const bool bytewise = flags & 0x20;
  // Read sizes: 1..128 bytes, or 1..128 KiB.
  std::vector<std::size_t> sizes;
  for (unsigned k = in.byte() & 15; k > 0 && !in.empty(); --k) {
    auto b = in.byte();
    sizes.push_back(b < 128 ? b + 1u : (b - 127u) * 1024u);
  }
  if (sizes.empty()) sizes.push_back(1 + size % 7);
  std::vector<std::uint8_t> stream = structured ? encode(in, client) : std::vector<std::uint8_t>(in.p, in.p + in.n);
  if (stream.empty()) return 0;
  const Reference ref = decode(stream, client, max_message);
  Run(ref, stream, client, max_message).walk({stream.size()});
  Run(ref, stream, client, max_message).walk(sizes);
  if (bytewise && stream.size() <= 4096) Run(ref, stream, client, max_message).walk({1});
  return 0;
}
