# A Debian package built by CPack from the install rules (cmake/Install.cmake):
#
#   cmake -S . -B build-pkg -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr -DFLOWSCOPE_TESTS=OFF
#   cmake --build build-pkg && (cd build-pkg && cpack)   # -> build-pkg/flowscope_<version>_<arch>.deb
#
# The package installs under the configured prefix, so the paths the units
# name are the paths it ships; for /usr (binary /usr/bin/flowscope, config
# /etc/flowscope) configure with -DCMAKE_INSTALL_PREFIX=/usr.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME flowscope)
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "eBPF network observability: TCP flows, IPFIX collector, packet tracer")
set(CPACK_PACKAGE_DESCRIPTION "flowscope reports every TCP connection of a host as a flow record (bytes, \
segments, retransmits, RTT, close reason, process, cgroup, container, drops) from kernel tracepoints, \
exports flows as IPFIX, collects IPFIX/NetFlow v9 into SQLite with an HTTP API, and traces packets \
through the kernel's network stack. systemd units for the agent, the collector and the one-host form \
are installed but not enabled.")
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)
set(FLOWSCOPE_PACKAGE_MAINTAINER "flowscope developers <flowscope@example.org>"
    CACHE STRING "Maintainer field of the Debian package")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${FLOWSCOPE_PACKAGE_MAINTAINER}")
# Library dependencies are read from the binary by dpkg-shlibdeps.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)

# The env files are the operator's: marked as conffiles, dpkg keeps local
# edits on upgrade and removes them only on purge.
set(_conffiles "")
foreach(f agent.env collector.env run.env)
  string(APPEND _conffiles "${FLOWSCOPE_CONFDIR}/${f}\n")
endforeach()
file(WRITE "${PROJECT_BINARY_DIR}/packaging/debian/conffiles" "${_conffiles}")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${PROJECT_BINARY_DIR}/packaging/debian/conffiles"
    "${PROJECT_SOURCE_DIR}/packaging/debian/postinst"
    "${PROJECT_SOURCE_DIR}/packaging/debian/prerm"
    "${PROJECT_SOURCE_DIR}/packaging/debian/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

include(CPack)
