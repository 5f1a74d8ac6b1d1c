#include "duplex/protocol/mask.hpp"

#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace duplex::protocol {

void apply_mask(std::uint8_t* data, std::size_t size, MaskKey key, std::size_t offset) {
  copy_masked(data, data, size, MaskKey{key[offset & 3], key[(offset + 1) & 3], key[(offset + 2) & 3],
                                        key[(offset + 3) & 3]});
}

void copy_masked(std::uint8_t* dst, const std::uint8_t* src, std::size_t size, MaskKey key) {
  std::uint32_t k32;
  std::memcpy(&k32, key.data(), 4);
  std::size_t i = 0;
#if defined(__SSE2__)
  // 16 bytes per step; 16 is a multiple of 4 so the key phase never shifts.
  const __m128i k128 = _mm_set1_epi32(static_cast<int>(k32));
  for (; i + 64 <= size; i += 64) {
    __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 16));
    __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 32));
    __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 48));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm_xor_si128(a, k128));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i + 16), _mm_xor_si128(b, k128));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i + 32), _mm_xor_si128(c, k128));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i + 48), _mm_xor_si128(d, k128));
  }
  for (; i + 16 <= size; i += 16) {
    __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm_xor_si128(a, k128));
  }
#endif
  const std::uint64_t k64 = (static_cast<std::uint64_t>(k32) << 32) | k32;
  for (; i + 8 <= size; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, src + i, 8);
    w ^= k64;
    std::memcpy(dst + i, &w, 8);
  }
  // i is a multiple of 8 here, so the key's phase is 0 again.
  if (i + 4 <= size) {
    std::uint32_t w;
    std::memcpy(&w, src + i, 4);
    w ^= k32;
    std::memcpy(dst + i, &w, 4);
    i += 4;
  }
  for (; i < size; ++i) dst[i] = static_cast<std::uint8_t>(src[i] ^ key[i & 3]);
}

}  // namespace duplex::protocol
