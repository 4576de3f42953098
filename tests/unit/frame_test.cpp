// The relay's RFC 6455 frame walker: header forms, masks, fragmentation,
// control frames between fragments, limits, and frames split at every byte.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "session/frame.hpp"

using namespace sluice::session;

namespace {

const std::uint8_t kMask[4] = {0x37, 0xfa, 0x21, 0x3d};

// A frame as a client (masked) or a server (unmasked) sends it.
std::string frame(std::uint8_t op, std::string_view payload, bool fin = true, bool masked = true) {
  std::string out;
  append_frame(out, op, payload, masked ? kMask : nullptr);
  if (!fin) out[0] = static_cast<char>(out[0] & 0x7F);
  return out;
}

struct Message {
  bool text;
  std::uint64_t size;
  std::string sniffed;
};

// Walks `wire` fed in pieces of `step` bytes, as reads would deliver it,
// carrying incomplete headers like the relay does. Returns the forwarded bytes.
struct Walk {
  std::string forwarded;
  std::vector<Message> messages;
  std::vector<FrameWalker::Result> results;
};

Walk walk_in_steps(FrameWalker& w, const std::string& wire, std::size_t step) {
  Walk out;
  std::vector<std::uint8_t> buf;
  std::size_t at = 0;
  while (at < wire.size()) {
    auto take = std::min(step, wire.size() - at);
    buf.insert(buf.end(), wire.begin() + static_cast<std::ptrdiff_t>(at),
               wire.begin() + static_cast<std::ptrdiff_t>(at + take));
    at += take;
    auto r = w.walk(buf.data(), buf.size(), [&](bool text, std::uint64_t size, std::string_view s) {
      out.messages.push_back({text, size, std::string(s)});
    });
    out.results.push_back(r);
    out.forwarded.append(reinterpret_cast<const char*>(buf.data()), r.forward);
    if (r.stop != WalkStop::none || r.too_big) break;
    buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(r.carry_from));
  }
  return out;
}

}  // namespace

TEST(FrameHeader, SevenSixteenAndSixtyFourBitLengths) {
  for (std::uint64_t len : {0ull, 1ull, 125ull, 126ull, 65535ull, 65536ull, 5000000ull}) {
    std::string f;
    append_frame(f, opcode::binary, std::string(len, 'x'), kMask);
    FrameHeader h;
    ASSERT_EQ(parse_frame_header(reinterpret_cast<const std::uint8_t*>(f.data()), f.size(), h), HeaderStatus::ok);
    EXPECT_EQ(h.length, len);
    EXPECT_TRUE(h.masked);
    EXPECT_TRUE(h.fin);
    EXPECT_EQ(h.opcode, opcode::binary);
    EXPECT_EQ(h.header_size, (len < 126 ? 2u : len <= 0xFFFF ? 4u : 10u) + 4u);
    EXPECT_EQ(f.size(), h.header_size + len);
    // Every shorter prefix of the header asks for more bytes.
    for (std::size_t n = 0; n < h.header_size; ++n)
      EXPECT_EQ(parse_frame_header(reinterpret_cast<const std::uint8_t*>(f.data()), n, h), HeaderStatus::need_more)
          << len << " at " << n;
  }
}

