// Who is present in which channel, on this node. Thread-safe. Shared by the
// memory and SQLite engines (presence is not persisted: a restart drops
// every connection anyway).
#pragma once
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "duplex/wire/types.hpp"

namespace duplex::engines::detail {

class PresenceRegistry {
 public:
  // True when the entry is new; an existing entry gets the new info.
  bool add(const std::string& channel, const hub::ClientInfo& client);
  // True when an entry was removed.
  bool remove(const std::string& channel, const std::string& client_id);
  // Entries ordered by client id.
  std::vector<hub::ClientInfo> list(const std::string& channel) const;
  std::size_t channel_count() const;

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::map<std::string, hub::ClientInfo>> channels_;
};

}  // namespace duplex::engines::detail
