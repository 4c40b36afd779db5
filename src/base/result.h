// Errors as values for library code: Result<T> carries a value or an Error,
// one human-readable message plus the errno that caused it (0 when none), so
// a caller can tell "busy port" from "permission denied" without parsing text.
// The CLI prints the message and exits non-zero.
#pragma once

#include <expected>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace flowscope {

struct Error {
  std::string message;
  int code = 0;  // errno value, 0 if the error did not come from the system
};

template <class T>
using Result = std::expected<T, Error>;

template <class... Args>
std::unexpected<Error> fail(fmt::format_string<Args...> f, Args&&... args) {
  return std::unexpected(Error{fmt::format(f, std::forward<Args>(args)...), 0});
}

// A failure caused by a system call: keeps its errno beside the message.
template <class... Args>
std::unexpected<Error> fail_errno(int code, fmt::format_string<Args...> f, Args&&... args) {
  return std::unexpected(Error{fmt::format(f, std::forward<Args>(args)...), code});
}

}  // namespace flowscope
