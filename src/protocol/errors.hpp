#pragma once
// Error bodies in Deepgram's shape, so SDKs surface them as they already do.
#include <string>
#include <string_view>

namespace sluice::protocol {

// {"err_code":"…","err_msg":"…","request_id":"…"} (Deepgram's legacy shape,
// the one its streaming endpoints answer with). Extra members may be merged in
// by passing a JSON object text as `extra` (empty for none).
std::string error_body(std::string_view err_code, std::string_view err_msg,
                       std::string_view request_id, std::string_view extra = {});

// A random UUID (version 4), for request ids.
std::string make_uuid();

// Formats 16 bytes as a version-4 UUID (setting its version and variant bits).
std::string format_uuid(unsigned char bytes[16]);

}  // namespace sluice::protocol
