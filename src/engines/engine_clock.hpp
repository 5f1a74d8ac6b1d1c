// Time and epochs shared by the engines. Engines read the time through a
// clock function so tests can step over history TTLs and idempotency windows
// without sleeping.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace duplex::engines::detail {

using ClockMs = std::function<std::int64_t()>;

inline std::int64_t system_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline std::int64_t seconds_to_ms(std::chrono::seconds s) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(s).count();
}

// A fresh random epoch: 8 bytes from the OS random source, as 16 hex digits.
std::string make_epoch();

}  // namespace duplex::engines::detail
