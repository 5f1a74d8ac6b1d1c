#include "idempotency_cache.hpp"

namespace duplex::engines::detail {

std::string IdempotencyCache::compose(std::string_view channel, std::string_view key) {
  std::string composed = std::to_string(channel.size());
  composed.reserve(composed.size() + 1 + channel.size() + key.size());
  composed += ':';
  composed += channel;
  composed += key;
  return composed;
}

std::optional<std::uint64_t> IdempotencyCache::find(std::string_view channel, std::string_view key,
                                                    std::int64_t now_ms) const {
  if (entries_.empty()) return std::nullopt;
  auto it = entries_.find(compose(channel, key));
  if (it == entries_.end() || it->second.expires_ms <= now_ms) return std::nullopt;
  return it->second.offset;
}

void IdempotencyCache::record(std::string_view channel, std::string_view key, std::uint64_t offset,
                              std::int64_t expires_ms) {
  std::string composed = compose(channel, key);
  entries_.insert_or_assign(composed, Entry{offset, expires_ms});
  expiry_order_.emplace_back(expires_ms, std::move(composed));
}

void IdempotencyCache::purge(std::int64_t now_ms) {
  while (!expiry_order_.empty() && expiry_order_.front().first <= now_ms) {
    auto& [expires_ms, composed] = expiry_order_.front();
    auto it = entries_.find(composed);
    // A later record() of the same pair owns the entry now: keep it.
    if (it != entries_.end() && it->second.expires_ms == expires_ms) entries_.erase(it);
    expiry_order_.pop_front();
  }
}

}  // namespace duplex::engines::detail
