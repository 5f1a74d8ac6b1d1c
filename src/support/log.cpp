#include "support/log.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <stdexcept>

#include "support/json.hpp"
#include "duplex/protocol/utf8.hpp"

namespace duplex::hub::log {

namespace detail {
std::atomic<std::uint8_t> min_level{static_cast<std::uint8_t>(Level::info)};
}

namespace {

struct Logger {
  std::mutex mutex;
  Format format = Format::text;
  Sink sink;    // empty: stderr
  Clock clock;  // empty: system clock
  std::string line;  // reused under the lock: no allocation per event once warm
};

Logger& logger() {
  static Logger* instance = new Logger;  // never destroyed: logging from static destructors stays safe
  return *instance;
}

constexpr std::array<std::string_view, 5> level_names{"trace", "debug", "info", "warn", "error"};
constexpr std::array<std::string_view, 5> text_level_labels{"TRACE", "DEBUG", "INFO ", "WARN ", "ERROR"};
constexpr char hex_digits[] = "0123456789abcdef";

char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

bool iends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && iequals(s.substr(s.size() - suffix.size()), suffix);
}

bool valid_utf8(std::string_view s) {
  return protocol::is_valid_utf8(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

void append_timestamp(std::string& out, std::chrono::system_clock::time_point time) {
  using namespace std::chrono;
  const auto since_epoch = duration_cast<milliseconds>(time.time_since_epoch()).count();
  auto seconds_part = static_cast<std::time_t>(since_epoch / 1000);
  auto millis_part = since_epoch % 1000;
  if (millis_part < 0) {  // before 1970: floor, not truncate
    millis_part += 1000;
    --seconds_part;
  }
  std::tm utc{};
  gmtime_r(&seconds_part, &utc);
  char buffer[32];
  const int n = std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                              utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                              static_cast<int>(millis_part));
  out.append(buffer, static_cast<std::size_t>(n));
}

void append_hex_escape(std::string& out, unsigned char c) {
  out += "\\x";
  out += hex_digits[c >> 4];
  out += hex_digits[c & 15];
}

// Text format: escapes what would break the one-line, key=value shape.
// Bytes >= 0x80 pass through when the whole string is valid UTF-8.
void append_text_escaped(std::string& out, std::string_view s, bool escape_high, bool in_quotes) {
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\\': out += in_quotes ? "\\\\" : "\\"; continue;
      case '"':
        out += in_quotes ? "\\\"" : "\"";
        continue;
      default: break;
    }
    if (c < 0x20 || c == 0x7f || (c >= 0x80 && escape_high)) {
      append_hex_escape(out, c);
    } else {
      out += ch;
    }
  }
}

bool text_needs_quotes(std::string_view s, bool utf8_ok) {
  if (s.empty() || !utf8_ok) return true;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == '"' || c == '=' || c == '\\' || c == 0x7f) return true;
  }
  return false;
}

void append_text_value(std::string& out, std::string_view s) {
  const bool utf8_ok = valid_utf8(s);
  if (!text_needs_quotes(s, utf8_ok)) {
    out += s;
    return;
  }
  out += '"';
  append_text_escaped(out, s, !utf8_ok, true);
  out += '"';
}

// Keys come from code, but a key must never break the line's shape either.
void append_text_key(std::string& out, std::string_view key) {
  if (key.empty()) {
    out += '_';
    return;
  }
  for (char c : key) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                       c == '.' || c == '-';
    out += plain ? c : '_';
  }
}

template <class Number>
void append_number(std::string& out, Number value) {
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, static_cast<std::size_t>(result.ptr - buffer));
}

constexpr std::string_view redacted = "[redacted]";

void append_field_value(std::string& out, Format format, const Field& field) {
  if (is_secret_key(field.key())) {
    if (format == Format::json)
      append_json_string(out, redacted);
    else
      out += redacted;
    return;
  }
  switch (field.kind()) {
    case Field::Kind::string:
      if (format == Format::json)
        append_json_string(out, field.string_value());
      else
        append_text_value(out, field.string_value());
      break;
    case Field::Kind::signed_integer: append_number(out, field.signed_value()); break;
    case Field::Kind::unsigned_integer: append_number(out, field.unsigned_value()); break;
    case Field::Kind::floating: {
      const double v = field.floating_value();
      if (std::isfinite(v)) {
        append_number(out, v);
      } else {  // JSON has no NaN or infinity
        const std::string_view name = std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
        if (format == Format::json)
          append_json_string(out, name);
        else
          out += name;
      }
      break;
    }
    case Field::Kind::boolean: out += field.boolean_value() ? "true" : "false"; break;
  }
}

