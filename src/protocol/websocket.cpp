#include "duplex/protocol/websocket.hpp"

#include <cstring>
#include <random>

#include "duplex/protocol/permessage_deflate.hpp"

namespace duplex::protocol {

namespace {
// Message buffers above this are released after each message, so that a
// connection that once received a large message does not keep it forever.
constexpr std::size_t keep_message_capacity = 16u << 10;

std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Cuts `reason` to at most `max` bytes without splitting a UTF-8 sequence.
std::string_view cut_utf8(std::string_view reason, std::size_t max) {
  if (reason.size() <= max) return reason;
  std::size_t n = max;
  while (n > 0 && (static_cast<std::uint8_t>(reason[n]) & 0xC0) == 0x80) --n;
  return reason.substr(0, n);
}
}  // namespace

WebSocket::WebSocket(Role role, const Limits* limits, std::uint64_t mask_seed)
    : limits_(limits), rng_(mask_seed), role_(role) {
  if (role_ == Role::client && rng_ == 0) rng_ = (std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
}

WebSocket::~WebSocket() = default;

MaskKey WebSocket::next_mask() {
  const std::uint64_t r = splitmix64(rng_);
  return MaskKey{static_cast<std::uint8_t>(r), static_cast<std::uint8_t>(r >> 8), static_cast<std::uint8_t>(r >> 16),
                 static_cast<std::uint8_t>(r >> 24)};
}

void WebSocket::append_frame_for_role(std::string& out, Opcode opcode, std::string_view payload, FrameFlags flags) {
  if (role_ == Role::client)
    append_masked_frame(out, opcode, payload, next_mask(), flags);
  else
    append_frame(out, opcode, payload, flags);
}

namespace {
// The message buffer a connection gave back after delivering an assembled
// or inflated message, kept by its thread for the next one (any
// connection's): a message split over reads (on io_uring, every message
// larger than one provided buffer) or compressed otherwise cost a malloc, a
// few reallocations as it grew and a free. One per thread, and only up to
// keep_spare_capacity: idle connections hold none.
constexpr std::size_t keep_spare_capacity = 256u << 10;
std::unique_ptr<std::string>& spare_message_buffer() {
  thread_local std::unique_ptr<std::string> spare;
  return spare;
}
}  // namespace

std::string& WebSocket::message() {
  if (!message_) {
    auto& spare = spare_message_buffer();
    message_ = spare ? std::move(spare) : std::make_unique<std::string>();
  }
  return *message_;
}

void WebSocket::release_message_buffer() {
  if (!message_) return;
  auto& spare = spare_message_buffer();
  if (spare || message_->capacity() > keep_spare_capacity) {
    message_.reset();
    return;
  }
  message_->clear();
  spare = std::move(message_);
}

// ---- receiving --------------------------------------------------------------

std::size_t WebSocket::header_size_needed(const std::uint8_t* h, std::size_t available) const {
  if (available < 2) return 2;
  std::size_t n = 2;
  const std::uint8_t len7 = h[1] & 0x7F;
  if (len7 == 126) n += 2;
  else if (len7 == 127) n += 8;
  if (h[1] & 0x80) n += 4;
  return n;
}

void WebSocket::receive(std::uint8_t* data, std::size_t size, EventHandler& handler, std::string& out) {
  std::size_t pos = 0;
  while (pos < size && state_ != State::closed) pos += receive_event(data + pos, size - pos, handler, out);
}

std::size_t WebSocket::receive_small_message(std::uint8_t* data, std::size_t size, EventHandler& handler,
                                             std::string& out) {
  if (stage_ != Stage::header || header_size_ != 0 || in_message_ || size < 2) return 0;
  const std::uint8_t b0 = data[0];
  const std::uint8_t b1 = data[1];
  const std::uint8_t op = b0 & 0x0F;
  // FIN, no RSV bit, text or binary, a 7-bit length, masked exactly when we
  // are the server: anything else takes the general path, which checks it.
  const bool masked = role_ == Role::server;
  if ((b0 & 0xF0) != 0x80 || (op != static_cast<std::uint8_t>(Opcode::text) &&
                                op != static_cast<std::uint8_t>(Opcode::binary)))
    return 0;
  if (((b1 & 0x80) != 0) != masked || (b1 & 0x7F) >= 126) return 0;
  const std::size_t length = b1 & 0x7F;
  const std::size_t header = masked ? 6 : 2;
  if (size < header + length || length > limits_->max_frame_size || length > limits_->max_message_size) return 0;
  std::uint8_t* payload = data + header;
  if (masked) {
    MaskKey key;
    std::memcpy(key.data(), data + 2, 4);
    copy_masked(payload, payload, length, key);
  }
  const auto kind = static_cast<Opcode>(op);
  if (kind == Opcode::text) {
    Utf8Validator utf8;
    if (!utf8.feed(payload, length)) {
      fail(close_code::invalid_payload, "text message is not valid UTF-8", handler, out);
      return header + length;
    }
    if (!utf8.complete()) {
      fail(close_code::invalid_payload, "text message ends inside a UTF-8 sequence", handler, out);
      return header + length;
    }
  }
  deliver(kind, std::string_view(reinterpret_cast<const char*>(payload), length), handler);
  return header + length;
}

std::size_t WebSocket::receive_event(std::uint8_t* data, std::size_t size, EventHandler& handler, std::string& out) {
  event_passed_ = false;
  if (state_ == State::closed) return 0;
  if (const std::size_t used = receive_small_message(data, size, handler, out)) return used;
  std::size_t pos = 0;
  // Every event sets event_passed_ after its bytes went to `out`; the loop
  // stops at the next check, before anything else could touch `out`.
  while (pos < size && state_ != State::closed && !event_passed_) {
    if (stage_ == Stage::header) {
      const std::uint8_t* h;
      if (header_size_ == 0 && size - pos >= max_frame_header_size) {
        // Fast path: the whole header is in this read.
        h = data + pos;
        pos += header_size_needed(h, size - pos);
      } else {
        // Gather the header across reads (at most 14 bytes are ever copied).
        while (header_size_ < 2 && pos < size) header_[header_size_++] = data[pos++];
        const std::size_t need = header_size_needed(header_, header_size_);
        while (header_size_ < need && pos < size) header_[header_size_++] = data[pos++];
        if (header_size_ < need) return pos;
        h = header_;
        header_size_ = 0;
      }
      if (!parse_header(h, handler, out)) return pos;
      if (remaining_ == 0) finish_frame({}, handler, out);
      continue;
    }
    // Payload: unmask in place, then hand to the frame's consumer.
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, size - pos));
    std::uint8_t* p = data + pos;
    if (frame_masked_) {
      apply_mask(p, n, mask_, mask_offset_);
      mask_offset_ = static_cast<std::uint8_t>((mask_offset_ + n) & 3);
    }
    const bool whole_frame_here = !frame_payload_started_ && n == remaining_;
    frame_payload_started_ = true;
    pos += n;
    remaining_ -= n;
    const std::string_view chunk(reinterpret_cast<const char*>(p), n);
    if (is_control(frame_opcode_)) {
      if (whole_frame_here) {
        finish_frame(chunk, handler, out);
      } else {
        if (!control_) control_ = std::make_unique<std::string>();
        control_->append(chunk);
        if (remaining_ == 0) finish_frame({}, handler, out);
      }
      continue;
    }
    consume_data(p, n, whole_frame_here, handler, out);
    if (state_ == State::closed) return pos;
    if (remaining_ == 0) finish_frame({}, handler, out);
  }
  return pos;
}

