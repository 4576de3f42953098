#pragma once
// The query parameters of a streaming request, validated the way Deepgram
// validates them before it upgrades: a refusal names the parameter and
// carries the err_code Deepgram answers with.
#include <boost/system/result.hpp>
#include <boost/url/params_view.hpp>

#include <optional>
#include <string>
#include <vector>

#include "protocol/endpoint.hpp"

namespace sluice::sim {

struct StreamParams {
  protocol::Endpoint endpoint = protocol::Endpoint::listen_v1;
  std::string model;
  std::string encoding;  // empty: containerized (listen) or the default (speak)
  int sample_rate = 0;   // 0 when not given (containerized)
  int channels = 1;
  bool multichannel = false;
  bool interim_results = false;
  bool vad_events = false;
  bool punctuate = false;    // punctuate=true or smart_format=true
  int utterance_end_ms = 0;  // 0: no UtteranceEnd messages
  // Bytes of audio per second: for listen what the client sends, for speak
  // what the simulator sends. Containerized listen audio is assumed to be
  // 32000 B/s (16 kHz linear16 mono), since its real rate is in the container.
  double bytes_per_second = 32000;
  // Flux
  double eot_threshold = 0.7;
  std::optional<double> eager_eot_threshold;
  int eot_timeout_ms = 5000;
  std::vector<std::string> keyterms;
  std::vector<std::string> language_hints;
};

// A refusal at the handshake: HTTP 400 with this Deepgram error body.
struct ParamError {
  std::string err_code;  // INVALID_QUERY_PARAMETER, V2_MODEL_ON_V1_LISTEN_ENDPOINT
  std::string err_msg;
};

boost::system::result<StreamParams, ParamError> parse_stream_params(
    protocol::Endpoint endpoint, boost::urls::params_view params);

}  // namespace sluice::sim
