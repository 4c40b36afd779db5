// One flow as one JSON object on one line (the agent's stdout format). The
// keys and their order come from the field table (flow/fields.h).
#pragma once

#include <string>
#include <string_view>

#include "flow/flow.h"

namespace flowscope {

// Appends the flow and a trailing newline to `out`.
void append_json_line(std::string& out, const Flow& f);

// Appends `s` as a JSON string literal (with quotes), escaping as RFC 8259 requires.
void append_json_string(std::string& out, std::string_view s);

}  // namespace flowscope
