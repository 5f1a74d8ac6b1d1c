#include "duplex/hub/config_file.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <toml++/toml.h>

#include "support/log.hpp"

namespace duplex::hub {

namespace {

using Millis = std::chrono::milliseconds;

constexpr std::size_t max_config_file_bytes = 1u << 20;
constexpr std::int64_t one_day_seconds = 86'400;
constexpr std::uint64_t kib = 1024;
constexpr std::uint64_t mib = kib * 1024;
constexpr std::uint64_t gib = mib * 1024;

std::string quoted(std::string_view s) {
  std::string out = "\"";
  out += s;
  out += '"';
  return out;
}

std::string_view type_name(toml::node_type type) {
  switch (type) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    case toml::node_type::none: break;
  }
  return "nothing";
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0u : 1u)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// One [table] of the file being read. Every key read is remembered so that
// finish() can reject the ones nobody asked for (typos).
class Section {
 public:
  Section(const toml::table& table, std::string path, std::string_view source)
      : table_(table), path_(std::move(path)), source_(source) {}

  [[noreturn]] void fail(const toml::source_region& where, const std::string& message) const {
    std::string text(source_);
    if (where.begin.line != 0) {
      text += ':' + std::to_string(where.begin.line) + ':' + std::to_string(where.begin.column);
    }
    text += ": ";
    text += message;
    throw std::runtime_error(text);
  }

  std::string full_key(std::string_view key) const { return path_.empty() ? std::string(key) : path_ + '.' + std::string(key); }

  [[noreturn]] void fail_type(std::string_view key, const toml::node& node, std::string_view expected) const {
    fail(node.source(), full_key(key) + ": expected " + std::string(expected) + ", got " +
                            std::string(type_name(node.type())));
  }

  [[noreturn]] void fail_range(std::string_view key, const toml::node& node, const std::string& shown,
                               const std::string& range) const {
    fail(node.source(), full_key(key) + ": " + shown + " is out of range (" + range + ")");
  }

  const toml::node* get(std::string_view key) {
    known_.push_back(key);
    return table_.get(key);
  }

  void read(std::string_view key, bool& out) {
    const toml::node* node = get(key);
    if (!node) return;
    const auto* value = node->as_boolean();
    if (!value) fail_type(key, *node, "a boolean (true or false)");
    out = value->get();
  }

  void read(std::string_view key, std::string& out) {
    const toml::node* node = get(key);
    if (!node) return;
    const auto* value = node->as_string();
    if (!value) fail_type(key, *node, "a string");
    out = value->get();
  }

  // A string that must be one of `choices`; returns its index.
  std::optional<std::size_t> read_choice(std::string_view key, std::initializer_list<std::string_view> choices) {
    const toml::node* node = get(key);
    if (!node) return std::nullopt;
    const auto* value = node->as_string();
    std::string listed;
    std::size_t index = 0;
    for (std::string_view choice : choices) {
      if (value && value->get() == choice) return index;
      listed += (index == 0 ? "" : index + 1 == choices.size() ? " or " : ", ") + quoted(choice);
      ++index;
    }
    if (!value) fail_type(key, *node, "a string: " + listed);
    fail(node->source(), full_key(key) + ": expected " + listed + ", got " + quoted(value->get()));
  }

  void read_choice(std::string_view key, std::string& out, std::initializer_list<std::string_view> choices) {
    if (auto index = read_choice(key, choices)) out = std::string(choices.begin()[*index]);
  }

  void read_strings(std::string_view key, std::vector<std::string>& out) {
    const toml::node* node = get(key);
    if (!node) return;
    const auto* array = node->as_array();
    if (!array) fail_type(key, *node, "an array of strings");
    std::vector<std::string> values;
    for (const toml::node& element : *array) {
      const auto* value = element.as_string();
      if (!value) fail_type(key, element, "an array of strings");
      values.push_back(value->get());
    }
    out = std::move(values);
  }

