#pragma once
// Simulated synthetic speech: raw audio of a given length in the stream's
// encoding, produced a chunk at a time so a long utterance never sits whole
// in memory. linear16 carries a quiet 220 Hz tone (audible in demos, cheap);
// mulaw and alaw carry silence.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::sim {

// Seconds of speech per character of text, as a TTS voice roughly speaks.
inline constexpr double kSecondsPerCharacter = 0.06;
// The most audio one binary message carries.
inline constexpr std::size_t kMaxAudioChunk = 8 * 1024;

// Characters (UTF-8 code points) in `text`.
std::size_t character_count(std::string_view text);

class Tone {
 public:
  Tone(std::string_view encoding, int sample_rate);
  std::size_t sample_width() const { return width_; }
  // Bytes of audio for `seconds`, a whole number of samples.
  std::size_t bytes_for(double seconds) const;
  // The next `bytes` of the tone (continuing the phase across calls).
  void fill(std::string& out, std::size_t bytes);

 private:
  std::size_t width_;
  int sample_rate_;
  unsigned char silence_;
  std::uint64_t sample_ = 0;
};

}  // namespace sluice::sim
