#include "sim/words.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>

namespace sluice::sim {
namespace {

constexpr std::string_view kSentences[] = {
    "the weather is nice today",
    "please send me the report by friday",
    "i would like to cancel my order",
    "can you help me with a new delivery address",
    "thank you very much for your help",
    "our team will review your account details",
    "we should meet for coffee after work",
    "yes that sounds good to me",
    "tomorrow morning works fine for me",
    "is this number still correct",
    "let me check that for you",
    "i need to change my appointment",
    "the meeting starts at ten",
    "could you repeat the last part",
    "my package has not arrived yet",
    "we will call you back soon",
};
constexpr std::size_t kSentenceCount = std::size(kSentences);

// The words of each sentence, split once.
const std::vector<std::vector<std::string_view>>& sentence_words() {
  static const auto split = [] {
    std::vector<std::vector<std::string_view>> out;
    for (auto s : kSentences) {
      std::vector<std::string_view> words;
      while (!s.empty()) {
        auto space = s.find(' ');
        words.push_back(s.substr(0, space));
        s = space == std::string_view::npos ? std::string_view() : s.substr(space + 1);
      }
      out.push_back(std::move(words));
    }
    return out;
  }();
  return split;
}

// SplitMix64: a small, well-mixed hash, so choices depend on their position
// and the seed without any generator state to carry between calls.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::uint64_t hash(std::uint64_t seed, std::uint64_t a, std::uint64_t b, std::uint64_t c) {
  return mix(seed ^ mix(a ^ mix(b ^ mix(c))));
}

double unit(std::uint64_t h) { return static_cast<double>(h >> 11) * 0x1.0p-53; }

// Millisecond rounding that tolerates binary fractions (0.04 * 1000 is
// 40.000000000000007).
double ms_up(double s) { return std::ceil(s * 1000 - 1e-6) / 1000; }
double ms_down(double s) { return std::floor(s * 1000 + 1e-6) / 1000; }

}  // namespace

std::vector<SimWord> utterance_words(std::uint64_t seed, std::uint64_t utterance, int channel,
                                     double origin, double until) {
  const auto& sentences = sentence_words();
  std::vector<SimWord> out;
  // The utterance speaks whole sentences one after another, each picked by hash.
  std::uint64_t sentence_index = 0;
  const std::vector<std::string_view>* current = nullptr;
  std::size_t in_sentence = 0;
  for (std::uint64_t i = 0;; ++i) {
    double slot = origin + static_cast<double>(i) * kWordSlotSeconds;
    double raw_start = slot + 0.1 * kWordSlotSeconds;
    double raw_end = slot + 0.9 * kWordSlotSeconds;
    if (raw_end > until) break;
    if (!current || in_sentence == current->size()) {
      auto h = hash(seed, utterance, static_cast<std::uint64_t>(channel), sentence_index++);
      current = &sentences[h % kSentenceCount];
      in_sentence = 0;
    }
    SimWord w;
    w.word = (*current)[in_sentence];
    w.sentence_start = in_sentence == 0;
    w.sentence_end = in_sentence + 1 == current->size();
    ++in_sentence;
    // Inward rounding keeps each word inside the window it was found in.
    w.start = std::clamp(ms_up(raw_start), origin, until);
    w.end = std::clamp(ms_down(raw_end), w.start, until);
    auto h = hash(seed ^ 0x5bd1e995, utterance, static_cast<std::uint64_t>(channel), i);
    w.confidence = std::round((0.8 + 0.19 * unit(h)) * 1000) / 1000;
    out.push_back(w);
  }
  return out;
}

std::string punctuated_word(const SimWord& w, bool first_in_transcript) {
  std::string s(w.word);
  if ((first_in_transcript || w.sentence_start || s == "i") && !s.empty())
    s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  if (w.sentence_end) s += '.';
  return s;
}

std::string transcript_of(const std::vector<SimWord>& words, bool punctuate) {
  std::string out;
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (i) out += ' ';
    out += punctuate ? punctuated_word(words[i], i == 0) : std::string(words[i].word);
  }
  return out;
}

std::string sentence(std::uint64_t seed, std::uint64_t index) {
  const auto& words = sentence_words()[hash(seed, index, ~0ULL, 0) % kSentenceCount];
  std::vector<SimWord> sim;
  for (std::size_t i = 0; i < words.size(); ++i)
    sim.push_back({words[i], 0, 0, 0, i == 0, i + 1 == words.size()});
  return transcript_of(sim, true);
}

}  // namespace sluice::sim
