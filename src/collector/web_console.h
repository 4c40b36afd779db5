// The web console served at "/": a page, its script and its style, bundled
// from web/ at build time (web/build.mjs) and embedded in the binary. It reads
// everything from the JSON API in the browser.
#pragma once

#include <optional>
#include <string_view>

namespace flowscope {

struct WebAsset {
  std::string_view type;  // Content-Type
  std::string_view body;
};

// The asset served at `path` ("/", "/app.js", "/app.css"), if any.
std::optional<WebAsset> web_console_asset(std::string_view path);

}  // namespace flowscope
