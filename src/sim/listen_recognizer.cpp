#include "sim/listen_recognizer.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <openssl/evp.h>

#include <cmath>
#include <ctime>
#include <cstdio>

#include "sim/json_text.hpp"
#include "sim/words.hpp"

namespace sluice::sim {
namespace json = boost::json;

// SHA-256 of the audio received, streamed.
struct ListenRecognizer::Sha256 {
  Sha256() : ctx(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view bytes) { EVP_DigestUpdate(ctx, bytes.data(), bytes.size()); }
  std::string hex() {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx, d, &n);
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < n; ++i) {
      out += digits[d[i] >> 4];
      out += digits[d[i] & 0xf];
    }
    return out;
  }
  EVP_MD_CTX* ctx;
};

std::string rfc3339(std::chrono::system_clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

ListenRecognizer::ListenRecognizer(StreamParams params, std::string request_id, std::uint64_t seed,
                                   std::chrono::system_clock::time_point created)
    : params_(std::move(params)),
      request_id_(std::move(request_id)),
      seed_(seed),
      created_(rfc3339(created)),
      model_(listen_model_info(params_.model)),
      utterance_bytes_(static_cast<std::uint64_t>(std::llround(kUtteranceSeconds * params_.bytes_per_second))),
      interim_bytes_(static_cast<std::uint64_t>(std::llround(kInterimSeconds * params_.bytes_per_second))),
      sha_(std::make_unique<Sha256>()) {}

ListenRecognizer::~ListenRecognizer() = default;

double ListenRecognizer::seconds(std::uint64_t bytes) const {
  return static_cast<double>(bytes) / params_.bytes_per_second;
}

double ListenRecognizer::audio_seconds() const { return seconds(total_); }

void ListenRecognizer::add_results(std::vector<std::string>& out, std::uint64_t from,
                                   std::uint64_t to, bool is_final, bool speech_final,
                                   bool from_finalize) {
  // One Results per channel when multichannel=true; otherwise one for the mix.
  int results = params_.multichannel ? params_.channels : 1;
  for (int channel = 0; channel < results; ++channel) {
    auto words = utterance_words(seed_, utterance_, channel, seconds(utterance_start_), seconds(to));
    json::array word_list;
    double confidence = 0;
    for (std::size_t i = 0; i < words.size(); ++i) {
      const auto& w = words[i];
      json::object o;
      o["word"] = w.word;
      o["start"] = w.start;
      o["end"] = w.end;
      o["confidence"] = w.confidence;
      if (params_.punctuate) o["punctuated_word"] = punctuated_word(w, i == 0);
      word_list.push_back(std::move(o));
      confidence += w.confidence;
    }
    if (!words.empty()) confidence = std::round(confidence / words.size() * 1000) / 1000;
    json::object alternative;
    alternative["transcript"] = transcript_of(words, params_.punctuate);
    alternative["confidence"] = confidence;
    alternative["words"] = std::move(word_list);
    json::object model_info;
    model_info["name"] = model_.name;
    model_info["version"] = model_.version;
    model_info["arch"] = model_.arch;
    json::object metadata;
    metadata["request_id"] = request_id_;
    metadata["model_info"] = std::move(model_info);
    metadata["model_uuid"] = model_.uuid;
    json::object r;
    r["type"] = "Results";
    r["channel_index"] = json::array{channel, params_.channels};
    r["duration"] = static_cast<double>(to - from) / params_.bytes_per_second;
    r["start"] = seconds(from);
    r["is_final"] = is_final;
    r["speech_final"] = speech_final;
    r["channel"] = json::object{{"alternatives", json::array{std::move(alternative)}}};
    r["metadata"] = std::move(metadata);
    r["from_finalize"] = from_finalize;
    out.push_back(to_json_text(r));
  }
}

void ListenRecognizer::add_speech_started(std::vector<std::string>& out, std::uint64_t at) {
  json::object o;
  o["type"] = "SpeechStarted";
  o["channel"] = json::array{0, params_.channels};
  o["timestamp"] = seconds(at);
  out.push_back(to_json_text(o));
  speech_started_ = true;
}

void ListenRecognizer::add_final(std::vector<std::string>& out, std::uint64_t to, FinalKind kind) {
  add_results(out, utterance_start_, to, true, kind != FinalKind::finalize,
              kind == FinalKind::finalize);
  // UtteranceEnd follows an endpointed final that had words, as the gap
  // after the last word is what utterance_end_ms measures.
  if (kind == FinalKind::endpoint && params_.utterance_end_ms > 0) {
    auto words = utterance_words(seed_, utterance_, 0, seconds(utterance_start_), seconds(to));
    if (!words.empty()) {
      json::object o;
      o["type"] = "UtteranceEnd";
      o["channel"] = json::array{0, params_.channels};
      o["last_word_end"] = words.back().end;
      out.push_back(to_json_text(o));
    }
  }
  utterance_start_ = to;
  last_interim_ = to;
  ++utterance_;
  speech_started_ = false;
}

std::vector<std::string> ListenRecognizer::on_audio(std::string_view bytes) {
  std::vector<std::string> out;
  sha_->update(bytes);
  auto before = total_;
  total_ += bytes.size();
  if (params_.vad_events && !speech_started_) add_speech_started(out, std::max(before, utterance_start_));
  while (utterance_bytes_ > 0 && total_ - utterance_start_ >= utterance_bytes_) {
    add_final(out, utterance_start_ + utterance_bytes_, FinalKind::endpoint);
    if (params_.vad_events && total_ > utterance_start_) add_speech_started(out, utterance_start_);
  }
  if (params_.interim_results && total_ - std::max(last_interim_, utterance_start_) >= interim_bytes_) {
    add_results(out, utterance_start_, total_, false, false, false);
    last_interim_ = total_;
  }
  return out;
}

std::vector<std::string> ListenRecognizer::finalize() {
  std::vector<std::string> out;
  if (total_ > utterance_start_) add_final(out, total_, FinalKind::finalize);
  return out;
}

std::vector<std::string> ListenRecognizer::close_stream() {
  std::vector<std::string> out;
  if (total_ > utterance_start_) add_final(out, total_, FinalKind::close);
  out.push_back(metadata());
  return out;
}

std::string ListenRecognizer::metadata() {
  if (digest_.empty()) digest_ = sha_->hex();
  json::object o;
  o["type"] = "Metadata";
  o["transaction_key"] = "deprecated";
  o["request_id"] = request_id_;
  o["sha256"] = digest_;
  o["created"] = created_;
  o["duration"] = audio_seconds();
  o["channels"] = params_.channels;
  // As captured from Deepgram: no model lists when no audio was processed.
  if (total_ > 0) {
    o["models"] = json::array{json::value(model_.uuid)};
    json::object info;
    info["name"] = model_.name;
    info["version"] = model_.version;
    info["arch"] = model_.arch;
    o["model_info"] = json::object{{model_.uuid, std::move(info)}};
  }
  return to_json_text(o);
}

}  // namespace sluice::sim
