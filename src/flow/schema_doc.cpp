#include <type_traits>

#include <fmt/format.h>

#include "flow/fields.h"

namespace flowscope::schema {

namespace {

template <class T>
std::string_view type_name() {
  if constexpr (is_optional_v<T>)
    return type_name<typename T::value_type>();
  else if constexpr (std::is_same_v<T, bool>)
    return "bool";
  else if constexpr (std::is_same_v<T, uint8_t>)
    return "u8";
  else if constexpr (std::is_same_v<T, uint16_t>)
    return "u16";
  else if constexpr (std::is_same_v<T, uint32_t>)
    return "u32";
  else if constexpr (std::is_same_v<T, uint64_t>)
    return "u64";
  else if constexpr (std::is_same_v<T, std::string>)
    return "text";
  else if constexpr (std::is_same_v<T, Ip16>)
    return "address";
  else if constexpr (std::is_enum_v<T>)
    return "enum";
  else
    return "reason → count";
}

std::string_view sql_name(Sql s) {
  switch (s) {
    case Sql::Integer: return "INTEGER";
    case Sql::Text: return "TEXT";
    case Sql::Blob: return "BLOB";
  }
  return "";
}

std::string ie_text(const Ie& ie) {
  if (!ie.id) return "—";
  std::string where = ie.pen == 0          ? fmt::format("{}", ie.id)
                      : ie.pen == kOwnPen ? fmt::format("PEN/{}", ie.id)
                                          : fmt::format("{}/{}", ie.pen, ie.id);
  std::string s = fmt::format("`{}` ({})", ie.name, where);
  if (ie.id_v6) s += fmt::format(", `{}` ({})", ie.name_v6, ie.id_v6);
  return s;
}

std::string_view or_dash(std::string_view s) { return s.empty() ? "—" : s; }

}  // namespace

std::string schema_markdown() {
  std::string out =
      "| field | type | JSON line | API | storage | IPFIX element (id; PEN = flowscope's) | NetFlow v9 | meaning |\n"
      "|---|---|---|---|---|---|---|---|\n";
  for_each_field([&](const auto& f) {
    using T = typename std::remove_cvref_t<decltype(f)>::Type;
    std::string type(type_name<T>());
    if (is_optional_v<T>) type += " (optional)";
    out += fmt::format("| `{}` | {} | {} | `{}` | `{}` {} | {} | {} | {} |\n", f.name, type,
                       f.json.empty() ? std::string("—") : fmt::format("`{}`", f.json), f.api, f.column,
                       sql_name(f.sql), ie_text(f.ie), or_dash(f.v9), f.doc);
  });
  return out;
}

}  // namespace flowscope::schema
