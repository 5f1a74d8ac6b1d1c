// Internal: what every connection of one server (or one client connection) shares.
#pragma once
#include <sys/socket.h>

#include <atomic>
#include <vector>
#include <memory>
#include <optional>
#include <string>

#include "dialer.hpp"
#include "duplex/net/handlers.hpp"
#include "duplex/net/options.hpp"
#include "duplex/net/tls.hpp"
#include "duplex/net/url.hpp"
#include "duplex/protocol/http_head.hpp"
#include "duplex/protocol/http_server.hpp"

namespace duplex::net {

struct ConnectionConfig {
  Handlers handlers;
  protocol::Limits limits;
  protocol::HttpLimits http;
  Timeouts timeouts;
  std::size_t max_send_buffer = 1u << 20;
  BackpressurePolicy backpressure = BackpressurePolicy::close;
  std::shared_ptr<TlsContext> tls;
  // Server.
  std::vector<std::string> subprotocols;
  DeflateOptions deflate;
  std::atomic<std::size_t>* open_connections = nullptr;  // the server's counter
  class PerIpLimiter* per_ip = nullptr;                   // the server's, when max_connections_per_ip > 0
  // Client.
  ClientOptions client;
  WsUrl url;
};

// What a connection needs until it is open, freed then.
struct HandshakeState {
  // Server: the HTTP/1.1 side of the connection (the upgrade request, or
  // plain requests one at a time).
  std::optional<protocol::HttpServerSession> http;
  // Client: the server's answer to our upgrade request.
  std::optional<protocol::HttpHeadParser> response;
  // Client, connecting: the host's addresses, tried in order.
  Dialer dialer;
  std::string key;  // client: our Sec-WebSocket-Key
};

}  // namespace duplex::net
