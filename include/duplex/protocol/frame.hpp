// Frame header encoding (RFC 6455 §5.2). Decoding lives in the protocol state
// machine (websocket.hpp), which validates while it parses.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "duplex/protocol/mask.hpp"
#include "duplex/protocol/opcode.hpp"

namespace duplex::protocol {

inline constexpr std::size_t max_frame_header_size = 14;
inline constexpr std::size_t max_control_payload = 125;

struct FrameFlags {
  bool fin = true;
  bool rsv1 = false;  // set by permessage-deflate on a compressed message's first frame
};

// Writes a header for a payload of `payload_size` bytes into `out` (which must
// hold max_frame_header_size bytes) and returns its length. `mask` non-null
// adds the masking key (the payload must then be masked by the caller).
std::size_t encode_frame_header(std::uint8_t* out, Opcode opcode, std::uint64_t payload_size,
                                FrameFlags flags = {}, const MaskKey* mask = nullptr);

// Appends a complete unmasked frame (server role, or a pre-encoded fan-out frame).
void append_frame(std::string& out, Opcode opcode, std::string_view payload, FrameFlags flags = {});

// Appends a complete frame masked with `key` (client role).
void append_masked_frame(std::string& out, Opcode opcode, std::string_view payload, MaskKey key,
                         FrameFlags flags = {});

}  // namespace duplex::protocol
