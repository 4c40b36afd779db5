#include "storage/flow_row.h"

#include <type_traits>

#include <nlohmann/json.hpp>

#include "flow/fields.h"

namespace flowscope {

namespace {

template <class T>
nlohmann::json api_value(const T& v, uint8_t hints) {
  if constexpr (schema::is_optional_v<T>) {
    return v ? api_value(*v, hints) : nlohmann::json(nullptr);
  } else if constexpr (std::is_same_v<T, bool>) {
    if (hints & schema::kRecordKind) return v ? "interim" : "final";
    return v;
  } else if constexpr (std::is_same_v<T, Ip16>) {
    return ip16_to_string(v);
  } else if constexpr (std::is_enum_v<T>) {
    return to_string(v);
  } else if constexpr (std::is_same_v<T, std::vector<DropCount>>) {
    nlohmann::json drops = nlohmann::json::object();
    for (const auto& d : v) drops[d.reason] = d.count;
    return drops;
  } else {
    return v;
  }
}

}  // namespace

std::string flow_row_json(const FlowRow& r) {
  nlohmann::json j = nlohmann::json::object();
  j["id"] = r.id;
  schema::for_each_field([&](const auto& f) { j[std::string(f.api)] = api_value(r.*f.member, f.hints); });
  j["family"] = r.family();
  // comm and cgroup are kernel bytes, not necessarily UTF-8: replace rather than throw.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace flowscope
