#pragma once
// What /v2/listen (Flux) says about the audio it is given, without any I/O.
// Turns last 2 s of audio (speech for the first 1.6 s, then the silence that
// ends the turn): StartOfTurn as a turn's first audio arrives, an Update
// every 0.25 s of audio, EagerEndOfTurn at 1.75 s when eager_eot_threshold
// is set, EndOfTurn at 2 s. Every message carries the next sequence_id.
// Thread safety: none; one per stream.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sim/stream_params.hpp"

namespace sluice::sim {

class FluxRecognizer {
 public:
  static constexpr double kTurnSeconds = 2.0;
  static constexpr double kSpeechSeconds = 1.6;
  static constexpr double kUpdateSeconds = 0.25;

  FluxRecognizer(StreamParams params, std::string request_id, std::uint64_t seed);

  std::string connected();  // sequence_id 0
  std::vector<std::string> on_audio(std::size_t bytes);
  // ForceEndTurn: EndOfTurn (trigger "manual") for the ongoing turn, if any.
  std::vector<std::string> force_end_turn();
  // Configure: ConfigureSuccess with the settings now in force, or
  // ConfigureFailure when the message is malformed.
  std::string configure(std::string_view text);
  // CloseStream: an Update for audio not yet reported; never an EndOfTurn.
  std::vector<std::string> close_stream();

 private:
  double seconds(std::uint64_t bytes) const;
  std::string turn_info(std::string_view event, std::uint64_t window_end, double eot_confidence,
                        std::string_view trigger = {});
  void end_turn(std::vector<std::string>& out, std::uint64_t at, std::string_view trigger);

  StreamParams params_;
  std::string request_id_;
  std::uint64_t seed_;
  std::uint64_t turn_bytes_;
  std::uint64_t update_bytes_;

  std::uint64_t sequence_ = 0;
  std::uint64_t total_ = 0;        // bytes received
  bool in_turn_ = false;
  std::uint64_t turn_start_ = 0;   // bytes
  std::uint64_t reported_ = 0;     // bytes covered by the last TurnInfo of this turn
  std::uint64_t turn_index_ = 0;
  bool eager_sent_ = false;
};

}  // namespace sluice::sim
