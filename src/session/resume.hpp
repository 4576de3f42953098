#pragma once
// Transparent upstream reconnect (docs/resume.md): the pieces the relay uses
// when a /v1/listen or /v2/listen stream is resumable, kept out of the
// relay's template so they are compiled once.
//
// - AudioLog: the client's data frames since the last point the vendor
//   finalized, kept as they arrived (still masked: valid toward any server),
//   with each frame's position in the client's audio.
// - Timeline: reads the upstream's messages (before a resume only to follow
//   the finalized point and Flux's counters; after one, to rewrite them onto
//   the client's timeline).
//
// Thread safety: none; both belong to one relay (one strand).
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::session {

class AudioLog {
 public:
  // `bytes_per_second` and `block` (bytes of one sample of every channel)
  // of the declared raw format. `keep_configure`: Flux's Configure messages
  // outlive the frames around them (a replay sends the last ones first), as
  // they set the stream's thresholds for all that follows.
  AudioLog(double bytes_per_second, std::uint32_t block, bool keep_configure = false);

  // Appends bytes as the client's pump forwarded them: whole data frames in
  // order (a frame's payload may be split across appends).
  void append(const std::uint8_t* p, std::size_t n);

  // Absolute offsets into everything ever appended.
  std::uint64_t begin() const { return frames_.empty() ? end() : frames_.front().offset; }
  std::uint64_t end() const { return base_ + bytes_.size(); }
  // Audio positions (bytes of audio since the stream began).
  std::uint64_t audio_begin() const { return frames_.empty() ? audio_total_ : frames_.front().audio; }
  std::uint64_t audio_end() const { return audio_total_; }
  double seconds(std::uint64_t audio) const { return static_cast<double>(audio) / bytes_per_second_; }
  std::uint64_t audio_bytes(double seconds) const;  // rounded down to a whole block

  // Drops the frames whose audio ends at or before `audio` and that lie
  // wholly before the offset `keep_from` (bytes still to be replayed stay).
  void release_until(std::uint64_t audio, std::uint64_t keep_from);
  // Drops the oldest frames wholly before `keep_from` while more than `cap`
  // bytes of audio are held. Returns the audio bytes dropped.
  std::uint64_t trim(std::uint64_t cap, std::uint64_t keep_from);

  // The frames from offset `from` (a frame start) on, copied, at most about
  // `max_audio` bytes of audio (whole frames; the last frame may be partial
  // when it is still arriving). Sets `next` to the offset after the copy and
  // `audio` to the audio bytes it holds.
  std::string copy(std::uint64_t from, std::uint64_t max_audio, std::uint64_t& next, std::uint64_t& audio) const;

  // The start of a replay at audio position `at`: the first frame holding
  // audio at or after it. When `at` falls inside that frame, `head` gets a
  // new frame (masked afresh) holding the frame's audio from `at` on, and
  // `next` is the offset after the original frame; otherwise `head` is empty
  // and `next` the frame's offset. Returns the audio position the replay
  // starts at: `at`, or the start of the frame holding it when that frame
  // cannot be cut, or later when the audio from `at` on was not all kept.
  std::uint64_t replay_start(std::uint64_t at, std::string& head, std::uint64_t& next) const;
  // Configure frames released from the log, as they arrived (the last few).
  const std::deque<std::string>& kept_configures() const { return configures_; }

  bool ends_mid_frame() const { return next_header_ > end(); }

 private:
  struct Frame {
    std::uint64_t offset;   // of its header
    std::uint64_t end;      // after its payload
    std::uint64_t audio;    // audio position at its start
    std::uint64_t payload;  // audio bytes it holds (0 for text)
  };
  void drop_front();
  void pop_frame();  // the first frame goes (a Configure is kept aside)

  double bytes_per_second_;
  std::uint32_t block_;
  std::string bytes_;          // [base_, base_ + size)
  std::uint64_t base_ = 0;
  std::deque<Frame> frames_;
  std::uint64_t next_header_ = 0;  // where the next frame header starts
  std::uint64_t audio_total_ = 0;
  bool message_binary_ = false;    // the message being appended (for continuation frames)
  bool keep_configure_;
  std::deque<std::string> configures_;
};

// Reads the upstream's text messages for the timeline.
class Timeline {
 public:
  explicit Timeline(bool flux) : flux_(flux) {}

  enum class Action { pass, replace, drop };
  // Reads one upstream text message. Before a resume the message is passed
  // as it is (pass) and only read; after one it is rewritten into `out`
  // (replace), or withheld (drop: the new upstream's Connected, a repeated
  // StartOfTurn). `type`: the message's "type" when the caller sniffed it
  // already (before a resume, a /v1/listen message other than Results is
  // then not parsed at all).
  Action read(std::string_view text, std::string& out, std::optional<std::string_view> type = std::nullopt);

  // A new upstream's zero is the client's audio position `offset` (seconds).
  void resumed(double offset);
  bool was_resumed() const { return resumed_; }
  // The end of the audio the vendor finalized, on the client's timeline.
  double finalized() const { return finalized_; }
  // Metadata's duration after the rewriting (the whole stream's audio).
  std::optional<double> metadata_duration() const { return metadata_duration_; }
  // The next `n` Configure answers answer the gateway's replay of the
  // client's earlier Configure messages: withheld.
  void withhold_configure_answers(int n) { withhold_configure_answers_ = n; }

 private:
  bool flux_;
  bool resumed_ = false;
  double offset_ = 0;
  double finalized_ = 0;
  std::optional<std::int64_t> last_sequence_;  // the last sequence_id passed to the client
  std::int64_t next_turn_ = 0;                 // the client's index of the turn after the last EndOfTurn
  std::int64_t turn_base_ = 0;                 // the client's index of the new upstream's turn 0
  std::int64_t started_turn_ = -1;             // the last turn the client saw start
  std::optional<double> metadata_duration_;
  int withhold_configure_answers_ = 0;
};

}  // namespace sluice::session
