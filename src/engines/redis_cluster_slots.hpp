// Redis Cluster's key-to-slot rule and the replies that say who owns a
// slot: CLUSTER SLOTS and the MOVED / ASK redirections.
//
// slot(key) = CRC16-CCITT (XMODEM: poly 0x1021, init 0, no reflection, no
// final xor) of the key's hash tag, mod 16384. The hash tag is what lies
// between the first '{' and the first '}' after it, when that is not
// empty; otherwise the whole key is hashed (the cluster specification).
//
// Every reply is hostile input: hosts are checked like the sentinels'
// answers (at most 255 characters of [A-Za-z0-9.:_-]), ports are 1..65535,
// slots 0..16383, and a map naming more than kMaxClusterNodes masters or
// kMaxSlotRanges ranges is refused whole.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "redis_sentinels.hpp"  // RedisNodeAddress

struct redisReply;

namespace duplex::engines::detail {

inline constexpr std::size_t kClusterSlotCount = 16384;
inline constexpr std::size_t kMaxClusterNodes = 1000;  // Redis' own recommended upper bound
inline constexpr std::size_t kMaxSlotRanges = kClusterSlotCount;

std::uint16_t crc16_xmodem(std::string_view data);
// The hash tag of `key` (the whole key when it has none).
std::string_view cluster_hash_tag(std::string_view key);
std::uint16_t cluster_key_slot(std::string_view key);

struct SlotRange {
  std::uint16_t first = 0;
  std::uint16_t last = 0;
  RedisNodeAddress master;
  bool operator==(const SlotRange&) const = default;
};

// The reply to CLUSTER SLOTS: per range {first, last, master, replicas...},
// each node {host, port, id, ...}. An empty host means "the node that
// answered" (Redis sends it when the node does not know its own address):
// `answered_by` stands in for it. nullopt (and `why`) when malformed.
std::optional<std::vector<SlotRange>> parse_cluster_slots(const redisReply* reply, const RedisNodeAddress& answered_by,
                                                          std::string& why);

struct ClusterRedirect {
  bool ask = false;  // ASK: this command only; MOVED: the slot has a new owner
  std::uint16_t slot = 0;
  RedisNodeAddress to;
  bool operator==(const ClusterRedirect&) const = default;
};
// "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381" (an error
// reply's text); nullopt for any other error or a malformed one.
std::optional<ClusterRedirect> parse_cluster_redirect(std::string_view error);

}  // namespace duplex::engines::detail