// Long on purpose: the per-frame hot path: RFC 6455 section 5.2's checks in
// the order of the header's bytes, each ending in its close code.
bool WebSocket::parse_header(const std::uint8_t* h, EventHandler& handler, std::string& out) {
  const bool fin = (h[0] & 0x80) != 0;
  const bool rsv1 = (h[0] & 0x40) != 0;
  const std::uint8_t rsv23 = h[0] & 0x30;
  const std::uint8_t op = h[0] & 0x0F;
  const bool masked = (h[1] & 0x80) != 0;
  const std::uint8_t len7 = h[1] & 0x7F;

  if (!is_known_opcode(op)) {
    fail(close_code::protocol_error, "unknown opcode", handler, out);
    return false;
  }
  const auto opcode = static_cast<Opcode>(op);
  if (rsv23) {
    fail(close_code::protocol_error, "reserved bits set without an extension", handler, out);
    return false;
  }
  if (rsv1) {
    // RFC 7692 §6: RSV1 marks a compressed message, on its first frame only.
    if (!deflate_ || is_control(opcode) || opcode == Opcode::continuation) {
      fail(close_code::protocol_error, "RSV1 set where no extension allows it", handler, out);
      return false;
    }
  }
  if (is_control(opcode)) {
    if (!fin) {
      fail(close_code::protocol_error, "fragmented control frame", handler, out);
      return false;
    }
    if (len7 > max_control_payload) {
      fail(close_code::protocol_error, "control frame payload over 125 bytes", handler, out);
      return false;
    }
  } else if (opcode == Opcode::continuation) {
    if (!in_message_) {
      fail(close_code::protocol_error, "continuation frame without a message to continue", handler, out);
      return false;
    }
  } else if (in_message_) {
    fail(close_code::protocol_error, "new data frame inside a fragmented message", handler, out);
    return false;
  }
  if (role_ == Role::server && !masked) {
    fail(close_code::protocol_error, "client frame not masked", handler, out);
    return false;
  }
  if (role_ == Role::client && masked) {
    fail(close_code::protocol_error, "server frame masked", handler, out);
    return false;
  }

  std::uint64_t length = len7;
  std::size_t at = 2;
  if (len7 == 126) {
    length = (std::uint64_t{h[2]} << 8) | h[3];
    at = 4;
    if (length < 126) {
      fail(close_code::protocol_error, "frame length not minimally encoded", handler, out);
      return false;
    }
  } else if (len7 == 127) {
    length = 0;
    for (int i = 0; i < 8; ++i) length = (length << 8) | h[2 + i];
    at = 10;
    if (length >> 63) {
      fail(close_code::protocol_error, "frame length has the most significant bit set", handler, out);
      return false;
    }
    if (length <= 0xFFFF) {
      fail(close_code::protocol_error, "frame length not minimally encoded", handler, out);
      return false;
    }
  }
  if (masked) std::memcpy(mask_.data(), h + at, 4);

  if (!is_control(opcode)) {
    const bool compressed = opcode == Opcode::continuation ? message_compressed_ : rsv1;
    // Incompressible data grows a little when deflated (stored blocks), so a
    // compressed frame may exceed the limit by that much; its inflated size
    // is held to max_message_size exactly.
    const std::uint64_t frame_limit =
        compressed ? limits_->max_frame_size + limits_->max_frame_size / 64 + 1024 : limits_->max_frame_size;
    if (length > frame_limit) {
      fail(close_code::message_too_big, "frame larger than the configured maximum", handler, out);
      return false;
    }
    // Compressed sizes are checked after inflation, against the inflated total.
    if (!compressed && buffered_message_bytes() + length > limits_->max_message_size) {
      fail(close_code::message_too_big, "message larger than the configured maximum", handler, out);
      return false;
    }
    if (opcode != Opcode::continuation) {
      in_message_ = true;
      message_opcode_ = opcode;
      message_compressed_ = rsv1;
      utf8_.reset();
    }
  }
  frame_opcode_ = opcode;
  frame_fin_ = fin;
  frame_masked_ = masked;
  frame_payload_started_ = false;
  remaining_ = length;
  mask_offset_ = 0;
  stage_ = Stage::payload;
  return true;
}

