// Every option of `duplex serve`, with its default, in one place. The TOML
// config file (docs/CONFIG.md) maps onto these structs one to one.
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "duplex/engines/config.hpp"
#include "duplex/net/options.hpp"

namespace duplex::hub {

using Seconds = std::chrono::seconds;

// [namespaces.<name>] (and [namespace_defaults] for the default namespace and
// for names not listed when `namespaces_strict` is off).
struct NamespaceOptions {
  std::size_t history_size = 0;   // messages kept per channel; 0 = no history
  Seconds history_ttl{0};         // 0 = kept until trimmed by size
  bool recovery = false;          // subscribe with recover:true may replay history
  bool presence = false;
  bool join_leave = false;        // join/leave pushes (needs presence)
  bool allow_publish = false;     // clients may publish (the API always may)
  bool allow_subscribe = true;    // any authenticated user may subscribe (else token claims)
  bool allow_anonymous = false;   // anonymous connections may subscribe (and publish if allowed)
};

// [auth]
struct AuthConfig {
  std::string hmac_secret;         // HS256
  std::string public_key_file;     // PEM, RS256 or ES256 (by key type)
  bool allow_anonymous = false;    // connections without a token
  Seconds auth_timeout{10};        // first command must authenticate within this
  Seconds refresh_before{30};      // ask for a new token this long before exp
  std::vector<std::string> allowed_origins;  // exact origins or "*"; empty = same host only
};

// [api]
struct ApiConfig {
  std::string key;                 // empty: the HTTP API is disabled
};

// [limits] (hub-level; WebSocket/HTTP limits live in [server])
struct HubLimits {
  std::size_t max_command_bytes = 64u << 10;
  std::size_t max_json_depth = 32;
  std::size_t max_data_bytes = 64u << 10;
  std::size_t max_subscriptions = 128;       // per connection
  std::size_t max_channels = 100'000;        // distinct channels with subscribers on this node
  std::size_t max_channel_length = 255;
  std::size_t max_history_size = 10'000;     // upper bound for any namespace's history_size
  double publish_rate = 50;                  // per connection, sustained per second
  double publish_burst = 100;                // token bucket depth
  std::size_t rate_violations_before_disconnect = 50;
  Seconds idempotency_window{300};
  std::size_t max_idempotency_key = 128;
  // Engine events (publications, joins, leaves) waiting for one event loop;
  // more: that loop's subscribers of the channels that overflowed are told
  // to resubscribe (2500) and recover from history.
  std::size_t max_pending_deliveries = 100'000;
};

// [log]
struct LogConfig {
  std::string level = "info";      // trace, debug, info, warn, error
  std::string format = "text";     // text or json
};

// [web]
struct WebConfig {
  std::string root;                // directory served at / (demo page, duplex.js); empty = resolve_web_root's default
  bool demo_tokens = false;        // GET /demo/token?user=NAME mints HS256 tokens (development only)
  Seconds demo_token_ttl{3600};
  std::vector<std::string> cors_origins;  // allowed origins for the API and fallbacks
};

// [fallback]: SSE and long-polling sessions (the send buffer is server.max_send_buffer).
struct FallbackConfig {
  std::size_t max_sessions = 10'000;          // per node
  std::size_t max_buffer_events = 10'000;     // events kept per session for resume
  std::size_t max_commands_per_request = 100; // commands in one POST
  std::chrono::milliseconds sse_heartbeat{15'000};      // comment line on idle streams
  std::chrono::milliseconds sse_grace{30'000};          // a dropped stream may resume this long
  std::chrono::milliseconds poll_wait{25'000};          // a poll with nothing to return waits this long
  std::chrono::milliseconds poll_idle{60'000};          // a long-poll session without polls expires
  std::chrono::milliseconds post_reply_timeout{5'000};  // slower replies follow on the stream
};

struct HubConfig {
  std::string node_name;           // empty: hostname-pid
  net::ServerOptions server;       // [server], [server.tls], [server.timeouts], [server.deflate]
  AuthConfig auth;
  ApiConfig api;
  engines::EngineConfig engine;  // [engine], [engine.redis], [engine.nats]: the engines' own settings
  HubLimits limits;
  LogConfig log;
  WebConfig web;
  FallbackConfig fallback;
  Seconds stats_interval{1};       // the dashboard channel `stats:node` publish period (0 = off; needs [namespaces.stats])
  NamespaceOptions namespace_defaults;
  bool namespaces_strict = false;  // unknown namespaces are refused (102) instead of using defaults
  std::map<std::string, NamespaceOptions> namespaces;

  const NamespaceOptions& options_for(std::string_view namespace_name) const {
    if (namespace_name.empty()) return namespace_defaults;
    auto it = namespaces.find(std::string(namespace_name));
    return it == namespaces.end() ? namespace_defaults : it->second;
  }
};

}  // namespace duplex::hub
