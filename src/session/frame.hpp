#pragma once
// RFC 6455 frames as the relay sees them: a header parser, a walker that
// follows frames through a byte stream without copying the payload, and
// writers for the few frames the gateway originates (pong, ping, close).
//
// The relay forwards data frames as they arrive (a client's still masked,
// an upstream's unmasked); it reads only control frames and the text
// messages it must sniff. No extension is ever negotiated on either leg, so
// every RSV bit must be zero.
//
// Thread safety: none; a FrameWalker belongs to one pump.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace sluice::session {

namespace opcode {
constexpr std::uint8_t continuation = 0x0, text = 0x1, binary = 0x2, close = 0x8, ping = 0x9, pong = 0xA;
}

constexpr std::size_t kMaxFrameHeader = 14;   // 2 + 8 (64-bit length) + 4 (mask)
constexpr std::size_t kMaxControlPayload = 125;

struct FrameHeader {
  bool fin = false;
  bool masked = false;
  std::uint8_t rsv = 0;     // the three RSV bits, as bits 0..2
  std::uint8_t opcode = 0;
  std::uint64_t length = 0;  // payload bytes
  std::array<std::uint8_t, 4> mask{};
  std::size_t header_size = 0;
};

enum class HeaderStatus { ok, need_more, bad_length };

// Parses the frame header at the start of [p, p + n). need_more: the header
// is longer than n bytes. bad_length: a 64-bit length with its top bit set or
// a length not in its shortest form (both forbidden by RFC 6455 5.2).
HeaderStatus parse_frame_header(const std::uint8_t* p, std::size_t n, FrameHeader& h);

// XORs [p, p + n) with `mask`, starting at byte `offset` of the payload.
void apply_mask(std::uint8_t* p, std::size_t n, const std::array<std::uint8_t, 4>& mask, std::uint64_t offset);

// Appends a complete frame (FIN set) to `out`; masked with `mask` when given.
void append_frame(std::string& out, std::uint8_t op, std::string_view payload, const std::uint8_t* mask = nullptr);

// A close frame's payload: none (no status), or a code and a reason.
struct ClosePayload {
  bool has_code = false;
  std::uint16_t code = 0;
  std::string reason;
};
std::string close_payload(const ClosePayload& c);

// What stopped a walk before the end of its bytes.
enum class WalkStop {
  none,          // every byte was walked (a partial header may be carried)
  close,         // a close frame arrived; nothing after it is walked
  protocol_error // a frame the relay must not forward (reason in error())
};

// Follows the frames of one direction of a WebSocket connection.
//
// walk() takes the bytes read so far and compacts them in place: data frames
// (text, binary, continuation) stay where they are, control frames are taken
// out. What is left in [0, forward) is to be written to the other leg as it
// is. Bytes of a header not yet complete are left at [carry_from, end) for
// the next read. Messages are reported to `on_message` when their last frame
// ends, with their size and, for text, the unmasked text (its first
// kSniffLimit bytes).
class FrameWalker {
 public:
  static constexpr std::size_t kSniffLimit = 64 * 1024;

  // `masked`: frames from this side must be masked (a client's) or must not be
  // (a server's). `max_message`: a message longer than this stops the walk.
  FrameWalker(bool masked, std::uint64_t max_message) : masked_(masked), max_message_(max_message) {}

  struct Result {
    std::size_t forward = 0;     // bytes [0, forward) to write on
    std::size_t carry_from = 0;  // bytes [carry_from, n) start a header to complete
    WalkStop stop = WalkStop::none;
    bool mid_frame = false;      // the forwarded bytes end inside a frame
    bool too_big = false;        // a message exceeded the limit: from its frame on, nothing is forwarded
  };

  template <class OnMessage>
  Result walk(std::uint8_t* data, std::size_t n, OnMessage&& on_message);

  // After a walk: a ping to answer (its payload, unmasked), and whether any
  // pong arrived. Reset by the caller.
  bool ping_pending = false;
  std::string ping_payload;
  bool pong_seen = false;
  // After WalkStop::close: the close frame's payload, unmasked.
  ClosePayload close;
  bool close_malformed = false;  // a 1-byte payload or a bad code: answer 1002
  const char* error() const { return error_; }
  // Whether a message has begun and not ended (between fragments).
  bool in_message() const { return in_message_; }
  // Whether data frames are being dropped (after a message too big).
  bool discarding() const { return discard_; }

