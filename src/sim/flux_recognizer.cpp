#include "sim/flux_recognizer.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <cmath>

#include "sim/json_text.hpp"
#include "sim/words.hpp"

namespace sluice::sim {
namespace json = boost::json;

FluxRecognizer::FluxRecognizer(StreamParams params, std::string request_id, std::uint64_t seed)
    : params_(std::move(params)),
      request_id_(std::move(request_id)),
      seed_(seed),
      turn_bytes_(static_cast<std::uint64_t>(std::llround(kTurnSeconds * params_.bytes_per_second))),
      update_bytes_(static_cast<std::uint64_t>(std::llround(kUpdateSeconds * params_.bytes_per_second))) {}

double FluxRecognizer::seconds(std::uint64_t bytes) const {
  return static_cast<double>(bytes) / params_.bytes_per_second;
}

std::string FluxRecognizer::connected() {
  json::object o;
  o["type"] = "Connected";
  o["request_id"] = request_id_;
  o["sequence_id"] = sequence_++;
  return to_json_text(o);
}

std::string FluxRecognizer::turn_info(std::string_view event, std::uint64_t window_end,
                                      double eot_confidence, std::string_view trigger) {
  double origin = seconds(turn_start_);
  double speech_end = std::min(seconds(window_end), origin + kSpeechSeconds);
  auto words = speech_end > origin ? utterance_words(seed_, turn_index_, 0, origin, speech_end)
                                   : std::vector<SimWord>{};
  json::array word_list;
  for (std::size_t i = 0; i < words.size(); ++i) {
    json::object w;
    w["word"] = punctuated_word(words[i], i == 0);
    w["confidence"] = words[i].confidence;
    w["start"] = words[i].start;
    w["end"] = words[i].end;
    word_list.push_back(std::move(w));
  }
  auto transcript = transcript_of(words, true);
  json::object o;
  o["type"] = "TurnInfo";
  o["request_id"] = request_id_;
  o["sequence_id"] = sequence_++;
  o["event"] = event;
  o["turn_index"] = turn_index_;
  o["audio_window_start"] = origin;
  o["audio_window_end"] = seconds(window_end);
  o["transcript"] = transcript;
  o["words"] = std::move(word_list);
  o["end_of_turn_confidence"] = std::round(eot_confidence * 1000) / 1000;
  if (!trigger.empty()) o["trigger"] = trigger;
  if (params_.model == "flux-general-multi") {
    o["languages"] = json::array{"en"};
    json::array hinted;
    for (const auto& l : params_.language_hints) hinted.push_back(json::value(l));
    o["languages_hinted"] = std::move(hinted);
  }
  return to_json_text(o);
}

void FluxRecognizer::end_turn(std::vector<std::string>& out, std::uint64_t at,
                              std::string_view trigger) {
  double confidence = std::clamp(std::max(params_.eot_threshold + 0.05, 0.9), 0.0, 1.0);
  out.push_back(turn_info("EndOfTurn", at, confidence, trigger));
  ++turn_index_;
  turn_start_ = at;
  reported_ = at;
  in_turn_ = false;
  eager_sent_ = false;
}

std::vector<std::string> FluxRecognizer::on_audio(std::size_t bytes) {
  std::vector<std::string> out;
  total_ += bytes;
  while (turn_bytes_ > 0 && update_bytes_ > 0) {
    if (!in_turn_) {
      if (total_ <= turn_start_) break;
      in_turn_ = true;
      reported_ = turn_start_;
      out.push_back(turn_info("StartOfTurn", turn_start_, 0.0));
      continue;
    }
    auto next = reported_ + update_bytes_ - (reported_ - turn_start_) % update_bytes_;
    if (next > total_) break;
    auto turn_end = turn_start_ + turn_bytes_;
    if (next >= turn_end) {
      end_turn(out, turn_end, "model");
      continue;
    }
    double progress = static_cast<double>(next - turn_start_) / static_cast<double>(turn_bytes_);
    bool eager = params_.eager_eot_threshold && !eager_sent_ && next + update_bytes_ >= turn_end;
    if (eager) {
      out.push_back(turn_info("EagerEndOfTurn", next, std::min(1.0, *params_.eager_eot_threshold + 0.05)));
      eager_sent_ = true;
    } else {
      out.push_back(turn_info("Update", next, 0.02 + 0.3 * progress * progress));
    }
    reported_ = next;
  }
  return out;
}

std::vector<std::string> FluxRecognizer::force_end_turn() {
  std::vector<std::string> out;
  if (in_turn_) end_turn(out, total_, "manual");
  return out;
}

std::vector<std::string> FluxRecognizer::close_stream() {
  std::vector<std::string> out;
  if (in_turn_ && total_ > reported_) {
    double progress = static_cast<double>(total_ - turn_start_) / static_cast<double>(turn_bytes_);
    out.push_back(turn_info("Update", total_, 0.02 + 0.3 * progress * progress));
    reported_ = total_;
  }
  return out;
}

std::string FluxRecognizer::configure(std::string_view text) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  auto failure = [&] {
    json::object o;
    o["type"] = "ConfigureFailure";
    o["request_id"] = request_id_;
    o["sequence_id"] = sequence_++;
    return to_json_text(o);
  };
  if (ec || !v.is_object()) return failure();
  const auto& msg = v.get_object();
  // Validate everything first: a malformed Configure changes nothing.
  StreamParams next = params_;
  if (auto* t = msg.if_contains("thresholds")) {
    if (!t->is_object()) return failure();
    const auto& th = t->get_object();
    auto fraction = [&](const char* name, auto&& set) {
      auto* f = th.if_contains(name);
      if (!f) return true;
      if (!f->is_number()) return false;
      double d = f->to_number<double>();
      if (d < 0 || d > 1) return false;
      set(d);
      return true;
    };
    if (!fraction("eot_threshold", [&](double d) { next.eot_threshold = d; })) return failure();
    if (!fraction("eager_eot_threshold", [&](double d) { next.eager_eot_threshold = d; })) return failure();
    if (auto* ms = th.if_contains("eot_timeout_ms")) {
      if (!ms->is_number() || ms->to_number<double>() <= 0) return failure();
      next.eot_timeout_ms = static_cast<int>(ms->to_number<double>());
    }
  }
  auto strings = [&](const char* name, std::vector<std::string>& into) {
    auto* a = msg.if_contains(name);
    if (!a) return true;
    if (!a->is_array()) return false;
    std::vector<std::string> values;
    for (const auto& s : a->get_array()) {
      if (!s.is_string()) return false;
      values.emplace_back(s.get_string());
    }
    into = std::move(values);
    return true;
  };
  if (!strings("keyterms", next.keyterms) || !strings("language_hints", next.language_hints))
    return failure();
  params_ = std::move(next);

  json::object thresholds;
  thresholds["eot_threshold"] = params_.eot_threshold;
  if (params_.eager_eot_threshold) thresholds["eager_eot_threshold"] = *params_.eager_eot_threshold;
  thresholds["eot_timeout_ms"] = params_.eot_timeout_ms;
  json::array keyterms, hints;
  for (const auto& k : params_.keyterms) keyterms.push_back(json::value(k));
  for (const auto& h : params_.language_hints) hints.push_back(json::value(h));
  json::object o;
  o["type"] = "ConfigureSuccess";
  o["request_id"] = request_id_;
  o["sequence_id"] = sequence_++;
  o["thresholds"] = std::move(thresholds);
  o["keyterms"] = std::move(keyterms);
  o["language_hints"] = std::move(hints);
  return to_json_text(o);
}

}  // namespace sluice::sim
