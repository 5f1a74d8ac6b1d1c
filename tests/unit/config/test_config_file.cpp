#include "duplex/config/config_file.hpp"

#include "config/config_fields.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>

using namespace duplex;
using namespace std::chrono_literals;
using hub::HubConfig;
using hub::parse_config;

namespace {

std::filesystem::path repo_root() { return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().parent_path(); }

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The message parse_config throws for `text` (fails the test if it does not throw).
std::string parse_error(std::string_view text) {
  try {
    parse_config(text, "t.toml");
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for:\n" << text;
  return {};
}

// A temporary file removed at the end of the test.
class TempFile {
 public:
  explicit TempFile(std::string_view content) {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("duplex-config-test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) + ".toml");
    std::ofstream(path_, std::ios::binary) << content;
  }
  ~TempFile() { std::filesystem::remove(path_); }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// Environment variables that must not leak between tests.
class ScopedEnvClear {
 public:
  ScopedEnvClear() { clear(); }
  ~ScopedEnvClear() { clear(); }

 private:
  static void clear() {
    ::unsetenv("DUPLEX_HMAC_SECRET");
    ::unsetenv("DUPLEX_API_KEY");
  }
};

namespace fields = hub::config_fields;

// Every row of the config field table, so the reference file cannot drift
// from the structs.
void expect_same(const HubConfig& a, const HubConfig& b) {
  for (const auto& field : fields::fields())
    EXPECT_TRUE(fields::equal(field, a, b))
        << field.key << ": " << fields::toml_value(field, a) << " vs " << fields::toml_value(field, b);
  ASSERT_EQ(a.namespaces.size(), b.namespaces.size());
  for (const auto& [name, options] : a.namespaces) {
    ASSERT_TRUE(b.namespaces.count(name)) << name;
    for (const auto& field : fields::namespace_fields())
      EXPECT_TRUE(fields::equal(field, options, b.namespaces.at(name))) << "namespaces." << name << "." << field.key;
  }
}

// "missing: a, b; extra: c" between what a file lists and the table.
std::string key_difference(const std::set<std::string>& listed, const std::set<std::string>& table) {
  std::string missing, extra;
  for (const auto& key : table)
    if (!listed.count(key)) missing += (missing.empty() ? "" : ", ") + key;
  for (const auto& key : listed)
    if (!table.count(key)) extra += (extra.empty() ? "" : ", ") + key;
  return "missing: " + (missing.empty() ? "none" : missing) + "; not in the table: " + (extra.empty() ? "none" : extra);
}

std::set<std::string> table_keys() {
  std::set<std::string> keys;
  for (const auto& field : fields::fields()) keys.insert(field.key);
  return keys;
}

// The TOML file setting `key` (a table path) to `value`.
std::string toml_setting(std::string_view key, const std::string& value) {
  const auto dot = key.rfind('.');
  if (dot == std::string_view::npos) return std::string(key) + " = " + value + "\n";
  return "[" + std::string(key.substr(0, dot)) + "]\n" + std::string(key.substr(dot + 1)) + " = " + value + "\n";
}

// A value for the field other than its default, as TOML (a bound, another
// choice, a flipped boolean, ...).
std::string other_value(const fields::ConfigField& field) {
  const HubConfig defaults;
  const std::string shown = fields::toml_value(field, defaults);
  auto integer = [](double v) { return std::to_string(static_cast<std::int64_t>(v)); };
  switch (field.kind) {
    case fields::Kind::boolean: return shown == "true" ? "false" : "true";
    case fields::Kind::string: return "\"other-value\"";
    case fields::Kind::strings: return "[\"127.0.0.1:1\", \"127.0.0.1:2\"]";
    case fields::Kind::origins: return "[\"https://example.com\"]";
    case fields::Kind::choice:
      for (std::string_view choice : field.choices)
        if ("\"" + std::string(choice) + "\"" != shown) return "\"" + std::string(choice) + "\"";
      break;
    case fields::Kind::number: {
      std::ostringstream out;
      out << field.max;
      return out.str();
    }
    case fields::Kind::integer:
    case fields::Kind::size:
    case fields::Kind::seconds:
    case fields::Kind::millis: {
      // An integer is bytes, seconds or milliseconds by kind: the same unit as the bounds.
      const HubConfig with_max = parse_config(toml_setting(field.key, integer(field.max)), "t.toml");
      return fields::equal(field, with_max, defaults) ? integer(field.min) : integer(field.max);
    }
  }
  ADD_FAILURE() << field.key << ": no other value";
  return shown;
}

// The documented default of every key of the docs/CONFIG.md tables under
// "## `[section]`" (and "## Top level", "## Namespaces" = namespace_defaults).
std::map<std::string, std::string> documented_defaults(const std::string& markdown) {
  std::map<std::string, std::string> out;
  std::istringstream lines(markdown);
  std::string line;
  std::optional<std::string> section;
  const std::regex heading(R"(^#+ (.*))");
  const std::regex config_heading(R"(^#+ `\[([a-z_.]+)\]`)");
  const std::regex row(R"(^\| `([a-z_]+)` \| [^|]* \| (`[^`]*`) \|)");
  std::smatch match;
  while (std::getline(lines, line)) {
    if (std::regex_search(line, match, config_heading))
      section = match[1];
    else if (line == "## Top level")
      section = "";
    else if (line == "## Namespaces")
      section = "namespace_defaults";
    else if (std::regex_search(line, match, heading))
      section.reset();
    else if (section && std::regex_search(line, match, row)) {
      const std::string cell = match[2];
      out[section->empty() ? std::string(match[1]) : *section + "." + std::string(match[1])] =
          cell.substr(1, cell.size() - 2);
    }
  }
  return out;
}

// Aggregate member count (the members a braced initializer can take), so a
// struct member added without a table row fails ConfigFields.EveryMemberHasARow.
struct AnyMember {
  template <class T>
  operator T() const;  // never defined: only used unevaluated
};
template <class T, class... Members>
constexpr std::size_t member_count() {
  if constexpr (requires { T{Members{}..., AnyMember{}}; })
    return member_count<T, Members..., AnyMember>();
  else
    return sizeof...(Members);
}

std::size_t rows_in(std::string_view section) {
  return static_cast<std::size_t>(std::count_if(fields::fields().begin(), fields::fields().end(),
                                                [&](const auto& field) { return field.section() == section; }));
}

// "section.key" for every uncommented `key = value` line of a TOML file.
std::set<std::string> keys_in(const std::string& text) {
  std::set<std::string> keys;
  std::istringstream lines(text);
  std::string line, section;
  const std::regex header(R"(^\[([A-Za-z0-9_.]+)\])");
  const std::regex assignment(R"(^([A-Za-z0-9_]+)\s*=)");
  std::smatch match;
  while (std::getline(lines, line)) {
    if (std::regex_search(line, match, header))
      section = match[1];
    else if (std::regex_search(line, match, assignment))
      keys.insert(section.empty() ? std::string(match[1]) : section + "." + std::string(match[1]));
  }
  return keys;
}

}  // namespace

// ---- the shipped files -------------------------------------------------------

TEST(ConfigFile, ReferenceFileEqualsTheBuiltInDefaults) {
  const std::string text = read_text(repo_root() / "config" / "duplex.toml");
  ASSERT_FALSE(text.empty());
  expect_same(parse_config(text, "duplex.toml"), HubConfig{});
  EXPECT_NO_THROW(hub::validate_config(HubConfig{}));
}

TEST(ConfigFile, ReferenceFileListsEveryOption) {
  // Every row of the table, and nothing else, is set in the reference file...
  const auto in_file = keys_in(read_text(repo_root() / "config" / "duplex.toml"));
  EXPECT_EQ(in_file, table_keys()) << "config/duplex.toml: " << key_difference(in_file, table_keys());
  // ... and has a row in a table of docs/CONFIG.md whose default is the built-in one.
  const auto documented = documented_defaults(read_text(repo_root() / "docs" / "CONFIG.md"));
  std::set<std::string> documented_keys;
  for (const auto& [key, value] : documented) documented_keys.insert(key);
  EXPECT_EQ(documented_keys, table_keys()) << "docs/CONFIG.md tables: " << key_difference(documented_keys, table_keys());
  const HubConfig defaults;
  for (const auto& field : fields::fields()) {
    auto it = documented.find(field.key);
    if (it == documented.end()) continue;
    SCOPED_TRACE(field.key + " = " + it->second + " in docs/CONFIG.md");
    HubConfig parsed;
    try {
      parsed = parse_config(toml_setting(field.key, it->second), "CONFIG.md");
    } catch (const std::runtime_error& e) {
      ADD_FAILURE() << e.what();
      continue;
    }
    EXPECT_TRUE(fields::equal(field, parsed, defaults)) << "the built-in default is " << fields::toml_value(field, defaults);
  }
}

// ---- the field table -----------------------------------------------------------

TEST(ConfigFields, RowsAreWellFormed) {
  std::set<std::string> keys;
  const HubConfig defaults;
  for (const auto& field : fields::fields()) {
    SCOPED_TRACE(field.key);
    EXPECT_TRUE(keys.insert(field.key).second) << "two rows";
    EXPECT_TRUE(fields::kind_fits(field.kind, field.get(defaults)));
    EXPECT_FALSE(field.doc.empty());
    EXPECT_EQ(field.kind == fields::Kind::choice, !field.choices.empty());
    const bool bounded = field.kind == fields::Kind::integer || field.kind == fields::Kind::number ||
                         field.kind == fields::Kind::size || field.kind == fields::Kind::seconds ||
                         field.kind == fields::Kind::millis;
    if (bounded) {
      EXPECT_LT(field.min, field.max);
    }
    // The default reads back as itself (so it is within the bounds and a valid choice).
    const std::string shown = fields::toml_value(field, defaults);
    EXPECT_TRUE(fields::equal(field, parse_config(toml_setting(field.key, shown), "t.toml"), defaults)) << shown;
  }
  EXPECT_EQ(rows_in("namespace_defaults"), fields::namespace_fields().size());
}

// Each key is read into its own member and only that one.
TEST(ConfigFields, EachKeySetsItsMemberOnly) {
  const HubConfig defaults;
  for (const auto& field : fields::fields()) {
    const std::string value = other_value(field);
    SCOPED_TRACE(field.key + " = " + value);
    const HubConfig parsed = parse_config(toml_setting(field.key, value), "t.toml");
    EXPECT_FALSE(fields::equal(field, parsed, defaults));
    for (const auto& other : fields::fields()) {
      if (&other != &field) {
        EXPECT_TRUE(fields::equal(other, parsed, defaults)) << other.key << " changed too";
      }
    }
  }
  // [namespaces.<name>] reads the same rows.
  for (const auto& field : fields::namespace_fields()) {
    const auto row = std::find_if(fields::fields().begin(), fields::fields().end(),
                                  [&](const auto& f) { return f.key == "namespace_defaults." + field.key; });
    ASSERT_NE(row, fields::fields().end()) << field.key;
    const HubConfig parsed = parse_config("[namespaces.x]\n" + field.key + " = " + other_value(*row) + "\n", "t.toml");
    ASSERT_TRUE(parsed.namespaces.count("x"));
    EXPECT_FALSE(fields::equal(field, parsed.namespaces.at("x"), hub::NamespaceOptions{})) << field.key;
  }
}

// An enum member takes the index of its choice: the rows list them in the enum's order.
TEST(ConfigFields, ChoicesMapOntoEnumsInOrder) {
  const auto deflate = [](std::string_view mode) {
    return parse_config("[server.deflate]\nmode = \"" + std::string(mode) + "\"\n", "t.toml").server.deflate.mode;
  };
  EXPECT_EQ(deflate("off"), net::DeflateMode::off);
  EXPECT_EQ(deflate("shared"), net::DeflateMode::shared);
  EXPECT_EQ(deflate("dedicated"), net::DeflateMode::dedicated);
  const auto policy = [](std::string_view p) {
    return parse_config("[server]\nbackpressure = \"" + std::string(p) + "\"\n", "t.toml").server.backpressure;
  };
  EXPECT_EQ(policy("close"), net::BackpressurePolicy::close);
  EXPECT_EQ(policy("drop"), net::BackpressurePolicy::drop);
}

TEST(ConfigFields, EveryMemberHasARow) {
  // Members that are a section, or not settable from the file, are counted by hand.
  EXPECT_EQ(member_count<HubConfig>(), rows_in("") + 10);  // + the 8 sections, namespace_defaults, namespaces
  // + 5 sections, subprotocols (set by duplex serve); ring_buffers is one
  // member with a row per field (io_uring_buffers, io_uring_buffer_size).
  EXPECT_EQ(member_count<net::ServerOptions>(), rows_in("server") + 5 + 1 - member_count<net::RingBuffers>() + 1);
  EXPECT_EQ(member_count<protocol::HttpLimits>(), rows_in("server.http") + 1);  // + max_body_bytes (built in)
  EXPECT_EQ(member_count<protocol::Limits>(), rows_in("server.websocket"));
  EXPECT_EQ(member_count<net::Timeouts>(), rows_in("server.timeouts"));
  EXPECT_EQ(member_count<net::TlsOptions>(), rows_in("server.tls") + 2);  // + ca_file, verify_peer (client side)
  EXPECT_EQ(member_count<net::DeflateOptions>() - 1 + member_count<protocol::DeflateTuning>(), rows_in("server.deflate"));
  EXPECT_EQ(member_count<hub::AuthConfig>(), rows_in("auth"));
  EXPECT_EQ(member_count<hub::ApiConfig>(), rows_in("api"));
  EXPECT_EQ(member_count<engines::EngineConfig>(), rows_in("engine") + 2);  // + redis, nats
  EXPECT_EQ(member_count<engines::RedisConfig>(), rows_in("engine.redis"));
  EXPECT_EQ(member_count<engines::NatsConfig>(), rows_in("engine.nats"));
  EXPECT_EQ(member_count<hub::HubLimits>(), rows_in("limits"));
  EXPECT_EQ(member_count<hub::LogConfig>(), rows_in("log"));
  EXPECT_EQ(member_count<hub::WebConfig>(), rows_in("web"));
  EXPECT_EQ(member_count<hub::FallbackConfig>(), rows_in("fallback"));
  EXPECT_EQ(member_count<hub::NamespaceOptions>(), fields::namespace_fields().size());
}

TEST(ConfigFile, DemoFileLoadsWithItsNamespaces) {
  ScopedEnvClear env;
  const HubConfig c = hub::load_config_file((repo_root() / "config" / "demo.toml").string());
  EXPECT_EQ(c.server.host, "127.0.0.1");
  EXPECT_EQ(c.server.port, 8080);
  EXPECT_EQ(c.engine.type, "sqlite");
  EXPECT_EQ(c.engine.data_dir, "data");
  EXPECT_TRUE(c.web.demo_tokens);
  EXPECT_FALSE(c.auth.allow_anonymous);
  EXPECT_GE(c.auth.hmac_secret.size(), 32u);
  EXPECT_NE(c.auth.hmac_secret.find("DEVELOPMENT"), std::string::npos);
  EXPECT_EQ(c.api.key, "dev-api-key");
  EXPECT_EQ(c.stats_interval, 1s);

  ASSERT_EQ(c.namespaces.size(), 6u);
  const auto& chat = c.options_for("chat");
  EXPECT_EQ(chat.history_size, 200u);
  EXPECT_EQ(chat.history_ttl, 24h);
  EXPECT_TRUE(chat.recovery && chat.presence && chat.join_leave && chat.allow_publish && chat.allow_subscribe);
  EXPECT_FALSE(chat.allow_anonymous);
  const auto& user = c.options_for("user");
  EXPECT_EQ(user.history_size, 100u);
  EXPECT_EQ(user.history_ttl, 24h);
  EXPECT_TRUE(user.recovery);
  EXPECT_FALSE(user.allow_publish);
  const auto& stats = c.options_for("stats");
  EXPECT_TRUE(stats.allow_subscribe);
  EXPECT_FALSE(stats.allow_publish);
  EXPECT_EQ(stats.history_size, 300u);  // the dashboard starts from the last five minutes
  // The whiteboard: the board's log is replayed by late joiners; cursors keep
  // no history and leave with their connection.
  const auto& board = c.options_for("board");
  EXPECT_EQ(board.history_size, 10000u);
  EXPECT_LE(board.history_size, c.limits.max_history_size);
  EXPECT_TRUE(board.recovery && board.allow_publish && board.allow_subscribe);
  const auto& cursors = c.options_for("cursors");
  EXPECT_EQ(cursors.history_size, 0u);
  EXPECT_TRUE(cursors.presence && cursors.join_leave && cursors.allow_publish && cursors.allow_subscribe);
  // Typing indicators: no history, so they never enter a room's log.
  const auto& typing = c.options_for("typing");
  EXPECT_EQ(typing.history_size, 0u);
  EXPECT_TRUE(typing.allow_publish && typing.allow_subscribe);
  // The pages publish at most ~30 times a second: under the per-connection rate.
  EXPECT_GE(c.limits.publish_rate, 30.0);
}

// ---- values ------------------------------------------------------------------

TEST(ConfigFile, OverridesOnlyWhatTheFileSets) {
  const HubConfig c = parse_config(R"(
node_name = "n1"
[server]
port = 9000
backpressure = "drop"
[server.deflate]
mode = "shared"
client_max_window_bits = 9
[engine]
type = "memory"
[limits]
publish_rate = 2.5
publish_burst = 10
)", "t.toml");
  EXPECT_EQ(c.node_name, "n1");
  EXPECT_EQ(c.server.port, 9000);
  EXPECT_EQ(c.server.backpressure, net::BackpressurePolicy::drop);
  EXPECT_EQ(c.server.deflate.mode, net::DeflateMode::shared);
  EXPECT_EQ(c.server.deflate.client_max_window_bits, 9);
  EXPECT_EQ(c.server.deflate.server_max_window_bits, 15);
  EXPECT_EQ(c.engine.type, "memory");
  EXPECT_EQ(c.limits.publish_rate, 2.5);
  EXPECT_EQ(c.limits.publish_burst, 10.0);
  EXPECT_EQ(c.server.host, "127.0.0.1");  // untouched
  EXPECT_EQ(c.engine.data_dir, "data");
}

TEST(ConfigFile, IntegerDurationsAreSecondsOrMillisecondsByField) {
  const HubConfig c = parse_config(R"(
stats_interval = 5
[auth]
auth_timeout = "2m"
[server.timeouts]
handshake = 250
ping_interval = "1m30s"
idle = "1h"
)", "t.toml");
  EXPECT_EQ(c.stats_interval, 5s);
  EXPECT_EQ(c.auth.auth_timeout, 120s);
  EXPECT_EQ(c.server.timeouts.handshake, 250ms);
  EXPECT_EQ(c.server.timeouts.ping_interval, 90s);
  EXPECT_EQ(c.server.timeouts.idle, 1h);
}

TEST(ConfigFile, SizesAcceptBytesAndBinaryUnits) {
  const HubConfig c = parse_config(R"(
[server]
max_send_buffer = 4096
read_buffer_size = "1MiB"
io_uring_buffers = 64
io_uring_buffer_size = "64KiB"
[server.websocket]
max_frame_size = "64 KiB"
max_message_size = "1GiB"
[limits]
max_data_bytes = "100B"
)", "t.toml");
  EXPECT_EQ(c.server.max_send_buffer, 4096u);
  EXPECT_EQ(c.server.read_buffer_size, 1u << 20);
  EXPECT_EQ(c.server.ring_buffers.count, 64u);
  EXPECT_EQ(c.server.ring_buffers.size, 64u << 10);
  EXPECT_EQ(c.server.websocket.max_frame_size, 64u << 10);
  EXPECT_EQ(c.server.websocket.max_message_size, 1u << 30);
  EXPECT_EQ(c.limits.max_data_bytes, 100u);
}

TEST(ConfigFile, ListedNamespacesStartFromBuiltInDefaultsNotNamespaceDefaults) {
  const HubConfig c = parse_config(R"(
[namespace_defaults]
allow_publish = true
allow_anonymous = true
[namespaces.feed]
history_size = 5
)", "t.toml");
  EXPECT_TRUE(c.namespace_defaults.allow_publish);
  const auto& feed = c.options_for("feed");
  EXPECT_EQ(feed.history_size, 5u);
  EXPECT_FALSE(feed.allow_publish);
  EXPECT_FALSE(feed.allow_anonymous);
  EXPECT_TRUE(c.options_for("other").allow_publish);  // not listed: namespace_defaults
}

TEST(ConfigFile, OriginsAndStringArrays) {
  const HubConfig c = parse_config(R"(
[auth]
allowed_origins = ["https://app.example.com", "http://localhost:3000"]
[web]
cors_origins = ["*"]
)", "t.toml");
  EXPECT_EQ(c.auth.allowed_origins, (std::vector<std::string>{"https://app.example.com", "http://localhost:3000"}));
  EXPECT_EQ(c.web.cors_origins, std::vector<std::string>{"*"});
}

TEST(ConfigDuration, ParsesUnitsAndSums) {
  EXPECT_EQ(hub::parse_duration("250ms"), 250ms);
  EXPECT_EQ(hub::parse_duration("10s"), 10s);
  EXPECT_EQ(hub::parse_duration("5m"), 5min);
  EXPECT_EQ(hub::parse_duration("1h"), 1h);
  EXPECT_EQ(hub::parse_duration("7d"), 168h);
  EXPECT_EQ(hub::parse_duration("1h30m"), 90min);
  EXPECT_EQ(hub::parse_duration("0s"), 0ms);
  for (std::string_view bad : {"", "10", "s", "1.5s", "-5s", "10 s", "5M", "3w", "1h 30m", "99999999999999999999s"})
    EXPECT_FALSE(hub::parse_duration(bad)) << bad;
}

TEST(ConfigSize, ParsesBinaryUnits) {
  EXPECT_EQ(hub::parse_size("512B"), 512u);
  EXPECT_EQ(hub::parse_size("64KiB"), 65536u);
  EXPECT_EQ(hub::parse_size("1MiB"), 1u << 20);
  EXPECT_EQ(hub::parse_size("2GiB"), 2ull << 30);
  EXPECT_EQ(hub::parse_size("16 KiB"), 16u << 10);
  for (std::string_view bad : {"", "16", "16KB", "1.5MiB", "-1B", "KiB", "1kib", "16  KiB", "99999999999GiB"})
    EXPECT_FALSE(hub::parse_size(bad)) << bad;
}

// ---- errors ------------------------------------------------------------------

TEST(ConfigErrors, UnknownKeyNamesLineColumnSectionAndSuggestion) {
  EXPECT_EQ(parse_error("[namespaces.chat]\nhistory_size = 10\nhistroy_size = 20\n"),
            "t.toml:3:1: unknown key \"histroy_size\" in [namespaces.chat] (did you mean \"history_size\"?)");
  EXPECT_EQ(parse_error("\n\nnode = \"x\"\n"), "t.toml:3:1: unknown key \"node\" at the top level");
  EXPECT_EQ(parse_error("[server]\n  prot = 1\n"),
            "t.toml:2:3: unknown key \"prot\" in [server] (did you mean \"port\"?)");
  EXPECT_EQ(parse_error("[server.tls]\nca_file = \"x\"\n"), "t.toml:2:1: unknown key \"ca_file\" in [server.tls]");
  EXPECT_EQ(parse_error("[server]\nsubprotocols = [\"x\"]\n"),
            "t.toml:2:1: unknown key \"subprotocols\" in [server]");
  EXPECT_EQ(parse_error("[servers]\nport = 1\n"),
            "t.toml:1:2: unknown key \"servers\" at the top level (did you mean \"server\"?)");
}

TEST(ConfigErrors, WrongTypeNamesTheExpectedType) {
  EXPECT_EQ(parse_error("[server]\nport = \"8080\"\n"), "t.toml:2:8: server.port: expected an integer, got a string");
  EXPECT_EQ(parse_error("[auth]\nallow_anonymous = 1\n"),
            "t.toml:2:19: auth.allow_anonymous: expected a boolean (true or false), got an integer");
  EXPECT_EQ(parse_error("server = 5\n"), "t.toml:1:10: server: expected a table, got an integer");
  EXPECT_EQ(parse_error("[auth]\nallowed_origins = [1]\n"),
            "t.toml:2:20: auth.allowed_origins: expected an array of strings, got an integer");
  EXPECT_EQ(parse_error("[limits]\npublish_rate = \"fast\"\n"),
            "t.toml:2:16: limits.publish_rate: expected a number, got a string");
  EXPECT_EQ(parse_error("[server]\nmax_send_buffer = 1.5\n"),
            "t.toml:2:19: server.max_send_buffer: expected a size (integer bytes or a string like \"64KiB\"), got a float");
  EXPECT_EQ(parse_error("namespaces.chat = true\n"),
            "t.toml:1:19: namespaces.chat: expected a table ([namespaces.chat]), got a boolean");
}

TEST(ConfigErrors, OutOfRangeValues) {
  EXPECT_EQ(parse_error("[server]\nport = 70000\n"), "t.toml:2:8: server.port: 70000 is out of range (0..65535)");
  EXPECT_EQ(parse_error("[server]\nthreads = 300\n"), "t.toml:2:11: server.threads: 300 is out of range (0..256)");
  EXPECT_EQ(parse_error("[server.deflate]\nserver_max_window_bits = 7\n"),
            "t.toml:2:26: server.deflate.server_max_window_bits: 7 is out of range (8..15)");
  EXPECT_EQ(parse_error("[server.deflate]\nclient_max_window_bits = 16\n"),
            "t.toml:2:26: server.deflate.client_max_window_bits: 16 is out of range (8..15)");
  EXPECT_EQ(parse_error("[server.tls]\nmin_version = \"1.1\"\n"),
            "t.toml:2:15: server.tls.min_version: expected \"1.2\" or \"1.3\", got \"1.1\"");
  EXPECT_EQ(parse_error("[server]\nmax_send_buffer = -1\n"),
            "t.toml:2:19: server.max_send_buffer: -1 is out of range (1KiB..1GiB)");
  EXPECT_EQ(parse_error("[server.deflate]\nmode = \"always\"\n"),
            "t.toml:2:8: server.deflate.mode: expected \"off\", \"shared\" or \"dedicated\", got \"always\"");
  EXPECT_EQ(parse_error("[log]\nlevel = \"verbose\"\n"),
            "t.toml:2:9: log.level: expected \"trace\", \"debug\", \"info\", \"warn\" or \"error\", got \"verbose\"");
  EXPECT_EQ(parse_error("[limits]\npublish_rate = 0\n"),
            "t.toml:2:16: limits.publish_rate: 0 is out of range (0.001..1e+06)");
  EXPECT_EQ(parse_error("[namespaces.chat]\nhistory_size = -3\n"),
            "t.toml:2:16: namespaces.chat.history_size: -3 is out of range (0..1000000)");
  EXPECT_EQ(parse_error("[server.timeouts]\npong_timeout = 0\n"),
            "t.toml:2:16: server.timeouts.pong_timeout: 0s is out of range (1ms..1d)");
  EXPECT_EQ(parse_error("node_name = \"my node\"\n"),
            "t.toml:1:13: node_name: \"my node\" must be at most 64 printable characters without spaces");
}

TEST(ConfigErrors, BadDurationsAndSizes) {
  EXPECT_EQ(parse_error("[server.timeouts]\nidle = \"10 parsecs\"\n"),
            "t.toml:2:8: server.timeouts.idle: bad duration \"10 parsecs\" (expected an integer number of "
            "milliseconds or a string like \"250ms\", \"10s\", \"5m\", \"1h\", \"7d\")");
  EXPECT_EQ(parse_error("[auth]\nauth_timeout = \"10\"\n"),
            "t.toml:2:16: auth.auth_timeout: bad duration \"10\" (expected an integer number of seconds or a "
            "string like \"250ms\", \"10s\", \"5m\", \"1h\", \"7d\")");
  EXPECT_EQ(parse_error("[auth]\nauth_timeout = \"1500ms\"\n"),
            "t.toml:2:16: auth.auth_timeout: 1500ms is not a whole number of seconds");
  EXPECT_EQ(parse_error("[auth]\nauth_timeout = -5\n"),
            "t.toml:2:16: auth.auth_timeout: -5 seconds is out of range (durations are not negative)");
  EXPECT_EQ(parse_error("[auth]\nauth_timeout = \"2h\"\n"),
            "t.toml:2:16: auth.auth_timeout: 2h is out of range (1s..1h)");
  EXPECT_EQ(parse_error("[server]\nread_buffer_size = \"16KB\"\n"),
            "t.toml:2:20: server.read_buffer_size: bad size \"16KB\" (expected an integer number of bytes or a "
            "string like \"512B\", \"64KiB\", \"1MiB\", \"1GiB\")");
  EXPECT_EQ(parse_error("[server]\nread_buffer_size = \"2GiB\"\n"),
            "t.toml:2:20: server.read_buffer_size: 2GiB is out of range (4KiB..64MiB)");
  EXPECT_EQ(parse_error("[server]\nio_uring_buffer_size = \"512B\"\n"),
            "t.toml:2:24: server.io_uring_buffer_size: 512B is out of range (1KiB..1MiB)");
  EXPECT_EQ(parse_error("[server]\nio_uring_buffers = 8\n"),
            "t.toml:2:20: server.io_uring_buffers: 8 is out of range (16..32768)");
}

TEST(ConfigErrors, TomlSyntaxErrorsCarryLineAndColumn) {
  const std::string message = parse_error("[server]\nport = 80\nhost = \"unterminated\n");
  EXPECT_EQ(message.rfind("t.toml:3:", 0), 0u) << message;
  const std::string duplicate = parse_error("[server]\nport = 1\nport = 2\n");
  EXPECT_EQ(duplicate.rfind("t.toml:3:", 0), 0u) << duplicate;
}

TEST(ConfigErrors, BadNamespaceNamesAndOrigins) {
  EXPECT_EQ(parse_error("[namespaces.\"a b\"]\n").rfind("t.toml:1:13: namespace name \"a b\" is not valid", 0), 0u);
  EXPECT_NE(parse_error("[namespaces.\"\"]\n").find("use [namespace_defaults]"), std::string::npos);
  EXPECT_NE(parse_error("[web]\ncors_origins = [\"example.com\"]\n")
                .find("web.cors_origins: \"example.com\" is not an origin"),
            std::string::npos);
  EXPECT_NE(parse_error("[auth]\nallowed_origins = [\"https://a.example/\"]\n").find("is not an origin"),
            std::string::npos);
}

TEST(ConfigErrors, CrossFieldRules) {
  auto problems_of = [](std::string_view text) { return hub::config_problems(parse_config(text, "t.toml")); };
  using Problems = std::vector<std::string>;
  EXPECT_EQ(problems_of("[namespaces.chat]\njoin_leave = true\n"),
            Problems{"[namespaces.chat] join_leave = true needs presence = true"});
  EXPECT_EQ(problems_of("[namespace_defaults]\nrecovery = true\n"),
            Problems{"[namespace_defaults] recovery = true needs history_size > 0 (recovery replays history)"});
  EXPECT_EQ(problems_of("[limits]\nmax_history_size = 50\n[namespaces.chat]\nhistory_size = 100\n"),
            Problems{"[namespaces.chat] history_size = 100 exceeds limits.max_history_size = 50"});
  EXPECT_EQ(problems_of("[namespaces.x]\nhistory_ttl = \"1h\"\n"),
            Problems{"[namespaces.x] history_ttl is set but history_size = 0 keeps no history"});
  EXPECT_EQ(problems_of("[server.tls]\ncert_file = \"c.pem\"\n"),
            Problems{"[server.tls] cert_file is set but key_file is not"});
  EXPECT_EQ(problems_of("[server.tls]\nkey_file = \"k.pem\"\n"),
            Problems{"[server.tls] key_file is set but cert_file is not"});
  EXPECT_EQ(problems_of("[web]\ndemo_tokens = true\n"),
            Problems{"web.demo_tokens = true needs auth.hmac_secret (demo tokens are signed with HS256)"});
  EXPECT_EQ(problems_of("[engine]\ndata_dir = \"\"\n"),
            Problems{"engine.data_dir must not be empty with the sqlite engine"});
  EXPECT_TRUE(problems_of("[engine]\ntype = \"memory\"\ndata_dir = \"\"\n").empty());
  EXPECT_EQ(problems_of("[fallback]\npoll_wait = \"30s\"\npoll_idle = \"30s\"\n"),
            Problems{"[fallback] poll_idle must be longer than poll_wait (a waiting poll would expire its session)"});
  EXPECT_EQ(problems_of("[engine]\ntype = \"redis\"\n[engine.redis]\naddresses = [\"localhost\"]\n"),
            Problems{"[engine.redis] address \"localhost\" is not host:port"});
  EXPECT_EQ(problems_of("[engine]\ntype = \"redis\"\n[engine.redis]\naddresses = []\n"),
            Problems{"[engine.redis] addresses must list at least one host:port"});
  EXPECT_EQ(problems_of("[engine]\ntype = \"redis\"\n[engine.redis]\npubsub_ping_interval = \"50ms\"\n"),
            Problems{"[engine.redis] pubsub_ping_interval must be 0 (off) or at least 100ms"});
  EXPECT_TRUE(problems_of("[engine]\ntype = \"redis\"\n[engine.redis]\npubsub_ping_interval = 0\n").empty());
  EXPECT_EQ(problems_of("[server]\nio_uring_buffers = 1000\n"),
            Problems{"[server] io_uring_buffers must be a power of two from 16 to 32768, not 1000"});
  EXPECT_TRUE(problems_of("[server]\nio_uring_buffers = 32768\nio_uring_buffer_size = \"1MiB\"\n").empty());
  EXPECT_EQ(problems_of("[engine]\ntype = \"nats\"\n[engine.nats]\nurl = \"tcp://x:4222\"\n"),
            Problems{"[engine.nats] url must start with nats://, not \"tcp://x:4222\""});
  EXPECT_TRUE(problems_of("[engine]\ntype = \"redis\"\n[engine.redis]\naddresses = [\"127.0.0.1:7001\", \"[::1]:7002\"]\n").empty());
  EXPECT_EQ(problems_of("[engine]\ntype = \"redis\"\n[engine.redis]\nusername = \"alice\"\n"),
            Problems{"[engine.redis] username is set but password is not (AUTH with a user needs its password)"});
  EXPECT_TRUE(problems_of("[engine]\ntype = \"redis\"\n[engine.redis]\nusername = \"alice\"\npassword = \"pw\"\n").empty());
  EXPECT_EQ(problems_of("[engine]\ntype = \"redis\"\n[engine.redis]\ntls = true\ntls_key = \"k.pem\"\n"),
            Problems{"[engine.redis] tls_key is set but tls_cert is not (a client certificate needs its key)"});
  EXPECT_EQ(problems_of("[engine]\ntype = \"redis\"\n[engine.redis]\ntls_ca = \"ca.pem\"\n"),
            Problems{"[engine.redis] tls_ca, tls_cert, tls_key or tls_server_name is set but tls is false"});
  EXPECT_TRUE(problems_of("[engine]\ntype = \"redis\"\n[engine.redis]\ntls = true\ntls_ca = \"ca.pem\"\n"
                          "tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\ntls_server_name = \"redis.internal\"\n")
                  .empty());
  const std::string sentinel = "[engine]\ntype = \"redis\"\n[engine.redis]\nsentinels = [\"127.0.0.1:26379\"]\n";
  EXPECT_TRUE(problems_of(sentinel + "sentinel_master = \"mymaster\"\n").empty());
  EXPECT_EQ(problems_of(sentinel + "sentinel_master = \"mymaster\"\naddresses = [\"10.0.0.1:6379\"]\n"),
            Problems{"[engine.redis] sentinels and addresses exclude each other (with sentinels the master is "
                     "discovered; remove addresses)"});
  EXPECT_EQ(problems_of(sentinel),
            Problems{"[engine.redis] sentinels is set: sentinel_master must name the monitored master (printable "
                     "characters without spaces)"});
  EXPECT_EQ(problems_of("[engine]\ntype = \"redis\"\n[engine.redis]\nsentinel_master = \"mymaster\"\n"),
            Problems{"[engine.redis] sentinel_master is set but sentinels is empty"});
  EXPECT_EQ(problems_of("[engine]\ntype = \"redis\"\n[engine.redis]\nsentinels = [\"s1\"]\nsentinel_master = \"m\"\n"),
            Problems{"[engine.redis] sentinel \"s1\" is not host:port"});
  EXPECT_EQ(problems_of("[engine]\ntype = \"redis\"\n[engine.redis]\nwait_replicas = 1\nwait_timeout = \"5s\"\n"),
            Problems{"[engine.redis] wait_timeout must be shorter than command_timeout (WAIT blocks the connection "
                     "that long)"});
  const std::string cluster = "[engine]\ntype = \"redis\"\n[engine.redis]\ncluster = true\n";
  EXPECT_TRUE(problems_of(cluster + "addresses = [\"10.0.0.1:7000\", \"10.0.0.2:7000\"]\n").empty());
  EXPECT_EQ(problems_of(cluster + "sentinels = [\"127.0.0.1:26379\"]\nsentinel_master = \"m\"\n"),
            Problems{"[engine.redis] cluster and sentinels exclude each other (a Redis Cluster fails over by itself; "
                     "list its nodes in addresses)"});
  EXPECT_EQ(problems_of(cluster + "db = 3\n"),
            Problems{"[engine.redis] cluster needs db = 0 (a Redis Cluster has only database 0)"});

  // Values set after loading (command-line flags) are checked too.
  HubConfig c;
  c.server.threads = 1000;
  c.engine.type = "kafka";
  c.log.level = "loud";
  EXPECT_EQ(hub::config_problems(c).size(), 3u);
  try {
    hub::validate_config(c);
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              "invalid configuration: server.threads = 1000 is above 256; engine.type must be \"sqlite\", "
              "\"memory\", \"redis\" or \"nats\", not \"kafka\"; log.level must be trace, debug, info, warn or error, not \"loud\"");
  }
}

TEST(ConfigErrors, LoadConfigFileValidatesAndNamesTheFile) {
  ScopedEnvClear env;
  TempFile file("[namespaces.chat]\njoin_leave = true\n");
  try {
    hub::load_config_file(file.path());
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              file.path() + ": invalid configuration: [namespaces.chat] join_leave = true needs presence = true");
  }
  TempFile typo("[server]\nprot = 1\n");
  try {
    hub::load_config_file(typo.path());
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), typo.path() + ":2:1: unknown key \"prot\" in [server] (did you mean \"port\"?)");
  }
  try {
    hub::load_config_file("/nonexistent/duplex.toml");
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "cannot read config file /nonexistent/duplex.toml: No such file or directory");
  }
}

