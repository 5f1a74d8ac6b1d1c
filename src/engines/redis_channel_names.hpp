// How the Redis engine names a channel's keys and its pub/sub channel, in
// one place, because the publish script, the storage and the subscriber
// must agree byte for byte.
//
// Standalone: "<prefix>:<kind>:<channel>" and "<prefix>:ch:<channel>".
// Cluster: every key starts with the hash tag "{<prefix>:<length>:<channel>}",
// so a channel's keys share one slot (the length keeps "a:1" and "a" with
// channel "1" apart). Sharded pub/sub names the pub/sub channel
// "{…}:ch" too: SPUBLISH inside the publish script then stays on the
// script's slot, and SSUBSCRIBE goes to that slot's shard. A "}" inside the
// channel ends the hash tag early, at the same byte for every name of that
// channel, so they still share a slot.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "duplex/engines/config.hpp"

namespace duplex::engines::detail {

struct RedisChannelNames {
  std::string prefix;
  bool cluster = false;
  bool sharded = false;  // cluster with SPUBLISH/SSUBSCRIBE

  std::string hash_tag(const std::string& channel) const {
    return "{" + prefix + ":" + std::to_string(channel.size()) + ":" + channel + "}";
  }
  std::string key(const std::string& channel, std::string_view kind) const {
    if (cluster) return hash_tag(channel) + ":" + std::string(kind);
    return prefix + ":" + std::string(kind) + ":" + channel;
  }
  std::string pubsub(const std::string& channel) const {
    if (sharded) return hash_tag(channel) + ":ch";
    return prefix + ":ch:" + channel;
  }
  // The hub channel a pub/sub channel name stands for; nullopt for any other
  // name (the node channel, another prefix).
  std::optional<std::string> channel_of(std::string_view name) const {
    if (!sharded) {
      const std::string head = prefix + ":ch:";
      if (name.substr(0, head.size()) != head) return std::nullopt;
      return std::string(name.substr(head.size()));
    }
    const std::string head = "{" + prefix + ":";
    if (name.substr(0, head.size()) != head) return std::nullopt;
    name.remove_prefix(head.size());
    std::size_t length = 0;
    std::size_t digits = 0;
    while (digits < name.size() && digits < 10 && name[digits] >= '0' && name[digits] <= '9')
      length = length * 10 + static_cast<std::size_t>(name[digits++] - '0');
    if (digits == 0 || digits >= name.size() || name[digits] != ':') return std::nullopt;
    name.remove_prefix(digits + 1);
    if (name.size() != length + 4 || name.substr(length) != "}:ch") return std::nullopt;
    return std::string(name.substr(0, length));
  }
};

inline RedisChannelNames redis_channel_names(const RedisConfig& config) {
  return {config.prefix, config.cluster, config.cluster && config.cluster_pubsub == "sharded"};
}

}  // namespace duplex::engines::detail
