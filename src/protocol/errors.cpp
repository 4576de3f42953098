#include "protocol/errors.hpp"

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <openssl/rand.h>

#include <cstdio>

namespace sluice::protocol {

std::string error_body(std::string_view err_code, std::string_view err_msg,
                       std::string_view request_id, std::string_view extra) {
  boost::json::object o;
  o["err_code"] = err_code;
  o["err_msg"] = err_msg;
  o["request_id"] = request_id;
  if (!extra.empty()) {
    boost::system::error_code ec;
    auto v = boost::json::parse(extra, ec);
    if (!ec && v.is_object())
      for (auto& kv : v.get_object()) o[kv.key()] = kv.value();
  }
  return boost::json::serialize(o);
}

std::string make_uuid() {
  unsigned char b[16];
  RAND_bytes(b, sizeof b);
  return format_uuid(b);
}

std::string format_uuid(unsigned char b[16]) {
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  char out[37];
  std::snprintf(out, sizeof out,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
  return out;
}

}  // namespace sluice::protocol
