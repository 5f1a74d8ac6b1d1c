// A message encoded once for fan-out: the same frame bytes go to every
// subscriber (and, with shared compression, are compressed only once).
#pragma once
#include <string>
#include <string_view>

#include "duplex/protocol/opcode.hpp"
#include "duplex/protocol/permessage_deflate.hpp"

namespace duplex::net {

class PreparedMessage {
 public:
  // `deflate_tuning` non-null also prepares a compressed frame for
  // connections using shared (no context takeover) compression.
  PreparedMessage(protocol::Opcode kind, std::string_view payload,
                  const protocol::DeflateTuning* deflate_tuning = nullptr, int window_bits = 15);

  protocol::Opcode kind() const { return kind_; }
  std::string_view payload() const;
  const std::string& frame() const { return frame_; }                  // unmasked, uncompressed
  const std::string& compressed_frame() const { return compressed_; }  // empty if not prepared
  int window_bits() const { return window_bits_; }

 private:
  std::string frame_;
  std::string compressed_;
  std::size_t header_size_ = 0;
  int window_bits_ = 15;
  protocol::Opcode kind_;
};

}  // namespace duplex::net
