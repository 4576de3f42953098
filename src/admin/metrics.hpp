#pragma once
// GET /metrics: the Prometheus text exposition of the pools and the history
// recorder (no secrets, no tenant names).
#include <string>

namespace sluice::registry {
class Registry;
}
namespace sluice::admission {
class Controller;
}
namespace sluice::history {
class Recorder;
}

namespace sluice::admin {

std::string render_metrics(const registry::Registry& registry, const admission::Controller& admission,
                           const history::Recorder* recorder);

}  // namespace sluice::admin
