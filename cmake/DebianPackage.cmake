# The Debian package of the server, built by `make deb` (scripts/deb: CPack in
# the main build directory, nothing recompiled). It holds the `server`
# component (/usr/bin/duplex, /usr/share/duplex/web, the reference config,
# /usr/share/doc/duplex) and the `debian` component below; not the library
# (`dev`: headers, static libraries, CMake and pkg-config files).

# /etc/duplex/duplex.toml: the reference config with the one change the
# service needs, engine.data_dir in the unit's StateDirectory.
file(READ ${PROJECT_SOURCE_DIR}/config/duplex.toml DUPLEX_REFERENCE_CONFIG)
string(REGEX REPLACE "\ndata_dir = \"data\" +#" "\ndata_dir = \"/var/lib/duplex\"     #"
  DUPLEX_SERVICE_CONFIG "${DUPLEX_REFERENCE_CONFIG}")
if(DUPLEX_SERVICE_CONFIG STREQUAL DUPLEX_REFERENCE_CONFIG)
  message(FATAL_ERROR "config/duplex.toml: no line 'data_dir = \"data\"' in [engine] to point at /var/lib/duplex "
                      "(cmake/DebianPackage.cmake writes the Debian package's /etc/duplex/duplex.toml from it)")
endif()
file(WRITE ${PROJECT_BINARY_DIR}/packaging/duplex.toml
"# /etc/duplex/duplex.toml: the configuration of the duplex service
# (/lib/systemd/system/duplex.service: systemctl enable --now duplex).
# Installed by the duplex Debian package as a conffile: your edits survive
# upgrades. It is the reference configuration below (also in
# /usr/share/duplex/duplex.toml) with one change: engine.data_dir is
# \"/var/lib/duplex\", the unit's StateDirectory.
#
# This file is world-readable: put the secrets in /etc/default/duplex
# (mode 0600, read by systemd), one per line:
#   DUPLEX_HMAC_SECRET=...
#   DUPLEX_API_KEY=...
# Then: systemctl restart duplex (systemd reads that file at start only: a
# reload does not see a changed secret there).
# /usr/share/doc/duplex/docs/OPERATIONS.md, \"Installing the Debian package\".
#
${DUPLEX_SERVICE_CONFIG}")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/config/duplex.toml)

# Absolute paths, so only in the package: a plain `cmake --install` (any
# prefix) leaves /etc and /lib alone.
install(FILES ${PROJECT_BINARY_DIR}/packaging/duplex.toml DESTINATION /etc/duplex
  COMPONENT debian EXCLUDE_FROM_ALL)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/duplex.service DESTINATION /lib/systemd/system
  COMPONENT debian EXCLUDE_FROM_ALL)

set(DUPLEX_DEB_MAINTAINER "duplex developers <duplex@localhost>" CACHE STRING
  "Maintainer field of the Debian package (make deb)")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME duplex)
set(CPACK_PACKAGE_VENDOR duplex)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DIRECTORY ${PROJECT_BINARY_DIR}/packages)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL server debian)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
set(CPACK_DEBIAN_PACKAGE_NAME duplex)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${DUPLEX_DEB_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The synopsis, then the extended description (CPack indents its lines).
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "real-time messaging hub: channels, presence, history, recovery")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "duplex serve is a real-time messaging server on an RFC 6455 WebSocket
library: channels, presence, history, missed-message recovery, idempotent
publishes, JWT auth, an HTTP API for backends, SSE and long-polling
fallbacks, durable history in SQLite, Prometheus metrics. The package holds
the duplex command, the JavaScript client and demo pages
(/usr/share/duplex/web), /etc/duplex/duplex.toml and a sandboxed systemd
unit (not enabled on install).")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${PROJECT_SOURCE_DIR}/packaging/debian/conffiles
  ${PROJECT_SOURCE_DIR}/packaging/debian/postinst
  ${PROJECT_SOURCE_DIR}/packaging/debian/prerm
  ${PROJECT_SOURCE_DIR}/packaging/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
