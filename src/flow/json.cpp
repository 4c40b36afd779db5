#include "flow/json.h"

#include <array>
#include <charconv>
#include <cstring>
#include <type_traits>

#include "flow/fields.h"

namespace flowscope {

namespace {

// Characters that must be escaped in a JSON string, or that we escape because
// comm and cgroup names are bytes, not UTF-8.
constexpr bool needs_escape(unsigned char c) { return c < 0x20 || c >= 0x7f || c == '"' || c == '\\'; }

// Writes one line into memory sized beforehand for its longest form: text is
// copied with memcpy and integers with std::to_chars, no bounds checks per
// piece. Measured (bench/micro.cpp): a third of the cost of fmt's compiled
// formats, which append piece by piece.
struct LineWriter {
  char* p;
  template <size_t N>
  void lit(const char (&s)[N]) {
    std::memcpy(p, s, N - 1);
    p += N - 1;
  }
  void text(std::string_view s) {
    std::memcpy(p, s.data(), s.size());
    p += s.size();
  }
  void num(uint64_t v) { p = std::to_chars(p, p + 20, v).ptr; }
  // A JSON string: at most 6 bytes out per byte in (\u00XX), plus quotes.
  void str(std::string_view s) {
    *p++ = '"';
    for (unsigned char c : s) {
      if (!needs_escape(c)) {
        *p++ = static_cast<char>(c);
        continue;
      }
      *p++ = '\\';
      switch (c) {
        case '"': *p++ = '"'; break;
        case '\\': *p++ = '\\'; break;
        case '\n': *p++ = 'n'; break;
        case '\r': *p++ = 'r'; break;
        case '\t': *p++ = 't'; break;
        default: {
          static constexpr char hex[] = "0123456789abcdef";
          const char u[] = {'u', '0', '0', hex[c >> 4], hex[c & 0xf]};
          std::memcpy(p, u, sizeof(u));
          p += sizeof(u);
        }
      }
    }
    *p++ = '"';
  }
  static size_t str_max(std::string_view s) { return 6 * s.size() + 2; }

  // One value, by its C++ type.
  template <class T>
  void value(const T& v, uint8_t hints) {
    if constexpr (schema::is_optional_v<T>) {
      if (v)
        value(*v, hints);
      else
        lit("null");
    } else if constexpr (std::is_same_v<T, bool>) {
      if (hints & schema::kRecordKind)
        text(v ? "\"interim\"" : "\"final\"");
      else
        text(v ? "true" : "false");
    } else if constexpr (std::is_integral_v<T>) {
      num(v);
    } else if constexpr (std::is_same_v<T, std::string>) {
      str(v);
    } else if constexpr (std::is_same_v<T, Ip16>) {
      *p++ = '"';
      p += ip16_format(v, p);
      *p++ = '"';
    } else if constexpr (std::is_enum_v<T>) {
      *p++ = '"';
      text(to_string(v));
      *p++ = '"';
    } else if constexpr (std::is_same_v<T, std::vector<DropCount>>) {
      *p++ = '{';
      bool first = true;
      for (const auto& d : v) {
        if (!first) *p++ = ',';
        first = false;
        str(d.reason);
        *p++ = ':';
        num(d.count);
      }
      *p++ = '}';
    } else {
      static_assert(sizeof(T) == 0, "no JSON form for this field type");
    }
  }

  // The most bytes value(v) can write.
  template <class T>
  static size_t value_max(const T& v) {
    if constexpr (schema::is_optional_v<T>)
      return v ? value_max(*v) : 4;
    else if constexpr (std::is_same_v<T, std::string>)
      return str_max(v);
    else if constexpr (std::is_same_v<T, std::vector<DropCount>>) {
      size_t n = 2;
      for (const auto& d : v) n += str_max(d.reason) + 22;
      return n;
    } else
      return 48;  // numbers (20 digits), addresses (46 + quotes), enum names, booleans
  }
};

// `,"key":` for each field of the JSON line, made at compile time, padded to
// a fixed size so writing it is two 16-byte moves instead of a call to
// memcpy (the room computed for the line leaves that much slack).
struct Key {
  char text[32] = {};
  uint8_t len = 0;
};
constexpr size_t kKeySlack = sizeof(Key::text);

constexpr auto kKeys = [] {
  std::array<Key, schema::kFieldCount> keys{};
  schema::for_each_field_indexed([&](auto i, const auto& f) {
    Key& k = keys[i];
    auto put = [&](char c) { k.text[k.len++] = c; };
    put(',');
    put('"');
    for (char c : f.json) put(c);
    put('"');
    put(':');
  });
  return keys;
}();
static_assert([] {
  bool fits = true;
  schema::for_each_field([&](const auto& f) { fits = fits && f.json.size() + 4 <= sizeof(Key::text); });
  return fits;
}(), "a JSON key is too long for Key::text");

template <class T>
constexpr bool variable_size() {
  if constexpr (schema::is_optional_v<T>)
    return variable_size<typename T::value_type>();
  else
    return std::is_same_v<T, std::string> || std::is_same_v<T, std::vector<DropCount>>;
}

// The room every line needs for its fixed-size fields, known at compile time.
constexpr size_t kFixedRoom = [] {
  size_t n = 128 + kKeySlack;  // the type, duration and family members, braces, newline, key slack
  schema::for_each_field([&](const auto& f) {
    using T = typename std::remove_cvref_t<decltype(f)>::Type;
    if (f.json.empty()) return;
    n += f.json.size() + 4;
    if (!variable_size<T>()) n += 48;
  });
  return n;
}();

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  const size_t old = out.size();
  out.resize_and_overwrite(old + LineWriter::str_max(s), [&](char* data, size_t) {
    LineWriter w{data + old};
    w.str(s);
    return static_cast<size_t>(w.p - data);
  });
}

// Hand-rolled rather than via a DOM: this runs once per flow at high rates.
void append_json_line(std::string& out, const Flow& f) {
  size_t room = kFixedRoom;
  schema::for_each_field([&](const auto& field) {
    using T = typename std::remove_cvref_t<decltype(field)>::Type;
    if constexpr (variable_size<T>())
      if (!field.json.empty()) room += LineWriter::value_max(f.*field.member);
  });
  const size_t old = out.size();
  out.resize_and_overwrite(old + room, [&](char* data, size_t) {
    LineWriter w{data + old};
    w.lit(R"({"type":"flow")");
    schema::for_each_field_indexed([&](auto i, const auto& field) {
      if (field.json.empty()) return;
      std::memcpy(w.p, kKeys[i].text, sizeof(Key::text));
      w.p += kKeys[i].len;
      w.value(f.*field.member, field.hints);
    });
    w.lit(R"(,"duration_ns":)");
    w.num(f.duration_ns());
    w.lit(R"(,"family":)");
    w.num(static_cast<uint64_t>(f.family()));
    w.lit("}\n");
    return static_cast<size_t>(w.p - data);
  });
}

}  // namespace flowscope
