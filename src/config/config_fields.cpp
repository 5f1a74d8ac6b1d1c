#include "config_fields.hpp"

#include <sstream>
#include <type_traits>

namespace duplex::hub::config_fields {

namespace {

using K = Kind;
using R = Reload;

constexpr double kib = 1024;
constexpr double mib = kib * 1024;
constexpr double gib = mib * 1024;
constexpr double day = 86'400;        // seconds
constexpr double day_ms = day * 1000;  // milliseconds

#define DUPLEX_NS_REF(member) [](NamespaceOptions& n) -> Ref { return &n.member; }

std::vector<NamespaceField> make_namespace_fields() {
  return {
      {"history_size", DUPLEX_NS_REF(history_size), K::integer, R::restart, 0, 1'000'000, {},
       "messages kept per channel (0 = no history), at most limits.max_history_size"},
      {"history_ttl", DUPLEX_NS_REF(history_ttl), K::seconds, R::restart, 0, 365 * day, {},
       "messages older than this leave the history (0 = kept until trimmed by size)"},
      {"recovery", DUPLEX_NS_REF(recovery), K::boolean, R::restart, 0, 0, {},
       "subscribe with recover:true replays missed messages (needs history)"},
      {"presence", DUPLEX_NS_REF(presence), K::boolean, R::restart, 0, 0, {}, "who is subscribed (the presence command)"},
      {"join_leave", DUPLEX_NS_REF(join_leave), K::boolean, R::restart, 0, 0, {},
       "push join/leave to subscribers (needs presence)"},
      {"allow_publish", DUPLEX_NS_REF(allow_publish), K::boolean, R::restart, 0, 0, {},
       "clients may publish (the HTTP API always may)"},
      {"allow_subscribe", DUPLEX_NS_REF(allow_subscribe), K::boolean, R::restart, 0, 0, {},
       "any authenticated user may subscribe (false: only with token claims)"},
      {"allow_anonymous", DUPLEX_NS_REF(allow_anonymous), K::boolean, R::restart, 0, 0, {},
       "anonymous connections may subscribe (and publish if allowed)"},
  };
}

#undef DUPLEX_NS_REF
#define DUPLEX_REF(member) [](HubConfig& c) -> Ref { return &c.member; }

// Long on purpose: the table of every config field, one row each, in
// config/duplex.toml's order.
std::vector<ConfigField> make_fields() {
  std::vector<ConfigField> f{
      // top level
      {"node_name", DUPLEX_REF(node_name), K::string, R::restart, 0, 0, {},
       "this node's name in replies and logs; empty: hostname-pid"},
      {"stats_interval", DUPLEX_REF(stats_interval), K::seconds, R::restart, 0, day, {},
       "period of the stats:node figures (0 = off; needs [namespaces.stats])"},
      {"namespaces_strict", DUPLEX_REF(namespaces_strict), K::boolean, R::restart, 0, 0, {},
       "unknown namespaces are refused (102) instead of using [namespace_defaults]"},

      // [server]
      {"server.host", DUPLEX_REF(server.host), K::string, R::restart, 0, 0, {}, "address to listen on"},
      {"server.port", DUPLEX_REF(server.port), K::integer, R::restart, 0, 65535, {}, "TCP port; 0 picks a free one"},
      {"server.threads", DUPLEX_REF(server.threads), K::integer, R::restart, 0, 256, {},
       "event loops (0 = one per core)"},
      {"server.backlog", DUPLEX_REF(server.backlog), K::integer, R::restart, 1, 65535, {}, "listen() backlog"},
      {"server.reuse_port", DUPLEX_REF(server.reuse_port), K::boolean, R::restart, 0, 0, {},
       "one SO_REUSEPORT socket per loop; other processes may listen on the same address"},
      {"server.max_connections", DUPLEX_REF(server.max_connections), K::integer, R::restart, 1, 10'000'000, {},
       "across all loops; further connections are closed at once"},
      {"server.max_connections_per_ip", DUPLEX_REF(server.max_connections_per_ip), K::integer, R::restart, 0,
       10'000'000, {}, "per client address (0 = no limit)"},
      {"server.max_send_buffer", DUPLEX_REF(server.max_send_buffer), K::size, R::restart, 1 * kib, 1 * gib, {},
       "per connection: bytes the kernel has not taken yet"},
      // An enum's choices are listed in the enum's order (its values are their indexes).
      {"server.backpressure", DUPLEX_REF(server.backpressure), K::choice, R::restart, 0, 0, {"close", "drop"},
       "over max_send_buffer: close the connection (1008) or drop the message"},
      {"server.read_buffer_size", DUPLEX_REF(server.read_buffer_size), K::size, R::restart, 4 * kib, 64 * mib, {},
       "one per event loop, shared by its connections"},
      {"server.io", DUPLEX_REF(server.io), K::choice, R::restart, 0, 0, {"auto", "epoll", "io_uring"},
       "event loop backend: auto (DUPLEX_IO decides; unset: io_uring where the kernel allows it, else epoll), epoll or io_uring"},
      {"server.io_uring_buffers", DUPLEX_REF(server.ring_buffers.count), K::integer, R::restart,
       net::RingBuffers::min_count, net::RingBuffers::max_count, {},
       "io_uring: provided receive buffers per event loop (a power of two)"},
      {"server.io_uring_buffer_size", DUPLEX_REF(server.ring_buffers.size), K::size, R::restart,
       net::RingBuffers::min_size, net::RingBuffers::max_size, {},
       "io_uring: bytes per receive buffer; a message larger than one costs a completion per buffer"},

      {"server.http.max_line_bytes", DUPLEX_REF(server.http.max_line_bytes), K::size, R::restart, 256, 1 * mib, {},
       "request line and each header line"},
      {"server.http.max_header_count", DUPLEX_REF(server.http.max_header_count), K::integer, R::restart, 8, 1024, {},
       "header lines per request"},
      {"server.http.max_head_bytes", DUPLEX_REF(server.http.max_head_bytes), K::size, R::restart, 1 * kib, 4 * mib, {},
       "the whole request head"},

      {"server.websocket.max_frame_size", DUPLEX_REF(server.websocket.max_frame_size), K::size, R::restart, 125,
       1 * gib, {}, "one frame's payload; larger: close 1009"},
      {"server.websocket.max_message_size", DUPLEX_REF(server.websocket.max_message_size), K::size, R::restart, 125,
       1 * gib, {}, "a whole (inflated) message; duplex serve lowers it to limits.max_command_bytes"},

      {"server.timeouts.handshake", DUPLEX_REF(server.timeouts.handshake), K::millis, R::restart, 1, 3'600'000, {},
       "TCP accept to 101 Switching Protocols, TLS included"},
      {"server.timeouts.ping_interval", DUPLEX_REF(server.timeouts.ping_interval), K::millis, R::restart, 0, day_ms,
       {}, "ping a connection silent this long (0 = never)"},
      {"server.timeouts.pong_timeout", DUPLEX_REF(server.timeouts.pong_timeout), K::millis, R::restart, 1, day_ms, {},
       "drop it if nothing arrives this long after the ping"},
      {"server.timeouts.idle", DUPLEX_REF(server.timeouts.idle), K::millis, R::restart, 0, 7 * day_ms, {},
       "close after this long without a message (0 = never)"},
      {"server.timeouts.close", DUPLEX_REF(server.timeouts.close), K::millis, R::restart, 1, 3'600'000, {},
       "wait this long for the close handshake"},

      {"server.tls.cert_file", DUPLEX_REF(server.tls.cert_file), K::string, R::tls, 0, 0, {},
       "PEM certificate chain; TLS is on when set"},
      {"server.tls.key_file", DUPLEX_REF(server.tls.key_file), K::string, R::tls, 0, 0, {}, "PEM private key"},
      {"server.tls.min_version", DUPLEX_REF(server.tls.min_version), K::choice, R::tls, 0, 0, {"1.2", "1.3"},
       "oldest TLS version accepted"},
      {"server.tls.ciphers", DUPLEX_REF(server.tls.ciphers), K::string, R::tls, 0, 0, {},
       "TLS 1.2 cipher list, OpenSSL syntax; empty = OpenSSL's default"},

      // The deflate options are copied into every loop's connections when
      // the server starts (and shared compressors are sized by them): a
      // restart applies them.
      {"server.deflate.mode", DUPLEX_REF(server.deflate.mode), K::choice, R::restart, 0, 0,
       {"off", "shared", "dedicated"}, "permessage-deflate: off, shared (compress once for all) or dedicated"},
      {"server.deflate.server_max_window_bits", DUPLEX_REF(server.deflate.server_max_window_bits), K::integer,
       R::restart, 8, 15, {}, "our compressor's window (dedicated mode)"},
      {"server.deflate.client_max_window_bits", DUPLEX_REF(server.deflate.client_max_window_bits), K::integer,
       R::restart, 8, 15, {}, "bound asked of clients' compressors"},
      {"server.deflate.client_no_context_takeover", DUPLEX_REF(server.deflate.client_no_context_takeover),
       K::boolean, R::restart, 0, 0, {}, "ask clients to keep no context between messages"},
      {"server.deflate.level", DUPLEX_REF(server.deflate.tuning.level), K::integer, R::restart, 0, 9, {},
       "zlib compression level"},
      {"server.deflate.mem_level", DUPLEX_REF(server.deflate.tuning.mem_level), K::integer, R::restart, 1, 9, {},
       "zlib memLevel (memory vs speed)"},
      {"server.deflate.min_size", DUPLEX_REF(server.deflate.tuning.min_size), K::size, R::restart, 0, 1 * gib, {},
       "messages under this many bytes are sent uncompressed"},

      // [auth]
      {"auth.hmac_secret", DUPLEX_REF(auth.hmac_secret), K::string, R::live, 0, 0, {},
       "HS256 secret; env DUPLEX_HMAC_SECRET"},
      {"auth.public_key_file", DUPLEX_REF(auth.public_key_file), K::string, R::live, 0, 0, {},
       "PEM public key for RS256 or ES256 tokens"},
      {"auth.allow_anonymous", DUPLEX_REF(auth.allow_anonymous), K::boolean, R::restart, 0, 0, {},
       "allow connections without a token"},
      {"auth.auth_timeout", DUPLEX_REF(auth.auth_timeout), K::seconds, R::restart, 1, 3600, {},
       "the first command must authenticate within this"},
      {"auth.refresh_before", DUPLEX_REF(auth.refresh_before), K::seconds, R::restart, 0, day, {},
       "push refresh this long before the token expires"},
      {"auth.allowed_origins", DUPLEX_REF(auth.allowed_origins), K::origins, R::live, 0, 0, {},
       "browser Origins allowed to open a session; empty = same host only"},

      // [api]
      {"api.key", DUPLEX_REF(api.key), K::string, R::live, 0, 0, {},
       "the HTTP API's key; empty disables the API; env DUPLEX_API_KEY"},

      // [engine]
      {"engine.type", DUPLEX_REF(engine.type), K::choice, R::restart, 0, 0, {"sqlite", "memory", "redis", "nats"},
       "sqlite (durable), memory, redis or nats"},
      {"engine.broker", DUPLEX_REF(engine.broker), K::choice, R::restart, 0, 0, {"", "local", "redis", "nats"},
       "instead of type, with history: the fan-out to other nodes (local: none)"},
      {"engine.history", DUPLEX_REF(engine.history), K::choice, R::restart, 0, 0,
       {"", "sqlite", "memory", "redis", "jetstream"},
       "instead of type, with broker: where offsets, history, idempotency keys and presence live"},
      {"engine.data_dir", DUPLEX_REF(engine.data_dir), K::string, R::restart, 0, 0, {},
       "sqlite: <data_dir>/duplex.db"},
      {"engine.fsync", DUPLEX_REF(engine.fsync), K::boolean, R::restart, 0, 0, {},
       "sqlite: synchronous=FULL (survives power loss) instead of NORMAL"},
      {"engine.max_batch", DUPLEX_REF(engine.max_batch), K::integer, R::restart, 1, 100'000, {},
       "publishes per commit"},
      {"engine.max_in_flight", DUPLEX_REF(engine.max_in_flight), K::integer, R::restart, 1, 100'000'000, {},
       "engine operations accepted and not completed (publishes, history and presence reads); more: error 113 / HTTP 503"},

      {"engine.redis.addresses", DUPLEX_REF(engine.redis.addresses), K::strings, R::restart, 0, 0, {},
       "host:port; several: channels sharded by consistent hashing"},
      {"engine.redis.username", DUPLEX_REF(engine.redis.username), K::string, R::restart, 0, 0, {},
       "Redis ACL user (AUTH username password); empty: the default user"},
      {"engine.redis.password", DUPLEX_REF(engine.redis.password), K::string, R::restart, 0, 0, {},
       "AUTH; env DUPLEX_REDIS_PASSWORD"},
      {"engine.redis.db", DUPLEX_REF(engine.redis.db), K::integer, R::restart, 0, 1'000, {}, "SELECT"},
      {"engine.redis.prefix", DUPLEX_REF(engine.redis.prefix), K::string, R::restart, 0, 0, {},
       "key and pub/sub channel prefix"},
      {"engine.redis.subscriber_connections", DUPLEX_REF(engine.redis.subscriber_connections), K::integer,
       R::restart, 1, 64, {}, "pub/sub connections per address"},
      {"engine.redis.connect_timeout", DUPLEX_REF(engine.redis.connect_timeout), K::millis, R::restart, 10, 600'000,
       {}, "a connection attempt that takes longer fails"},
      {"engine.redis.command_timeout", DUPLEX_REF(engine.redis.command_timeout), K::millis, R::restart, 10, 600'000,
       {}, "a command unanswered this long fails and drops the connection"},
      {"engine.redis.reconnect_min", DUPLEX_REF(engine.redis.reconnect_min), K::millis, R::restart, 1, 600'000, {},
       "first backoff after a lost connection, doubling with jitter"},
      {"engine.redis.reconnect_max", DUPLEX_REF(engine.redis.reconnect_max), K::millis, R::restart, 1, 600'000, {},
       "upper bound of that backoff"},
      {"engine.redis.pubsub_ping_interval", DUPLEX_REF(engine.redis.pubsub_ping_interval), K::millis, R::restart, 0,
       600'000, {}, "pub/sub connections PING this often; unanswered within command_timeout: dropped, subscribers resubscribe (0 = off)"},
      {"engine.redis.presence_ttl", DUPLEX_REF(engine.redis.presence_ttl), K::seconds, R::restart, 3, day, {},
       "presence entries of a dead node vanish after this"},
      {"engine.redis.history_meta_ttl", DUPLEX_REF(engine.redis.history_meta_ttl), K::seconds, R::restart, 0,
       3650 * day, {}, "epoch and offset kept this long after the last publish (0 = forever)"},
      {"engine.redis.node_ttl", DUPLEX_REF(engine.redis.node_ttl), K::seconds, R::restart, 2, 3600, {},
       "a node missing heartbeats this long leaves the registry"},

      {"engine.redis.sentinels", DUPLEX_REF(engine.redis.sentinels), K::strings, R::restart, 0, 0, {},
       "Redis Sentinel host:port list; set: the master is discovered through them (instead of addresses)"},
      {"engine.redis.sentinel_master", DUPLEX_REF(engine.redis.sentinel_master), K::string, R::restart, 0, 0, {},
       "the master name the sentinels monitor (needed with sentinels)"},
      {"engine.redis.sentinel_password", DUPLEX_REF(engine.redis.sentinel_password), K::string, R::restart, 0, 0,
       {}, "AUTH to the sentinels; env DUPLEX_REDIS_SENTINEL_PASSWORD"},
      {"engine.redis.wait_replicas", DUPLEX_REF(engine.redis.wait_replicas), K::integer, R::restart, 0, 16, {},
       "a publish is acknowledged only once this many replicas have it (WAIT); 0 = once the master has it"},
      {"engine.redis.wait_timeout", DUPLEX_REF(engine.redis.wait_timeout), K::millis, R::restart, 1, 600'000, {},
       "WAIT's bound; fewer replicas by then: the publish is not acknowledged"},
      {"engine.redis.cluster", DUPLEX_REF(engine.redis.cluster), K::boolean, R::restart, 0, 0, {},
       "Redis Cluster: addresses are seed nodes; each channel's keys on one slot, commands sent to its master"},
      {"engine.redis.cluster_max_redirects", DUPLEX_REF(engine.redis.cluster_max_redirects), K::integer, R::restart,
       1, 16, {}, "cluster: MOVED/ASK redirections followed per command; more: the command fails"},
      {"engine.redis.cluster_pubsub", DUPLEX_REF(engine.redis.cluster_pubsub), K::choice, R::restart, 0, 0,
       {"sharded", "global"},
       "cluster: sharded = SPUBLISH/SSUBSCRIBE on the channel's shard (Redis 7); global = PUBLISH to every node"},
      {"engine.redis.tls", DUPLEX_REF(engine.redis.tls), K::boolean, R::restart, 0, 0, {},
       "TLS to every Redis server and sentinel"},
      {"engine.redis.tls_ca", DUPLEX_REF(engine.redis.tls_ca), K::string, R::restart, 0, 0, {},
       "CA bundle (PEM) the servers' certificates are verified against; empty: the system store"},
      {"engine.redis.tls_cert", DUPLEX_REF(engine.redis.tls_cert), K::string, R::restart, 0, 0, {},
       "client certificate (PEM) for tls-auth-clients; with tls_key"},
      {"engine.redis.tls_key", DUPLEX_REF(engine.redis.tls_key), K::string, R::restart, 0, 0, {},
       "the client certificate's unencrypted private key (PEM)"},
      {"engine.redis.tls_server_name", DUPLEX_REF(engine.redis.tls_server_name), K::string, R::restart, 0, 0, {},
       "SNI and the name the certificate must carry; empty: the host of each address"},
      {"engine.redis.tls_verify", DUPLEX_REF(engine.redis.tls_verify), K::boolean, R::restart, 0, 0, {},
       "verify the certificate and its name; false only for tests or self-signed servers (logged)"},

      {"engine.nats.url", DUPLEX_REF(engine.nats.url), K::string, R::restart, 0, 0, {},
       "NATS server(s), comma-separated for a cluster"},
      {"engine.nats.subject_prefix", DUPLEX_REF(engine.nats.subject_prefix), K::string, R::restart, 0, 0, {},
       "subjects are <prefix>.ch.<channel>"},
      {"engine.nats.ping_interval", DUPLEX_REF(engine.nats.ping_interval), K::millis, R::restart, 100, 600'000, {},
       "every NATS connection PINGs this often; three unanswered: dropped, subscribers resubscribe, reconnected"},
      {"engine.nats.reorder_window", DUPLEX_REF(engine.nats.reorder_window), K::millis, R::restart, 1, 60'000, {},
       "wait this long for an offset that arrives out of order"},
      {"engine.nats.max_held", DUPLEX_REF(engine.nats.max_held), K::integer, R::restart, 1, 10'000'000, {},
       "publications held per channel meanwhile; more: its subscribers resubscribe"},
      {"engine.nats.storage", DUPLEX_REF(engine.nats.storage), K::choice, R::restart, 0, 0, {"redis", "jetstream"},
       "where offsets, history, idempotency keys, presence and the registry live: redis ([engine.redis]) or "
       "jetstream (these NATS servers, run with -js)"},
      {"engine.nats.jetstream_storage", DUPLEX_REF(engine.nats.jetstream_storage), K::choice, R::restart, 0, 0,
       {"file", "memory"}, "jetstream: streams on disk (survive a server restart) or in memory"},
      {"engine.nats.jetstream_replicas", DUPLEX_REF(engine.nats.jetstream_replicas), K::integer, R::restart, 1, 5, {},
       "jetstream: copies of each stream and bucket (3 in a 3-server cluster)"},
      {"engine.nats.request_timeout", DUPLEX_REF(engine.nats.request_timeout), K::millis, R::restart, 100, 60'000, {},
       "jetstream: a request unanswered this long fails (unavailable)"},
      {"engine.nats.history_meta_ttl", DUPLEX_REF(engine.nats.history_meta_ttl), K::seconds, R::restart, 0, 365 * day,
       {}, "jetstream: a channel idle this long is forgotten, its next publish starts a new epoch (0 = never)"},
      {"engine.nats.presence_ttl", DUPLEX_REF(engine.nats.presence_ttl), K::seconds, R::restart, 3, day, {},
       "jetstream: presence entries of dead nodes vanish after this; refreshed every third of it"},
      {"engine.nats.node_ttl", DUPLEX_REF(engine.nats.node_ttl), K::seconds, R::restart, 2, 3600, {},
       "jetstream: a node missing heartbeats this long leaves the registry"},

      // [fallback]
      {"fallback.max_sessions", DUPLEX_REF(fallback.max_sessions), K::integer, R::restart, 0, 1'000'000, {},
       "SSE and long-polling sessions per node"},
      {"fallback.max_buffer_events", DUPLEX_REF(fallback.max_buffer_events), K::integer, R::restart, 1, 1'000'000,
       {}, "events kept per session for resume"},
      {"fallback.max_commands_per_request", DUPLEX_REF(fallback.max_commands_per_request), K::integer, R::restart, 1,
       10'000, {}, "commands in one POST"},
      {"fallback.sse_heartbeat", DUPLEX_REF(fallback.sse_heartbeat), K::millis, R::restart, 100, 3'600'000, {},
       "comment line on idle SSE streams"},
      {"fallback.sse_grace", DUPLEX_REF(fallback.sse_grace), K::millis, R::restart, 0, 3'600'000, {},
       "a dropped SSE stream may resume this long"},
      {"fallback.poll_wait", DUPLEX_REF(fallback.poll_wait), K::millis, R::restart, 0, 600'000, {},
       "a poll with nothing to return waits this long"},
      {"fallback.poll_idle", DUPLEX_REF(fallback.poll_idle), K::millis, R::restart, 1000, 3'600'000, {},
       "a long-poll session without polls expires after this"},
      {"fallback.post_reply_timeout", DUPLEX_REF(fallback.post_reply_timeout), K::millis, R::restart, 10, 600'000,
       {}, "slower replies follow on the stream instead of the POST response"},

      // [limits]
      {"limits.max_command_bytes", DUPLEX_REF(limits.max_command_bytes), K::size, R::restart, 1 * kib, 64 * mib, {},
       "one command frame"},
      {"limits.max_json_depth", DUPLEX_REF(limits.max_json_depth), K::integer, R::restart, 1, 256, {},
       "nesting depth of a command's JSON"},
      {"limits.max_data_bytes", DUPLEX_REF(limits.max_data_bytes), K::size, R::restart, 1, 64 * mib, {},
       "a publication's data"},
      {"limits.max_subscriptions", DUPLEX_REF(limits.max_subscriptions), K::integer, R::live, 1, 1'000'000, {},
       "channels per connection"},
      {"limits.max_channels", DUPLEX_REF(limits.max_channels), K::integer, R::restart, 1, 100'000'000, {},
       "distinct channels with subscribers on this node"},
      {"limits.max_channel_length", DUPLEX_REF(limits.max_channel_length), K::integer, R::restart, 1, 255, {},
       "bytes in a channel name"},
      {"limits.max_history_size", DUPLEX_REF(limits.max_history_size), K::integer, R::restart, 0, 1'000'000, {},
       "upper bound for any namespace's history_size"},
      {"limits.publish_rate", DUPLEX_REF(limits.publish_rate), K::number, R::live, 0.001, 1e6, {},
       "publishes per second per connection, sustained"},
      {"limits.publish_burst", DUPLEX_REF(limits.publish_burst), K::number, R::live, 1, 1e6, {}, "token bucket depth"},
      {"limits.rate_violations_before_disconnect", DUPLEX_REF(limits.rate_violations_before_disconnect), K::integer,
       R::live, 1, 1'000'000, {}, "rate-limited publishes tolerated before closing with 4004"},
      {"limits.idempotency_window", DUPLEX_REF(limits.idempotency_window), K::seconds, R::restart, 0, 7 * day, {},
       "how long an idempotency_key is remembered"},
      {"limits.max_idempotency_key", DUPLEX_REF(limits.max_idempotency_key), K::integer, R::restart, 1, 1024, {},
       "bytes in an idempotency_key"},
      {"limits.max_pending_deliveries", DUPLEX_REF(limits.max_pending_deliveries), K::integer, R::restart, 1,
       100'000'000, {}, "engine events waiting for one event loop; more: subscribers of the overflowed channels resubscribe (2500)"},

      // [log]
      {"log.level", DUPLEX_REF(log.level), K::choice, R::live, 0, 0, {"trace", "debug", "info", "warn", "error"},
       "least severe level written"},
      {"log.format", DUPLEX_REF(log.format), K::choice, R::live, 0, 0, {"text", "json"},
       "text or json (one object per line)"},

      // [web]
      {"web.root", DUPLEX_REF(web.root), K::string, R::restart, 0, 0, {},
       "directory served at /; empty = the installed or build tree's web/"},
      {"web.demo_tokens", DUPLEX_REF(web.demo_tokens), K::boolean, R::live, 0, 0, {},
       "GET /demo/token?user=NAME mints HS256 tokens (development only)"},
      {"web.demo_token_ttl", DUPLEX_REF(web.demo_token_ttl), K::seconds, R::live, 1, 30 * day, {},
       "lifetime of demo tokens"},
      {"web.cors_origins", DUPLEX_REF(web.cors_origins), K::origins, R::live, 0, 0, {},
       "origins allowed to call the HTTP API and fallbacks from a browser"},
  };
  // [namespace_defaults]: the namespace rows below HubConfig::namespace_defaults.
  for (const NamespaceField& n : namespace_fields()) {
    f.push_back({"namespace_defaults." + n.key,
                 [ref = n.ref](HubConfig& c) { return ref(c.namespace_defaults); }, n.kind, n.reload, n.min, n.max,
                 n.choices, n.doc});
  }
  return f;
}

#undef DUPLEX_REF

std::string show_size(std::uint64_t bytes) {
  constexpr std::uint64_t k = 1024, m = k * 1024, g = m * 1024;
  if (bytes != 0 && bytes % g == 0) return std::to_string(bytes / g) + "GiB";
  if (bytes != 0 && bytes % m == 0) return std::to_string(bytes / m) + "MiB";
  if (bytes != 0 && bytes % k == 0) return std::to_string(bytes / k) + "KiB";
  return std::to_string(bytes) + "B";
}

std::string show_millis(std::int64_t ms) {
  if (ms == 0) return "0s";
  if (ms % 86'400'000 == 0) return std::to_string(ms / 86'400'000) + "d";
  if (ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + '"';
}

}  // namespace

const std::vector<NamespaceField>& namespace_fields() {
  static const std::vector<NamespaceField> table = make_namespace_fields();
  return table;
}

const std::vector<ConfigField>& fields() {
  static const std::vector<ConfigField> table = make_fields();
  return table;
}

bool equal(const Ref& a, const Ref& b) {
  if (a.index() != b.index()) return false;
  return std::visit(
      [&](auto* pa) {
        using P = decltype(pa);
        return *pa == *std::get<P>(b);
      },
      a);
}

void assign(const Ref& to, const Ref& from) {
  std::visit(
      [&](auto* pto) {
        using P = decltype(pto);
        *pto = *std::get<P>(from);
      },
      to);
}

std::string toml_value(const Ref& ref, Kind kind, const std::vector<std::string_view>& choices) {
  return std::visit(
      [&](auto* p) -> std::string {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, bool>) {
          return *p ? "true" : "false";
        } else if constexpr (std::is_same_v<T, std::string>) {
          return quoted(*p);
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          std::string out = "[";
          for (std::size_t i = 0; i < p->size(); ++i) out += (i ? ", " : "") + quoted((*p)[i]);
          return out + "]";
        } else if constexpr (std::is_enum_v<T>) {
          const auto index = static_cast<std::size_t>(*p);
          return index < choices.size() ? quoted(choices[index]) : std::to_string(index);
        } else if constexpr (std::is_same_v<T, double>) {
          std::ostringstream out;
          out << *p;
          return out.str();
        } else if constexpr (std::is_same_v<T, Seconds>) {
          return quoted(show_millis(p->count() * 1000));
        } else if constexpr (std::is_same_v<T, std::chrono::milliseconds>) {
          return quoted(show_millis(p->count()));
        } else {
          static_assert(std::is_integral_v<T>);
          if (kind == Kind::size) return quoted(show_size(static_cast<std::uint64_t>(*p)));
          return std::to_string(+*p);
        }
      },
      ref);
}

bool kind_fits(Kind kind, const Ref& ref) {
  return std::visit(
      [&](auto* p) {
        using T = std::remove_pointer_t<decltype(p)>;
        switch (kind) {
          case Kind::boolean: return std::is_same_v<T, bool>;
          case Kind::integer: return std::is_integral_v<T> && !std::is_same_v<T, bool>;
          case Kind::number: return std::is_same_v<T, double>;
          case Kind::size: return std::is_same_v<T, std::size_t>;
          case Kind::seconds: return std::is_same_v<T, Seconds>;
          case Kind::millis: return std::is_same_v<T, std::chrono::milliseconds>;
          case Kind::string: return std::is_same_v<T, std::string>;
          case Kind::strings:
          case Kind::origins: return std::is_same_v<T, std::vector<std::string>>;
          case Kind::choice: return std::is_same_v<T, std::string> || std::is_enum_v<T>;
        }
        return false;
      },
      ref);
}

}  // namespace duplex::hub::config_fields
