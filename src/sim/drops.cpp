#include "sim/drops.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cmath>

namespace sluice::sim {

std::string_view drop_how_name(DropCue::How how) {
  switch (how) {
    case DropCue::How::internal_error: return "1011";
    case DropCue::How::service_restart: return "1012";
    case DropCue::How::try_again_later: return "1013";
    case DropCue::How::cut: return "cut";
    case DropCue::How::reset: return "reset";
  }
  return "1011";
}

DropCueParse parse_drop_cue(std::string_view text) {
  constexpr std::string_view kForm =
      "expected [STREAM@](audio|time):SECONDS[/HOW], with HOW one of 1011, 1012, 1013, cut, reset "
      "(e.g. 2@audio:3.5/reset)";
  DropCueParse out;
  auto fail = [&](std::string why) {
    out.error = fmt::format("'{}': {}; {}", text, why, kForm);
    return out;
  };
  DropCue cue;
  std::string_view rest = text;
  if (auto at = rest.find('@'); at != std::string_view::npos) {
    auto n = rest.substr(0, at);
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(n.data(), n.data() + n.size(), v);
    if (n.empty() || ec != std::errc() || p != n.data() + n.size() || v == 0)
      return fail("the stream number must be a positive integer");
    cue.stream = v;
    rest.remove_prefix(at + 1);
  }
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    auto how = rest.substr(slash + 1);
    if (how == "1011") cue.how = DropCue::How::internal_error;
    else if (how == "1012") cue.how = DropCue::How::service_restart;
    else if (how == "1013") cue.how = DropCue::How::try_again_later;
    else if (how == "cut") cue.how = DropCue::How::cut;
    else if (how == "reset") cue.how = DropCue::How::reset;
    else return fail(fmt::format("unknown HOW '{}'", how));
    rest = rest.substr(0, slash);
  }
  auto colon = rest.find(':');
  if (colon == std::string_view::npos) return fail("no 'audio:' or 'time:'");
  auto kind = rest.substr(0, colon);
  auto number = rest.substr(colon + 1);
  double seconds = 0;
  auto [p, ec] = std::from_chars(number.data(), number.data() + number.size(), seconds);
  if (number.empty() || ec != std::errc() || p != number.data() + number.size() || !std::isfinite(seconds) ||
      seconds < 0)
    return fail("SECONDS must be a number of seconds, 0 or more");
  if (kind == "audio")
    cue.after_audio_seconds = seconds;
  else if (kind == "time")
    cue.after = std::chrono::milliseconds(static_cast<long long>(std::llround(seconds * 1000)));
  else
    return fail(fmt::format("unknown cue '{}'", kind));
  out.cue = cue;
  return out;
}

std::string format_drop_cue(const DropCue& cue) {
  std::string out;
  if (cue.stream > 0) out = fmt::format("{}@", cue.stream);
  if (cue.after_audio_seconds)
    out += fmt::format("audio:{}", *cue.after_audio_seconds);
  else if (cue.after)
    out += fmt::format("time:{}", static_cast<double>(cue.after->count()) / 1000);
  out += fmt::format("/{}", drop_how_name(cue.how));
  return out;
}

Drops::Drops(std::vector<DropCue> cues) : cues_(std::move(cues)) { armed_ = !cues_.empty(); }

DropCue Drops::add(DropCue cue) {
  std::lock_guard lock(mutex_);
  cues_.push_back(cue);
  armed_.store(true, std::memory_order_release);
  return cue;
}

std::optional<DropCue> Drops::due(std::uint64_t n, double audio_seconds,
                                  std::chrono::steady_clock::duration elapsed) const {
  std::lock_guard lock(mutex_);
  for (const auto& c : cues_) {
    if (c.stream != 0 && c.stream != n) continue;
    if (c.after_audio_seconds && audio_seconds >= *c.after_audio_seconds) return c;
    if (c.after && elapsed >= *c.after) return c;
  }
  return std::nullopt;
}

void Drops::record(SimDrop drop) {
  std::lock_guard lock(mutex_);
  records_.push_back(std::move(drop));
}

std::vector<SimDrop> Drops::records() const {
  std::lock_guard lock(mutex_);
  return records_;
}

}  // namespace sluice::sim
