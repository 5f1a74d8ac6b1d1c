// Polls a condition until it holds or a deadline passes: a test waits as long
// as a slow (sanitizer, loaded CI) machine needs and no longer.
#pragma once
#include <chrono>
#include <thread>

namespace test_support {

// Polls `done` every 10 ms until it holds or `limit` passes; returns the last
// answer.
template <typename Predicate>
bool eventually(Predicate done, std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return done();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace test_support
