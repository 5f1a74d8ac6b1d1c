// The engines' settings: [engine], [engine.redis] and [engine.nats] of the
// config file (docs/CONFIG.md); hub::HubConfig holds an EngineConfig.
#pragma once
#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

namespace duplex::engines {

using Seconds = std::chrono::seconds;

// [engine.redis]: offsets, history, idempotency keys, presence and the node
// registry in Redis; fan-out over Redis pub/sub (type "redis").
struct RedisConfig {
  // host:port; channels sharded by consistent hashing (cluster mode: seed nodes)
  std::vector<std::string> addresses{"127.0.0.1:6379"};
  std::string username;            // ACL user: AUTH username password; empty: AUTH password (user "default")
  std::string password;            // AUTH (env DUPLEX_REDIS_PASSWORD)
  std::size_t db = 0;              // SELECT
  std::string prefix = "duplex";   // key and pub/sub channel prefix (several hubs on one Redis)
  std::size_t subscriber_connections = 2;  // pub/sub connections per address
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds command_timeout{5000};  // a command unanswered this long fails and drops the connection
  std::chrono::milliseconds reconnect_min{100};     // backoff after a lost connection, doubling with jitter
  std::chrono::milliseconds reconnect_max{5000};
  // Pub/sub connections PING this often; unanswered within command_timeout
  // the connection drops and its channels' subscribers resubscribe (a
  // paused Redis or a partition, noticed with nothing else to send). 0: off.
  std::chrono::milliseconds pubsub_ping_interval{2000};
  Seconds presence_ttl{60};        // entries of dead nodes vanish after this; refreshed every third of it
  Seconds history_meta_ttl{0};     // channel epoch/offset kept this long after the last publish (0 = forever)
  Seconds node_ttl{10};            // a node missing heartbeats this long leaves the registry
  // Sentinel mode (instead of addresses): the master of `sentinel_master`
  // is asked of these sentinels (host:port) at every (re)connect.
  std::vector<std::string> sentinels;
  std::string sentinel_master;     // the name the sentinels monitor
  std::string sentinel_password;   // AUTH to the sentinels (env DUPLEX_REDIS_SENTINEL_PASSWORD)
  // A publish is acknowledged only once this many replicas have it (WAIT
  // after the publish script); 0: once the master has it.
  std::size_t wait_replicas = 0;
  std::chrono::milliseconds wait_timeout{1000};  // WAIT's bound; must be below command_timeout
  // Redis Cluster mode: `addresses` are seed nodes of one cluster; each
  // channel's keys share a hash tag (one slot) and commands go to the
  // slot's master (docs/ENGINES.md, "Redis Cluster").
  bool cluster = false;
  std::size_t cluster_max_redirects = 5;  // MOVED/ASK followed per command; more: it fails
  // "sharded": SPUBLISH/SSUBSCRIBE (Redis 7), each channel's messages stay
  // on its slot's shard; "global": PUBLISH/SUBSCRIBE, every message goes to
  // every node (Redis 6). Every hub node of one cluster must use the same.
  std::string cluster_pubsub = "sharded";
  // TLS on every connection (servers and sentinels): the certificate is
  // verified against tls_ca (empty: the system store) and the host name.
  bool tls = false;
  std::string tls_ca;              // CA bundle (PEM)
  std::string tls_cert;            // client certificate (PEM), for tls-auth-clients; with tls_key
  std::string tls_key;             // its unencrypted private key (PEM)
  std::string tls_server_name;     // SNI and the name verified; empty: the host of each address
  bool tls_verify = true;          // false: no certificate or name check (tests, self-signed; logged)
};

// [engine.nats]: fan-out over NATS subjects (type "nats"); offsets, history,
// presence and the registry in [engine.redis] (storage "redis") or in the
// same NATS servers' JetStream (storage "jetstream": a cluster of NATS only).
struct NatsConfig {
  std::string url = "nats://127.0.0.1:4222";  // comma-separated for a cluster
  std::string subject_prefix = "duplex";
  // Every connection PINGs this often; three unanswered drop it (the
  // channels' subscribers resubscribe) and it reconnects.
  std::chrono::milliseconds ping_interval{2000};
  std::chrono::milliseconds reorder_window{500};  // wait this long for an offset that arrives out of order
  std::size_t max_held = 10'000;  // publications held per channel meanwhile; more: its subscribers resubscribe
  std::string storage = "redis";  // "redis" ([engine.redis]) or "jetstream"
  // JetStream storage (docs/ENGINES.md, "History on JetStream"):
  std::string jetstream_storage = "file";  // "file" (survives a server restart) or "memory"
  std::size_t jetstream_replicas = 1;      // copies of each stream and bucket (3 in a 3-server cluster)
  std::chrono::milliseconds request_timeout{5000};  // a JetStream request unanswered this long fails
  Seconds history_meta_ttl{0};  // a channel idle this long is forgotten (its next publish starts a new epoch); 0 = never
  Seconds presence_ttl{60};     // entries of dead nodes vanish after this; refreshed every third of it
  Seconds node_ttl{10};         // a node missing heartbeats this long leaves the registry
};

// [engine]
struct EngineConfig {
  std::string type = "sqlite";     // "sqlite" (durable), "memory", "redis" or "nats"
  // The engine named by its parts instead of `type` (config file only):
  // broker "local", "redis" or "nats"; history "sqlite", "memory", "redis" or
  // "jetstream"; empty: `type` decides. Loading the file turns them into
  // `type` and `nats.storage` (config/engine_composition.hpp); make_engine
  // reads only those.
  std::string broker;
  std::string history;
  std::string data_dir = "data";   // sqlite: <data_dir>/duplex.db (+ -wal)
  bool fsync = false;              // sqlite: synchronous=FULL (survives power loss) vs NORMAL (process crash)
  std::size_t max_batch = 1024;    // publishes per commit
  // Operations accepted and not yet completed (publishes, history reads,
  // presence lists; sqlite: publishes waiting for the writer); past it they
  // fail at once with `unavailable`, never queued.
  std::size_t max_in_flight = 100'000;
  RedisConfig redis;
  NatsConfig nats;
};

}  // namespace duplex::engines