void WebSocket::consume_data(std::uint8_t* p, std::size_t n, bool whole_frame_here, EventHandler& handler,
                             std::string& out) {
  if (message_compressed_) {
    std::string& m = message();
    const std::size_t before = m.size();
    const auto status = deflate_->inflate(p, n, m, limits_->max_message_size);
    if (status != PerMessageDeflate::InflateStatus::ok) {
      fail_inflate(status, handler, out);
      return;
    }
    if (message_opcode_ == Opcode::text &&
        !utf8_.feed(reinterpret_cast<const std::uint8_t*>(m.data()) + before, m.size() - before)) {
      fail(close_code::invalid_payload, "text message is not valid UTF-8", handler, out);
    }
    return;
  }
  if (message_opcode_ == Opcode::text && !utf8_.feed(p, n)) {
    fail(close_code::invalid_payload, "text message is not valid UTF-8", handler, out);
    return;
  }
  if (whole_frame_here && frame_fin_ && buffered_message_bytes() == 0) {
    // Zero-copy: a whole unfragmented message inside this read.
    if (message_opcode_ == Opcode::text && !utf8_.complete()) {
      fail(close_code::invalid_payload, "text message ends inside a UTF-8 sequence", handler, out);
      return;
    }
    in_message_ = false;  // delivered: finish_frame has nothing left to do
    deliver(message_opcode_, std::string_view(reinterpret_cast<const char*>(p), n), handler);
    return;
  }
  message().append(reinterpret_cast<const char*>(p), n);
}

