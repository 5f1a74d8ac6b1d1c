// WebSocket opcodes (RFC 6455 §5.2).
#pragma once
#include <cstdint>

namespace duplex::protocol {

enum class Opcode : std::uint8_t {
  continuation = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xA,
};

constexpr bool is_control(Opcode op) { return (static_cast<std::uint8_t>(op) & 0x8) != 0; }
constexpr bool is_known_opcode(std::uint8_t op) {
  return op == 0x0 || op == 0x1 || op == 0x2 || op == 0x8 || op == 0x9 || op == 0xA;
}

enum class Role : std::uint8_t { server, client };

}  // namespace duplex::protocol
