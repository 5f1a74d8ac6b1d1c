// Internal: what every connection of one server (or one client connection) shares.
#pragma once
#include <sys/socket.h>

#include <atomic>
#include <vector>
#include <memory>
#include <optional>
#include <string>

#include "duplex/net/handlers.hpp"
#include "duplex/net/options.hpp"
#include "duplex/net/tls.hpp"
#include "duplex/net/url.hpp"
#include "duplex/protocol/http_head.hpp"

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

struct HandshakeState {
  HandshakeState(protocol::HttpHeadParser::Kind kind, const protocol::HttpLimits& limits) : parser(kind, limits) {}
  protocol::HttpHeadParser parser;
  // Client, connecting: the addresses the host resolved to, tried in order.
  struct Address {
    sockaddr_storage storage{};
    socklen_t length = 0;
  };
  std::vector<Address> addresses;
  std::size_t next_address = 0;
  int connect_error = 0;                            // errno of the last address that failed
  std::string key;                                  // client: our Sec-WebSocket-Key
  std::string target;                // server: the request target, until on_open returns
  // Server, plain HTTP requests (keep-alive: one request at a time).
  enum class HttpState : std::uint8_t { reading_head, reading_body, awaiting_response, streaming };
  HttpState http_state = HttpState::reading_head;
  std::size_t body_expected = 0;
  std::string body;
  std::string pending_input;   // bytes of the next request, received while this one is served
  bool keep_alive = true;
  bool head_request = false;   // HEAD: no body in the response
};

}  // namespace duplex::net
