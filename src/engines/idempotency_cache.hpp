// The memory engine's record of (channel, idempotency key) -> first offset,
// each entry kept until its window ends. Not thread-safe: the caller holds
// the channel's lock.
#pragma once
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace duplex::engines::detail {

class IdempotencyCache {
 public:
  // The first offset published with (channel, key), if its window is open.
  std::optional<std::uint64_t> find(std::string_view channel, std::string_view key,
                                    std::int64_t now_ms) const;
  void record(std::string_view channel, std::string_view key, std::uint64_t offset,
              std::int64_t expires_ms);
  // Drops entries whose window ended. Entries are dropped in the order they
  // were recorded (windows of one namespace end in that order), so an entry
  // with a long window may briefly keep later short ones; find() ignores them.
  void purge(std::int64_t now_ms);
  std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::uint64_t offset = 0;
    std::int64_t expires_ms = 0;
  };
  // Length-prefixed so no (channel, key) pair can collide with another.
  static std::string compose(std::string_view channel, std::string_view key);

  std::unordered_map<std::string, Entry> entries_;
  std::deque<std::pair<std::int64_t, std::string>> expiry_order_;
};

}  // namespace duplex::engines::detail
