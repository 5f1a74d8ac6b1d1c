// Stable hashing for sharding channels over Redis servers and connections.
// Never std::hash: every node (and every build) must map a channel to the
// same server.
#pragma once
#include <cstdint>
#include <string_view>

namespace duplex::engines::detail {

// 64-bit FNV-1a of the bytes.
inline std::uint64_t fnv1a64(std::string_view bytes) {
  std::uint64_t hash = 14695981039346656037ull;
  for (const char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ull;
  }
  return hash;
}

// Jump consistent hash (Lamping and Veach, 2014): a bucket in [0, buckets)
// such that growing `buckets` by one moves only 1/buckets of the keys.
inline std::size_t jump_hash(std::uint64_t key, std::size_t buckets) {
  if (buckets <= 1) return 0;
  std::int64_t chosen = -1;
  std::int64_t next = 0;
  while (next < static_cast<std::int64_t>(buckets)) {
    chosen = next;
    key = key * 2862933555777941757ull + 1;
    next = static_cast<std::int64_t>(static_cast<double>(chosen + 1) *
                                     (static_cast<double>(1ll << 31) / static_cast<double>((key >> 33) + 1)));
  }
  return static_cast<std::size_t>(chosen);
}

}  // namespace duplex::engines::detail
