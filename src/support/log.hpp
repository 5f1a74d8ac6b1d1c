// A small structured logger: one line per event, as text or JSON, thread-safe.
//
//   log::info("connection opened", {{"client", id}, {"user", user}, {"remote", remote}});
//   2026-11-23T18:47:05.123Z INFO  connection opened client=c7f3 user=42 remote=127.0.0.1:5555
//   {"ts":"2026-11-23T18:47:05.123Z","level":"info","msg":"connection opened","client":"c7f3",...}
//
// The level is checked before anything is formatted, so a filtered call costs
// one atomic load. Fields whose key names a secret ("token", "secret",
// "api_key", "authorization", "password", or a key ending in "_token",
// "_secret" or "_password") are always written as [redacted].
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace duplex::hub::log {

enum class Level : std::uint8_t { trace, debug, info, warn, error };
enum class Format : std::uint8_t { text, json };

std::optional<Level> parse_level(std::string_view name);    // "trace" .. "error"
std::optional<Format> parse_format(std::string_view name);  // "text" or "json"
std::string_view level_name(Level level);                   // "info"

// One key=value pair. Values are kept unformatted (a view, an integer, a
// double or a bool) until the event passes the level filter. A string value
// is a view: it must outlive the call, which it does for temporaries.
class Field {
 public:
  enum class Kind : std::uint8_t { string, signed_integer, unsigned_integer, floating, boolean };

  Field(std::string_view key, std::string_view value) : key_(key), kind_(Kind::string), string_(value) {}
  Field(std::string_view key, const std::string& value) : Field(key, std::string_view(value)) {}
  Field(std::string_view key, const char* value) : Field(key, std::string_view(value ? value : "")) {}
  Field(std::string_view key, bool value) : key_(key), kind_(Kind::boolean), boolean_(value) {}
  Field(std::string_view key, double value) : key_(key), kind_(Kind::floating), floating_(value) {}
  template <class Integer, std::enable_if_t<std::is_integral_v<Integer> && !std::is_same_v<Integer, bool> &&
                                                !std::is_same_v<Integer, char>, int> = 0>
  Field(std::string_view key, Integer value) : key_(key) {
    if constexpr (std::is_signed_v<Integer>) {
      kind_ = Kind::signed_integer;
      signed_ = static_cast<std::int64_t>(value);
    } else {
      kind_ = Kind::unsigned_integer;
      unsigned_ = static_cast<std::uint64_t>(value);
    }
  }

  std::string_view key() const { return key_; }
  Kind kind() const { return kind_; }
  std::string_view string_value() const { return string_; }
  std::int64_t signed_value() const { return signed_; }
  std::uint64_t unsigned_value() const { return unsigned_; }
  double floating_value() const { return floating_; }
  bool boolean_value() const { return boolean_; }

 private:
  std::string_view key_;
  Kind kind_;
  union {
    std::string_view string_;
    std::int64_t signed_;
    std::uint64_t unsigned_;
    double floating_;
    bool boolean_;
  };
};

using Fields = std::initializer_list<Field>;

// Sets level and format from [log]; throws std::runtime_error on an unknown
// level or format (and changes nothing then).
void configure(std::string_view level, std::string_view format);
void set_level(Level level);
Level level();
void set_format(Format format);
inline bool enabled(Level l);

// Where lines go: the sink receives one complete line without its newline,
// under the logger's lock (so lines never interleave). nullptr restores the
// default: stderr.
using Sink = std::function<void(std::string_view line)>;
void set_sink(Sink sink);
// The time stamped on each line; nullptr restores the system clock. For tests.
using Clock = std::function<std::chrono::system_clock::time_point()>;
void set_clock(Clock clock);

// Formats and writes one event regardless of the level filter.
void write(Level level, std::string_view message, Fields fields = {});
// The line `write` would emit, without writing it (for tests and for callers
// that route lines elsewhere).
std::string format_line(Format format, std::chrono::system_clock::time_point time, Level level,
                        std::string_view message, Fields fields);
// True if a field with this key is always redacted.
bool is_secret_key(std::string_view key);

namespace detail {
// The minimum level, read lock-free on every call.
extern std::atomic<std::uint8_t> min_level;
}

inline bool enabled(Level l) {
  return static_cast<std::uint8_t>(l) >= detail::min_level.load(std::memory_order_relaxed);
}

inline void trace(std::string_view message, Fields fields = {}) {
  if (enabled(Level::trace)) write(Level::trace, message, fields);
}
inline void debug(std::string_view message, Fields fields = {}) {
  if (enabled(Level::debug)) write(Level::debug, message, fields);
}
inline void info(std::string_view message, Fields fields = {}) {
  if (enabled(Level::info)) write(Level::info, message, fields);
}
inline void warn(std::string_view message, Fields fields = {}) {
  if (enabled(Level::warn)) write(Level::warn, message, fields);
}
inline void error(std::string_view message, Fields fields = {}) {
  if (enabled(Level::error)) write(Level::error, message, fields);
}

}  // namespace duplex::hub::log