  template <class Integer>
  void read_integer(std::string_view key, Integer& out, std::int64_t min, std::int64_t max) {
    const toml::node* node = get(key);
    if (!node) return;
    const auto* value = node->as_integer();
    if (!value) fail_type(key, *node, "an integer");
    const std::int64_t v = value->get();
    if (v < min || v > max) fail_range(key, *node, std::to_string(v), std::to_string(min) + ".." + std::to_string(max));
    out = static_cast<Integer>(v);
  }

  void read_number(std::string_view key, double& out, double min, double max) {
    const toml::node* node = get(key);
    if (!node) return;
    double v = 0;
    if (const auto* integer = node->as_integer())
      v = static_cast<double>(integer->get());
    else if (const auto* floating = node->as_floating_point())
      v = floating->get();
    else
      fail_type(key, *node, "a number");
    if (!(v >= min && v <= max)) {
      std::ostringstream shown, range;
      shown << v;
      range << min << ".." << max;
      fail_range(key, *node, shown.str(), range.str());
    }
    out = v;
  }

  // Integer bytes, or a string with a binary unit.
  void read_size(std::string_view key, std::size_t& out, std::uint64_t min, std::uint64_t max) {
    const toml::node* node = get(key);
    if (!node) return;
    std::uint64_t bytes = 0;
    if (const auto* integer = node->as_integer()) {
      if (integer->get() < 0) fail_range(key, *node, std::to_string(integer->get()), size_range(min, max));
      bytes = static_cast<std::uint64_t>(integer->get());
    } else if (const auto* text = node->as_string()) {
      auto parsed = parse_size(text->get());
      if (!parsed)
        fail(node->source(), full_key(key) + ": bad size " + quoted(text->get()) +
                                 " (expected an integer number of bytes or a string like \"512B\", \"64KiB\", "
                                 "\"1MiB\", \"1GiB\")");
      bytes = *parsed;
    } else {
      fail_type(key, *node, "a size (integer bytes or a string like \"64KiB\")");
    }
    if (bytes < min || bytes > max) fail_range(key, *node, show_size(bytes), size_range(min, max));
    out = static_cast<std::size_t>(bytes);
  }

  void read_duration(std::string_view key, std::chrono::seconds& out, std::chrono::seconds min,
                     std::chrono::seconds max) {
    const toml::node* node = get(key);
    if (!node) return;
    const Millis value = duration_value(key, *node, "seconds", 1000);
    if (value.count() % 1000 != 0)
      fail(node->source(), full_key(key) + ": " + show_duration(value) + " is not a whole number of seconds");
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(value);
    if (seconds < min || seconds > max)
      fail_range(key, *node, show_duration(value), show_duration(min) + ".." + show_duration(max));
    out = seconds;
  }

  void read_duration(std::string_view key, Millis& out, Millis min, Millis max) {
    const toml::node* node = get(key);
    if (!node) return;
    const Millis value = duration_value(key, *node, "milliseconds", 1);
    if (value < min || value > max)
      fail_range(key, *node, show_duration(value), show_duration(min) + ".." + show_duration(max));
    out = value;
  }

  // A nested table; nullopt if absent, an error if the key holds a value.
  std::optional<Section> section(std::string_view key) {
    const toml::node* node = get(key);
    if (!node) return std::nullopt;
    const auto* table = node->as_table();
    if (!table) fail_type(key, *node, "a table");
    return Section(*table, full_key(key), source_);
  }

  const toml::table& table() const { return table_; }
  std::string_view source() const { return source_; }
  const std::string& path() const { return path_; }

  // Every key of this table must have been read.
  void finish() const {
    for (auto&& [key, node] : table_) {
      if (std::find(known_.begin(), known_.end(), key.str()) != known_.end()) continue;
      std::string message = "unknown key " + quoted(key.str()) + " ";
      message += path_.empty() ? "at the top level" : "in [" + path_ + "]";
      std::string_view best;
      std::size_t best_distance = 3;  // suggest only near misses
      for (std::string_view candidate : known_) {
        const std::size_t d = edit_distance(key.str(), candidate);
        if (d < best_distance) {
          best_distance = d;
          best = candidate;
        }
      }
      if (!best.empty()) message += " (did you mean " + quoted(best) + "?)";
      fail(key.source().begin.line != 0 ? key.source() : node.source(), message);
    }
  }

