#pragma once
// What /v1/listen says about the audio it is given, without any I/O: every
// message is paced by the amount of audio received, so the same audio in any
// chunking yields the same Results. Utterances last 3 s of audio; an interim
// Results about every 1 s of audio when interim_results=true.
// Thread safety: none; one per stream.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sim/models.hpp"
#include "sim/stream_params.hpp"

namespace sluice::sim {

class ListenRecognizer {
 public:
  static constexpr double kUtteranceSeconds = 3.0;
  static constexpr double kInterimSeconds = 1.0;

  ListenRecognizer(StreamParams params, std::string request_id, std::uint64_t seed,
                   std::chrono::system_clock::time_point created);
  ~ListenRecognizer();

  // The messages a non-empty binary frame causes.
  std::vector<std::string> on_audio(std::string_view bytes);
  // {"type":"Finalize"}: a final Results with from_finalize for pending audio
  // (none when no audio is pending).
  std::vector<std::string> finalize();
  // {"type":"CloseStream"} or an empty frame: final Results for pending audio,
  // then Metadata. Nothing may be sent after it.
  std::vector<std::string> close_stream();
  // The end-of-stream summary (also sent before a NET-0001 close).
  std::string metadata();

  double audio_seconds() const;  // total audio received

 private:
  struct Sha256;
  enum class FinalKind { endpoint, finalize, close };

  double seconds(std::uint64_t bytes) const;
  void add_results(std::vector<std::string>& out, std::uint64_t from, std::uint64_t to,
                   bool is_final, bool speech_final, bool from_finalize);
  void add_final(std::vector<std::string>& out, std::uint64_t to, FinalKind kind);
  void add_speech_started(std::vector<std::string>& out, std::uint64_t at);

  StreamParams params_;
  std::string request_id_;
  std::uint64_t seed_;
  std::string created_;  // RFC 3339
  ModelInfo model_;
  std::uint64_t utterance_bytes_;
  std::uint64_t interim_bytes_;

  std::uint64_t total_ = 0;             // bytes received
  std::uint64_t utterance_start_ = 0;   // bytes: where the pending utterance began
  std::uint64_t last_interim_ = 0;      // bytes covered by the last interim
  std::uint64_t utterance_ = 0;         // index of the pending utterance
  bool speech_started_ = false;         // SpeechStarted sent for the pending utterance
  std::unique_ptr<Sha256> sha_;
  std::string digest_;                  // once the stream is over
};

// RFC 3339 with milliseconds, UTC: 2026-08-25T21:11:31.685Z.
std::string rfc3339(std::chrono::system_clock::time_point t);

}  // namespace sluice::sim
