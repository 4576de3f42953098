#pragma once
// The simulated recogniser's speech: deterministic English sentences laid
// out on the audio time line. Which words an utterance holds depends only on
// the seed, the utterance's index and the channel, and where they sit only on
// the audio received, never on wall-clock time or how audio was chunked; so
// interim, final and finalized results of one utterance agree on a prefix.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::sim {

struct SimWord {
  std::string_view word;  // lower case
  double start = 0;       // seconds of audio from the stream's start
  double end = 0;
  double confidence = 0;
  bool sentence_start = false;
  bool sentence_end = false;
};

// Words are spoken at a steady rate: one per slot of this many seconds.
inline constexpr double kWordSlotSeconds = 0.4;

// The words of utterance `utterance` (which began at `origin` seconds) that
// have ended by `until` seconds, each within [origin, until]. Times are
// rounded to the millisecond, inward.
std::vector<SimWord> utterance_words(std::uint64_t seed, std::uint64_t utterance, int channel,
                                     double origin, double until);

// The word as punctuate=true writes it: capitalised at the start of a
// sentence (or of the transcript), a full stop at its end.
std::string punctuated_word(const SimWord& w, bool first_in_transcript);

// The words joined by spaces, punctuated or plain lower case.
std::string transcript_of(const std::vector<SimWord>& words, bool punctuate);

// One whole punctuated sentence, for replies that have no time line.
std::string sentence(std::uint64_t seed, std::uint64_t index);

}  // namespace sluice::sim
