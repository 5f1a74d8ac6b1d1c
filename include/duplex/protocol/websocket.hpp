// The WebSocket protocol state machine, sans-I/O (RFC 6455 §5-§7).
//
// Bytes in -> events out; messages in -> bytes out. No sockets, no clocks:
// the caller reads the transport, calls receive(), writes whatever the
// protocol appended to its output buffer, and closes the transport when
// wants_transport_close() says so. The same class serves both roles.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "duplex/protocol/close_code.hpp"
#include "duplex/protocol/frame.hpp"
#include "duplex/protocol/mask.hpp"
#include "duplex/protocol/opcode.hpp"
#include "duplex/protocol/permessage_deflate.hpp"
#include "duplex/protocol/utf8.hpp"

namespace duplex::protocol {

struct Limits {
  std::size_t max_frame_size = 16u << 20;    // one frame's payload; larger -> close 1009
  std::size_t max_message_size = 16u << 20;  // a whole (inflated) message; larger -> close 1009
};

// Receives protocol events. Views passed to callbacks are valid only during
// the call. Callbacks may call the protocol's send functions (with any output
// buffer: the protocol writes nothing more to `out` after an event until the
// next receive call).
class EventHandler {
 public:
  virtual ~EventHandler() = default;
  // A complete text (validated UTF-8) or binary message.
  virtual void on_message(Opcode kind, std::string_view payload) = 0;
  // A ping; the protocol has already queued the pong when auto_pong is on.
  virtual void on_ping(std::string_view /*payload*/) {}
  virtual void on_pong(std::string_view /*payload*/) {}
  // The peer's close frame (code 1005 when it carried none). The reply, if
  // owed, is already queued.
  virtual void on_close(std::uint16_t /*code*/, std::string_view /*reason*/) {}
  // The peer broke the protocol; a close frame with `code` is queued and the
  // transport must be closed once it is flushed.
  virtual void on_protocol_error(std::uint16_t /*code*/, std::string_view /*what*/) {}
};

// Per-message compression choice when permessage-deflate is on.
enum class Compress : std::uint8_t { automatic, yes, no };

class WebSocket {
 public:
  enum class State : std::uint8_t {
    open,        // data flows both ways
    closing,     // we sent a close frame, awaiting the peer's
    closed,      // close handshake complete, or the connection failed
  };

  WebSocket(Role role, const Limits* limits, std::uint64_t mask_seed = 0);
  ~WebSocket();
  WebSocket(const WebSocket&) = delete;
  WebSocket& operator=(const WebSocket&) = delete;

  // The caller drives the core, one event at a time (the re-entrancy rule):
  // receive_event consumes bytes of `data` (modified in place: unmasked) up
  // to and including the first event, passes that event to `handler`, and
  // returns how many bytes it consumed. Bytes owed to the peer (pong, close
  // reply, close on error) are appended to `out` before the event is passed
  // on, never after: during and after the handler call the protocol holds no
  // reference to `out`, so the caller may pick a different output buffer for
  // the next call, or stop calling because the handler ended the connection.
  // Call again with the rest (data + consumed) while it is non-empty and
  // state() is not closed.
  std::size_t receive_event(std::uint8_t* data, std::size_t size, EventHandler& handler, std::string& out);
  // Consumes every byte of `data` (receive_event in a loop): for callers
  // whose `out` outlives the call and whose handlers never end the owner.
  void receive(std::uint8_t* data, std::size_t size, EventHandler& handler, std::string& out);

  // ---- sending (append frames to `out`; false if not allowed now) ----
  bool send(std::string& out, Opcode kind, std::string_view payload, Compress compress = Compress::automatic);
  bool send_text(std::string& out, std::string_view payload) { return send(out, Opcode::text, payload); }
  bool send_binary(std::string& out, std::string_view payload) { return send(out, Opcode::binary, payload); }
  // The header of the frame `send` would append for a message of `size`
  // bytes, for a caller that then writes the payload itself, unchanged,
  // from its own bytes (no copy into `out`). Only where the frame is just
  // that: a server's (unmasked) frame that `send` would not compress.
  // Writes at most max_frame_header_size bytes to `header` and returns how
  // many; 0 where `send` must be used instead (or would refuse).
  std::size_t plain_message_header(std::uint8_t* header, Opcode kind, std::size_t size,
                                   Compress compress = Compress::automatic) const;
  // One frame of a fragmented message: the first with text/binary, the rest
  // with continuation; `fin` ends the message. Control frames may interleave.
  bool send_frame(std::string& out, Opcode opcode, std::string_view payload, bool fin, bool rsv1 = false);
  bool ping(std::string& out, std::string_view payload = {});
  bool pong(std::string& out, std::string_view payload = {});
  // Starts the close handshake. `code` 1005 sends an empty close frame. The
  // reason is cut to 123 bytes on a UTF-8 boundary. False if invalid or
  // already closing.
  bool close(std::string& out, std::uint16_t code = close_code::normal, std::string_view reason = {});

