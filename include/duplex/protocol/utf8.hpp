// Incremental UTF-8 validation: SIMD (simdjson) for the bulk, a DFA for the
// code point split across chunk boundaries, failing at the first bad byte.
#pragma once
#include <cstddef>
#include <cstdint>

namespace duplex::protocol {

class Utf8Validator {
 public:
  // Validates the next chunk. Returns false as soon as the bytes so far can no
  // longer be a prefix of valid UTF-8 (fail fast inside a fragment).
  bool feed(const std::uint8_t* data, std::size_t size);
  // True if everything fed so far is complete, valid UTF-8.
  bool complete() const { return state_ == 0; }
  void reset() { state_ = 0; }

 private:
  std::uint8_t state_ = 0;  // DFA state; 0 = accept, between code points
};

// One-shot validation of a whole buffer.
bool is_valid_utf8(const std::uint8_t* data, std::size_t size);

}  // namespace duplex::protocol
