// One flow record as one JSON object on one line (the agent's stdout format).
#pragma once

#include <string>

#include "flow/flow_record.h"

namespace flowscope {

// Appends the record and a trailing newline to `out`.
void append_json_line(std::string& out, const FlowRecord& r);

// Appends `s` as a JSON string literal (with quotes), escaping as RFC 8259 requires.
void append_json_string(std::string& out, std::string_view s);

}  // namespace flowscope
