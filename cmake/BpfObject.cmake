# flowscope_bpf_object(NAME SOURCE <file.bpf.c> [DEFINES <macro>...])
#
# Compiles one BPF program with clang (-target bpf, CO-RE, BTF), tracks the
# headers it includes through a depfile, generates a libbpf skeleton with
# bpftool, and exposes an INTERFACE library `bpf_<NAME>` whose include path
# holds `<NAME>.skel.h`. The object is embedded in the skeleton, so the final
# binary needs no files at run time.

find_program(BPF_CLANG NAMES clang clang-16 clang-15 clang-14 REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)

set(BPF_VMLINUX_BTF "/sys/kernel/btf/vmlinux" CACHE FILEPATH "BTF used to generate vmlinux.h")
set(BPF_GEN_DIR "${CMAKE_BINARY_DIR}/bpf")
file(MAKE_DIRECTORY "${BPF_GEN_DIR}")

# vmlinux.h is generated from the build machine's kernel BTF; CO-RE relocations
# make the resulting objects run on other kernels.
add_custom_command(
  OUTPUT "${BPF_GEN_DIR}/vmlinux.h"
  COMMAND "${BPFTOOL}" btf dump file "${BPF_VMLINUX_BTF}" format c > "${BPF_GEN_DIR}/vmlinux.h.tmp"
  COMMAND ${CMAKE_COMMAND} -E rename "${BPF_GEN_DIR}/vmlinux.h.tmp" "${BPF_GEN_DIR}/vmlinux.h"
  COMMENT "Generating vmlinux.h from ${BPF_VMLINUX_BTF}"
  VERBATIM)
add_custom_target(bpf_vmlinux_h DEPENDS "${BPF_GEN_DIR}/vmlinux.h")

# Map CMake's processor name to the __TARGET_ARCH_* macro bpf_tracing.h wants.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  set(BPF_TARGET_ARCH x86)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(BPF_TARGET_ARCH arm64)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "ppc64")
  set(BPF_TARGET_ARCH powerpc)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "s390")
  set(BPF_TARGET_ARCH s390)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "riscv64")
  set(BPF_TARGET_ARCH riscv)
else()
  message(FATAL_ERROR "flowscope: unsupported architecture ${CMAKE_SYSTEM_PROCESSOR} for BPF")
endif()

function(flowscope_bpf_object NAME)
  cmake_parse_arguments(ARG "" "SOURCE" "DEFINES" ${ARGN})
  if(NOT ARG_SOURCE)
    message(FATAL_ERROR "flowscope_bpf_object(${NAME}): SOURCE is required")
  endif()
  get_filename_component(src "${ARG_SOURCE}" ABSOLUTE)
  set(obj "${BPF_GEN_DIR}/${NAME}.bpf.o")
  set(dep "${BPF_GEN_DIR}/${NAME}.bpf.d")
  set(skel "${BPF_GEN_DIR}/${NAME}.skel.h")
  # One source can give several objects (variants chosen at run time).
  set(defs "")
  foreach(d IN LISTS ARG_DEFINES)
    list(APPEND defs "-D${d}")
  endforeach()

  add_custom_command(
    OUTPUT "${obj}"
    COMMAND "${BPF_CLANG}" -target bpf -mcpu=v3 -g -O2 -Wall -Werror
            -D__TARGET_ARCH_${BPF_TARGET_ARCH} ${defs}
            -I "${BPF_GEN_DIR}" -I "${CMAKE_SOURCE_DIR}/bpf"
            -MD -MF "${dep}"
            -c "${src}" -o "${obj}"
    DEPENDS "${src}" bpf_vmlinux_h "${BPF_GEN_DIR}/vmlinux.h"
    DEPFILE "${dep}"
    COMMENT "BPF ${NAME}.bpf.c"
    VERBATIM)
  add_custom_command(
    OUTPUT "${skel}"
    COMMAND "${BPFTOOL}" gen skeleton "${obj}" name "${NAME}_bpf" > "${skel}.tmp"
    COMMAND ${CMAKE_COMMAND} -E rename "${skel}.tmp" "${skel}"
    DEPENDS "${obj}"
    COMMENT "BPF skeleton ${NAME}.skel.h"
    VERBATIM)
  add_custom_target(bpf_${NAME}_skel DEPENDS "${skel}")
  add_library(bpf_${NAME} INTERFACE)
  add_dependencies(bpf_${NAME} bpf_${NAME}_skel)
  target_include_directories(bpf_${NAME} INTERFACE "${BPF_GEN_DIR}" "${CMAKE_SOURCE_DIR}/bpf")
endfunction()