TEST(FrameHeader, RejectsLengthsNotInShortestFormAndTheTopBit) {
  FrameHeader h;
  const std::uint8_t sixteen[] = {0x82, 126, 0x00, 0x7D};  // 125 in the 16-bit form
  EXPECT_EQ(parse_frame_header(sixteen, sizeof sixteen, h), HeaderStatus::bad_length);
  const std::uint8_t sixty_four[] = {0x82, 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};  // 65535 in the 64-bit form
  EXPECT_EQ(parse_frame_header(sixty_four, sizeof sixty_four, h), HeaderStatus::bad_length);
  const std::uint8_t top_bit[] = {0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(parse_frame_header(top_bit, sizeof top_bit, h), HeaderStatus::bad_length);
}

TEST(FrameHeader, MaskRoundTrips) {
  std::string payload = "The quick brown fox";
  std::string f;
  append_frame(f, opcode::text, payload, kMask);
  FrameHeader h;
  auto* p = reinterpret_cast<std::uint8_t*>(f.data());
  ASSERT_EQ(parse_frame_header(p, f.size(), h), HeaderStatus::ok);
  EXPECT_NE(f.substr(h.header_size), payload);
  // Unmasking in two pieces (offset carried) gives the payload back.
  apply_mask(p + h.header_size, 5, h.mask, 0);
  apply_mask(p + h.header_size + 5, payload.size() - 5, h.mask, 5);
  EXPECT_EQ(f.substr(h.header_size), payload);
}

TEST(FrameWalker, ForwardsMaskedFramesUnchangedAndReportsMessages) {
  FrameWalker w(true, 1 << 20);
  std::string wire = frame(opcode::binary, std::string(3200, '\1')) + frame(opcode::text, R"({"type":"KeepAlive"})") +
                     frame(opcode::binary, "");
  auto out = walk_in_steps(w, wire, wire.size());
  EXPECT_EQ(out.forwarded, wire);  // bytes unchanged, still masked
  ASSERT_EQ(out.messages.size(), 3u);
  EXPECT_FALSE(out.messages[0].text);
  EXPECT_EQ(out.messages[0].size, 3200u);
  EXPECT_TRUE(out.messages[1].text);
  EXPECT_EQ(out.messages[1].sniffed, R"({"type":"KeepAlive"})");  // unmasked copy
  EXPECT_EQ(out.messages[2].size, 0u);
  EXPECT_FALSE(out.results.back().mid_frame);
}

TEST(FrameWalker, SplitAtEveryByteGivesTheSameResult) {
  std::mt19937 rng(7);
  std::string wire;
  std::string big(70000, '\0');
  for (auto& c : big) c = static_cast<char>(rng());
  wire += frame(opcode::text, R"({"type":"Finalize"})");
  wire += frame(opcode::binary, big);
  wire += frame(opcode::text, R"({"type":"Clo)", false);
  wire += frame(opcode::ping, "are you there");  // control frame between fragments
  wire += frame(opcode::continuation, R"(seStream"})");
  wire += frame(opcode::binary, std::string(300, 'a'));
  std::string data_only = frame(opcode::text, R"({"type":"Finalize"})") + frame(opcode::binary, big) +
                          frame(opcode::text, R"({"type":"Clo)", false) +
                          frame(opcode::continuation, R"(seStream"})") + frame(opcode::binary, std::string(300, 'a'));
  for (std::size_t step : {1u, 2u, 3u, 7u, 13u, 100u, 4096u, 1000000u}) {
    FrameWalker w(true, 1 << 20);
    auto out = walk_in_steps(w, wire, step);
    EXPECT_EQ(out.forwarded, data_only) << "step " << step;  // the ping is taken out
    ASSERT_EQ(out.messages.size(), 4u) << "step " << step;
    EXPECT_EQ(out.messages[0].sniffed, R"({"type":"Finalize"})");
    EXPECT_EQ(out.messages[1].size, big.size());
    EXPECT_TRUE(out.messages[2].text);
    EXPECT_EQ(out.messages[2].sniffed, R"({"type":"CloseStream"})");  // across fragments
    EXPECT_EQ(out.messages[2].size, 22u);
    EXPECT_EQ(out.messages[3].size, 300u);
    EXPECT_TRUE(w.ping_pending);
    EXPECT_EQ(w.ping_payload, "are you there");
  }
}

TEST(FrameWalker, MidFrameIsReportedUntilTheFrameEnds) {
  FrameWalker w(false, 1 << 20);
  std::string wire = frame(opcode::binary, std::string(1000, 'z'), true, false);
  std::vector<std::uint8_t> a(wire.begin(), wire.begin() + 500);
  auto r = w.walk(a.data(), a.size(), [](bool, std::uint64_t, std::string_view) {});
  EXPECT_TRUE(r.mid_frame);
  EXPECT_EQ(r.forward, 500u);
  std::vector<std::uint8_t> b(wire.begin() + 500, wire.end());
  int messages = 0;
  r = w.walk(b.data(), b.size(), [&](bool, std::uint64_t size, std::string_view) {
    ++messages;
    EXPECT_EQ(size, 1000u);
  });
  EXPECT_FALSE(r.mid_frame);
  EXPECT_EQ(messages, 1);
}

