// engine.redis.* -> the options of one Redis connection: every connection
// of the engine (data nodes, pub/sub, cluster nodes, sentinels) gets its
// timeouts, reconnect backoff and TLS settings from here.
#pragma once
#include "duplex/engines/config.hpp"
#include "redis_connection.hpp"

namespace duplex::engines::detail {

// engine.redis.tls*: every connection's TLS settings (servers and sentinels).
RedisTlsOptions redis_tls_options(const RedisConfig& config);

// `target` (host, port; and whatever the caller set) with the config's
// timeouts, backoff, TLS and the data nodes' ACL user and password. The
// db stays the caller's (pub/sub and cluster connections use 0).
RedisConnectionOptions redis_connection_options(const RedisConfig& config, RedisConnectionOptions target = {});

}  // namespace duplex::engines::detail