void WebSocket::fail_inflate(PerMessageDeflate::InflateStatus status, EventHandler& handler, std::string& out) {
  if (status == PerMessageDeflate::InflateStatus::too_big)
    fail(close_code::message_too_big, "inflated message larger than the configured maximum", handler, out);
  else
    fail(close_code::invalid_payload, "corrupt compressed data", handler, out);
}

void WebSocket::finish_frame(std::string_view control_payload, EventHandler& handler, std::string& out) {
  stage_ = Stage::header;
  if (is_control(frame_opcode_)) {
    if (control_) {
      std::string payload;
      payload.swap(*control_);
      control_.reset();
      handle_control(payload, handler, out);
    } else {
      handle_control(control_payload, handler, out);
    }
    return;
  }
  if (!frame_fin_ || !in_message_) return;  // more fragments to come, or already delivered
  in_message_ = false;
  if (message_compressed_) {
    std::string& m = message();
    const std::size_t before = m.size();
    const auto status = deflate_->finish_inflate(m, limits_->max_message_size);
    if (status != PerMessageDeflate::InflateStatus::ok) {
      fail_inflate(status, handler, out);
      return;
    }
    if (message_opcode_ == Opcode::text &&
        !utf8_.feed(reinterpret_cast<const std::uint8_t*>(m.data()) + before, m.size() - before)) {
      fail(close_code::invalid_payload, "text message is not valid UTF-8", handler, out);
      return;
    }
  }
  if (message_opcode_ == Opcode::text && !utf8_.complete()) {
    fail(close_code::invalid_payload, "text message ends inside a UTF-8 sequence", handler, out);
    return;
  }
  deliver(message_opcode_, message_ ? std::string_view(*message_) : std::string_view(), handler);
  release_message_buffer();
}

void WebSocket::deliver(Opcode kind, std::string_view payload, EventHandler& handler) {
  // Data that arrives after our close frame was sent before the peer saw it:
  // still delivered. Nothing is delivered once the connection is closed.
  if (state_ == State::closed) return;
  event_passed_ = true;
  handler.on_message(kind, payload);
}

void WebSocket::handle_control(std::string_view payload, EventHandler& handler, std::string& out) {
  switch (frame_opcode_) {
    case Opcode::ping:
      if (auto_pong_ && state_ == State::open) append_frame_for_role(out, Opcode::pong, payload, {});
      event_passed_ = true;
      handler.on_ping(payload);
      return;
    case Opcode::pong:
      event_passed_ = true;
      handler.on_pong(payload);
      return;
    case Opcode::close: {
      std::uint16_t code = close_code::no_status;
      std::string_view reason;
      if (payload.size() == 1) {
        fail(close_code::protocol_error, "close frame with a 1-byte payload", handler, out);
        return;
      }
      if (payload.size() >= 2) {
        code = static_cast<std::uint16_t>((static_cast<std::uint8_t>(payload[0]) << 8) |
                                          static_cast<std::uint8_t>(payload[1]));
        reason = payload.substr(2);
        if (!is_valid_wire_close_code(code)) {
          fail(close_code::protocol_error, "invalid close code", handler, out);
          return;
        }
        if (!is_valid_utf8(reinterpret_cast<const std::uint8_t*>(reason.data()), reason.size())) {
          fail(close_code::invalid_payload, "close reason is not valid UTF-8", handler, out);
          return;
        }
      }
      close_received_ = true;
      peer_close_code_ = code;
      if (!close_sent_) {
        // Echo the status code (RFC 6455 §5.5.1); an empty close gets an empty reply.
        std::uint8_t reply[2] = {static_cast<std::uint8_t>(code >> 8), static_cast<std::uint8_t>(code)};
        append_frame_for_role(out, Opcode::close,
                              code == close_code::no_status
                                  ? std::string_view{}
                                  : std::string_view(reinterpret_cast<const char*>(reply), 2),
                              {});
        close_sent_ = true;
      }
      state_ = State::closed;
      event_passed_ = true;
      handler.on_close(code, reason);
      return;
    }
    default:
      return;
  }
}