TEST(FrameWalker, CloseStopsTheWalkWithItsCodeAndReason) {
  FrameWalker w(true, 1 << 20);
  ClosePayload cp{true, 4001, "client says bye"};
  std::string wire = frame(opcode::binary, "abc") + frame(opcode::close, close_payload(cp)) + frame(opcode::binary, "x");
  auto out = walk_in_steps(w, wire, wire.size());
  EXPECT_EQ(out.results.back().stop, WalkStop::close);
  EXPECT_EQ(out.forwarded, frame(opcode::binary, "abc"));
  EXPECT_TRUE(w.close.has_code);
  EXPECT_EQ(w.close.code, 4001);
  EXPECT_EQ(w.close.reason, "client says bye");
  EXPECT_FALSE(w.close_malformed);

  FrameWalker none(false, 1 << 20);
  auto empty = frame(opcode::close, "", true, false);
  auto out2 = walk_in_steps(none, empty, 1);
  EXPECT_EQ(out2.results.back().stop, WalkStop::close);
  EXPECT_FALSE(none.close.has_code);  // a close without a status

  FrameWalker bad(false, 1 << 20);
  auto one_byte = frame(opcode::close, "x", true, false);
  walk_in_steps(bad, one_byte, 100);
  EXPECT_TRUE(bad.close_malformed);
}

TEST(FrameWalker, OversizeMessageStopsForwardingAtItsFrame) {
  FrameWalker w(true, 1000);
  std::string ok = frame(opcode::binary, std::string(999, 'a'));
  std::string wire = ok + frame(opcode::binary, std::string(5000, 'b')) + frame(opcode::close, "");
  auto out = walk_in_steps(w, wire, wire.size());
  EXPECT_TRUE(out.results.back().too_big);
  EXPECT_EQ(out.forwarded, ok);
  ASSERT_EQ(out.messages.size(), 1u);
  EXPECT_EQ(out.results.back().stop, WalkStop::close);  // the close after it is still seen
  // Fragments count together.
  FrameWalker f(true, 1000);
  std::string frag = frame(opcode::binary, std::string(600, 'a'), false);
  auto out2 = walk_in_steps(f, frag + frame(opcode::continuation, std::string(600, 'a')), 10000);
  EXPECT_TRUE(out2.results.back().too_big);
  EXPECT_EQ(out2.forwarded, frag);
}

TEST(FrameWalker, ProtocolErrorsStopTheWalk) {
  struct Case {
    std::string wire;
    bool client;
    const char* what;
  };
  std::string rsv = frame(opcode::binary, "a");
  rsv[0] = static_cast<char>(rsv[0] | 0x40);
  std::string opc = frame(opcode::binary, "a");
  opc[0] = static_cast<char>((opc[0] & 0xF0) | 0x3);
  std::vector<Case> cases{
      {rsv, true, "reserved bits"},
      {opc, true, "unknown opcode"},
      {frame(opcode::binary, "a", true, false), true, "unmasked client frame"},
      {frame(opcode::binary, "a", true, true), false, "masked server frame"},
      {frame(opcode::continuation, "a"), true, "continuation without a message"},
      {frame(opcode::text, "a", false) + frame(opcode::text, "b"), true, "new message inside a fragmented one"},
      {frame(opcode::ping, "a", false), true, "fragmented control frame"},
      {frame(opcode::ping, std::string(126, 'p')), true, "control frame over 125 bytes"},
  };
  for (auto& c : cases) {
    FrameWalker w(c.client, 1 << 20);
    auto out = walk_in_steps(w, c.wire, c.wire.size());
    EXPECT_EQ(out.results.back().stop, WalkStop::protocol_error) << c.what;
  }
}

TEST(FrameWalker, PongIsNotedAndTakenOut) {
  FrameWalker w(false, 1 << 20);
  std::string wire = frame(opcode::pong, "", true, false) + frame(opcode::text, "hi", true, false);
  auto out = walk_in_steps(w, wire, 1);
  EXPECT_TRUE(w.pong_seen);
  EXPECT_EQ(out.forwarded, frame(opcode::text, "hi", true, false));
}
