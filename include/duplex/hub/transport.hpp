// The seam between a hub session and the wire protocol that carries it.
// WebSocket (duplex.v1), Server-Sent Events and long-polling implement it
// today; another client protocol (Pusher Channels, Centrifugo's) is another
// Transport over the same hub::Session, and the hub does not change.
#pragma once
#include <cstdint>
#include <string_view>

#include "duplex/net/prepared_message.hpp"

namespace duplex::hub {

// Called by the hub on the session's loop only.
//
// The re-entrancy rule: no method may end the session synchronously. A
// transport whose connection is gone (or over its send buffer) keeps the
// request and reports the end later, from a turn of its own loop, with
// Hub::closed; until then the hub may go on calling it, and those calls are
// dropped. So a hub handler can write, then request close, then keep using
// the session without checking for it being freed in between.
class Transport {
 public:
  virtual ~Transport() = default;
  // A message for this session only. `reply_to` is the id of the command it
  // answers, 0 for a push: a transport that carries replies apart from
  // pushes (a command POST's response) routes on it, never on the bytes.
  virtual void write(std::string_view encoded, std::uint64_t reply_to) = 0;
  // A push encoded once for every subscriber of a channel (the same bytes for all).
  virtual void write_shared(const net::PreparedMessage& frame) = 0;
  // The session ends: the disconnect push was its last write. The transport
  // puts that push on the wire first, then closes (WebSocket: close frame
  // `code`; SSE: end of stream; long-poll: the next poll's answer).
  virtual void request_close(std::uint16_t code, std::string_view reason) = 0;
  // For logs and metrics: "websocket", "sse", "long-poll".
  virtual std::string_view name() const = 0;
};

}  // namespace duplex::hub
