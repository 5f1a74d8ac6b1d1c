// The storage half of the Redis engine, reusable by other scale-out
// engines (the NATS engine keeps its storage here and fans out over NATS):
// offsets, epochs, history, idempotency keys, presence and the node
// registry, sharded over `addresses` by jump consistent hash of the
// channel name (FNV-1a), one pipelined command connection per address.
// The node registry and node messages live on the first address. In
// Sentinel mode there is one "address": the master the sentinels name.
//
// Threading: every method except the const counters must be called on the
// io_context's thread (the owner runs it); callbacks run there too.
//
// Key layout (P = config.prefix, C = channel):
//   P:meta:C            hash {epoch, top}
//   P:hist:C            list of entries (redis_wire.hpp), newest last
//   P:idem:<len(C)>:C:K idempotency key K: "<epoch>:<offset>:<expires ms>"
//   P:presence:C        hash client id -> client; P:presence_exp:C zset of expiry ms
//   P:nodes             hash name -> node; P:nodes_exp zset of expiry ms
// Pub/sub: P:ch:C (publications, join/leave), P:node:<name> (node messages).
//
// Cluster mode (config.cluster, redis_cluster.hpp): the keys above carry a
// hash tag so that a script's keys share one slot: a channel's keys are
// {P:<len(C)>:C}:meta, :hist, :idem:K, :presence and :presence_exp (the
// length keeps the names of two channels apart whatever they contain), the
// registry's {P}:nodes and {P}:nodes_exp. Standalone and Sentinel
// deployments keep the names above. Pub/sub names do not change: a PUBLISH
// in a cluster reaches every node.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include "duplex/engines/engine.hpp"
#include "duplex/engines/config.hpp"
#include "channel_stores.hpp"
#include "engine_clock.hpp"
#include "redis_channel_names.hpp"
#include "redis_cluster.hpp"
#include "redis_connection.hpp"
#include "redis_sentinels.hpp"

namespace duplex::engines::detail {

class RedisStorage final : public ChannelStores {
 public:
  RedisStorage(asio::io_context& io, RedisConfig config, ClockMs clock);
  ~RedisStorage() override;
  RedisStorage(const RedisStorage&) = delete;
  RedisStorage& operator=(const RedisStorage&) = delete;

  void start() override;
  // Fails pending operations (unavailable), closes the connections.
  void stop() override;

  std::int64_t now_ms() const { return clock_ ? clock_() : system_now_ms(); }
  const RedisConfig& config() const { return config_; }
  // Addresses (Sentinel: 1); cluster mode: the masters in the slot map.
  std::size_t shard_count() const override;
  // Sentinel mode: the discovery every connection to the master follows
  // (the pub/sub half uses it too); null with `addresses`.
  RedisSentinels* sentinels() { return sentinels_.get(); }
  // Cluster mode: the slot map and node connections; null otherwise.
  RedisCluster* cluster() { return cluster_.get(); }
  // Which address holds `channel` (index into config().addresses); cluster
  // mode: the hash slot of its keys.
  std::size_t shard_of(const std::string& channel) const;
  std::string pubsub_channel(const std::string& channel) const { return names_.pubsub(channel); }
  std::string node_channel(const std::string& node) const { return config_.prefix + ":node:" + node; }

  using Published = detail::Published;
  // The publish script: idempotency check, epoch, offset, history, key;
  // and, when `redis_publish`, the PUBLISH to pubsub_channel(channel).
  void publish(PublishRequest request, bool redis_publish, std::function<void(Published)> done);
  void history(HistoryRequest request, std::function<void(HistoryResult)> done) override;
  // HistoryStore: the publish script without PUBLISH.
  void store(PublishRequest request, std::function<void(Published)> done) override {
    publish(std::move(request), false, std::move(done));
  }

  // `done(changed)`: the entry was new (add) or existed (remove); false also
  // when Redis failed. With `announce && redis_publish` the script PUBLISHes
  // the join/leave itself.
  void presence_add(const std::string& channel, const ClientInfo& client, bool announce, bool redis_publish,
                    std::function<void(bool)> done = {});
  void presence_remove(const std::string& channel, const ClientInfo& client, bool announce, bool redis_publish,
                       std::function<void(bool)> done = {});
  void presence(const std::string& channel, std::function<void(std::vector<ClientInfo>)> done) override;
  // PresenceStore: the scripts without PUBLISH.
  void add_presence(const std::string& channel, const ClientInfo& client, std::function<void(bool)> done) override {
    presence_add(channel, client, false, false, std::move(done));
  }
  void remove_presence(const std::string& channel, const ClientInfo& client, std::function<void(bool)> done) override {
    presence_remove(channel, client, false, false, std::move(done));
  }

  void node_heartbeat(const NodeInfo& self) override;
  void nodes(std::function<void(std::vector<NodeInfo>)> done) override;
  // PUBLISH on the first address (cluster mode: the registry's master);
  // false when it is not connected.
  bool publish_raw(const std::string& channel, std::string payload);

  // Any thread. Cluster mode: whether any master is up (`shard` unused).
  bool up(std::size_t shard) const;
  std::size_t backends_up() const override;
  std::uint64_t reconnects() const override;
  std::uint64_t errors() const override { return errors_.load(std::memory_order_relaxed); }
  void count_error() override { errors_.fetch_add(1, std::memory_order_relaxed); }

 private:
  enum Script : std::size_t { kPublish, kHistory, kPresenceAdd, kPresenceRemove, kLiveEntries, kNodeBeat, kScriptCount };

  // Where a command goes: an index into shards_, or in cluster mode the
  // slot whose master runs it.
  using Route = std::size_t;
  Route route_of_channel(const std::string& channel) const { return shard_of(channel); }
  Route route_of_registry() const;
  void send(Route route, std::vector<std::string> args, RedisConnection::Callback callback);
  std::string address_of(Route route) const;
  // "" when `reply` is a usable reply; otherwise why not.
  std::string failure(const redisReply* reply, const std::string& error, Route route) const;
  // The name of `kind`'s key for `channel` ("meta", "hist", "presence", ...).
  std::string channel_key(const std::string& channel, std::string_view kind) const;
  // The scripts' publish argument: "0" none, "1" PUBLISH, "s" SPUBLISH.
  const char* publish_mode(bool redis_publish) const;
  std::string idempotency_key(const std::string& channel, const std::string& key) const;
  std::string registry_key(std::string_view kind) const;

  void run_script(Route shard, Script script, std::vector<std::string> keys, std::vector<std::string> args,
                  RedisConnection::Callback callback);
  // wait_replicas > 0: WAIT for the replicas, then `done(out)`, or
  // unavailable when fewer confirmed within wait_timeout.
  void wait_for_replicas(Route shard, Published out, std::function<void(Published)> done);
  void refresh_presence();
  void arm_presence_refresh();

  asio::io_context& io_;
  RedisConfig config_;
  RedisChannelNames names_;
  ClockMs clock_;
  std::unique_ptr<RedisSentinels> sentinels_;
  std::unique_ptr<RedisCluster> cluster_;
  std::vector<std::unique_ptr<RedisConnection>> shards_;  // empty in cluster mode
  std::vector<std::string> shas_;
  std::atomic<std::uint64_t> errors_{0};
  bool stopped_ = false;
  // Presence entries this node added, refreshed every presence_ttl / 3.
  std::map<std::pair<std::string, std::string>, ClientInfo> own_presence_;
  asio::steady_timer presence_timer_;
};

}  // namespace duplex::engines::detail
