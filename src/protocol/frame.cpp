#include "duplex/protocol/frame.hpp"

#include <cstring>

namespace duplex::protocol {

std::size_t encode_frame_header(std::uint8_t* out, Opcode opcode, std::uint64_t payload_size, FrameFlags flags,
                                const MaskKey* mask) {
  out[0] = static_cast<std::uint8_t>((flags.fin ? 0x80 : 0) | (flags.rsv1 ? 0x40 : 0) |
                                     static_cast<std::uint8_t>(opcode));
  const std::uint8_t mask_bit = mask ? 0x80 : 0;
  std::size_t n;
  if (payload_size < 126) {
    out[1] = static_cast<std::uint8_t>(mask_bit | payload_size);
    n = 2;
  } else if (payload_size <= 0xFFFF) {
    out[1] = static_cast<std::uint8_t>(mask_bit | 126);
    out[2] = static_cast<std::uint8_t>(payload_size >> 8);
    out[3] = static_cast<std::uint8_t>(payload_size);
    n = 4;
  } else {
    out[1] = static_cast<std::uint8_t>(mask_bit | 127);
    for (int i = 0; i < 8; ++i) out[2 + i] = static_cast<std::uint8_t>(payload_size >> (56 - 8 * i));
    n = 10;
  }
  if (mask) {
    std::memcpy(out + n, mask->data(), 4);
    n += 4;
  }
  return n;
}

void append_frame(std::string& out, Opcode opcode, std::string_view payload, FrameFlags flags) {
  std::uint8_t header[max_frame_header_size];
  const std::size_t n = encode_frame_header(header, opcode, payload.size(), flags, nullptr);
  // Appends, not resize + copy: resize would zero the bytes first (a small
  // echo frame spent more on that than on its header).
  out.append(reinterpret_cast<const char*>(header), n);
  out.append(payload);
}

void append_masked_frame(std::string& out, Opcode opcode, std::string_view payload, MaskKey key, FrameFlags flags) {
  std::uint8_t header[max_frame_header_size];
  const std::size_t n = encode_frame_header(header, opcode, payload.size(), flags, &key);
  const std::size_t at = out.size();
  out.resize(at + n + payload.size());
  auto* dst = reinterpret_cast<std::uint8_t*>(out.data() + at);
  std::memcpy(dst, header, n);
  copy_masked(dst + n, reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size(), key);
}

}  // namespace duplex::protocol
