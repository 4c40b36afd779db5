// A minimal web console served at "/": recent flows and top talkers, read
// from the JSON API by the browser. Static, embedded in the binary.
#pragma once

#include <string_view>

namespace flowscope {
std::string_view web_console_html();
}
