# What `cmake --install` puts in place, with standard paths (GNUInstallDirs)
# so DESTDIR and any prefix work:
#
#   <bindir>/flowscope                              the binary
#   <prefix>/lib/systemd/system/flowscope-*.service agent, collector, run
#   <sysconfdir>/flowscope/*.env                    the options each unit passes
#   <docdir>/                                       README and docs/
#
# The units and the env files name the installed paths, so they are generated
# from packaging/ at configure time. A Debian package is built from a tree
# configured with -DCMAKE_INSTALL_PREFIX=/usr (binary in /usr/bin, config in
# /etc/flowscope).
include(GNUInstallDirs)

# Not <libdir>: systemd looks in <prefix>/lib/systemd/system, never in a
# multiarch directory. Relative to the prefix unless given absolute, so a
# later change of prefix moves the units too.
set(FLOWSCOPE_SYSTEMD_UNITDIR "lib/systemd/system"
    CACHE STRING "Where the systemd units are installed (relative: under the install prefix)")
set(FLOWSCOPE_CONFDIR "${CMAKE_INSTALL_FULL_SYSCONFDIR}/flowscope")

# `flowscope --version` prints the project version, which is also the
# package's version.
set_property(SOURCE "${PROJECT_SOURCE_DIR}/src/cli/main.cpp" DIRECTORY "${PROJECT_SOURCE_DIR}/src/cli"
             APPEND PROPERTY COMPILE_DEFINITIONS "FLOWSCOPE_VERSION=\"${PROJECT_VERSION}\"")

install(TARGETS flowscope RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")

set(_units flowscope-agent.service flowscope-collector.service flowscope-run.service)
set(_envs agent.env collector.env run.env)
foreach(f IN LISTS _units)
  configure_file("${PROJECT_SOURCE_DIR}/packaging/systemd/${f}.in" "${PROJECT_BINARY_DIR}/packaging/systemd/${f}" @ONLY)
  install(FILES "${PROJECT_BINARY_DIR}/packaging/systemd/${f}" DESTINATION "${FLOWSCOPE_SYSTEMD_UNITDIR}")
endforeach()
foreach(f IN LISTS _envs)
  configure_file("${PROJECT_SOURCE_DIR}/packaging/etc/${f}.in" "${PROJECT_BINARY_DIR}/packaging/etc/${f}" @ONLY)
  install(FILES "${PROJECT_BINARY_DIR}/packaging/etc/${f}" DESTINATION "${FLOWSCOPE_CONFDIR}")
endforeach()

install(FILES README.md DESTINATION "${CMAKE_INSTALL_DOCDIR}")
# docs/ keeps its name: the README links into it.
install(DIRECTORY docs DESTINATION "${CMAKE_INSTALL_DOCDIR}" FILES_MATCHING PATTERN "*.md")
