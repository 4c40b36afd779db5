// Routes libbpf's own messages into our logger (quiet unless -v) and keeps the
// tail of the last load so a verifier rejection can be reported in the error.
#pragma once

#include <string>

namespace flowscope {

void install_libbpf_logging(bool verbose);
// Text libbpf printed since the last call (bounded); cleared on read.
std::string take_libbpf_log();

}  // namespace flowscope
