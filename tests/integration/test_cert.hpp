#pragma once
// A self-signed certificate for 127.0.0.1, made with the openssl command, in
// a directory of its own (removed with the object).
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace sluice::testing {

struct TestCert {
  std::filesystem::path dir;
  std::string cert, key;
  TestCert() {
    char tmpl[] = "/tmp/sluice-test-tls-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    dir = tmpl;
    cert = (dir / "cert.pem").string();
    key = (dir / "key.pem").string();
    auto cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 -addext "
               "subjectAltName=IP:127.0.0.1 -keyout " + key + " -out " + cert + " 2>/dev/null";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl req failed");
  }
  ~TestCert() {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  TestCert(const TestCert&) = delete;
  TestCert& operator=(const TestCert&) = delete;
};

}  // namespace sluice::testing