  static std::string show_size(std::uint64_t bytes) {
    if (bytes != 0 && bytes % gib == 0) return std::to_string(bytes / gib) + "GiB";
    if (bytes != 0 && bytes % mib == 0) return std::to_string(bytes / mib) + "MiB";
    if (bytes != 0 && bytes % kib == 0) return std::to_string(bytes / kib) + "KiB";
    return std::to_string(bytes) + "B";
  }

  static std::string show_duration(Millis value) {
    const auto ms = value.count();
    if (ms == 0) return "0s";
    if (ms % (one_day_seconds * 1000) == 0) return std::to_string(ms / (one_day_seconds * 1000)) + "d";
    if (ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
    if (ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
    if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
    return std::to_string(ms) + "ms";
  }

 private:
  static std::string size_range(std::uint64_t min, std::uint64_t max) { return show_size(min) + ".." + show_size(max); }

  // An integer in `integer_unit` (1000 = seconds) or a string with a unit.
  Millis duration_value(std::string_view key, const toml::node& node, std::string_view unit_name,
                        std::int64_t integer_unit) const {
    if (const auto* integer = node.as_integer()) {
      const std::int64_t v = integer->get();
      constexpr std::int64_t limit = std::numeric_limits<std::int64_t>::max() / 1000;
      if (v < 0 || v > limit)
        fail(node.source(), full_key(key) + ": " + std::to_string(v) + " " + std::string(unit_name) +
                                " is out of range (durations are not negative)");
      return Millis(v * integer_unit);
    }
    if (const auto* text = node.as_string()) {
      if (auto parsed = parse_duration(text->get())) return *parsed;
      fail(node.source(), full_key(key) + ": bad duration " + quoted(text->get()) + " (expected an integer number of " +
                              std::string(unit_name) + " or a string like \"250ms\", \"10s\", \"5m\", \"1h\", \"7d\")");
    }
    fail_type(key, node, "a duration (integer " + std::string(unit_name) + " or a string like \"10s\")");
  }

  const toml::table& table_;
  std::string path_;
  std::string_view source_;
  std::vector<std::string_view> known_;
};

bool valid_namespace_name(std::string_view name) {
  if (name.empty() || name.size() > 255) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.' || c == '$';
  });
}

bool printable_without_spaces(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// "*", or scheme://host[:port] with no path.
bool valid_origin(std::string_view origin) {
  if (origin == "*") return true;
  const auto scheme_end = origin.find("://");
  if (scheme_end == std::string_view::npos || scheme_end == 0) return false;
  const std::string_view authority = origin.substr(scheme_end + 3);
  return !authority.empty() && authority.find('/') == std::string_view::npos && printable_without_spaces(origin);
}

void read_origins(Section& section, std::string_view key, std::vector<std::string>& out) {
  section.read_strings(key, out);
  for (const std::string& origin : out) {
    if (valid_origin(origin)) continue;
    const toml::node* node = section.table().get(key);
    section.fail(node->source(), section.full_key(key) + ": " + quoted(origin) +
                                     " is not an origin (expected \"*\" or scheme://host[:port], e.g. "
                                     "\"https://example.com\", without a path or trailing slash)");
  }
}

void read_namespace(Section& s, NamespaceOptions& ns) {
  s.read_integer("history_size", ns.history_size, 0, 1'000'000);
  s.read_duration("history_ttl", ns.history_ttl, std::chrono::seconds(0), std::chrono::seconds(365 * one_day_seconds));
  s.read("recovery", ns.recovery);
  s.read("presence", ns.presence);
  s.read("join_leave", ns.join_leave);
  s.read("allow_publish", ns.allow_publish);
  s.read("allow_subscribe", ns.allow_subscribe);
  s.read("allow_anonymous", ns.allow_anonymous);
  s.finish();
}

void read_redis(Section& s, RedisConfig& r) {
  using std::chrono::seconds;
  s.read_strings("addresses", r.addresses);
  s.read("password", r.password);
  s.read_integer("db", r.db, 0, 1'000);
  s.read("prefix", r.prefix);
  s.read_integer("subscriber_connections", r.subscriber_connections, 1, 64);
  s.read_duration("connect_timeout", r.connect_timeout, Millis(10), Millis(600'000));
  s.read_duration("command_timeout", r.command_timeout, Millis(10), Millis(600'000));
  s.read_duration("reconnect_min", r.reconnect_min, Millis(1), Millis(600'000));
  s.read_duration("reconnect_max", r.reconnect_max, Millis(1), Millis(600'000));
  s.read_duration("presence_ttl", r.presence_ttl, seconds(3), seconds(one_day_seconds));
  s.read_duration("history_meta_ttl", r.history_meta_ttl, seconds(0), seconds(3650 * one_day_seconds));
  s.read_duration("node_ttl", r.node_ttl, seconds(2), seconds(3600));
  s.finish();
}

void read_server(Section& s, net::ServerOptions& server) {
  s.read("host", server.host);
  s.read_integer("port", server.port, 0, 65535);
  s.read_integer("threads", server.threads, 0, 256);
  s.read_integer("backlog", server.backlog, 1, 65535);
  s.read("reuse_port", server.reuse_port);
  s.read_integer("max_connections", server.max_connections, 1, 10'000'000);
  s.read_integer("max_connections_per_ip", server.max_connections_per_ip, 0, 10'000'000);
  s.read_size("max_send_buffer", server.max_send_buffer, 1 * kib, 1 * gib);
  if (auto policy = s.read_choice("backpressure", {"close", "drop"}))
    server.backpressure = *policy == 0 ? net::BackpressurePolicy::close : net::BackpressurePolicy::drop;
  s.read_size("read_buffer_size", server.read_buffer_size, 4 * kib, 64 * mib);

  if (auto http = s.section("http")) {
    http->read_size("max_line_bytes", server.http.max_line_bytes, 256, 1 * mib);
    http->read_integer("max_header_count", server.http.max_header_count, 8, 1024);
    http->read_size("max_head_bytes", server.http.max_head_bytes, 1 * kib, 4 * mib);
    http->finish();
  }
  if (auto websocket = s.section("websocket")) {
    websocket->read_size("max_frame_size", server.websocket.max_frame_size, 125, 1 * gib);
    websocket->read_size("max_message_size", server.websocket.max_message_size, 125, 1 * gib);
    websocket->finish();
  }
  if (auto timeouts = s.section("timeouts")) {
    auto& t = server.timeouts;
    const Millis day(one_day_seconds * 1000);
    timeouts->read_duration("handshake", t.handshake, Millis(1), Millis(3'600'000));
    timeouts->read_duration("ping_interval", t.ping_interval, Millis(0), day);
    timeouts->read_duration("pong_timeout", t.pong_timeout, Millis(1), day);
    timeouts->read_duration("idle", t.idle, Millis(0), 7 * day);
    timeouts->read_duration("close", t.close, Millis(1), Millis(3'600'000));
    timeouts->finish();
  }
  if (auto tls = s.section("tls")) {
    tls->read("cert_file", server.tls.cert_file);
    tls->read("key_file", server.tls.key_file);
    tls->read_choice("min_version", server.tls.min_version, {"1.2", "1.3"});
    tls->read("ciphers", server.tls.ciphers);
    tls->finish();
  }
  if (auto deflate = s.section("deflate")) {
    auto& d = server.deflate;
    if (auto mode = deflate->read_choice("mode", {"off", "shared", "dedicated"}))
      d.mode = *mode == 0 ? net::DeflateMode::off : *mode == 1 ? net::DeflateMode::shared : net::DeflateMode::dedicated;
    deflate->read_integer("server_max_window_bits", d.server_max_window_bits, 8, 15);
    deflate->read_integer("client_max_window_bits", d.client_max_window_bits, 8, 15);
    deflate->read("client_no_context_takeover", d.client_no_context_takeover);
    deflate->read_integer("level", d.tuning.level, 0, 9);
    deflate->read_integer("mem_level", d.tuning.mem_level, 1, 9);
    deflate->read_size("min_size", d.tuning.min_size, 0, 1 * gib);
    deflate->finish();
  }
  s.finish();
}

void read_limits(Section& s, HubLimits& l) {
  using std::chrono::seconds;
  s.read_size("max_command_bytes", l.max_command_bytes, 1 * kib, 64 * mib);
  s.read_integer("max_json_depth", l.max_json_depth, 1, 256);
  s.read_size("max_data_bytes", l.max_data_bytes, 1, 64 * mib);
  s.read_integer("max_subscriptions", l.max_subscriptions, 1, 1'000'000);
  s.read_integer("max_channels", l.max_channels, 1, 100'000'000);
  s.read_integer("max_channel_length", l.max_channel_length, 1, 255);
  s.read_integer("max_history_size", l.max_history_size, 0, 1'000'000);
  s.read_number("publish_rate", l.publish_rate, 0.001, 1e6);
  s.read_number("publish_burst", l.publish_burst, 1, 1e6);
  s.read_integer("rate_violations_before_disconnect", l.rate_violations_before_disconnect, 1, 1'000'000);
  s.read_duration("idempotency_window", l.idempotency_window, seconds(0), seconds(7 * one_day_seconds));
  s.read_integer("max_idempotency_key", l.max_idempotency_key, 1, 1024);
  s.finish();
}

std::string namespace_label(std::string_view name) {
  return name.empty() ? "[namespace_defaults]" : "[namespaces." + std::string(name) + "]";
}

void check_namespace(std::string_view name, const NamespaceOptions& ns, const HubLimits& limits,
                     std::vector<std::string>& problems) {
  const std::string label = namespace_label(name);
  if (ns.join_leave && !ns.presence) problems.push_back(label + " join_leave = true needs presence = true");
  if (ns.recovery && ns.history_size == 0)
    problems.push_back(label + " recovery = true needs history_size > 0 (recovery replays history)");
  if (ns.history_ttl.count() > 0 && ns.history_size == 0)
    problems.push_back(label + " history_ttl is set but history_size = 0 keeps no history");
  if (ns.history_size > limits.max_history_size)
    problems.push_back(label + " history_size = " + std::to_string(ns.history_size) +
                       " exceeds limits.max_history_size = " + std::to_string(limits.max_history_size));
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  constexpr std::int64_t max_ms = std::numeric_limits<std::int64_t>::max() / 4;
  std::int64_t total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    std::int64_t number = 0;
    const std::size_t digits_start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (number > max_ms / 10) return std::nullopt;
      number = number * 10 + (text[i] - '0');
      ++i;
    }
    if (i == digits_start) return std::nullopt;
    const std::size_t unit_start = i;
    while (i < text.size() && ((text[i] >= 'a' && text[i] <= 'z') || (text[i] >= 'A' && text[i] <= 'Z'))) ++i;
    const std::string_view unit = text.substr(unit_start, i - unit_start);
    std::int64_t scale = 0;
    if (unit == "ms") scale = 1;
    else if (unit == "s") scale = 1000;
    else if (unit == "m") scale = 60'000;
    else if (unit == "h") scale = 3'600'000;
    else if (unit == "d") scale = one_day_seconds * 1000;
    else return std::nullopt;
    if (number > (max_ms - total) / scale) return std::nullopt;
    total += number * scale;
  }
  return std::chrono::milliseconds(total);
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
  std::size_t i = 0;
  std::uint64_t number = 0;
  constexpr std::uint64_t max_bytes = std::uint64_t{1} << 62;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    if (number > max_bytes / 10) return std::nullopt;
    number = number * 10 + static_cast<std::uint64_t>(text[i] - '0');
    ++i;
  }
  if (i == 0) return std::nullopt;
  if (i < text.size() && text[i] == ' ') ++i;  // "64 KiB" reads naturally too
  const std::string_view unit = text.substr(i);
  std::uint64_t scale = 0;
  if (unit == "B") scale = 1;
  else if (unit == "KiB") scale = kib;
  else if (unit == "MiB") scale = mib;
  else if (unit == "GiB") scale = gib;
  else return std::nullopt;
  if (number > max_bytes / scale) return std::nullopt;
  return number * scale;
}

HubConfig parse_config(std::string_view toml_text, std::string_view source_name) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& error) {
    const auto& begin = error.source().begin;
    throw std::runtime_error(std::string(source_name) + ':' + std::to_string(begin.line) + ':' +
                             std::to_string(begin.column) + ": " + std::string(error.description()));
  }

  HubConfig config;
  Section top(root, "", source_name);
  top.read("node_name", config.node_name);
  if (config.node_name.size() > 64 || !printable_without_spaces(config.node_name))
    top.fail(root.get("node_name")->source(),
             "node_name: " + quoted(config.node_name) + " must be at most 64 printable characters without spaces");
  top.read_duration("stats_interval", config.stats_interval, std::chrono::seconds(0),
                    std::chrono::seconds(one_day_seconds));
  top.read("namespaces_strict", config.namespaces_strict);

  if (auto server = top.section("server")) read_server(*server, config.server);
  if (auto auth = top.section("auth")) {
    using std::chrono::seconds;
    auth->read("hmac_secret", config.auth.hmac_secret);
    auth->read("public_key_file", config.auth.public_key_file);
    auth->read("allow_anonymous", config.auth.allow_anonymous);
    auth->read_duration("auth_timeout", config.auth.auth_timeout, seconds(1), seconds(3600));
    auth->read_duration("refresh_before", config.auth.refresh_before, seconds(0), seconds(one_day_seconds));
    read_origins(*auth, "allowed_origins", config.auth.allowed_origins);
    auth->finish();
  }
  if (auto api = top.section("api")) {
    api->read("key", config.api.key);
    api->finish();
  }
  if (auto engine = top.section("engine")) {
    engine->read_choice("type", config.engine.type, {"sqlite", "memory", "redis", "nats"});
    engine->read("data_dir", config.engine.data_dir);
    engine->read("fsync", config.engine.fsync);
    engine->read_integer("max_batch", config.engine.max_batch, 1, 100'000);
    if (auto redis = engine->section("redis")) read_redis(*redis, config.engine.redis);
    if (auto nats = engine->section("nats")) {
      auto& n = config.engine.nats;
      nats->read("url", n.url);
      nats->read("subject_prefix", n.subject_prefix);
      nats->read_duration("reorder_window", n.reorder_window, Millis(1), Millis(60'000));
      nats->read_integer("max_held", n.max_held, 1, 10'000'000);
      nats->finish();
    }
    engine->finish();
  }
  if (auto limits = top.section("limits")) read_limits(*limits, config.limits);
  if (auto log_section = top.section("log")) {
    log_section->read_choice("level", config.log.level, {"trace", "debug", "info", "warn", "error"});
    log_section->read_choice("format", config.log.format, {"text", "json"});
    log_section->finish();
  }
  if (auto web = top.section("web")) {
    web->read("root", config.web.root);
    web->read("demo_tokens", config.web.demo_tokens);
    web->read_duration("demo_token_ttl", config.web.demo_token_ttl, std::chrono::seconds(1),
                       std::chrono::seconds(30 * one_day_seconds));
    read_origins(*web, "cors_origins", config.web.cors_origins);
    web->finish();
  }
  if (auto fallback = top.section("fallback")) {
    auto& f = config.fallback;
    fallback->read_integer("max_sessions", f.max_sessions, 0, 1'000'000);
    fallback->read_integer("max_buffer_events", f.max_buffer_events, 1, 1'000'000);
    fallback->read_integer("max_commands_per_request", f.max_commands_per_request, 1, 10'000);
    fallback->read_duration("sse_heartbeat", f.sse_heartbeat, Millis(100), Millis(3'600'000));
    fallback->read_duration("sse_grace", f.sse_grace, Millis(0), Millis(3'600'000));
    fallback->read_duration("poll_wait", f.poll_wait, Millis(0), Millis(600'000));
    fallback->read_duration("poll_idle", f.poll_idle, Millis(1000), Millis(3'600'000));
    fallback->read_duration("post_reply_timeout", f.post_reply_timeout, Millis(10), Millis(600'000));
    fallback->finish();
  }
  if (auto defaults = top.section("namespace_defaults")) read_namespace(*defaults, config.namespace_defaults);
  if (auto namespaces = top.section("namespaces")) {
    for (auto&& [key, node] : namespaces->table()) {
      const std::string name(key.str());
      const auto& where = key.source().begin.line != 0 ? key.source() : node.source();
      if (!valid_namespace_name(name))
        namespaces->fail(where, "namespace name " + quoted(name) +
                                    " is not valid (letters, digits, '_', '-', '.', '$'; "
                                    "use [namespace_defaults] for channels without a namespace)");
      const auto* table = node.as_table();
      if (!table) namespaces->fail_type(name, node, "a table ([namespaces." + name + "])");
      // A listed namespace starts from the built-in defaults, not from
      // [namespace_defaults]: each [namespaces.X] reads complete on its own.
      NamespaceOptions options;
      Section section(*table, "namespaces." + name, source_name);
      read_namespace(section, options);
      config.namespaces[name] = options;
    }
  }
  top.finish();
  return config;
}

void apply_env_overrides(HubConfig& config) {
  if (const char* secret = std::getenv("DUPLEX_HMAC_SECRET"); secret && *secret) config.auth.hmac_secret = secret;
  if (const char* key = std::getenv("DUPLEX_API_KEY"); key && *key) config.api.key = key;
  if (const char* pw = std::getenv("DUPLEX_REDIS_PASSWORD"); pw && *pw) config.engine.redis.password = pw;
}

std::vector<std::string> config_problems(const HubConfig& config) {
  std::vector<std::string> problems;
  check_namespace("", config.namespace_defaults, config.limits, problems);
  for (const auto& [name, options] : config.namespaces) {
    if (!valid_namespace_name(name)) problems.push_back("namespace name " + quoted(name) + " is not valid");
    check_namespace(name, options, config.limits, problems);
  }
  const auto& tls = config.server.tls;
  if (!tls.cert_file.empty() && tls.key_file.empty())
    problems.push_back("[server.tls] cert_file is set but key_file is not");
  if (tls.cert_file.empty() && !tls.key_file.empty())
    problems.push_back("[server.tls] key_file is set but cert_file is not");
  if (tls.min_version != "1.2" && tls.min_version != "1.3")
    problems.push_back("[server.tls] min_version must be \"1.2\" or \"1.3\", not " + quoted(tls.min_version));
  if (config.server.threads > 256)
    problems.push_back("server.threads = " + std::to_string(config.server.threads) + " is above 256");
  if (config.server.http.max_line_bytes > config.server.http.max_head_bytes)
    problems.push_back("[server.http] max_line_bytes exceeds max_head_bytes");
  const std::string& type = config.engine.type;
  if (type != "sqlite" && type != "memory" && type != "redis" && type != "nats")
    problems.push_back("engine.type must be \"sqlite\", \"memory\", \"redis\" or \"nats\", not " + quoted(type));
  if (type == "redis" || type == "nats") {
    const auto& r = config.engine.redis;
    if (r.addresses.empty()) problems.push_back("[engine.redis] addresses must list at least one host:port");
    for (const auto& a : r.addresses) {
      const auto colon = a.rfind(':');
      const bool ok = colon != std::string::npos && colon > 0 && colon + 1 < a.size() &&
                      a.find_first_not_of("0123456789", colon + 1) == std::string::npos && a.size() - colon - 1 <= 5;
      if (!ok) problems.push_back("[engine.redis] address " + quoted(a) + " is not host:port");
    }
    if (r.reconnect_min > r.reconnect_max) problems.push_back("[engine.redis] reconnect_min exceeds reconnect_max");
    if (r.prefix.empty() || !printable_without_spaces(r.prefix))
      problems.push_back("[engine.redis] prefix must be printable characters without spaces");
  }
  if (type == "nats") {
    if (config.engine.nats.url.rfind("nats://", 0) != 0)
      problems.push_back("[engine.nats] url must start with nats://, not " + quoted(config.engine.nats.url));
    if (config.engine.nats.subject_prefix.empty() || !printable_without_spaces(config.engine.nats.subject_prefix) ||
        config.engine.nats.subject_prefix.find_first_of("*>") != std::string::npos)
      problems.push_back("[engine.nats] subject_prefix must be printable characters without spaces, '*' or '>'");
  }
  if (config.engine.type == "sqlite" && config.engine.data_dir.empty())
    problems.push_back("engine.data_dir must not be empty with the sqlite engine");
  if (config.fallback.poll_idle <= config.fallback.poll_wait)
    problems.push_back("[fallback] poll_idle must be longer than poll_wait (a waiting poll would expire its session)");
  if (!log::parse_level(config.log.level))
    problems.push_back("log.level must be trace, debug, info, warn or error, not " + quoted(config.log.level));
  if (!log::parse_format(config.log.format))
    problems.push_back("log.format must be text or json, not " + quoted(config.log.format));
  if (config.web.demo_tokens && config.auth.hmac_secret.empty())
    problems.push_back("web.demo_tokens = true needs auth.hmac_secret (demo tokens are signed with HS256)");
  return problems;
}

void validate_config(const HubConfig& config) {
  const auto problems = config_problems(config);
  if (problems.empty()) return;
  std::string message = "invalid configuration: ";
  for (std::size_t i = 0; i < problems.size(); ++i) {
    if (i) message += "; ";
    message += problems[i];
  }
  throw std::runtime_error(message);
}

std::vector<std::string> file_problems(const HubConfig& config) {
  std::vector<std::string> problems;
  auto check = [&](const char* key, const std::string& file) {
    if (file.empty()) return;
    errno = 0;
    std::ifstream in(file, std::ios::binary);
    if (in) return;
    const int error = errno;
    problems.push_back(std::string(key) + " = " + quoted(file) + ": cannot read it: " +
                       (error ? std::strerror(error) : "cannot open"));
  };
  check("server.tls.cert_file", config.server.tls.cert_file);
  check("server.tls.key_file", config.server.tls.key_file);
  check("auth.public_key_file", config.auth.public_key_file);
  return problems;
}

HubConfig load_config_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error("cannot read config file " + path + ": " + std::strerror(errno));
  std::string text;
  char buffer[8192];
  while (file.read(buffer, sizeof buffer) || file.gcount() > 0) {
    text.append(buffer, static_cast<std::size_t>(file.gcount()));
    if (text.size() > max_config_file_bytes)
      throw std::runtime_error("config file " + path + " is larger than 1 MiB");
  }
  if (file.bad()) throw std::runtime_error("cannot read config file " + path);
  HubConfig config = parse_config(text, path);
  apply_env_overrides(config);
  try {
    validate_config(config);
  } catch (const std::runtime_error& error) {
    throw std::runtime_error(path + ": " + error.what());
  }
  const auto missing = file_problems(config);
  if (!missing.empty()) {
    std::string message = path + ": ";
    for (std::size_t i = 0; i < missing.size(); ++i) message += (i ? "; " : "") + missing[i];
    throw std::runtime_error(message);
  }
  return config;
}

}  // namespace duplex::hub
