// Redis Sentinel: which node is the master of `sentinel_master`, and when
// it changes. One command connection per sentinel answers
// `SENTINEL get-master-addr-by-name`; one pub/sub connection per sentinel
// listens for `+switch-master`, so a failover is followed as soon as any
// sentinel announces it (duplicates are harmless: a connection already on
// the new master stays).
//
// Every reply is hostile input: a master address is accepted only as a
// two-element array of a host (at most 255 characters of [A-Za-z0-9.:_-])
// and a port 1..65535; anything else counts as that sentinel not knowing.
// Every query is bounded: a sentinel connection that is down fails it at
// once, one still connecting waits at most connect_timeout, one that does
// not answer for command_timeout is dropped (RedisConnection).
//
// Threading: call everything on the io_context's thread; callbacks run there.
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <asio/io_context.hpp>

#include "duplex/engines/config.hpp"
#include "redis_connection.hpp"
#include "redis_connection_options.hpp"

struct redisReply;

namespace duplex::engines::detail {

struct RedisNodeAddress {
  std::string host;
  int port = 0;
  bool operator==(const RedisNodeAddress&) const = default;
};

// The reply to SENTINEL get-master-addr-by-name; nullopt (and `why`) for
// a nil reply (the sentinel does not know the master) or anything malformed.
std::optional<RedisNodeAddress> parse_master_address(const redisReply* reply, std::string& why);
// A +switch-master message: "<name> <old host> <old port> <new host> <new port>";
// the new address when it is about `master_name`, nullopt otherwise.
std::optional<RedisNodeAddress> parse_switch_master(std::string_view message, std::string_view master_name);

class RedisSentinels {
 public:
  RedisSentinels(asio::io_context& io, const RedisConfig& config);
  ~RedisSentinels();
  RedisSentinels(const RedisSentinels&) = delete;
  RedisSentinels& operator=(const RedisSentinels&) = delete;

  void start();
  void stop();

  // Asks the sentinels in turn, starting with the one that answered last,
  // until one names the master: found(host, port, "") or, when none does,
  // found("", 0, why) with each sentinel's answer.
  void find_master(RedisConnection::Found found);
  // Runs on every +switch-master about our master.
  void on_switch(std::function<void(const RedisNodeAddress&)> listener) { listeners_.push_back(std::move(listener)); }

  // "master \"mymaster\"": names the target before it is located.
  std::string label() const { return "master \"" + master_name_ + "\""; }

 private:
  struct Sentinel {
    std::unique_ptr<RedisConnection> query;
    std::unique_ptr<RedisConnection> events;
  };
  void ask(std::size_t index, std::size_t asked, std::shared_ptr<std::string> errors, RedisConnection::Found found);

  std::string master_name_;
  std::vector<Sentinel> sentinels_;
  std::size_t preferred_ = 0;  // the sentinel that answered last
  std::vector<std::function<void(const RedisNodeAddress&)>> listeners_;
  bool stopped_ = false;
};

// The servers to connect to: `addresses`, or in Sentinel mode one entry
// (empty) for the master.
std::vector<std::string> redis_targets(const RedisConfig& config);
// Makes `connection` locate the master through `sentinels` before every
// attempt and move when a sentinel announces a new one.
void follow_sentinels(RedisConnection& connection, RedisSentinels& sentinels);

}  // namespace duplex::engines::detail
