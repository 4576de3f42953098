#pragma once
// The admin dashboard's files (src/admin/dashboard/: the page, its script and
// style, and uPlot from npm), compiled into the binary at build time by
// cmake/embed-assets.cmake, so the page needs no network at run time.
#include <string_view>

namespace sluice::admin {

struct DashboardAsset {
  std::string_view path;          // as requested: "/", "/dashboard/app.js", ...
  std::string_view content_type;  // with its charset where it is text
  std::string_view body;
};

// The file served at `path`, or null.
const DashboardAsset* find_dashboard_asset(std::string_view path);

}  // namespace sluice::admin
