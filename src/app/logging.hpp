#pragma once
#include <string>

namespace sluice::app {
// One line per event on stderr: time, level, message.
void setup_logging(const std::string& level);
}  // namespace sluice::app
