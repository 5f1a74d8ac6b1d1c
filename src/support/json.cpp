#include "support/json.hpp"

#include <simdjson.h>

#include "duplex/protocol/utf8.hpp"

namespace duplex::hub {

namespace {
bool valid_utf8(std::string_view s) {
  return protocol::is_valid_utf8(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

constexpr char hex_digits[] = "0123456789abcdef";

// Bytes that need escaping in a JSON string (RFC 8259 §7): controls, quote, backslash.
bool needs_escape(unsigned char c) { return c < 0x20 || c == '"' || c == '\\'; }

void append_escaped(std::string& out, std::string_view s) {
  std::size_t run = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (!needs_escape(c)) continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        out += "\\u00";
        out += hex_digits[c >> 4];
        out += hex_digits[c & 15];
    }
  }
  out.append(s.data() + run, s.size() - run);
}
}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  if (valid_utf8(s)) {
    append_escaped(out, s);
  } else {
    // Rare: replace each invalid byte by U+FFFD, keeping valid sequences.
    std::string clean;
    clean.reserve(s.size() + 8);
    std::size_t i = 0;
    while (i < s.size()) {
      const auto c = static_cast<unsigned char>(s[i]);
      std::size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
      if (len != 0 && i + len <= s.size() && valid_utf8(s.substr(i, len))) {
        clean.append(s.data() + i, len);
        i += len;
      } else {
        clean += "\xEF\xBF\xBD";
        ++i;
      }
    }
    append_escaped(out, clean);
  }
  out += '"';
}

std::string json_string(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  append_json_string(out, s);
  return out;
}

bool is_valid_json(std::string_view text, std::size_t max_depth) {
  simdjson::dom::parser parser;
  if (parser.allocate(text.size() + 1, max_depth) != simdjson::SUCCESS) return false;
  simdjson::dom::element element;
  return parser.parse(text.data(), text.size()).get(element) == simdjson::SUCCESS;
}

}  // namespace duplex::hub
