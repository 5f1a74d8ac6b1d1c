#include "redis_connection_options.hpp"

namespace duplex::engines::detail {

RedisTlsOptions redis_tls_options(const RedisConfig& config) {
  RedisTlsOptions tls;
  tls.enabled = config.tls;
  tls.ca_file = config.tls_ca;
  tls.cert_file = config.tls_cert;
  tls.key_file = config.tls_key;
  tls.server_name = config.tls_server_name;
  tls.verify = config.tls_verify;
  return tls;
}

RedisConnectionOptions redis_connection_options(const RedisConfig& config, RedisConnectionOptions target) {
  target.username = config.username;
  target.password = config.password;
  target.connect_timeout = config.connect_timeout;
  target.command_timeout = config.command_timeout;
  target.reconnect_min = config.reconnect_min;
  target.reconnect_max = config.reconnect_max;
  target.tls = redis_tls_options(config);
  return target;
}

}  // namespace duplex::engines::detail
