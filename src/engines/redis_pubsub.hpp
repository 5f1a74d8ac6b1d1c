// The fan-out half of the Redis engine: this node's subscriptions to the
// channels' pub/sub channels (P:ch:<channel>) and to its own node channel
// (P:node:<name>). Per address, `subscriber_connections` pub/sub
// connections; a channel lives on the address that stores it (pub/sub
// does not cross Redis servers) and on one of its connections by hash.
//
// subscribe() is called once per local subscriber and counted: the first
// one SUBSCRIBEs (channels asked for in the same io turn go out in one
// SUBSCRIBE), the last unsubscribe() UNSUBSCRIBEs. Each channel has a state
// (idle, subscribing, active, unsubscribing) so a subscribe that arrives
// while its UNSUBSCRIBE is in flight waits for the confirmation and then
// subscribes again. When a connection drops, every channel that was active
// on it gets a resubscribe event (publications may have been missed) and
// waiters get `unavailable`; on reconnect channels still wanted are
// subscribed again.
//
// Cluster mode: a PUBLISH (the publish script's too) reaches every node of
// the cluster, so the `subscriber_connections` connections go to any node,
// the next one in turn at each reconnect (RedisCluster::locate_any); a
// failover that takes their node away is a dropped connection as above.
// Sharded pub/sub (SSUBSCRIBE) would keep the traffic on the slot's
// shard, but hiredis 0.14's async API cannot dispatch its replies.
//
// Threading: call everything on the io_context's thread.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <asio/io_context.hpp>

#include "duplex/engines/engine.hpp"
#include "duplex/engines/config.hpp"
#include "redis_cluster.hpp"
#include "redis_connection.hpp"
#include "redis_sentinels.hpp"

namespace duplex::engines::detail {

class RedisPubSub {
 public:
  // `sentinels`: Sentinel mode (the storage's discovery); `cluster`: cluster
  // mode (the storage's slot map); both null with addresses.
  RedisPubSub(asio::io_context& io, const RedisConfig& config, RedisSentinels* sentinels = nullptr,
              RedisCluster* cluster = nullptr);
  ~RedisPubSub();
  RedisPubSub(const RedisPubSub&) = delete;
  RedisPubSub& operator=(const RedisPubSub&) = delete;

  void set_deliver(Engine::Deliver deliver) { deliver_ = std::move(deliver); }
  void set_node_message_handler(Engine::NodeMessage handler) { node_handler_ = std::move(handler); }

  void start();
  // Fails waiters (unavailable), closes the connections; no event after it.
  void stop();

  void subscribe(const std::string& channel, std::function<void(EngineErrc)> ready);
  void unsubscribe(const std::string& channel);
  // Receive node messages on `node_channel` (first address).
  void subscribe_node(const std::string& node_channel);

  // Any thread.
  bool all_up() const;
  std::uint64_t reconnects() const;

 private:
  enum class Status : std::uint8_t { idle, subscribing, active, unsubscribing };
  struct ChannelState {
    std::size_t refs = 0;
    Status status = Status::idle;
    bool sent = false;        // SUBSCRIBE sent, confirmation pending
    std::uint64_t watch = 0;  // the confirmation's deadline
    std::vector<std::function<void(EngineErrc)>> waiters;
    std::string epoch;        // of the last publication delivered
    std::uint64_t last_offset = 0;
  };
  struct Link {
    std::unique_ptr<RedisConnection> conn;
    std::unordered_map<std::string, ChannelState> channels;
    std::vector<std::string> to_subscribe;
    std::vector<std::string> to_unsubscribe;
    bool flush_posted = false;
    std::string node_channel;
    bool node_subscribed = false;
  };

  Link& link_for(const std::string& channel);
  void schedule_flush(Link& link);
  void flush(Link& link);
  void on_push(Link& link, struct ::redisReply* reply);
  void on_ready(Link& link);
  void on_down(Link& link);
  void emit_resubscribe(const std::string& channel);

  asio::io_context& io_;
  std::string channel_prefix_;  // "<prefix>:ch:"
  std::size_t per_address_ = 1;
  std::vector<std::unique_ptr<Link>> links_;
  Engine::Deliver deliver_;
  Engine::NodeMessage node_handler_;
  bool stopped_ = false;
};

}  // namespace duplex::engines::detail
