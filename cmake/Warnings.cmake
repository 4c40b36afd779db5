# Warning policy.
#
# Warnings are errors where someone can act on them: in CI (.ci/run configures
# every build with FLOWSCOPE_WERROR=ON) and for developers who turn it on. A
# user's or a packager's build keeps them as warnings: a compiler other than
# the ones CI runs may report a false positive, and that must not stop a build.
option(FLOWSCOPE_WERROR "Treat compiler warnings as errors (CI turns it on; recommended while developing)" OFF)

add_compile_options(-Wall -Wextra -Wno-missing-field-initializers)
if(FLOWSCOPE_WERROR)
  add_compile_options(-Werror)
endif()

# Known false positives of GCC 12 (Debian 12's compiler) in libstdc++ code
# inlined at -O2/-O3 (Release, MinSizeRel). Each is silenced only in the file
# where it fires and only for GCC 12, so the warning keeps guarding the rest.
#
# -Wrestrict: basic_string::_M_replace, reached by assigning a short literal to
# a string or by `"literal" + std::string`, is reported as a memcpy of ~2^63
# overlapping bytes. https://gcc.gnu.org/bugzilla/show_bug.cgi?id=105329
set(_flowscope_gcc12_restrict
  src/flow/cgroup.cpp    # `full = "/"`
  src/trace/output.cpp   # `" DROP " + n.reason(ev)`
)
# -Warray-bounds and -Wstringop-overread (the same analysis, reported by
# either): std::vector<uint8_t>::insert of a byte range at the end of a full
# vector (so it reallocates) is reported as a memcpy out of the bounds of the
# old storage. https://gcc.gnu.org/bugzilla/show_bug.cgi?id=107852
set(_flowscope_gcc12_array_bounds
  tests/trace/output_test.cpp
)

function(_flowscope_silence files warning)
  foreach(f IN LISTS files)
    # Without the BPF parts their directories are not part of the build.
    if(NOT FLOWSCOPE_BPF AND f MATCHES "^(src|tests)/(agent|kernel|trace)/")
      continue()
    endif()
    get_filename_component(abs "${CMAKE_SOURCE_DIR}/${f}" ABSOLUTE)
    get_filename_component(dir "${abs}" DIRECTORY)
    # The property belongs to the directory whose CMakeLists.txt compiles the file.
    set_property(SOURCE "${abs}" DIRECTORY "${dir}" APPEND PROPERTY COMPILE_OPTIONS "${warning}")
  endforeach()
endfunction()

function(_flowscope_gcc12_false_positives)
  _flowscope_silence("${_flowscope_gcc12_restrict}" -Wno-restrict)
  if(FLOWSCOPE_TESTS)
    _flowscope_silence("${_flowscope_gcc12_array_bounds}" -Wno-array-bounds)
    _flowscope_silence("${_flowscope_gcc12_array_bounds}" -Wno-stringop-overread)
  endif()
endfunction()

if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 12
   AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  # Source properties need the directory that compiles the file to exist:
  # apply them once every subdirectory has been read.
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _flowscope_gcc12_false_positives)
endif()
