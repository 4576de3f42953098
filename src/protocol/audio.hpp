#pragma once
// Audio arithmetic from a stream's declared raw format.
#include <string_view>

namespace sluice::protocol {

// Bytes per second of audio for a raw `encoding` at `sample_rate` Hz with
// `channels` channels; 0 when the format is containerized or unknown (then the
// upstream's Metadata duration is the only measure).
double bytes_per_second(std::string_view encoding, int sample_rate, int channels);

}  // namespace sluice::protocol
