#include "redis_cluster_slots.hpp"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <charconv>
#include <set>

namespace duplex::engines::detail {

namespace {

constexpr std::size_t kMaxHostLength = 255;

bool valid_host(std::string_view host) {
  if (host.empty() || host.size() > kMaxHostLength) return false;
  return std::all_of(host.begin(), host.end(), [](unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == ':' ||
           c == '-' || c == '_';
  });
}

std::optional<long long> integer_of(const redisReply* reply) {
  if (!reply || reply->type != REDIS_REPLY_INTEGER) return std::nullopt;
  return reply->integer;
}

// A node entry {host, port, ...}; `answered_by` stands in for an empty host.
std::optional<RedisNodeAddress> node_of(const redisReply* node, const RedisNodeAddress& answered_by) {
  if (!node || node->type != REDIS_REPLY_ARRAY || node->elements < 2) return std::nullopt;
  const redisReply* host = node->element[0];
  const auto port = integer_of(node->element[1]);
  if (!host || host->type != REDIS_REPLY_STRING || !port || *port < 1 || *port > 65535) return std::nullopt;
  const std::string_view name(host->str, host->len);
  if (name.empty()) return RedisNodeAddress{answered_by.host, static_cast<int>(*port)};
  if (!valid_host(name)) return std::nullopt;
  return RedisNodeAddress{std::string(name), static_cast<int>(*port)};
}

}  // namespace

std::uint16_t crc16_xmodem(std::string_view data) {
  std::uint16_t crc = 0;
  for (const unsigned char byte : data) {
    crc = static_cast<std::uint16_t>(crc ^ (static_cast<std::uint16_t>(byte) << 8));
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) ? static_cast<std::uint16_t>((crc << 1) ^ 0x1021) : static_cast<std::uint16_t>(crc << 1);
    }
  }
  return crc;
}

std::string_view cluster_hash_tag(std::string_view key) {
  const auto open = key.find('{');
  if (open == std::string_view::npos) return key;
  const auto close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

std::uint16_t cluster_key_slot(std::string_view key) {
  return static_cast<std::uint16_t>(crc16_xmodem(cluster_hash_tag(key)) % kClusterSlotCount);
}

std::optional<std::vector<SlotRange>> parse_cluster_slots(const redisReply* reply, const RedisNodeAddress& answered_by,
                                                          std::string& why) {
  if (!reply || reply->type != REDIS_REPLY_ARRAY) {
    why = "CLUSTER SLOTS did not answer with an array";
    return std::nullopt;
  }
  if (reply->elements > kMaxSlotRanges) {
    why = "CLUSTER SLOTS named " + std::to_string(reply->elements) + " ranges (at most " +
          std::to_string(kMaxSlotRanges) + ")";
    return std::nullopt;
  }
  std::vector<SlotRange> ranges;
  std::set<std::pair<std::string, int>> masters;
  ranges.reserve(reply->elements);
  for (std::size_t i = 0; i < reply->elements; ++i) {
    const redisReply* entry = reply->element[i];
    if (!entry || entry->type != REDIS_REPLY_ARRAY || entry->elements < 3) {
      why = "CLUSTER SLOTS range " + std::to_string(i) + " is not {first, last, master, ...}";
      return std::nullopt;
    }
    const auto first = integer_of(entry->element[0]);
    const auto last = integer_of(entry->element[1]);
    if (!first || !last || *first < 0 || *last < *first || *last >= static_cast<long long>(kClusterSlotCount)) {
      why = "CLUSTER SLOTS range " + std::to_string(i) + " has slots outside 0..16383";
      return std::nullopt;
    }
    auto master = node_of(entry->element[2], answered_by);
    if (!master) {
      why = "CLUSTER SLOTS range " + std::to_string(i) + " names a malformed master";
      return std::nullopt;
    }
    masters.emplace(master->host, master->port);
    if (masters.size() > kMaxClusterNodes) {
      why = "CLUSTER SLOTS named more than " + std::to_string(kMaxClusterNodes) + " masters";
      return std::nullopt;
    }
    ranges.push_back({static_cast<std::uint16_t>(*first), static_cast<std::uint16_t>(*last), std::move(*master)});
  }
  return ranges;
}

std::optional<ClusterRedirect> parse_cluster_redirect(std::string_view error) {
  ClusterRedirect redirect;
  if (error.starts_with("MOVED ")) {
    error.remove_prefix(6);
  } else if (error.starts_with("ASK ")) {
    redirect.ask = true;
    error.remove_prefix(4);
  } else {
    return std::nullopt;
  }
  const auto space = error.find(' ');
  if (space == std::string_view::npos || space == 0 || space > 5) return std::nullopt;
  unsigned slot = 0;
  const std::string_view slot_text = error.substr(0, space);
  const auto [end, ec] = std::from_chars(slot_text.data(), slot_text.data() + slot_text.size(), slot);
  if (ec != std::errc{} || end != slot_text.data() + slot_text.size() || slot >= kClusterSlotCount) return std::nullopt;
  const std::string_view address = error.substr(space + 1);
  const auto colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  const std::string_view host = address.substr(0, colon);
  const std::string_view port_text = address.substr(colon + 1);
  int port = 0;
  const auto [port_end, port_ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_ec != std::errc{} || port_end != port_text.data() + port_text.size() || port_text.empty() ||
      port_text.size() > 5 || port < 1 || port > 65535 || !valid_host(host))
    return std::nullopt;
  redirect.slot = static_cast<std::uint16_t>(slot);
  redirect.to = RedisNodeAddress{std::string(host), port};
  return redirect;
}

}  // namespace duplex::engines::detail
