#include "presence_registry.hpp"

namespace duplex::engines::detail {

bool PresenceRegistry::add(const std::string& channel, const hub::ClientInfo& client) {
  std::lock_guard lock(mutex_);
  auto& clients = channels_[channel];
  auto [it, inserted] = clients.try_emplace(client.client, client);
  if (!inserted) it->second = client;
  return inserted;
}

bool PresenceRegistry::remove(const std::string& channel, const std::string& client_id) {
  std::lock_guard lock(mutex_);
  auto channel_it = channels_.find(channel);
  if (channel_it == channels_.end()) return false;
  const bool removed = channel_it->second.erase(client_id) > 0;
  if (channel_it->second.empty()) channels_.erase(channel_it);
  return removed;
}

std::vector<hub::ClientInfo> PresenceRegistry::list(const std::string& channel) const {
  std::lock_guard lock(mutex_);
  std::vector<hub::ClientInfo> entries;
  auto channel_it = channels_.find(channel);
  if (channel_it == channels_.end()) return entries;
  entries.reserve(channel_it->second.size());
  for (const auto& [id, client] : channel_it->second) entries.push_back(client);
  return entries;
}

std::size_t PresenceRegistry::channel_count() const {
  std::lock_guard lock(mutex_);
  return channels_.size();
}

}  // namespace duplex::engines::detail
