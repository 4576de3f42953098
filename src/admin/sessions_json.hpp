#pragma once
// JSON views of live sessions for the admin API.
#include <boost/json/object.hpp>

#include "registry/registry.hpp"

namespace sluice::admin {

// `now` is steady (registry::mono_ns); instants are shown as wall times.
boost::json::object session_json(const registry::Registry& registry, const registry::SessionEntry& e,
                                 std::int64_t now);

}  // namespace sluice::admin
