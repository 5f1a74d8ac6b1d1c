// Redis Cluster routing for the Redis engine (engine.redis.cluster): which
// master owns each of the 16384 hash slots, one RedisConnection per node
// (made lazily as the slot map names it), and every command sent to the
// owner of its slot.
//
// The map comes from CLUSTER SLOTS, asked of any node that answers (the
// connected ones first, then the seeds in `addresses`), at start and
// whenever it may be stale: a MOVED reply (the map entry is updated at
// once, the command goes to the named node, and a full refresh follows),
// a lost connection to a master, or a slot no master is known for. While
// a master is down the refresh repeats with the reconnect backoff, so a
// failover is followed as soon as the cluster has promoted a replica.
//
// ASK (a slot being migrated) sends ASKING and the command to the named
// node once, without touching the map; TRYAGAIN (a multi-key command while
// its keys are split between the two nodes of a migration) sends it again
// after reconnect_min. A command redirected more than
// `cluster_max_redirects` times fails with an error saying so. A command
// whose connection is lost fails (it may or may not have run): only
// redirections, which Redis sends before running anything, are retried.
//
// Threading: call everything on the io_context's thread, except the const
// counters (any thread).
#pragma once
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include "duplex/engines/config.hpp"
#include "redis_cluster_slots.hpp"
#include "redis_connection.hpp"

namespace duplex::engines::detail {

class RedisCluster {
 public:
  // The owner's set-up of every node connection before it starts (e.g. a
  // handshake that loads the scripts).
  using Setup = std::function<void(RedisConnection&)>;

  RedisCluster(asio::io_context& io, const RedisConfig& config, Setup setup);
  ~RedisCluster();
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  void start();
  // Fails waiting commands, closes every connection.
  void stop();

  // Sends `args` to the master of `slot`; `callback` as RedisConnection's.
  void command(std::uint16_t slot, std::vector<std::string> args, RedisConnection::Callback callback);
  // "127.0.0.1:7001", or a label while the slot's master is unknown.
  std::string address_of(std::uint16_t slot) const;
  // For connections that may use any node (pub/sub: a PUBLISH reaches
  // every node of the cluster): the next node in turn, masters that are up
  // first.
  void locate_any(RedisConnection::Found found);
  std::string label() const { return "redis cluster"; }
  // The master the map names for `slot` (nullopt: none known yet).
  std::optional<RedisNodeAddress> master_of(std::uint16_t slot) const;
  // The map may be stale (a shard channel's node refused or dropped it):
  // read it again soon.
  void refresh_soon() { request_refresh(std::chrono::milliseconds(0)); }
  // How many full maps were applied; a map read after some event has a
  // higher version than at the event.
  std::uint64_t map_version() const { return map_version_; }
  // Whether the map names `address` the master of some slot.
  bool is_master(const RedisNodeAddress& address) const;
  // Called after a refresh that changed the owner of some slot (not inside
  // any RedisConnection callback of the caller's). May call refresh_soon;
  // must not destroy the cluster.
  void set_on_map_change(std::function<void()> listener) { on_map_change_ = std::move(listener); }

  // Any thread.
  std::size_t masters_known() const { return masters_known_.load(std::memory_order_relaxed); }
  std::size_t masters_up() const;
  std::uint64_t reconnects() const;
  std::uint64_t refreshes() const { return refreshes_.load(std::memory_order_relaxed); }

 private:
  struct Node {
    RedisNodeAddress address;
    std::unique_ptr<RedisConnection> conn;
    bool master = false;
  };
  struct Attempt {
    std::uint16_t slot = 0;
    std::vector<std::string> args;
    RedisConnection::Callback callback;
    unsigned redirects = 0;
  };
  static constexpr std::int32_t kNoOwner = -1;

  // The node at `address`, made (and started) when new; null when the
  // cluster already names kMaxClusterNodes nodes besides the seeds.
  Node* node(const RedisNodeAddress& address);
  void route(std::shared_ptr<Attempt> attempt);
  void send(Node& node, std::shared_ptr<Attempt> attempt, bool asking);
  std::int32_t index_of(const Node* target) const;
  // Posts the failure (the caller may be inside command()).
  void fail(const std::shared_ptr<Attempt>& attempt, const std::string& why);
  // Fails it now, from a reply callback: "redis cluster: slot N<why>".
  void give_up(Attempt& attempt, const std::string& why);
  void request_refresh(std::chrono::milliseconds delay);
  void refresh();
  void ask_for_slots(std::vector<std::size_t> candidates, std::size_t index, std::shared_ptr<std::string> errors);
  void apply(const std::vector<SlotRange>& ranges);
  void refresh_failed(const std::string& why);
  bool some_master_down() const;

  asio::io_context& io_;
  RedisConnectionOptions base_;
  unsigned max_redirects_;
  std::chrono::milliseconds backoff_min_;
  std::chrono::milliseconds backoff_max_;
  Setup setup_;
  std::size_t seeds_ = 0;
  mutable std::mutex nodes_mutex_;  // nodes_ grows on the io thread; counters read it from others
  std::vector<std::unique_ptr<Node>> nodes_;
  std::array<std::int32_t, kClusterSlotCount> owner_;
  std::deque<std::shared_ptr<Attempt>> waiting_;  // for a slot with no known master, until the next refresh
  std::set<std::shared_ptr<asio::steady_timer>> retry_timers_;  // TRYAGAIN waits, cancelled by stop()
  std::atomic<std::size_t> masters_known_{0};
  std::atomic<std::uint64_t> refreshes_{0};
  std::uint64_t map_version_ = 0;
  std::array<std::int32_t, kClusterSlotCount> applied_owner_;  // owner_ as the last refresh left it (MOVED edits owner_)
  std::function<void()> on_map_change_;
  asio::steady_timer refresh_timer_;
  bool refresh_scheduled_ = false;
  bool refreshing_ = false;
  bool refresh_again_ = false;
  std::chrono::milliseconds backoff_;
  std::size_t next_locate_ = 0;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace duplex::engines::detail
