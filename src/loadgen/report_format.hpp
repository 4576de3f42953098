#pragma once
// A load report as JSON (for scripts: bench/run) or as a table for people.
#include <boost/json/object.hpp>

#include <string>

#include "loadgen/load_generator.hpp"

namespace sluice::loadgen {

boost::json::object report_json(const LoadReport& report);
std::string report_table(const LoadReport& report);

}  // namespace sluice::loadgen
