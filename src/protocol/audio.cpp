#include "protocol/audio.hpp"

namespace sluice::protocol {

double bytes_per_second(std::string_view encoding, int sample_rate, int channels) {
  if (sample_rate <= 0) return 0;
  if (channels <= 0) channels = 1;
  int width = 0;
  if (encoding == "linear16") width = 2;
  else if (encoding == "linear32") width = 4;
  else if (encoding == "mulaw" || encoding == "alaw") width = 1;
  else return 0;
  return static_cast<double>(width) * sample_rate * channels;
}

}  // namespace sluice::protocol
