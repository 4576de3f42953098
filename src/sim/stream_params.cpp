#include "sim/stream_params.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <initializer_list>
#include <iterator>

#include "protocol/audio.hpp"

namespace sluice::sim {
namespace {

using protocol::Endpoint;
using Result = boost::system::result<StreamParams, ParamError>;

bool one_of(std::string_view v, std::initializer_list<std::string_view> set) {
  return std::find(set.begin(), set.end(), v) != set.end();
}

ParamError invalid(std::string_view name, std::string_view expected, std::string_view got) {
  return {"INVALID_QUERY_PARAMETER", "Invalid query parameter `" + std::string(name) + "`: expected " +
                                         std::string(expected) + ", got '" + std::string(got) + "'."};
}

// The first value of `name`, decoded; nullopt when absent.
std::optional<std::string> first(boost::urls::params_view params, std::string_view name) {
  auto it = params.find(name);
  if (it == params.end()) return std::nullopt;
  return std::string((*it).value);
}

std::vector<std::string> all(boost::urls::params_view params, std::string_view name) {
  std::vector<std::string> out;
  for (auto it = params.find(name); it != params.end(); it = params.find(std::next(it), name))
    out.push_back((*it).value);
  return out;
}

std::optional<long> to_integer(std::string_view s) {
  long v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<double> to_number(std::string_view s) {
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

// Reads an integer parameter in [lo, hi] into `out`; false (and `err` set) when malformed.
bool read_int(boost::urls::params_view params, std::string_view name, long lo, long hi, int& out,
              std::optional<ParamError>& err) {
  auto text = first(params, name);
  if (!text) return true;
  auto v = to_integer(*text);
  if (!v || *v < lo || *v > hi) {
    err = invalid(name, "an integer from " + std::to_string(lo) + " to " + std::to_string(hi), *text);
    return false;
  }
  out = static_cast<int>(*v);
  return true;
}

bool read_bool(boost::urls::params_view params, std::string_view name, bool& out,
               std::optional<ParamError>& err) {
  auto text = first(params, name);
  if (!text) return true;
  if (*text == "true") out = true;
  else if (*text == "false") out = false;
  else {
    err = invalid(name, "true or false", *text);
    return false;
  }
  return true;
}

bool read_fraction(boost::urls::params_view params, std::string_view name, double& out,
                   std::optional<ParamError>& err) {
  auto text = first(params, name);
  if (!text) return true;
  auto v = to_number(*text);
  if (!v || *v < 0 || *v > 1) {
    err = invalid(name, "a number from 0 to 1", *text);
    return false;
  }
  out = *v;
  return true;
}

// Encodings whose rate Deepgram cannot read from a container, so the request
// must say it.
bool needs_sample_rate(std::string_view encoding) {
  return one_of(encoding, {"linear16", "linear32", "mulaw", "alaw", "amr-nb", "amr-wb", "opus",
                           "speex", "g729"});
}

Result parse_listen_v1(boost::urls::params_view params, StreamParams p) {
  std::optional<ParamError> err;
  p.model = first(params, "model").value_or("nova-3");
  if (protocol::is_flux_model(p.model))
    return ParamError{"V2_MODEL_ON_V1_LISTEN_ENDPOINT",
                      "Flux model '" + p.model + "' is only available on /v2/listen."};
  if (p.model.empty()) return invalid("model", "a model name", p.model);
  p.encoding = first(params, "encoding").value_or("");
  if (!p.encoding.empty() &&
      !one_of(p.encoding, {"linear16", "linear32", "flac", "alaw", "mulaw", "amr-nb", "amr-wb",
                           "opus", "ogg-opus", "speex", "g729"}))
    return invalid("encoding", "one of linear16, linear32, flac, alaw, mulaw, amr-nb, amr-wb, opus, ogg-opus, speex, g729",
                   p.encoding);
  if (!read_int(params, "sample_rate", 1, 192000, p.sample_rate, err)) return *err;
  if (needs_sample_rate(p.encoding) && p.sample_rate == 0)
    return ParamError{"INVALID_QUERY_PARAMETER",
                      "Invalid query parameter `sample_rate`: required when `encoding` is " +
                          p.encoding + "."};
  if (!read_int(params, "channels", 1, 64, p.channels, err)) return *err;
  if (!read_bool(params, "multichannel", p.multichannel, err)) return *err;
  if (!read_bool(params, "interim_results", p.interim_results, err)) return *err;
  if (!read_bool(params, "vad_events", p.vad_events, err)) return *err;
  bool punctuate = false, smart_format = false;
  if (!read_bool(params, "punctuate", punctuate, err)) return *err;
  if (!read_bool(params, "smart_format", smart_format, err)) return *err;
  p.punctuate = punctuate || smart_format;
  if (!read_int(params, "utterance_end_ms", 1, 60000, p.utterance_end_ms, err)) return *err;
  if (auto e = first(params, "endpointing"); e && *e != "false" && *e != "true") {
    auto v = to_integer(*e);
    if (!v || *v < 0) return invalid("endpointing", "false or a number of milliseconds", *e);
  }
  double bps = protocol::bytes_per_second(p.encoding, p.sample_rate, p.channels);
  p.bytes_per_second = bps > 0 ? bps : 32000;
  return p;
}

Result parse_listen_v2(boost::urls::params_view params, StreamParams p) {
  std::optional<ParamError> err;
  auto model = first(params, "model");
  if (!model || model->empty())
    return ParamError{"INVALID_QUERY_PARAMETER",
                      "Invalid query parameter `model`: required on /v2/listen (flux-general-en or flux-general-multi)."};
  p.model = *model;
  if (!protocol::is_flux_model(p.model))
    return invalid("model", "a Flux model (flux-general-en or flux-general-multi)", p.model);
  p.encoding = first(params, "encoding").value_or("");
  if (!p.encoding.empty() &&
      !one_of(p.encoding, {"linear16", "linear32", "mulaw", "alaw", "opus", "ogg-opus"}))
    return invalid("encoding", "one of linear16, linear32, mulaw, alaw, opus, ogg-opus", p.encoding);
  if (!read_int(params, "sample_rate", 1, 192000, p.sample_rate, err)) return *err;
  if (needs_sample_rate(p.encoding) && p.sample_rate == 0)
    return ParamError{"INVALID_QUERY_PARAMETER",
                      "Invalid query parameter `sample_rate`: required when `encoding` is " +
                          p.encoding + "."};
  if (!read_fraction(params, "eot_threshold", p.eot_threshold, err)) return *err;
  if (auto text = first(params, "eager_eot_threshold")) {
    double v = 0;
    if (!read_fraction(params, "eager_eot_threshold", v, err)) return *err;
    p.eager_eot_threshold = v;
  }
  if (!read_int(params, "eot_timeout_ms", 1, 600000, p.eot_timeout_ms, err)) return *err;
  p.keyterms = all(params, "keyterm");
  p.language_hints = all(params, "language_hint");
  p.punctuate = true;  // Flux transcripts are always formatted
  double bps = protocol::bytes_per_second(p.encoding, p.sample_rate, 1);
  p.bytes_per_second = bps > 0 ? bps : 32000;
  return p;
}

Result parse_speak_v1(boost::urls::params_view params, StreamParams p) {
  std::optional<ParamError> err;
  p.model = first(params, "model").value_or("aura-asteria-en");
  if (!p.model.starts_with("aura"))
    return invalid("model", "an Aura voice (aura-2-thalia-en, aura-asteria-en, …)", p.model);
  p.encoding = first(params, "encoding").value_or("linear16");
  if (!one_of(p.encoding, {"linear16", "mulaw", "alaw"}))
    return invalid("encoding", "one of linear16, mulaw, alaw", p.encoding);
  p.sample_rate = p.encoding == "linear16" ? 24000 : 8000;
  if (auto text = first(params, "sample_rate")) {
    auto v = to_integer(*text);
    bool ok = v && (p.encoding == "linear16" ? one_of(*text, {"8000", "16000", "24000", "32000", "48000"})
                                             : one_of(*text, {"8000", "16000"}));
    if (!ok)
      return invalid("sample_rate",
                     p.encoding == "linear16" ? "one of 8000, 16000, 24000, 32000, 48000"
                                              : "8000 or 16000 for " + p.encoding,
                     *text);
    p.sample_rate = static_cast<int>(*v);
  }
  if (auto text = first(params, "speed")) {
    auto v = to_number(*text);
    if (!v || *v < 0.7 || *v > 1.5) return invalid("speed", "a number from 0.7 to 1.5", *text);
  }
  p.bytes_per_second = protocol::bytes_per_second(p.encoding, p.sample_rate, 1);
  return p;
}

}  // namespace

boost::system::result<StreamParams, ParamError> parse_stream_params(
    Endpoint endpoint, boost::urls::params_view params) {
  StreamParams p;
  p.endpoint = endpoint;
  switch (endpoint) {
    case Endpoint::listen_v1: return parse_listen_v1(params, std::move(p));
    case Endpoint::listen_v2: return parse_listen_v2(params, std::move(p));
    case Endpoint::speak_v1: return parse_speak_v1(params, std::move(p));
    case Endpoint::agent: return p;  // the agent is configured by its Settings message
  }
  return p;
}

}  // namespace sluice::sim