// ---- environment -------------------------------------------------------------

TEST(ConfigEnv, SecretsFromTheEnvironmentOverrideTheFile) {
  ScopedEnvClear env;
  TempFile file("[auth]\nhmac_secret = \"from-file\"\n[api]\nkey = \"file-key\"\n");
  HubConfig c = hub::load_config_file(file.path());
  EXPECT_EQ(c.auth.hmac_secret, "from-file");
  EXPECT_EQ(c.api.key, "file-key");

  ::setenv("DUPLEX_HMAC_SECRET", "from-env", 1);
  ::setenv("DUPLEX_API_KEY", "env-key", 1);
  c = hub::load_config_file(file.path());
  EXPECT_EQ(c.auth.hmac_secret, "from-env");
  EXPECT_EQ(c.api.key, "env-key");

  // An empty variable (a blank deployment template) changes nothing.
  ::setenv("DUPLEX_HMAC_SECRET", "", 1);
  ::unsetenv("DUPLEX_API_KEY");
  c = hub::load_config_file(file.path());
  EXPECT_EQ(c.auth.hmac_secret, "from-file");
  EXPECT_EQ(c.api.key, "file-key");

  // parse_config alone never reads the environment.
  ::setenv("DUPLEX_API_KEY", "env-key", 1);
  EXPECT_EQ(parse_config("", "t.toml").api.key, "");
  HubConfig defaults;
  hub::apply_env_overrides(defaults);
  EXPECT_EQ(defaults.api.key, "env-key");
}

TEST(ConfigEnv, EnvironmentSecretSatisfiesDemoTokens) {
  ScopedEnvClear env;
  TempFile file("[web]\ndemo_tokens = true\n");
  EXPECT_THROW(hub::load_config_file(file.path()), std::runtime_error);
  ::setenv("DUPLEX_HMAC_SECRET", "a-secret-from-the-environment-0123456789", 1);
  EXPECT_TRUE(hub::load_config_file(file.path()).web.demo_tokens);
}
