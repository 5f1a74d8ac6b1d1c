#include "duplex/hub/config_file.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

using namespace duplex;
using namespace std::chrono_literals;
using hub::HubConfig;
using hub::parse_config;

namespace {

std::filesystem::path repo_root() { return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path(); }

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

void expect_same_namespace(const hub::NamespaceOptions& a, const hub::NamespaceOptions& b, const std::string& name) {
  SCOPED_TRACE(name);
  EXPECT_EQ(a.history_size, b.history_size);
  EXPECT_EQ(a.history_ttl, b.history_ttl);
  EXPECT_EQ(a.recovery, b.recovery);
  EXPECT_EQ(a.presence, b.presence);
  EXPECT_EQ(a.join_leave, b.join_leave);
  EXPECT_EQ(a.allow_publish, b.allow_publish);
  EXPECT_EQ(a.allow_subscribe, b.allow_subscribe);
  EXPECT_EQ(a.allow_anonymous, b.allow_anonymous);
}

// Every field of HubConfig, so the reference file cannot drift from the structs.
void expect_same(const HubConfig& a, const HubConfig& b) {
  EXPECT_EQ(a.node_name, b.node_name);
  EXPECT_EQ(a.stats_interval, b.stats_interval);
  EXPECT_EQ(a.namespaces_strict, b.namespaces_strict);

  const auto &s = a.server, &t = b.server;
  EXPECT_EQ(s.host, t.host);
  EXPECT_EQ(s.port, t.port);
  EXPECT_EQ(s.threads, t.threads);
  EXPECT_EQ(s.backlog, t.backlog);
  EXPECT_EQ(s.max_connections, t.max_connections);
  EXPECT_EQ(s.max_connections_per_ip, t.max_connections_per_ip);
  EXPECT_EQ(s.max_send_buffer, t.max_send_buffer);
  EXPECT_EQ(s.backpressure, t.backpressure);
  EXPECT_EQ(s.read_buffer_size, t.read_buffer_size);
  EXPECT_EQ(s.subprotocols, t.subprotocols);
  EXPECT_EQ(s.http.max_line_bytes, t.http.max_line_bytes);
  EXPECT_EQ(s.http.max_header_count, t.http.max_header_count);
  EXPECT_EQ(s.http.max_head_bytes, t.http.max_head_bytes);
  EXPECT_EQ(s.websocket.max_frame_size, t.websocket.max_frame_size);
  EXPECT_EQ(s.websocket.max_message_size, t.websocket.max_message_size);
  EXPECT_EQ(s.timeouts.handshake, t.timeouts.handshake);
  EXPECT_EQ(s.timeouts.ping_interval, t.timeouts.ping_interval);
  EXPECT_EQ(s.timeouts.pong_timeout, t.timeouts.pong_timeout);
  EXPECT_EQ(s.timeouts.idle, t.timeouts.idle);
  EXPECT_EQ(s.timeouts.close, t.timeouts.close);
  EXPECT_EQ(s.tls.cert_file, t.tls.cert_file);
  EXPECT_EQ(s.tls.key_file, t.tls.key_file);
  EXPECT_EQ(s.tls.ca_file, t.tls.ca_file);
  EXPECT_EQ(s.tls.verify_peer, t.tls.verify_peer);
  EXPECT_EQ(s.tls.min_version, t.tls.min_version);
  EXPECT_EQ(s.tls.ciphers, t.tls.ciphers);
  EXPECT_EQ(s.deflate.mode, t.deflate.mode);
  EXPECT_EQ(s.deflate.server_max_window_bits, t.deflate.server_max_window_bits);
  EXPECT_EQ(s.deflate.client_max_window_bits, t.deflate.client_max_window_bits);
  EXPECT_EQ(s.deflate.client_no_context_takeover, t.deflate.client_no_context_takeover);
  EXPECT_EQ(s.deflate.tuning.level, t.deflate.tuning.level);
  EXPECT_EQ(s.deflate.tuning.mem_level, t.deflate.tuning.mem_level);
  EXPECT_EQ(s.deflate.tuning.min_size, t.deflate.tuning.min_size);

  EXPECT_EQ(a.auth.hmac_secret, b.auth.hmac_secret);
  EXPECT_EQ(a.auth.public_key_file, b.auth.public_key_file);
  EXPECT_EQ(a.auth.allow_anonymous, b.auth.allow_anonymous);
  EXPECT_EQ(a.auth.auth_timeout, b.auth.auth_timeout);
  EXPECT_EQ(a.auth.refresh_before, b.auth.refresh_before);
  EXPECT_EQ(a.auth.allowed_origins, b.auth.allowed_origins);
  EXPECT_EQ(a.api.key, b.api.key);
  EXPECT_EQ(a.engine.type, b.engine.type);
  EXPECT_EQ(a.engine.data_dir, b.engine.data_dir);
  EXPECT_EQ(a.engine.fsync, b.engine.fsync);
  EXPECT_EQ(a.engine.max_batch, b.engine.max_batch);
  const auto &ra = a.engine.redis, &rb = b.engine.redis;
  EXPECT_EQ(ra.addresses, rb.addresses);
  EXPECT_EQ(ra.password, rb.password);
  EXPECT_EQ(ra.db, rb.db);
  EXPECT_EQ(ra.prefix, rb.prefix);
  EXPECT_EQ(ra.subscriber_connections, rb.subscriber_connections);
  EXPECT_EQ(ra.connect_timeout, rb.connect_timeout);
  EXPECT_EQ(ra.command_timeout, rb.command_timeout);
  EXPECT_EQ(ra.reconnect_min, rb.reconnect_min);
  EXPECT_EQ(ra.reconnect_max, rb.reconnect_max);
  EXPECT_EQ(ra.presence_ttl, rb.presence_ttl);
  EXPECT_EQ(ra.history_meta_ttl, rb.history_meta_ttl);
  EXPECT_EQ(ra.node_ttl, rb.node_ttl);
  EXPECT_EQ(a.engine.nats.url, b.engine.nats.url);
  EXPECT_EQ(a.engine.nats.subject_prefix, b.engine.nats.subject_prefix);
  EXPECT_EQ(a.engine.nats.reorder_window, b.engine.nats.reorder_window);
  EXPECT_EQ(a.engine.nats.max_held, b.engine.nats.max_held);
  const auto &fa = a.fallback, &fb = b.fallback;
  EXPECT_EQ(fa.max_sessions, fb.max_sessions);
  EXPECT_EQ(fa.max_buffer_events, fb.max_buffer_events);
  EXPECT_EQ(fa.max_commands_per_request, fb.max_commands_per_request);
  EXPECT_EQ(fa.sse_heartbeat, fb.sse_heartbeat);
  EXPECT_EQ(fa.sse_grace, fb.sse_grace);
  EXPECT_EQ(fa.poll_wait, fb.poll_wait);
  EXPECT_EQ(fa.poll_idle, fb.poll_idle);
  EXPECT_EQ(fa.post_reply_timeout, fb.post_reply_timeout);

  const auto &l = a.limits, &m = b.limits;
  EXPECT_EQ(l.max_command_bytes, m.max_command_bytes);
  EXPECT_EQ(l.max_json_depth, m.max_json_depth);
  EXPECT_EQ(l.max_data_bytes, m.max_data_bytes);
  EXPECT_EQ(l.max_subscriptions, m.max_subscriptions);
  EXPECT_EQ(l.max_channels, m.max_channels);
  EXPECT_EQ(l.max_channel_length, m.max_channel_length);
  EXPECT_EQ(l.max_history_size, m.max_history_size);
  EXPECT_EQ(l.publish_rate, m.publish_rate);
  EXPECT_EQ(l.publish_burst, m.publish_burst);
  EXPECT_EQ(l.rate_violations_before_disconnect, m.rate_violations_before_disconnect);
  EXPECT_EQ(l.idempotency_window, m.idempotency_window);
  EXPECT_EQ(l.max_idempotency_key, m.max_idempotency_key);

  EXPECT_EQ(a.log.level, b.log.level);
  EXPECT_EQ(a.log.format, b.log.format);
  EXPECT_EQ(a.web.root, b.web.root);
  EXPECT_EQ(a.web.demo_tokens, b.web.demo_tokens);
  EXPECT_EQ(a.web.demo_token_ttl, b.web.demo_token_ttl);
  EXPECT_EQ(a.web.cors_origins, b.web.cors_origins);

  expect_same_namespace(a.namespace_defaults, b.namespace_defaults, "namespace_defaults");
  ASSERT_EQ(a.namespaces.size(), b.namespaces.size());
  for (const auto& [name, options] : a.namespaces) {
    ASSERT_TRUE(b.namespaces.count(name)) << name;
    expect_same_namespace(options, b.namespaces.at(name), name);
  }
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
  const std::set<std::string> expected{
      "node_name", "stats_interval", "namespaces_strict",
      "server.host", "server.port", "server.reuse_port", "server.threads", "server.backlog", "server.max_connections", "server.max_connections_per_ip",
      "server.max_send_buffer", "server.backpressure", "server.read_buffer_size",
      "server.http.max_line_bytes", "server.http.max_header_count", "server.http.max_head_bytes",
      "server.websocket.max_frame_size", "server.websocket.max_message_size",
      "server.timeouts.handshake", "server.timeouts.ping_interval", "server.timeouts.pong_timeout",
      "server.timeouts.idle", "server.timeouts.close",
      "server.tls.cert_file", "server.tls.key_file", "server.tls.min_version", "server.tls.ciphers",
      "server.deflate.mode", "server.deflate.server_max_window_bits", "server.deflate.client_max_window_bits",
      "server.deflate.client_no_context_takeover", "server.deflate.level", "server.deflate.mem_level",
      "server.deflate.min_size",
      "auth.hmac_secret", "auth.public_key_file", "auth.allow_anonymous", "auth.auth_timeout",
      "auth.refresh_before", "auth.allowed_origins",
      "api.key",
      "engine.type", "engine.data_dir", "engine.fsync", "engine.max_batch",
      "engine.redis.addresses", "engine.redis.password", "engine.redis.db", "engine.redis.prefix",
      "engine.redis.subscriber_connections", "engine.redis.connect_timeout", "engine.redis.command_timeout",
      "engine.redis.reconnect_min", "engine.redis.reconnect_max", "engine.redis.presence_ttl",
      "engine.redis.history_meta_ttl", "engine.redis.node_ttl",
      "engine.nats.url", "engine.nats.subject_prefix", "engine.nats.reorder_window", "engine.nats.max_held",
      "limits.max_command_bytes", "limits.max_json_depth", "limits.max_data_bytes", "limits.max_subscriptions",
      "limits.max_channels", "limits.max_channel_length", "limits.max_history_size", "limits.publish_rate",
      "limits.publish_burst", "limits.rate_violations_before_disconnect", "limits.idempotency_window",
      "limits.max_idempotency_key",
      "fallback.max_sessions", "fallback.max_buffer_events", "fallback.max_commands_per_request",
      "fallback.sse_heartbeat", "fallback.sse_grace", "fallback.poll_wait", "fallback.poll_idle",
      "fallback.post_reply_timeout",
      "log.level", "log.format",
      "web.root", "web.demo_tokens", "web.demo_token_ttl", "web.cors_origins",
      "namespace_defaults.history_size", "namespace_defaults.history_ttl", "namespace_defaults.recovery",
      "namespace_defaults.presence", "namespace_defaults.join_leave", "namespace_defaults.allow_publish",
      "namespace_defaults.allow_subscribe", "namespace_defaults.allow_anonymous"};
  EXPECT_EQ(keys_in(read_text(repo_root() / "config" / "duplex.toml")), expected);
  // The documentation names every one of them too.
  const std::string docs = read_text(repo_root() / "docs" / "CONFIG.md");
  for (const std::string& key : expected) {
    const std::string leaf = key.substr(key.rfind('.') == std::string::npos ? 0 : key.rfind('.') + 1);
    EXPECT_NE(docs.find("`" + leaf + "`"), std::string::npos) << key << " is not documented in docs/CONFIG.md";
  }
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

  ASSERT_EQ(c.namespaces.size(), 5u);
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
[server.websocket]
max_frame_size = "64 KiB"
max_message_size = "1GiB"
[limits]
max_data_bytes = "100B"
)", "t.toml");
  EXPECT_EQ(c.server.max_send_buffer, 4096u);
  EXPECT_EQ(c.server.read_buffer_size, 1u << 20);
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
  EXPECT_EQ(problems_of("[engine]\ntype = \"nats\"\n[engine.nats]\nurl = \"tcp://x:4222\"\n"),
            Problems{"[engine.nats] url must start with nats://, not \"tcp://x:4222\""});
  EXPECT_TRUE(problems_of("[engine]\ntype = \"redis\"\n[engine.redis]\naddresses = [\"127.0.0.1:7001\", \"[::1]:7002\"]\n").empty());

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
