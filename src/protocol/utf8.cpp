#include "duplex/protocol/utf8.hpp"

#include <simdjson.h>

#include <cstring>

namespace duplex::protocol {

namespace {
// States: 0 accept; 1/2/3 expect that many generic continuation bytes;
// 4 after E0 (A0..BF next), 5 after ED (80..9F: no surrogates), 6 after F0
// (90..BF: no overlongs), 7 after F4 (80..8F: nothing above U+10FFFF).
constexpr std::uint8_t reject = 8;

inline std::uint8_t step(std::uint8_t state, std::uint8_t b) {
  switch (state) {
    case 0:
      if (b < 0x80) return 0;
      if (b >= 0xC2 && b <= 0xDF) return 1;
      if (b == 0xE0) return 4;
      if (b == 0xED) return 5;
      if (b >= 0xE1 && b <= 0xEF) return 2;
      if (b == 0xF0) return 6;
      if (b >= 0xF1 && b <= 0xF3) return 3;
      if (b == 0xF4) return 7;
      return reject;
    case 1: return (b >= 0x80 && b <= 0xBF) ? 0 : reject;
    case 2: return (b >= 0x80 && b <= 0xBF) ? 1 : reject;
    case 3: return (b >= 0x80 && b <= 0xBF) ? 2 : reject;
    case 4: return (b >= 0xA0 && b <= 0xBF) ? 1 : reject;
    case 5: return (b >= 0x80 && b <= 0x9F) ? 1 : reject;
    case 6: return (b >= 0x90 && b <= 0xBF) ? 2 : reject;
    case 7: return (b >= 0x80 && b <= 0x8F) ? 2 : reject;
    default: return reject;
  }
}

inline std::size_t sequence_length(std::uint8_t lead) {
  if (lead >= 0xF0) return 4;
  if (lead >= 0xE0) return 3;
  if (lead >= 0xC0) return 2;
  return 1;
}

// Below this, the DFA beats the SIMD call overhead.
constexpr std::size_t simd_threshold = 32;
}  // namespace

namespace {
// True if data[0..size) is all ASCII: eight bytes per step. Short messages
// (chat lines, JSON commands) are mostly ASCII, and this beats the SIMD
// validator's fixed cost for them.
inline bool all_ascii(const std::uint8_t* data, std::size_t size) {
  std::uint64_t acc = 0;
  std::size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, data + i, 8);
    acc |= w;
  }
  for (; i < size; ++i) acc |= data[i];
  return (acc & 0x8080808080808080ull) == 0;
}
constexpr std::size_t ascii_probe_limit = 256;
}  // namespace

bool Utf8Validator::feed(const std::uint8_t* data, std::size_t size) {
  if (state_ == 0 && size <= ascii_probe_limit && all_ascii(data, size)) return true;
  std::size_t i = 0;
  // Finish a code point left open by the previous chunk.
  while (state_ != 0 && i < size) {
    state_ = step(state_, data[i++]);
    if (state_ == reject) return false;
  }
  if (i == size) return true;
  if (size - i < simd_threshold) {
    for (; i < size; ++i) {
      state_ = step(state_, data[i]);
      if (state_ == reject) return false;
    }
    return true;
  }
  // Split off an incomplete code point at the end; SIMD-validate the rest.
  std::size_t end = size;
  for (std::size_t back = 1; back <= 3 && size - back >= i; ++back) {
    const std::uint8_t b = data[size - back];
    if ((b & 0xC0) != 0x80) {  // a lead byte (or ASCII)
      if (sequence_length(b) > back) end = size - back;
      break;
    }
  }
  if (end > i && !simdjson::validate_utf8(reinterpret_cast<const char*>(data + i), end - i)) return false;
  for (i = end; i < size; ++i) {
    state_ = step(state_, data[i]);
    if (state_ == reject) return false;
  }
  return true;
}

bool is_valid_utf8(const std::uint8_t* data, std::size_t size) {
  Utf8Validator v;
  return v.feed(data, size) && v.complete();
}

}  // namespace duplex::protocol
