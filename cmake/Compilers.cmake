# Compilers flowscope builds with: GCC 12 and newer, clang 16 and newer.
#
# Result<T> is std::expected. libstdc++ declares it only when the compiler
# announces complete C++20 concepts (__cpp_concepts >= 202002L), which clang
# does from version 19 on. Clang 16 already implements what libstdc++'s
# <expected> relies on (conditionally trivial special members, P0848), so for
# clang 16 to 18 the announcement is made on its behalf; clang 14 and 15 (also
# in Debian 12) cannot compile <expected> and are refused with the fix.
if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 19)
  if(CMAKE_CXX_COMPILER_VERSION VERSION_LESS 16)
    message(FATAL_ERROR "flowscope: clang ${CMAKE_CXX_COMPILER_VERSION} cannot compile std::expected with libstdc++; "
                        "use clang 16 or newer (Debian 12: apt-get install clang-16, then "
                        "-DCMAKE_C_COMPILER=clang-16 -DCMAKE_CXX_COMPILER=clang++-16) or GCC")
  endif()
  add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:-U__cpp_concepts;-D__cpp_concepts=202002L>")
endif()
