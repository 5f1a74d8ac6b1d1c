#include "engine_clock.hpp"

#include <random>

namespace duplex::engines::detail {

std::string make_epoch() {
  static constexpr char kHex[] = "0123456789abcdef";
  std::random_device source;  // getrandom() on Linux
  std::uint64_t value = (static_cast<std::uint64_t>(source()) << 32) ^ source();
  std::string epoch(16, '0');
  for (std::size_t i = 0; i < epoch.size(); ++i) {
    epoch[epoch.size() - 1 - i] = kHex[value & 0xF];
    value >>= 4;
  }
  return epoch;
}

}  // namespace duplex::engines::detail
