#include "duplex/config/config_file.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <toml++/toml.h>
#include <type_traits>
#include <variant>

#include "config_fields.hpp"
#include "duplex/config/engine_composition.hpp"
#include "support/log.hpp"
#include "duplex/net/tls.hpp"

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
  std::optional<std::size_t> read_choice(std::string_view key, const std::vector<std::string_view>& choices) {
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

  void read_choice(std::string_view key, std::string& out, const std::vector<std::string_view>& choices) {
    if (auto index = read_choice(key, choices)) out = std::string(choices[*index]);
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

// One row of config_fields: the reader its kind and member type call for.
template <class Root>
void read_field(Section& s, const config_fields::Field<Root>& field, Root& root) {
  using config_fields::Kind;
  const std::string_view key = field.leaf();
  const auto min = static_cast<std::int64_t>(field.min), max = static_cast<std::int64_t>(field.max);
  std::visit(
      [&](auto* p) {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, bool>) {
          s.read(key, *p);
        } else if constexpr (std::is_same_v<T, std::string>) {
          if (field.kind == Kind::choice)
            s.read_choice(key, *p, field.choices);
          else
            s.read(key, *p);
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          if (field.kind == Kind::origins)
            read_origins(s, key, *p);
          else
            s.read_strings(key, *p);
        } else if constexpr (std::is_enum_v<T>) {
          if (auto index = s.read_choice(key, field.choices)) *p = static_cast<T>(*index);
        } else if constexpr (std::is_same_v<T, double>) {
          s.read_number(key, *p, field.min, field.max);
        } else if constexpr (std::is_same_v<T, std::chrono::seconds>) {
          s.read_duration(key, *p, std::chrono::seconds(min), std::chrono::seconds(max));
        } else if constexpr (std::is_same_v<T, Millis>) {
          s.read_duration(key, *p, Millis(min), Millis(max));
        } else {
          static_assert(std::is_integral_v<T>);
          if constexpr (std::is_same_v<T, std::size_t>) {
            if (field.kind == Kind::size) {
              s.read_size(key, *p, static_cast<std::uint64_t>(min), static_cast<std::uint64_t>(max));
              return;
            }
          }
          s.read_integer(key, *p, min, max);
        }
      },
      field.get(root));
}

// Reads every row of `table` in the section at `path` (and its subsections,
// in table order), then rejects the keys of `s` no row names.
template <class Root>
void read_fields(Section& s, const std::string& path, const std::vector<config_fields::Field<Root>>& table,
                 Root& root, bool finish = true) {
  std::vector<std::string_view> children;
  for (const auto& field : table) {
    const std::string_view section = field.section();
    if (section == path) {
      read_field(s, field, root);
      continue;
    }
    std::string_view rest = section;
    if (!path.empty()) {
      if (!(section.size() > path.size() && section.starts_with(path) && section[path.size()] == '.')) continue;
      rest = section.substr(path.size() + 1);
    }
    const std::string_view child = rest.substr(0, rest.find('.'));
    if (std::find(children.begin(), children.end(), child) == children.end()) children.push_back(child);
  }
  for (std::string_view child : children) {
    if (auto sub = s.section(child))
      read_fields(*sub, path.empty() ? std::string(child) : path + '.' + std::string(child), table, root);
  }
  if (finish) s.finish();
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

// engine.broker and engine.history name the engine by its parts. A file that
// also sets engine.type (or engine.nats.storage, for a NATS engine) must
// agree with them: two different answers are an error, not a precedence rule.
void reject_two_engine_choices(const toml::table& root, const Section& top, const HubConfig& config) {
  const auto& engine = config.engine;
  const auto result = compose_engine(engine.broker, engine.history);
  if (!result.composition) return;  // nothing set, or a pair load_config_file refuses
  std::string named;
  if (!engine.broker.empty()) named = "engine.broker = " + quoted(engine.broker);
  if (!engine.history.empty()) named += (named.empty() ? "" : " with ") + ("engine.history = " + quoted(engine.history));
  auto check = [&](const char* path, const std::string& value, const std::string& composed) {
    const toml::node* node = root.at_path(path).node();
    if (!node || value == composed) return;
    top.fail(node->source(), std::string(path) + " = " + quoted(value) + " contradicts " + named + " (" + path +
                                 " " + quoted(composed) + "): remove " + path);
  };
  check("engine.type", engine.type, result.composition->type);
  if (result.composition->type == "nats") check("engine.nats.storage", engine.nats.storage, result.composition->nats_storage);
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
  read_fields(top, "", config_fields::fields(), config, /*finish=*/false);
  if (config.node_name.size() > 64 || !printable_without_spaces(config.node_name))
    top.fail(root.get("node_name")->source(),
             "node_name: " + quoted(config.node_name) + " must be at most 64 printable characters without spaces");
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
      read_fields(section, "", config_fields::namespace_fields(), options);
      config.namespaces[name] = options;
    }
  }
  top.finish();
  reject_two_engine_choices(root, top, config);
  return config;
}

