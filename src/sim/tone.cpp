#include "sim/tone.hpp"

#include <cmath>
#include <numbers>

namespace sluice::sim {

std::size_t character_count(std::string_view text) {
  std::size_t n = 0;
  for (unsigned char c : text)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

Tone::Tone(std::string_view encoding, int sample_rate)
    : width_(encoding == "linear16" ? 2 : 1),
      sample_rate_(sample_rate > 0 ? sample_rate : 24000),
      silence_(encoding == "alaw" ? 0xD5 : 0xFF) {}

std::size_t Tone::bytes_for(double seconds) const {
  return static_cast<std::size_t>(std::llround(seconds * sample_rate_)) * width_;
}

void Tone::fill(std::string& out, std::size_t bytes) {
  out.resize(bytes);
  if (width_ == 1) {
    std::fill(out.begin(), out.end(), static_cast<char>(silence_));
    sample_ += bytes;
    return;
  }
  for (std::size_t i = 0; i + 1 < bytes; i += 2, ++sample_) {
    double t = static_cast<double>(sample_) / sample_rate_;
    auto v = static_cast<std::int16_t>(2000 * std::sin(2 * std::numbers::pi * 220 * t));
    auto u = static_cast<std::uint16_t>(v);
    out[i] = static_cast<char>(u & 0xff);  // little endian, as linear16 is
    out[i + 1] = static_cast<char>(u >> 8);
  }
}

}  // namespace sluice::sim