  // ---- state ----
  State state() const { return state_; }
  Role role() const { return role_; }
  bool is_open() const { return state_ == State::open; }
  // True once the transport should be closed by this side after flushing
  // `out`: a server after the close handshake, either role after a failure.
  // A client waits for the server to close TCP first (RFC 6455 §7.1.1); the
  // caller applies a timeout.
  bool wants_transport_close() const { return state_ == State::closed && (role_ == Role::server || failed_); }
  bool close_received() const { return close_received_; }
  bool close_sent() const { return close_sent_; }
  bool failed() const { return failed_; }
  std::uint16_t peer_close_code() const { return peer_close_code_; }
  // Bytes of an incomplete message held between receive() calls.
  std::size_t buffered_message_bytes() const { return message_ ? message_->size() : 0; }

  // permessage-deflate (RFC 7692); owned by the caller, may be null.
  void set_deflate(PerMessageDeflate* deflate) { deflate_ = deflate; }
  PerMessageDeflate* deflate() const { return deflate_; }
  // Reply to pings automatically (default on). Off: the caller answers with
  // pong(); RFC 6455 §5.5.3 lets it answer only the latest of several pings.
  void set_auto_pong(bool on) { auto_pong_ = on; }

 private:
  enum class Stage : std::uint8_t { header, payload };

  // The common case in one step: a whole unfragmented text or binary frame
  // of under 126 bytes at the start of `data`, between messages. Returns the
  // bytes it consumed (the event passed on), or 0 to take the general path.
  std::size_t receive_small_message(std::uint8_t* data, std::size_t size, EventHandler& handler, std::string& out);
  bool parse_header(const std::uint8_t* h, EventHandler& handler, std::string& out);
  std::size_t header_size_needed(const std::uint8_t* h, std::size_t available) const;
  void consume_data(std::uint8_t* p, std::size_t n, bool whole_frame_here, EventHandler& handler, std::string& out);
  void finish_frame(std::string_view control_payload, EventHandler& handler, std::string& out);
  void handle_control(std::string_view payload, EventHandler& handler, std::string& out);
  void fail(std::uint16_t code, std::string_view what, EventHandler& handler, std::string& out);
  void fail_inflate(PerMessageDeflate::InflateStatus status, EventHandler& handler, std::string& out);
  void deliver(Opcode kind, std::string_view payload, EventHandler& handler);
  void append_frame_for_role(std::string& out, Opcode opcode, std::string_view payload, FrameFlags flags);
  MaskKey next_mask();
  void release_message_buffer();

  const Limits* limits_;
  PerMessageDeflate* deflate_ = nullptr;
  // Allocated only while a message or control frame spans reads: an idle
  // connection holds two null pointers.
  std::unique_ptr<std::string> message_;
  std::unique_ptr<std::string> control_;
  std::string& message();
  std::uint64_t remaining_ = 0;  // payload bytes left in the current frame
  std::uint64_t rng_;
  MaskKey mask_{};
  std::uint16_t peer_close_code_ = close_code::abnormal;
  Utf8Validator utf8_;
  Role role_;
  State state_ = State::open;
  Stage stage_ = Stage::header;
  Opcode frame_opcode_ = Opcode::continuation;
  Opcode message_opcode_ = Opcode::continuation;  // text/binary while a message is in progress
  std::uint8_t header_size_ = 0;                  // bytes in header_
  std::uint8_t header_[max_frame_header_size];
  std::uint8_t mask_offset_ = 0;
  // Flags as bits: this object is part of every idle connection.
  bool frame_fin_ : 1 = false;
  bool frame_masked_ : 1 = false;
  bool frame_payload_started_ : 1 = false;
  bool in_message_ : 1 = false;
  bool message_compressed_ : 1 = false;
  bool sending_fragmented_ : 1 = false;
  bool close_sent_ : 1 = false;
  bool close_received_ : 1 = false;
  bool failed_ : 1 = false;
  bool auto_pong_ : 1 = true;
  bool event_passed_ : 1 = false;  // receive_event: an event went to the handler, stop there
};

}  // namespace duplex::protocol
