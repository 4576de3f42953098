#include "session/frame.hpp"

namespace sluice::session {

HeaderStatus parse_frame_header(const std::uint8_t* p, std::size_t n, FrameHeader& h) {
  if (n < 2) return HeaderStatus::need_more;
  h.fin = (p[0] & 0x80) != 0;
  h.rsv = static_cast<std::uint8_t>((p[0] >> 4) & 0x7);
  h.opcode = p[0] & 0x0F;
  h.masked = (p[1] & 0x80) != 0;
  std::uint64_t len = p[1] & 0x7F;
  std::size_t size = 2;
  if (len == 126) {
    if (n < 4) return HeaderStatus::need_more;
    len = (std::uint64_t{p[2]} << 8) | p[3];
    if (len < 126) return HeaderStatus::bad_length;
    size = 4;
  } else if (len == 127) {
    if (n < 10) return HeaderStatus::need_more;
    len = 0;
    for (int i = 0; i < 8; ++i) len = (len << 8) | p[2 + i];
    if (len >> 63) return HeaderStatus::bad_length;
    if (len <= 0xFFFF) return HeaderStatus::bad_length;
    size = 10;
  }
  if (h.masked) {
    if (n < size + 4) return HeaderStatus::need_more;
    std::memcpy(h.mask.data(), p + size, 4);
    size += 4;
  } else {
    h.mask = {};
  }
  h.length = len;
  h.header_size = size;
  return HeaderStatus::ok;
}

void apply_mask(std::uint8_t* p, std::size_t n, const std::array<std::uint8_t, 4>& mask, std::uint64_t offset) {
  for (std::size_t i = 0; i < n; ++i) p[i] ^= mask[(offset + i) & 3];
}

void append_frame(std::string& out, std::uint8_t op, std::string_view payload, const std::uint8_t* mask) {
  auto n = payload.size();
  out.push_back(static_cast<char>(0x80 | op));
  std::uint8_t m = mask ? 0x80 : 0;
  if (n < 126) {
    out.push_back(static_cast<char>(m | n));
  } else if (n <= 0xFFFF) {
    out.push_back(static_cast<char>(m | 126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xFF));
  } else {
    out.push_back(static_cast<char>(m | 127));
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((std::uint64_t{n} >> (8 * i)) & 0xFF));
  }
  auto at = out.size();
  if (mask) out.append(reinterpret_cast<const char*>(mask), 4);
  out.append(payload);
  if (mask) {
    std::array<std::uint8_t, 4> k{mask[0], mask[1], mask[2], mask[3]};
    apply_mask(reinterpret_cast<std::uint8_t*>(out.data() + at + 4), n, k, 0);
  }
}

std::string close_payload(const ClosePayload& c) {
  std::string out;
  if (!c.has_code) return out;
  out.push_back(static_cast<char>(c.code >> 8));
  out.push_back(static_cast<char>(c.code & 0xFF));
  out.append(c.reason.substr(0, kMaxControlPayload - 2));
  return out;
}

namespace frame_detail {

bool parse_close(const std::uint8_t* p, std::size_t n, ClosePayload& out) {
  out = {};
  if (n == 0) return true;
  if (n == 1) return false;
  out.has_code = true;
  out.code = static_cast<std::uint16_t>((p[0] << 8) | p[1]);
  out.reason.assign(reinterpret_cast<const char*>(p + 2), n - 2);
  // Codes a peer may send (RFC 6455 7.4.1 and 7.4.2): 1000-1003, 1007-1011
  // (and 1012-1014, registered since), and 3000-4999.
  auto c = out.code;
  bool valid = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
  return valid;
}

}  // namespace frame_detail

bool FrameWalker::check_header(const FrameHeader& h) {
  if (h.rsv != 0) {
    error_ = "reserved bits set";
    return false;
  }
  bool control = h.opcode >= opcode::close;
  if (!(h.opcode <= opcode::binary || (h.opcode >= opcode::close && h.opcode <= opcode::pong))) {
    error_ = "unknown opcode";
    return false;
  }
  if (control && (!h.fin || h.length > kMaxControlPayload)) {
    error_ = "bad control frame";
    return false;
  }
  if (h.masked != masked_) {
    error_ = masked_ ? "unmasked frame from a client" : "masked frame from a server";
    return false;
  }
  if (h.opcode == opcode::continuation && !in_message_) {
    error_ = "continuation frame without a message";
    return false;
  }
  if ((h.opcode == opcode::text || h.opcode == opcode::binary) && in_message_) {
    error_ = "new message before the last one ended";
    return false;
  }
  return true;
}

void FrameWalker::finish_control() {
  switch (frame_.opcode) {
    case opcode::ping:
      ping_pending = true;
      ping_payload.assign(reinterpret_cast<const char*>(control_.data()), control_size_);
      break;
    case opcode::pong:
      pong_seen = true;
      break;
    case opcode::close:
      close_malformed = !frame_detail::parse_close(control_.data(), control_size_, close);
      break;
    default:
      break;
  }
}

}  // namespace sluice::session
