// Application callbacks. All run on the connection's own loop thread.
//
// What every callback may do (the lifetime rule, see connection.hpp): call
// any Connection function of this or another connection of the same loop
// (send, close, terminate, http_respond...) and keep using the Connection&
// it was given until it returns: nothing is freed under it, and a
// connection it ended gets its on_close later, from the loop. A callback
// that throws ends its own connection (1011 when open; 500 for HTTP) and is
// logged once (net::set_error_log); it never reaches the loop. Views passed
// in are valid during the call only. Other threads use
// Connection::post_send / post_close with a weak_ptr.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/protocol/handshake.hpp"
#include "duplex/protocol/opcode.hpp"

namespace duplex::net {

class Connection;

// The server's answer to an upgrade request, filled by Handlers::on_upgrade.
struct UpgradeDecision {
  bool accept = true;
  int status = 403;                  // when rejected
  std::string message = "forbidden";
  std::string subprotocol;           // preset to the first supported one the client offered
  std::vector<protocol::HttpHeader> headers;  // extra response headers
  void reject(int http_status, std::string text) {
    accept = false;
    status = http_status;
    message = std::move(text);
  }
};

// A plain HTTP request (not a WebSocket upgrade), server only. Views are valid
// during the on_http call only.
struct HttpRequest {
  const protocol::HttpHead& head;
  std::string_view method;
  std::string_view target;  // path and query
  std::string_view path;
  std::string_view query;
  std::string_view body;
};

struct Handlers {
  // Server only: inspect the request (Origin, path, token...) and accept or
  // reject. May set user_data. Sending is not possible yet; terminate() drops
  // the TCP connection (no on_close: it never opened).
  std::function<void(Connection&, const protocol::UpgradeRequest&, const protocol::HttpHead&, UpgradeDecision&)>
      on_upgrade;
  // The connection is open: it may send and close at once.
  std::function<void(Connection&)> on_open;
  // Text (validated UTF-8) or binary. The view is valid during the call only.
  // Frames later in the same read are not delivered once this call
  // terminated the connection (or a send put it over the limit).
  std::function<void(Connection&, protocol::Opcode, std::string_view)> on_message;
  // A ping; its pong is already queued (one pong for the latest of several
  // while the peer is not reading, RFC 6455 §5.5.3).
  std::function<void(Connection&, std::string_view)> on_ping;
  std::function<void(Connection&, std::string_view)> on_pong;
  // Exactly once for every connection that opened: the peer's close code (or
  // ours after a protocol error; 1006 when TCP dropped without a close frame;
  // 1008 over max_send_buffer). Runs from the loop, never from inside another
  // callback or a call of the application; the socket is already closed and
  // sends return SendStatus::closed. The last callback for the connection:
  // free per-connection state (user_data) here.
  std::function<void(Connection&, std::uint16_t code, std::string_view reason)> on_close;
  // The send buffer drained after backpressure (BackpressurePolicy::drop):
  // it may send again.
  std::function<void(Connection&)> on_drain;
  // Server only: a request that is not a WebSocket upgrade. Answer with
  // Connection::http_respond (now, or later while holding a shared_ptr to the
  // connection) or stream with http_begin_stream. Unset: such requests get 426.
  std::function<void(Connection&, const HttpRequest&)> on_http;
  // Server only: a connection that carried plain HTTP requests has closed
  // (for a pending or streaming response: the client went away). Like
  // on_close: from the loop, the last callback for the connection.
  std::function<void(Connection&)> on_http_closed;
  // Client only: DNS, TCP, TLS or handshake failure (the connection never
  // opened). From the loop, the last callback for the connection.
  std::function<void(std::string_view error)> on_error;
};

}  // namespace duplex::net