 private:
  bool check_header(const FrameHeader& h);
  void finish_control();

  const bool masked_;
  const std::uint64_t max_message_;
  // The frame being walked.
  FrameHeader frame_;
  std::uint64_t frame_left_ = 0;  // payload bytes still to come
  bool in_frame_ = false;
  // The message being walked (data frames).
  bool in_message_ = false;
  bool message_text_ = false;
  std::uint64_t message_size_ = 0;
  std::string text_;  // unmasked text of a text message, up to kSniffLimit
  // A control frame's payload, gathered across reads.
  std::array<std::uint8_t, kMaxControlPayload> control_{};
  std::size_t control_size_ = 0;
  const char* error_ = "";
  bool discard_ = false;
};

namespace frame_detail {
// Parses a close payload; false if it is malformed (RFC 6455 5.5.1, 7.4).
bool parse_close(const std::uint8_t* p, std::size_t n, ClosePayload& out);
}

template <class OnMessage>
FrameWalker::Result FrameWalker::walk(std::uint8_t* data, std::size_t n, OnMessage&& on_message) {
  Result r;
  std::size_t in = 0;   // next byte to walk
  std::size_t out = 0;  // end of the bytes kept for forwarding
  // Keeps [from, from + len) for forwarding, moving it down over removed bytes.
  auto keep = [&](std::size_t from, std::size_t len) {
    if (out != from) std::memmove(data + out, data + from, len);
    out += len;
  };
  while (in < n) {
    if (!in_frame_) {
      FrameHeader h;
      auto st = parse_frame_header(data + in, n - in, h);
      if (st == HeaderStatus::need_more) {
        r.forward = out;
        r.carry_from = in;
        r.mid_frame = false;
        return r;
      }
      if (st == HeaderStatus::bad_length) {
        error_ = "bad frame length";
        r.stop = WalkStop::protocol_error;
        break;
      }
      if (!check_header(h)) {
        r.stop = WalkStop::protocol_error;
        break;
      }
      if (h.opcode < opcode::close) {
        // A data frame: it starts or continues a message.
        std::uint64_t total = (h.opcode == opcode::continuation ? message_size_ : 0) + h.length;
        if (total > max_message_ && !discard_) {
          discard_ = true;
          r.too_big = true;
        }
        if (h.opcode != opcode::continuation) {
          in_message_ = true;
          message_text_ = h.opcode == opcode::text;
          message_size_ = 0;
          text_.clear();
        }
        if (!discard_) keep(in, h.header_size);
      } else {
        control_size_ = 0;
      }
      frame_ = h;
      frame_left_ = h.length;
      in_frame_ = true;
      in += h.header_size;
    }
    // The payload, or as much of it as this read holds.
    auto take = static_cast<std::size_t>(std::min<std::uint64_t>(frame_left_, n - in));
    auto offset = frame_.length - frame_left_;
    if (frame_.opcode < opcode::close && discard_) {
      // dropped
    } else if (frame_.opcode < opcode::close) {
      if (message_text_ && text_.size() < kSniffLimit) {
        auto copy = std::min(take, kSniffLimit - text_.size());
        auto at = text_.size();
        text_.append(reinterpret_cast<const char*>(data + in), copy);
        if (frame_.masked)
          apply_mask(reinterpret_cast<std::uint8_t*>(text_.data() + at), copy, frame_.mask, offset);
      }
      keep(in, take);
      message_size_ += take;
    } else {
      std::memcpy(control_.data() + control_size_, data + in, take);
      if (frame_.masked) apply_mask(control_.data() + control_size_, take, frame_.mask, offset);
      control_size_ += take;
    }
    in += take;
    frame_left_ -= take;
    if (frame_left_ > 0) break;  // the read ended inside this frame
    in_frame_ = false;
    if (frame_.opcode >= opcode::close) {
      finish_control();
      if (frame_.opcode == opcode::close) {
        r.stop = WalkStop::close;
        break;
      }
    } else if (frame_.fin) {
      in_message_ = false;
      if (!discard_) on_message(message_text_, message_size_, std::string_view(text_));
      if (text_.capacity() > 4096) std::string().swap(text_);
    }
  }
  r.forward = out;
  r.carry_from = n;
  r.mid_frame = in_frame_ && frame_.opcode < opcode::close && !discard_;
  return r;
}

}  // namespace sluice::session
