// XOR masking (RFC 6455 §5.3), a machine word at a time.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>

namespace duplex::protocol {

using MaskKey = std::array<std::uint8_t, 4>;

// XORs `data[0..size)` with `key`, starting at key position `offset % 4`
// (so a payload can be unmasked in pieces as it arrives).
void apply_mask(std::uint8_t* data, std::size_t size, MaskKey key, std::size_t offset = 0);

// Same, reading from `src` and writing to `dst` (may not overlap unless equal).
void copy_masked(std::uint8_t* dst, const std::uint8_t* src, std::size_t size, MaskKey key);

}  // namespace duplex::protocol