void WebSocket::fail(std::uint16_t code, std::string_view what, EventHandler& handler, std::string& out) {
  if (!close_sent_) {
    // The reason tells the peer what it did wrong (our descriptions are ASCII).
    const std::string_view reason = cut_utf8(what, max_control_payload - 2);
    std::uint8_t payload[max_control_payload];
    payload[0] = static_cast<std::uint8_t>(code >> 8);
    payload[1] = static_cast<std::uint8_t>(code);
    std::memcpy(payload + 2, reason.data(), reason.size());
    append_frame_for_role(out, Opcode::close,
                          std::string_view(reinterpret_cast<const char*>(payload), 2 + reason.size()), {});
    close_sent_ = true;
  }
  state_ = State::closed;
  failed_ = true;
  message_.reset();
  control_.reset();
  event_passed_ = true;
  handler.on_protocol_error(code, what);
}

// ---- sending ----------------------------------------------------------------

bool WebSocket::send(std::string& out, Opcode kind, std::string_view payload, Compress compress) {
  if (state_ != State::open || sending_fragmented_) return false;
  if (kind != Opcode::text && kind != Opcode::binary) return false;
  if (deflate_ && compress != Compress::no &&
      (compress == Compress::yes || deflate_->should_compress(payload.size()))) {
    thread_local std::string compressed;
    compressed.clear();
    if (deflate_->compress(payload, compressed)) {
      append_frame_for_role(out, kind, compressed, FrameFlags{true, true});
      if (compressed.capacity() > keep_message_capacity) std::string().swap(compressed);
      return true;
    }
  }
  append_frame_for_role(out, kind, payload, {});
  return true;
}

std::size_t WebSocket::plain_message_header(std::uint8_t* header, Opcode kind, std::size_t size,
                                            Compress compress) const {
  if (state_ != State::open || sending_fragmented_ || role_ != Role::server) return 0;
  if (kind != Opcode::text && kind != Opcode::binary) return 0;
  if (deflate_ && compress != Compress::no && (compress == Compress::yes || deflate_->should_compress(size)))
    return 0;
  return encode_frame_header(header, kind, size, {}, nullptr);
}

bool WebSocket::send_frame(std::string& out, Opcode opcode, std::string_view payload, bool fin, bool rsv1) {
  if (state_ != State::open) return false;
  if (is_control(opcode)) {
    if (!fin || rsv1 || payload.size() > max_control_payload || opcode == Opcode::close) return false;
  } else if (opcode == Opcode::continuation) {
    if (!sending_fragmented_ || rsv1) return false;
    sending_fragmented_ = !fin;
  } else {
    if (sending_fragmented_) return false;
    if (rsv1 && !deflate_) return false;
    sending_fragmented_ = !fin;
  }
  append_frame_for_role(out, opcode, payload, FrameFlags{fin, rsv1});
  return true;
}

bool WebSocket::ping(std::string& out, std::string_view payload) {
  if (state_ != State::open || payload.size() > max_control_payload) return false;
  append_frame_for_role(out, Opcode::ping, payload, {});
  return true;
}

bool WebSocket::pong(std::string& out, std::string_view payload) {
  if (state_ != State::open || payload.size() > max_control_payload) return false;
  append_frame_for_role(out, Opcode::pong, payload, {});
  return true;
}

bool WebSocket::close(std::string& out, std::uint16_t code, std::string_view reason) {
  if (close_sent_ || state_ == State::closed) return false;
  if (code == close_code::no_status) {
    append_frame_for_role(out, Opcode::close, {}, {});
  } else {
    if (!is_valid_wire_close_code(code)) return false;
    if (!is_valid_utf8(reinterpret_cast<const std::uint8_t*>(reason.data()), reason.size())) return false;
    reason = cut_utf8(reason, max_control_payload - 2);
    std::uint8_t payload[max_control_payload];
    payload[0] = static_cast<std::uint8_t>(code >> 8);
    payload[1] = static_cast<std::uint8_t>(code);
    // An empty reason may have a null data(): memcpy from null is undefined even for 0 bytes.
    if (!reason.empty()) std::memcpy(payload + 2, reason.data(), reason.size());
    append_frame_for_role(out, Opcode::close, std::string_view(reinterpret_cast<const char*>(payload), 2 + reason.size()),
                          {});
  }
  close_sent_ = true;
  state_ = State::closing;
  return true;
}

}  // namespace duplex::protocol
