// Handshake-time validation of the simulator's query parameters.
#include <boost/url/parse.hpp>
#include <gtest/gtest.h>

#include "sim/stream_params.hpp"

namespace {

using sluice::protocol::Endpoint;

auto parse(Endpoint e, const char* target) {
  auto url = boost::urls::parse_origin_form(target);
  EXPECT_TRUE(url.has_value()) << target;
  return sluice::sim::parse_stream_params(e, url->params());
}

TEST(sim_params, ListenDefaultsAndRates) {
  auto p = parse(Endpoint::listen_v1, "/v1/listen");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->model, "nova-3");
  EXPECT_DOUBLE_EQ(p->bytes_per_second, 32000);  // containerized: assumed
  auto q = parse(Endpoint::listen_v1, "/v1/listen?encoding=mulaw&sample_rate=8000&channels=2&interim_results=true");
  ASSERT_TRUE(q);
  EXPECT_DOUBLE_EQ(q->bytes_per_second, 16000);
  EXPECT_TRUE(q->interim_results);
  auto l32 = parse(Endpoint::listen_v1, "/v1/listen?encoding=linear32&sample_rate=48000");
  ASSERT_TRUE(l32);
  EXPECT_DOUBLE_EQ(l32->bytes_per_second, 192000);
}

TEST(sim_params, ListenRefusals) {
  auto flux = parse(Endpoint::listen_v1, "/v1/listen?model=flux-general-en");
  ASSERT_FALSE(flux);
  EXPECT_EQ(flux.error().err_code, "V2_MODEL_ON_V1_LISTEN_ENDPOINT");
  for (const char* bad : {"/v1/listen?encoding=linear16&sample_rate=fast", "/v1/listen?encoding=linear16",
                          "/v1/listen?encoding=wav&sample_rate=8000", "/v1/listen?channels=0",
                          "/v1/listen?interim_results=yes", "/v1/listen?utterance_end_ms=soon"}) {
    auto r = parse(Endpoint::listen_v1, bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().err_code, "INVALID_QUERY_PARAMETER") << bad;
  }
  auto named = parse(Endpoint::listen_v1, "/v1/listen?channels=two");
  ASSERT_FALSE(named);
  EXPECT_NE(named.error().err_msg.find("channels"), std::string::npos);
  // Containerized encodings need no rate.
  EXPECT_TRUE(parse(Endpoint::listen_v1, "/v1/listen?encoding=ogg-opus"));
}

TEST(sim_params, FluxNeedsAFluxModel) {
  EXPECT_FALSE(parse(Endpoint::listen_v2, "/v2/listen"));
  EXPECT_FALSE(parse(Endpoint::listen_v2, "/v2/listen?model=nova-3"));
  auto ok = parse(Endpoint::listen_v2,
                  "/v2/listen?model=flux-general-en&encoding=linear16&sample_rate=16000&eager_eot_threshold=0.5&keyterm=a&keyterm=b");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->eager_eot_threshold, 0.5);
  EXPECT_EQ(ok->keyterms, (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(parse(Endpoint::listen_v2, "/v2/listen?model=flux-general-en&eot_threshold=2"));
}

TEST(sim_params, Speak) {
  auto p = parse(Endpoint::speak_v1, "/v1/speak");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->model, "aura-asteria-en");
  EXPECT_EQ(p->sample_rate, 24000);
  EXPECT_DOUBLE_EQ(p->bytes_per_second, 48000);
  EXPECT_FALSE(parse(Endpoint::speak_v1, "/v1/speak?sample_rate=44100"));
  EXPECT_FALSE(parse(Endpoint::speak_v1, "/v1/speak?encoding=mulaw&sample_rate=24000"));
  EXPECT_FALSE(parse(Endpoint::speak_v1, "/v1/speak?encoding=mp3"));
  EXPECT_TRUE(parse(Endpoint::speak_v1, "/v1/speak?encoding=mulaw&sample_rate=8000"));
}

}  // namespace
