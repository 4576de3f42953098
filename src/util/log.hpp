#pragma once
// The process's log: one line per event on stderr, as text for people or as
// one JSON object per line for machines (log.format). Every line carries the
// run id, a random id drawn at start, so that a stream id ([S12], "id": 12)
// is unique across restarts as (run, id).
//
// Text:  2026-12-03T13:00:00.123Z info run=3f9a1c2b7d4e [S12] opened: tenant=acme ...
// JSON:  {"time":"2026-12-03T13:00:00.123Z","level":"info","run":"3f9a1c2b7d4e","msg":"[S12] opened",
//         "tenant":"acme",...}
//
// Thread safety: setup() once at start, before other threads log; the rest
// from any thread.
#include <spdlog/common.h>

#include <optional>
#include <string>
#include <string_view>

namespace boost::json {
class object;
}

namespace sluice::util::log {

enum class Format { text, json };

// "text" or "json"; nullopt otherwise.
std::optional<Format> parse_format(std::string_view name);

// Installs the default logger at `level` (trace, debug, info, warn, error).
void setup(const std::string& level, Format format = Format::text);

// This process's run id: 12 lowercase hex digits, drawn once.
const std::string& run_id();

// A line with fields: in JSON they are members of the line's object (beside
// time, level, run and msg); in text they follow the message as key=value,
// nested objects flattened with dots (counters.audio_bytes=6400), strings
// quoted when they contain a space, a quote or an equals sign.
void with_fields(spdlog::level::level_enum level, std::string_view msg, const boost::json::object& fields);

// The text form of `fields` alone, as with_fields writes it.
std::string text_fields(const boost::json::object& fields);

}  // namespace sluice::util::log