void apply_env_overrides(HubConfig& config) {
  if (const char* secret = std::getenv("DUPLEX_HMAC_SECRET"); secret && *secret) config.auth.hmac_secret = secret;
  if (const char* key = std::getenv("DUPLEX_API_KEY"); key && *key) config.api.key = key;
  if (const char* pw = std::getenv("DUPLEX_REDIS_PASSWORD"); pw && *pw) config.engine.redis.password = pw;
  if (const char* pw = std::getenv("DUPLEX_REDIS_SENTINEL_PASSWORD"); pw && *pw)
    config.engine.redis.sentinel_password = pw;
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
  if (!config.server.ring_buffers.count_valid())
    problems.push_back("[server] io_uring_buffers must be " + net::RingBuffers::count_rule() + ", not " +
                       std::to_string(config.server.ring_buffers.count));
  const std::string& type = config.engine.type;
  if (type != "sqlite" && type != "memory" && type != "redis" && type != "nats")
    problems.push_back("engine.type must be \"sqlite\", \"memory\", \"redis\" or \"nats\", not " + quoted(type));
  if (type == "redis" || type == "nats") {
    const auto& r = config.engine.redis;
    auto host_port = [](const std::string& a) {
      const auto colon = a.rfind(':');
      return colon != std::string::npos && colon > 0 && colon + 1 < a.size() &&
             a.find_first_not_of("0123456789", colon + 1) == std::string::npos && a.size() - colon - 1 <= 5;
    };
    if (r.sentinels.empty()) {
      if (r.addresses.empty()) problems.push_back("[engine.redis] addresses must list at least one host:port");
      for (const auto& a : r.addresses) {
        if (!host_port(a)) problems.push_back("[engine.redis] address " + quoted(a) + " is not host:port");
      }
      if (!r.sentinel_master.empty()) problems.push_back("[engine.redis] sentinel_master is set but sentinels is empty");
    } else {
      // The sentinels name one master: sharding over addresses does not combine with it.
      if (!r.addresses.empty() && r.addresses != engines::RedisConfig{}.addresses)
        problems.push_back("[engine.redis] sentinels and addresses exclude each other (with sentinels the master is "
                           "discovered; remove addresses)");
      for (const auto& a : r.sentinels) {
        if (!host_port(a)) problems.push_back("[engine.redis] sentinel " + quoted(a) + " is not host:port");
      }
      if (r.sentinels.size() > 16) problems.push_back("[engine.redis] sentinels lists more than 16 sentinels");
      if (r.sentinel_master.empty() || !printable_without_spaces(r.sentinel_master))
        problems.push_back("[engine.redis] sentinels is set: sentinel_master must name the monitored master "
                           "(printable characters without spaces)");
    }
    if (r.cluster && !r.sentinels.empty())
      problems.push_back("[engine.redis] cluster and sentinels exclude each other (a Redis Cluster fails over by "
                         "itself; list its nodes in addresses)");
    if (r.cluster && r.db != 0)
      problems.push_back("[engine.redis] cluster needs db = 0 (a Redis Cluster has only database 0)");
    if (r.wait_replicas > 0 && r.wait_timeout >= r.command_timeout)
      problems.push_back("[engine.redis] wait_timeout must be shorter than command_timeout (WAIT blocks the "
                         "connection that long)");
    if (r.reconnect_min > r.reconnect_max) problems.push_back("[engine.redis] reconnect_min exceeds reconnect_max");
    if (r.pubsub_ping_interval.count() > 0 && r.pubsub_ping_interval < std::chrono::milliseconds(100))
      problems.push_back("[engine.redis] pubsub_ping_interval must be 0 (off) or at least 100ms");
    if (!r.username.empty() && r.password.empty())
      problems.push_back("[engine.redis] username is set but password is not (AUTH with a user needs its password)");
    if (r.prefix.empty() || !printable_without_spaces(r.prefix))
      problems.push_back("[engine.redis] prefix must be printable characters without spaces");
    if (r.tls_cert.empty() != r.tls_key.empty())
      problems.push_back(std::string("[engine.redis] ") + (r.tls_key.empty() ? "tls_cert" : "tls_key") + " is set but " +
                         (r.tls_key.empty() ? "tls_key" : "tls_cert") + " is not (a client certificate needs its key)");
    if (!r.tls && (!r.tls_ca.empty() || !r.tls_cert.empty() || !r.tls_key.empty() || !r.tls_server_name.empty()))
      problems.push_back("[engine.redis] tls_ca, tls_cert, tls_key or tls_server_name is set but tls is false");
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
  const auto& redis = config.engine.redis;
  const bool redis_tls = (config.engine.type == "redis" || config.engine.type == "nats") && redis.tls;
  if (redis_tls) {
    check("engine.redis.tls_ca", redis.tls_ca);
    check("engine.redis.tls_cert", redis.tls_cert);
    check("engine.redis.tls_key", redis.tls_key);
  }
  if (problems.empty() && !config.server.tls.cert_file.empty() && !config.server.tls.key_file.empty()) {
    // Readable is not usable: what OpenSSL would refuse at start, named by its key.
    if (auto problem = net::check_server_tls_files(config.server.tls)) {
      const bool cert = problem->file == net::TlsFileProblem::File::cert;
      problems.push_back(std::string(cert ? "server.tls.cert_file" : "server.tls.key_file") + " = " +
                         quoted(cert ? config.server.tls.cert_file : config.server.tls.key_file) + ": " + problem->what);
    }
  }
  if (problems.empty() && redis_tls) {
    if (!redis.tls_ca.empty()) {
      if (auto problem = net::check_ca_file(redis.tls_ca))
        problems.push_back("engine.redis.tls_ca = " + quoted(redis.tls_ca) + ": " + *problem);
    }
    if (!redis.tls_cert.empty() && !redis.tls_key.empty()) {
      // A client certificate loads like a server's: the same checks and words.
      net::TlsOptions client;
      client.cert_file = redis.tls_cert;
      client.key_file = redis.tls_key;
      if (auto problem = net::check_server_tls_files(client)) {
        const bool cert = problem->file == net::TlsFileProblem::File::cert;
        problems.push_back(std::string(cert ? "engine.redis.tls_cert" : "engine.redis.tls_key") + " = " +
                           quoted(cert ? redis.tls_cert : redis.tls_key) + ": " + problem->what);
      }
    }
  }
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
    if (auto problem = apply_engine_composition(config.engine)) throw std::runtime_error(*problem);
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
