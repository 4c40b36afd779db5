// Errors as values for library code: Result<T> carries a value or one
// human-readable message. The CLI prints the message and exits non-zero.
#pragma once

#include <expected>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace flowscope {

struct Error {
  std::string message;
};

template <class T>
using Result = std::expected<T, Error>;

template <class... Args>
std::unexpected<Error> fail(fmt::format_string<Args...> f, Args&&... args) {
  return std::unexpected(Error{fmt::format(f, std::forward<Args>(args)...)});
}

}  // namespace flowscope
