// `sluice check-config FILE`, as an operator runs it: exit status 0 with one
// line on stdout, or 1 with the first error on stderr (file, line, key), 2
// for bad usage; the environment applied as `serve` applies it.
#include <gtest/gtest.h>

#include <string>

#include "run_sluice.hpp"
#include "temp_dir.hpp"

using namespace sluice::testing;

namespace {

// The first line of `text`.
std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

TEST(CheckConfig, AGoodFileIsOk) {
  TempDir t;
  auto file = t.write("sluice.yaml", "listen: 127.0.0.1:8080\npools:\n  - {name: a, limit: 5}\n");
  auto r = run_sluice({"check-config", file});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "sluice: configuration " + file + " is ok\n");
  EXPECT_EQ(r.err, "");
}

TEST(CheckConfig, TheFirstErrorWithFileAndLineOnStderrAndStatus1) {
  TempDir t;
  auto file = t.write("sluice.yaml", "listen: 127.0.0.1:8080\npools:\n  - name: a\n    limit: 0\n  - name: b\n    limit: x\n");
  auto r = run_sluice({"check-config", file});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "sluice: invalid configuration: " + file + ":4: pools[0].limit: must be between 1 and 1000000, got 0\n");

  // A rule validate() checks across keys: the line of the key it names.
  file = t.write("dup.yaml", "pools:\n  - name: a\n  - name: a\n");
  r = run_sluice({"check-config", file});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(first_line(r.err), "sluice: invalid configuration: " + file + ":3: pools[1].name: duplicate pool 'a'");

  file = t.write("yaml.yaml", "listen: 127.0.0.1:8080\nadmin: {listen: \n");
  r = run_sluice({"check-config", file});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err.rfind("sluice: invalid configuration: " + file + ":3: not valid YAML", 0), 0u) << r.err;

  r = run_sluice({"check-config", (t.dir / "absent.yaml").string()});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("absent.yaml: cannot read: No such file or directory"), std::string::npos) << r.err;
}

TEST(CheckConfig, AppliesTheEnvironmentAsServeDoes) {
  TempDir t;
  auto file = t.write("sluice.yaml", "listen: ${SLUICE_TEST_HOST:-127.0.0.1}:8080\nlog:\n  format: ${SLUICE_TEST_FORMAT}\n");
  auto r = run_sluice({"check-config", file});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "sluice: invalid configuration: " + file +
                       ":3: log.format: environment variable SLUICE_TEST_FORMAT is not set "
                       "(${SLUICE_TEST_FORMAT:-default} gives a default)\n");
  r = run_sluice({"check-config", file}, {"SLUICE_TEST_FORMAT=json"});
  EXPECT_EQ(r.status, 0) << r.err;
  r = run_sluice({"check-config", file}, {"SLUICE_TEST_FORMAT=xml"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find(":3: log.format: expected text or json; got 'xml'"), std::string::npos) << r.err;
  // The overrides serve applies after the file.
  r = run_sluice({"check-config", file}, {"SLUICE_TEST_FORMAT=json", "SLUICE_THREADS=many"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "sluice: invalid configuration: SLUICE_THREADS: expected an integer, got 'many'\n");
  // Virtual-key mode toward a real upstream needs its key, as serve requires.
  auto vk = t.write("vk.yaml",
                    "upstream: {url: wss://api.deepgram.com}\n"
                    "tenants: [{name: a, keys: [sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae]}]\n");
  r = run_sluice({"check-config", vk}, {"DEEPGRAM_API_KEY="});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("upstream.api_key: required in virtual-key mode"), std::string::npos) << r.err;
  auto key = t.write("dg.key", "dg-secret-in-a-file\n");
  r = run_sluice({"check-config", vk}, {"DEEPGRAM_API_KEY=", "DEEPGRAM_API_KEY_FILE=" + key});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ((r.out + r.err).find("dg-secret"), std::string::npos);
}

TEST(CheckConfig, LoadsTheTlsFilesItNames) {
  TempDir t;
  auto file = t.write("tls.yaml", "tls:\n  cert: " + (t.dir / "no-cert.pem").string() + "\n  key: " +
                                      (t.dir / "no-key.pem").string() + "\n");
  auto r = run_sluice({"check-config", file});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("tls.cert: cannot load"), std::string::npos) << r.err;
}

TEST(CheckConfig, BadUsageIsStatus2AndHelpHelps) {
  auto r = run_sluice({"check-config"});
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  r = run_sluice({"check-config", "a.yaml", "b.yaml"});
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  r = run_sluice({"check-config", "--frobnicate", "a.yaml"});
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  r = run_sluice({"check-config", "--help"});
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("exits 1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("FILE"), std::string::npos) << r.out;
  r = run_sluice({"--help"});
  EXPECT_NE(r.out.find("check-config"), std::string::npos) << r.out;
}
