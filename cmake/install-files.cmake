# Run by `cmake --install` (an install(CODE) rule in CMakeLists.txt), where
# CMAKE_INSTALL_PREFIX is the prefix of this install (--prefix included):
#   - the systemd unit, with the installed binary's and configuration's paths
#     put into its command lines;
#   - the default configuration, unless one is already there: an existing
#     sluice.yaml is the operator's and stays, and the shipped one goes
#     beside it as sluice.yaml.default.
# Inputs: SLUICE_SOURCE_DIR, SLUICE_STAGING_DIR, SLUICE_BINDIR,
# SLUICE_CONFIG_DIR, SLUICE_SYSTEMD_UNIT_DIR (relative paths are under the prefix).
foreach(var SLUICE_BINDIR SLUICE_SYSTEMD_UNIT_DIR)
  if(NOT IS_ABSOLUTE "${${var}}")
    set(${var} "${CMAKE_INSTALL_PREFIX}/${${var}}")
  endif()
endforeach()

file(READ "${SLUICE_SOURCE_DIR}/deploy/systemd/sluice.service" unit)
string(REPLACE "/usr/local/bin/sluice" "${SLUICE_BINDIR}/sluice" unit "${unit}")
string(REPLACE "/etc/sluice/" "${SLUICE_CONFIG_DIR}/" unit "${unit}")
file(WRITE "${SLUICE_STAGING_DIR}/sluice.service" "${unit}")
file(INSTALL DESTINATION "${SLUICE_SYSTEMD_UNIT_DIR}" TYPE FILE FILES "${SLUICE_STAGING_DIR}/sluice.service")

set(config "$ENV{DESTDIR}${SLUICE_CONFIG_DIR}/sluice.yaml")
if(EXISTS "${config}")
  message(STATUS "Keeping: ${config} (the shipped default is installed beside it as sluice.yaml.default)")
  file(INSTALL DESTINATION "${SLUICE_CONFIG_DIR}" TYPE FILE RENAME sluice.yaml.default
       FILES "${SLUICE_SOURCE_DIR}/deploy/sluice.yaml")
else()
  file(INSTALL DESTINATION "${SLUICE_CONFIG_DIR}" TYPE FILE FILES "${SLUICE_SOURCE_DIR}/deploy/sluice.yaml")
endif()