void append_text_line(std::string& out, std::chrono::system_clock::time_point time, Level level,
                      std::string_view message, Fields fields) {
  append_timestamp(out, time);
  out += ' ';
  out += text_level_labels[static_cast<std::size_t>(level)];
  out += ' ';
  append_text_escaped(out, message, !valid_utf8(message), false);
  for (const Field& field : fields) {
    out += ' ';
    append_text_key(out, field.key());
    out += '=';
    append_field_value(out, Format::text, field);
  }
}

void append_json_line(std::string& out, std::chrono::system_clock::time_point time, Level level,
                      std::string_view message, Fields fields) {
  out += "{\"ts\":\"";
  append_timestamp(out, time);
  out += "\",\"level\":\"";
  out += level_name(level);
  out += "\",\"msg\":";
  append_json_string(out, message);
  for (const Field& field : fields) {
    out += ',';
    append_json_string(out, field.key());
    out += ':';
    append_field_value(out, Format::json, field);
  }
  out += '}';
}

}  // namespace

std::optional<Level> parse_level(std::string_view name) {
  for (std::size_t i = 0; i < level_names.size(); ++i)
    if (name == level_names[i]) return static_cast<Level>(i);
  return std::nullopt;
}

std::optional<Format> parse_format(std::string_view name) {
  if (name == "text") return Format::text;
  if (name == "json") return Format::json;
  return std::nullopt;
}

std::string_view level_name(Level level) { return level_names[static_cast<std::size_t>(level)]; }

bool is_secret_key(std::string_view key) {
  for (std::string_view secret : {"token", "secret", "api_key", "authorization", "password"})
    if (iequals(key, secret)) return true;
  for (std::string_view suffix : {"_token", "_secret", "_password"})
    if (iends_with(key, suffix)) return true;
  return false;
}

void configure(std::string_view level_text, std::string_view format_text) {
  const auto new_level = parse_level(level_text);
  if (!new_level)
    throw std::runtime_error("unknown log level \"" + std::string(level_text) +
                             "\" (expected trace, debug, info, warn or error)");
  const auto new_format = parse_format(format_text);
  if (!new_format)
    throw std::runtime_error("unknown log format \"" + std::string(format_text) + "\" (expected text or json)");
  set_format(*new_format);
  set_level(*new_level);
}

void set_level(Level l) { detail::min_level.store(static_cast<std::uint8_t>(l), std::memory_order_relaxed); }

Level level() { return static_cast<Level>(detail::min_level.load(std::memory_order_relaxed)); }

void set_format(Format format) {
  Logger& state = logger();
  std::lock_guard lock(state.mutex);
  state.format = format;
}

void set_sink(Sink sink) {
  Logger& state = logger();
  std::lock_guard lock(state.mutex);
  state.sink = std::move(sink);
}

void set_clock(Clock clock) {
  Logger& state = logger();
  std::lock_guard lock(state.mutex);
  state.clock = std::move(clock);
}

std::string format_line(Format format, std::chrono::system_clock::time_point time, Level level,
                        std::string_view message, Fields fields) {
  std::string line;
  if (format == Format::json)
    append_json_line(line, time, level, message, fields);
  else
    append_text_line(line, time, level, message, fields);
  return line;
}

void write(Level level, std::string_view message, Fields fields) {
  Logger& state = logger();
  // One lock around formatting and output: lines never interleave, and the
  // reused buffer needs no allocation once it has grown.
  std::lock_guard lock(state.mutex);
  const auto time = state.clock ? state.clock() : std::chrono::system_clock::now();
  std::string& line = state.line;
  line.clear();
  if (state.format == Format::json)
    append_json_line(line, time, level, message, fields);
  else
    append_text_line(line, time, level, message, fields);
  if (state.sink) {
    state.sink(line);
  } else {
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
  if (line.capacity() > 64u << 10) std::string().swap(line);  // one huge event must not pin memory
}

}  // namespace duplex::hub::log
