// The fan-out half of the Redis engine: this node's subscriptions to the
// channels' pub/sub channels (RedisChannelNames::pubsub) and to its own
// node channel (P:node:<name>). Per address, `subscriber_connections`
// pub/sub connections; a channel lives on the address that stores it
// (pub/sub does not cross Redis servers) and on one of its connections by
// hash.
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
// Cluster mode, cluster_pubsub = "global": a PUBLISH (the publish script's
// too) reaches every node of the cluster, so the `subscriber_connections`
// connections go to any node, the next one in turn at each reconnect
// (RedisCluster::locate_any); a failover that takes their node away is a
// dropped connection as above.
//
// Cluster mode, "sharded" (SSUBSCRIBE, Redis 7): a channel's messages reach
// only its slot's shard, so its connection goes to the master the slot map
// names, `subscriber_connections` per master, made as channels need them;
// one SSUBSCRIBE per channel (a command's shard channels must share a
// slot). A channel leaves its connection, with a resubscribe event if it
// was live, and is placed again on the slot's (new) master after a map
// refresh when: the node unsubscribes it (its slot moved: failover or
// migration), the node refuses the SSUBSCRIBE (MOVED: the map was stale;
// up to kMaxPlacements tries before its waiters get `unavailable`), or the
// connection drops. It is placed only from a map read after that event,
// and only on a connection that is up (or making its first attempt): a
// master that went away keeps its channels homeless until the map names
// the replica that took over. When a refresh changes the map, a channel
// whose connection is not to its slot's master any more moves there
// (SUNSUBSCRIBE, resubscribe event if live): a demoted master goes on
// serving shard channels as a replica, so nothing else would move it. The
// connections to a node that is no master and holds no channel stop, and
// start again if the node becomes a master again. The node channel stays
// on one connection to any node, with SUBSCRIBE (node messages are
// PUBLISHed).
//
// Threading: call everything on the io_context's thread.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include "duplex/engines/engine.hpp"
#include "duplex/engines/config.hpp"
#include "redis_channel_names.hpp"
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
    unsigned placements = 0;  // sharded: SSUBSCRIBEs refused in a row
    std::chrono::steady_clock::time_point homeless_since{};
    // Sharded, homeless: placed only from a slot map newer than this
    // version (the one that sent it away may be stale); 0: from any map.
    std::uint64_t evicted_at_map = 0;
  };
  struct Link {
    std::unique_ptr<RedisConnection> conn;
    std::unordered_map<std::string, ChannelState> channels;
    std::vector<std::string> to_subscribe;
    std::vector<std::string> to_unsubscribe;
    bool flush_posted = false;
    std::string node_channel;
    bool node_subscribed = false;
    bool shard = false;  // sharded mode: SSUBSCRIBE to one master
    RedisNodeAddress node;  // a shard link's master
    bool was_up = false;   // connected at least once
    bool retired = false;  // its node is no master: connection stopped until it is again
    // A shard link's SSUBSCRIBE (true) / SUNSUBSCRIBE (false) commands not
    // yet answered, in order: an error reply answers the first one.
    std::deque<std::pair<std::string, bool>> unanswered;
  };
  static constexpr unsigned kMaxPlacements = 5;

  Link& make_link(RedisConnectionOptions options);
  // Gives `link` a new connection to its node (wired to this, not started).
  void connect_link(Link& link, RedisConnectionOptions options);
  Link& link_for(const std::string& channel);
  // Sharded: the link of the channel's slot master (made when new); null
  // while the map names none.
  Link* shard_link_for(const std::string& channel);
  // The link holding `channel`'s state: sharded, where it was placed (null:
  // nowhere yet); else link_for.
  Link* home_of(const std::string& channel);
  // Erases a channel from its link (and from home_).
  void forget(Link& link, const std::string& channel);
  // Sharded: takes the channel off `link` to be placed again, from a map
  // read after now (`map_is_current`: from the current one).
  void evict(Link& link, const std::string& channel, bool map_is_current = false);
  void schedule_placement(std::chrono::milliseconds delay);
  void place_homeless();
  // Sharded: a link a channel may be placed on now: connected, or making
  // its first connection (a link that lost its node waits for the map).
  static bool placeable(const Link& link);
  void on_map_change();
  // Sharded: the map names another master for `channel`'s slot.
  void move_away(Link& link, const std::string& channel);
  void retire_idle_links();
  void schedule_flush(Link& link);
  void flush(Link& link);
  void on_push(Link& link, struct ::redisReply* reply);
  void on_pubsub_error(Link& link, std::string_view error);
  void on_subscribed(Link& link, const std::string& channel);
  void on_unsubscribed(Link& link, const std::string& channel, bool asked);
  void on_ready(Link& link);
  void on_down(Link& link);
  void emit_resubscribe(const std::string& channel);

  asio::io_context& io_;
  RedisChannelNames names_;
  RedisCluster* cluster_ = nullptr;
  RedisConnectionOptions shard_options_;  // sharded: a shard link's options but the address
  std::size_t per_address_ = 1;
  std::chrono::milliseconds placement_min_;
  std::chrono::milliseconds placement_max_;
  std::chrono::milliseconds command_timeout_;
  std::chrono::milliseconds ping_interval_;  // of every pub/sub connection (engine.redis.pubsub_ping_interval)
  mutable std::mutex links_mutex_;  // links_ grows on the io thread (sharded); counters read it from others
  std::vector<std::unique_ptr<Link>> links_;
  std::unordered_map<std::string, std::vector<Link*>> shard_links_;  // by master address
  std::unordered_map<std::string, Link*> home_;                       // sharded: channel -> its link
  std::unordered_map<std::string, ChannelState> homeless_;            // sharded: waiting for a placement
  std::atomic<std::size_t> homeless_count_{0};                        // its size, for all_up
  // Stopped connections of links revived since, freed off their call stack.
  std::vector<std::unique_ptr<RedisConnection>> retired_connections_;
  std::uint64_t retired_reconnects_ = 0;  // under links_mutex_: the stopped connections' part of reconnects()
  asio::steady_timer placement_timer_;
  bool placement_scheduled_ = false;
  std::chrono::milliseconds placement_backoff_;
  Engine::Deliver deliver_;
  Engine::NodeMessage node_handler_;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace duplex::engines::detail
