#include "session/resume.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cmath>

#include "protocol/message.hpp"
#include "session/frame.hpp"
#include "util/json_text.hpp"

namespace sluice::session {

namespace relay_detail {
void random_mask(std::uint8_t* out);  // relay.cpp
}

namespace json = boost::json;

AudioLog::AudioLog(double bytes_per_second, std::uint32_t block, bool keep_configure)
    : bytes_per_second_(bytes_per_second > 0 ? bytes_per_second : 1),
      block_(block ? block : 1),
      keep_configure_(keep_configure) {}

void AudioLog::pop_frame() {
  const auto& f = frames_.front();
  if (keep_configure_ && f.payload == 0 && f.end <= end()) {
    auto p = reinterpret_cast<const std::uint8_t*>(bytes_.data()) + (f.offset - base_);
    FrameHeader h;
    if (parse_frame_header(p, static_cast<std::size_t>(f.end - f.offset), h) == HeaderStatus::ok &&
        h.opcode == opcode::text && h.fin && h.length <= 64 * 1024) {
      std::string text(reinterpret_cast<const char*>(p + h.header_size), static_cast<std::size_t>(h.length));
      if (h.masked) apply_mask(reinterpret_cast<std::uint8_t*>(text.data()), text.size(), h.mask, 0);
      if (protocol::sniff_type(text) == "Configure") {
        configures_.emplace_back(reinterpret_cast<const char*>(p), static_cast<std::size_t>(f.end - f.offset));
        if (configures_.size() > 4) configures_.pop_front();
      }
    }
  }
  frames_.pop_front();
}

std::uint64_t AudioLog::audio_bytes(double seconds) const {
  if (seconds <= 0) return 0;
  auto b = static_cast<std::uint64_t>(std::floor(seconds * bytes_per_second_ + 0.01));
  return b - b % block_;
}

void AudioLog::append(const std::uint8_t* p, std::size_t n) {
  bytes_.append(reinterpret_cast<const char*>(p), n);
  while (next_header_ < end()) {
    auto at = static_cast<std::size_t>(next_header_ - base_);
    FrameHeader h;
    auto st = parse_frame_header(reinterpret_cast<const std::uint8_t*>(bytes_.data()) + at, bytes_.size() - at, h);
    if (st != HeaderStatus::ok) break;  // the rest of the header comes with the next append
    if (h.opcode != opcode::continuation) message_binary_ = h.opcode == opcode::binary;
    Frame f{next_header_, next_header_ + h.header_size + h.length, audio_total_, message_binary_ ? h.length : 0};
    audio_total_ += f.payload;
    frames_.push_back(f);
    next_header_ = f.end;
  }
}

void AudioLog::drop_front() {
  auto to = frames_.empty() ? std::min(next_header_, end()) : frames_.front().offset;
  if (to <= base_) return;
  auto n = static_cast<std::size_t>(to - base_);
  bytes_.erase(0, n);
  base_ = to;
  if (bytes_.capacity() > 4 * (bytes_.size() + 4096)) bytes_.shrink_to_fit();
}

void AudioLog::release_until(std::uint64_t audio, std::uint64_t keep_from) {
  bool dropped = false;
  while (!frames_.empty()) {
    const auto& f = frames_.front();
    if (f.end > keep_from || f.end > end() || f.audio + f.payload > audio) break;
    pop_frame();
    dropped = true;
  }
  if (dropped) drop_front();
}

std::uint64_t AudioLog::trim(std::uint64_t cap, std::uint64_t keep_from) {
  std::uint64_t dropped = 0;
  while (!frames_.empty() && audio_total_ - audio_begin() > cap) {
    const auto& f = frames_.front();
    if (f.end > keep_from || f.end > end()) break;
    dropped += f.payload;
    pop_frame();
  }
  if (dropped) drop_front();
  return dropped;
}

std::string AudioLog::copy(std::uint64_t from, std::uint64_t max_audio, std::uint64_t& next,
                           std::uint64_t& audio) const {
  std::string out;
  audio = 0;
  auto pos = std::max(from, begin());
  // The frame holding `pos`: the last one starting at or before it.
  auto it = std::upper_bound(frames_.begin(), frames_.end(), pos,
                             [](std::uint64_t v, const Frame& f) { return v < f.offset; });
  if (it != frames_.begin()) --it;
  while (pos < end() && it != frames_.end()) {
    if (pos < it->offset) pos = it->offset;
    auto stop = std::min(it->end, end());
    if (pos == it->offset) audio += it->payload;
    out.append(bytes_, static_cast<std::size_t>(pos - base_), static_cast<std::size_t>(stop - pos));
    pos = stop;
    if (stop < it->end) break;  // the frame is still arriving
    ++it;
    if (audio >= max_audio) break;
  }
  next = pos;
  return out;
}

std::uint64_t AudioLog::replay_start(std::uint64_t at, std::string& head, std::uint64_t& next) const {
  head.clear();
  for (const auto& f : frames_) {
    if (f.payload == 0 ? f.audio < at : f.audio + f.payload <= at) continue;
    if (f.payload == 0 || f.audio >= at || f.end > end()) {
      next = f.offset;
      return f.audio;
    }
    // `at` falls inside this frame: a new frame holds its audio from `at` on.
    auto skip = at - f.audio;
    skip -= skip % block_;
    FrameHeader h;
    auto p = reinterpret_cast<const std::uint8_t*>(bytes_.data()) + (f.offset - base_);
    if (skip == 0 || parse_frame_header(p, static_cast<std::size_t>(f.end - f.offset), h) != HeaderStatus::ok ||
        !h.fin || h.opcode != opcode::binary) {
      next = f.offset;
      return f.audio;
    }
    std::string tail(reinterpret_cast<const char*>(p + h.header_size + skip),
                     static_cast<std::size_t>(h.length - skip));
    if (h.masked) apply_mask(reinterpret_cast<std::uint8_t*>(tail.data()), tail.size(), h.mask, skip);
    std::uint8_t mask[4];
    relay_detail::random_mask(mask);
    append_frame(head, opcode::binary, tail, mask);
    next = f.end;
    return f.audio + skip;
  }
  next = end();
  return audio_total_;
}

namespace {

double round6(double v) { return std::round(v * 1e6) / 1e6; }

std::optional<double> number(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (!v || !v->is_number()) return std::nullopt;
  return v->to_number<double>();
}

std::optional<std::int64_t> integer(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (!v || !v->is_number()) return std::nullopt;
  boost::system::error_code ec;
  auto n = v->to_number<std::int64_t>(ec);
  if (ec) return std::nullopt;
  return n;
}

std::string_view text(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string_view(v->get_string()) : std::string_view();
}

void shift(json::object& o, std::string_view key, double by) {
  if (auto v = number(o, key)) o[key] = round6(*v + by);
}

void shift_words(json::value* words, double by) {
  if (!words || !words->is_array()) return;
  for (auto& w : words->get_array()) {
    if (!w.is_object()) continue;
    shift(w.get_object(), "start", by);
    shift(w.get_object(), "end", by);
  }
}

}  // namespace

void Timeline::resumed(double offset) {
  resumed_ = true;
  offset_ = offset;
  turn_base_ = next_turn_;
}

Timeline::Action Timeline::read(std::string_view text_in, std::string& out, std::optional<std::string_view> sniffed) {
  if (!resumed_ && !flux_ && sniffed && *sniffed != "Results") return Action::pass;
  boost::system::error_code ec;
  auto v = json::parse(text_in, ec);
  if (ec || !v.is_object()) return Action::pass;
  auto& o = v.get_object();
  auto type = text(o, "type");
  if (!resumed_) {
    // Before a resume: follow the finalized point and Flux's counters only.
    if (flux_) {
      if (auto s = integer(o, "sequence_id")) last_sequence_ = *s;
      if (type == "TurnInfo") {
        auto event = text(o, "event");
        auto turn = integer(o, "turn_index").value_or(0);
        if (event == "StartOfTurn") started_turn_ = turn;
        if (event == "EndOfTurn") {
          finalized_ = std::max(finalized_, number(o, "audio_window_end").value_or(finalized_));
          next_turn_ = turn + 1;
        }
      }
    } else if (type == "Results") {
      auto* f = o.if_contains("is_final");
      if (f && f->is_bool() && f->get_bool())
        finalized_ = std::max(finalized_, number(o, "start").value_or(0) + number(o, "duration").value_or(0));
    }
    return Action::pass;
  }

  if (flux_) {
    if (type == "Connected") return Action::drop;
    if ((type == "ConfigureSuccess" || type == "ConfigureFailure") && withhold_configure_answers_ > 0) {
      --withhold_configure_answers_;
      return Action::drop;
    }
    if (type == "TurnInfo") {
      shift(o, "audio_window_start", offset_);
      shift(o, "audio_window_end", offset_);
      shift_words(o.if_contains("words"), offset_);
      auto turn = integer(o, "turn_index").value_or(0) + turn_base_;
      o["turn_index"] = turn;
      auto event = text(o, "event");
      if (event == "StartOfTurn") {
        if (turn == started_turn_) return Action::drop;  // the client saw this turn start before the drop
        started_turn_ = turn;
      }
      if (event == "EndOfTurn") {
        finalized_ = std::max(finalized_, number(o, "audio_window_end").value_or(finalized_));
        next_turn_ = turn + 1;
      }
    }
    if (o.contains("sequence_id")) {
      last_sequence_ = last_sequence_ ? *last_sequence_ + 1 : 0;
      o["sequence_id"] = *last_sequence_;
    }
  } else if (type == "Results") {
    shift(o, "start", offset_);
    if (auto* ch = o.if_contains("channel"); ch && ch->is_object()) {
      if (auto* alts = ch->get_object().if_contains("alternatives"); alts && alts->is_array())
        for (auto& a : alts->get_array())
          if (a.is_object()) shift_words(a.get_object().if_contains("words"), offset_);
    }
    auto* f = o.if_contains("is_final");
    if (f && f->is_bool() && f->get_bool())
      finalized_ = std::max(finalized_, number(o, "start").value_or(0) + number(o, "duration").value_or(0));
  } else if (type == "SpeechStarted") {
    shift(o, "timestamp", offset_);
  } else if (type == "UtteranceEnd") {
    shift(o, "last_word_end", offset_);
  } else if (type == "Metadata") {
    shift(o, "duration", offset_);
    metadata_duration_ = number(o, "duration");
  } else {
    return Action::pass;
  }
  out = util::json_text(v, util::Doubles::keep_point);
  return Action::replace;
}

}  // namespace sluice::session
