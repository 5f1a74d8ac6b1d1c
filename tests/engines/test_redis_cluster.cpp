// The Redis engine in cluster mode (engine.redis.cluster) against a real
// Redis Cluster of six redis-servers on loopback (redis_cluster.hpp: three
// masters, a replica each): the engine contract, where a channel's keys
// land (one slot, channels spread over the masters), MOVED and ASK while a
// slot migrates, and failovers under a publish load (CLUSTER FAILOVER on a
// replica; kill -9 of a master with wait_replicas = 1): no acknowledged
// publish is lost, and the subscriber receives every publication or is
// told to resubscribe (then history has what it missed).
#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "duplex/engines/redis_engine.hpp"
#include "engine_contract_cases.hpp"
#include "engine_test_support.hpp"
#include "redis_cluster.hpp"  // the test helper (tests/engines)

namespace {

using namespace duplex::engines;
using namespace duplex::test;
using namespace std::chrono_literals;

RedisEngineOptions cluster_options(std::vector<std::string> seeds, std::string prefix,
                                   std::function<std::int64_t()> clock = {}) {
  RedisEngineOptions options;
  options.config.cluster = true;
  options.config.addresses = std::move(seeds);
  options.config.prefix = std::move(prefix);
  options.config.subscriber_connections = 1;
  options.config.connect_timeout = 500ms;
  options.config.command_timeout = 1500ms;
  options.config.reconnect_min = 50ms;
  options.config.reconnect_max = 300ms;
  options.config.presence_ttl = 3s;
  options.config.node_ttl = 2s;
  options.clock = std::move(clock);
  return options;
}

// "{p:4:room}:meta": the engine's key names in cluster mode (redis_storage.hpp).
std::string channel_key(const std::string& prefix, const std::string& channel, const std::string& kind) {
  return "{" + prefix + ":" + std::to_string(channel.size()) + ":" + channel + "}:" + kind;
}

// The engine's pub/sub connections subscribed to `channel` on the node at
// `port`: SHARDNUMSUB of "{t:4:load}:ch" (sharded) or NUMSUB of "t:ch:load".
int subscribers_on(int port, const std::string& mode, const std::string& prefix, const std::string& channel) {
  const std::string name = mode == "sharded" ? channel_key(prefix, channel, "ch") : prefix + ":ch:" + channel;
  const auto reply = redis_text(port, {"PUBSUB", mode == "sharded" ? "SHARDNUMSUB" : "NUMSUB", name});
  if (!reply || reply->rfind(name + " ", 0) != 0) return -1;
  return std::stoi(reply->substr(name.size() + 1));
}

// One cluster for the whole contract suite; every test has its own prefix.
class RedisClusterContract : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { cluster_ = new RedisClusterGroup(); }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override {
    prefix_ = "t" + std::to_string(++tests_);
    engine_ = std::make_unique<RedisEngine>(cluster_options(cluster_->addresses(), prefix_, clock_.function()));
    engine_->set_deliver(recorder_.callback());
    engine_->set_node_name("a");
  }
  void TearDown() override {
    if (engine_) engine_->stop();
  }
  std::string epoch(const std::string& channel) { return history_sync(*engine_, newest(channel, 0)).top.epoch; }
  // A master other than `port` (0: none).
  static int other_master(int port) {
    int other = 0;
    for (int master : cluster_->master_ports()) {
      if (master != port) other = master;
    }
    return other;
  }
  static std::string id_of(int port) {
    for (const auto& line : cluster_->topology()) {
      if (line.port == port) return line.id;
    }
    return std::string();
  }
  // The first half of a slot migration: `to` imports, `from` migrates, and
  // `channel`'s keys of these kinds move (MIGRATE). True when Redis agreed.
  bool migrate_keys(int slot, int from, int to, const std::string& channel, const std::vector<std::string>& kinds) {
    const std::string s = std::to_string(slot);
    if (!redis_text(to, {"CLUSTER", "SETSLOT", s, "IMPORTING", id_of(from)})) return false;
    if (!redis_text(from, {"CLUSTER", "SETSLOT", s, "MIGRATING", id_of(to)})) return false;
    std::vector<std::string> migrate{"MIGRATE", "127.0.0.1", std::to_string(to), "", "0", "5000", "KEYS"};
    for (const auto& kind : kinds) migrate.push_back(channel_key(prefix_, channel, kind));
    return redis_text(from, migrate).has_value();
  }
  // The second half: every master names `to` the slot's owner.
  static bool assign_slot(int slot, int to) {
    for (int port : cluster_->master_ports()) {
      if (!redis_text(port, {"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", id_of(to)})) return false;
    }
    return true;
  }

  static RedisClusterGroup* cluster_;
  static int tests_;
  std::string prefix_;
  TestClock clock_;
  Recorder recorder_;
  std::unique_ptr<RedisEngine> engine_;
};
RedisClusterGroup* RedisClusterContract::cluster_ = nullptr;
int RedisClusterContract::tests_ = 0;

TEST_F(RedisClusterContract, HistoryKeepsDataPublisherAndTime) {
  contract::history_keeps_data_publisher_and_time(*engine_, clock_, R"({"text":"hi:there"})");
}

TEST_F(RedisClusterContract, HistoryWithoutSinceGivesNewestInOrderOrReversed) {
  HistoryResult all;
  ASSERT_NO_FATAL_FAILURE(all = contract::history_without_since_gives_newest_in_order_or_reversed(*engine_));
  EXPECT_TRUE(all.complete);
}

TEST_F(RedisClusterContract, HistoryIsTrimmedToSize) {
  const contract::EpochOf epoch_of = [this](const std::string& channel) { return epoch(channel); };
  ASSERT_NO_FATAL_FAILURE(contract::history_is_trimmed_to_size(*engine_, epoch_of));
  const std::string key = channel_key(prefix_, "c", "hist");
  EXPECT_EQ(cluster_->node(cluster_->owner_of(cluster_->keyslot(key))).query({"LLEN", key}), 3);
}

TEST_F(RedisClusterContract, CompleteFlagWithSince) {
  const contract::EpochOf epoch_of = [this](const std::string& channel) { return epoch(channel); };
  contract::complete_flag_with_since(*engine_, epoch_of);
}

TEST_F(RedisClusterContract, HistoryTtlHidesExpiredPublications) {
  const contract::EpochOf epoch_of = [this](const std::string& channel) { return epoch(channel); };
  ASSERT_NO_FATAL_FAILURE(contract::history_ttl_hides_expired_publications(*engine_, clock_, epoch_of));
}

TEST_F(RedisClusterContract, IdempotencyHoldsWithinOneBurst) { contract::idempotency_holds_within_one_burst(*engine_); }

TEST_F(RedisClusterContract, PresenceListsEntriesAndAnnouncesRealChanges) {
  contract::presence_announced_through_the_fan_out(*engine_, recorder_);
}

TEST_F(RedisClusterContract, ConcurrentPublishersGetUniqueOffsetsDeliveredInOrder) {
  contract::concurrent_publishers_delivered_through_the_fan_out(*engine_, recorder_);
}

TEST_F(RedisClusterContract, CompletionsMayCallBackIntoTheEngine) {
  contract::completions_may_call_back_into_the_engine(*engine_);
}

TEST_F(RedisClusterContract, StopRacingPublishersCompletesEveryPublishExactlyOnce) {
  contract::stop_racing_publishers_completes_every_publish_exactly_once(*engine_);
  EXPECT_EQ(publish_sync(*engine_, message("race", "after")).error, EngineErrc::unavailable);
}

TEST_F(RedisClusterContract, StopFromACompletionCompletesTheRestOnce) {
  const PublishResult late = contract::stop_from_a_completion_completes_the_rest_once(*engine_);
  EXPECT_EQ(late.error, EngineErrc::unavailable) << "a publish after stop() is refused";
}

TEST_F(RedisClusterContract, HealthCountsTheMasters) {
  ASSERT_EQ(publish_sync(*engine_, message("warmup", "1")).error, EngineErrc::ok);
  ASSERT_TRUE(wait_for([&] { return engine_->healthy(); }, 10s));
  const EngineHealth health = engine_->health();
  EXPECT_EQ(health.backends_total, 3u);
  EXPECT_EQ(health.backends_up, 3u);
  EXPECT_EQ(health.errors, 0u);
}

TEST_F(RedisClusterContract, NodeRegistryAndNodeMessagesWork) {
  NodeInfo self;
  self.name = "a";
  self.started_ms = clock_.now();
  self.updated_ms = clock_.now();
  engine_->node_heartbeat(self);
  std::vector<NodeInfo> nodes;
  ASSERT_TRUE(wait_for([&] { return (nodes = nodes_sync(*engine_)).size() == 1; }));
  EXPECT_EQ(nodes[0].name, "a");
  const std::string registry = "{" + prefix_ + "}:nodes";
  EXPECT_EQ(cluster_->node(cluster_->owner_of(cluster_->keyslot(registry))).query({"HLEN", registry}), 1);

  std::mutex mutex;
  std::vector<std::string> got;
  // The handler writes to these locals: the engine stops before they go
  // (a "hello" sent twice may still arrive while the test ends).
  struct StopEngineFirst {
    RedisEngine& engine;
    ~StopEngineFirst() { engine.stop(); }
  } stop_engine_first{*engine_};
  engine_->set_node_message_handler([&](std::string payload) {
    std::lock_guard lock(mutex);
    got.push_back(std::move(payload));
  });
  ASSERT_TRUE(wait_for([&] {
    engine_->send_to_node("a", "hello");
    std::this_thread::sleep_for(50ms);
    std::lock_guard lock(mutex);
    return !got.empty();
  }));
  EXPECT_EQ(got.front(), "hello");
}

TEST_F(RedisClusterContract, AChannelsKeysShareOneSlotAndChannelsSpreadOverTheMasters) {
  std::set<int> owners;
  for (int i = 0; i < 12; ++i) {
    const std::string channel = "spread:" + std::to_string(i);
    ASSERT_EQ(publish_sync(*engine_, message(channel, "x", keep(10, 0s, 60s), "key-1")).error, EngineErrc::ok);
    ClientInfo client;
    client.client = "c1";
    client.user = "u1";
    engine_->presence_add(channel, client, false);
    ASSERT_TRUE(wait_for([&] { return presence_sync(*engine_, channel).size() == 1; }));
    const int slot = cluster_->keyslot(channel_key(prefix_, channel, "meta"));
    EXPECT_EQ(static_cast<int>(engine_->shard_of(channel)), slot) << "shard_of is the CRC16 slot Redis computes";
    const int owner = cluster_->owner_of(slot);
    owners.insert(owner);
    for (const std::string kind : {"hist", "idem:key-1", "presence", "presence_exp"}) {
      const std::string key = channel_key(prefix_, channel, kind);
      EXPECT_EQ(cluster_->keyslot(key), slot) << key;
      EXPECT_EQ(cluster_->node(owner).query({"EXISTS", key}), 1) << key << " on the slot's master";
    }
  }
  EXPECT_GE(owners.size(), 2u) << "channels land on different masters";
}

// A slot moves from one master to another while the engine uses it: ASK
// during the migration (the keys already moved), MOVED once it is done.
TEST_F(RedisClusterContract, FollowsAskDuringAMigrationAndMovedAfterIt) {
  const std::string channel = "migrating";
  const PublishResult first = publish_sync(*engine_, message(channel, "1", keep(10, 0s, 60s), "key-1"));
  ASSERT_EQ(first.error, EngineErrc::ok) << first.message;
  const int slot = cluster_->keyslot(channel_key(prefix_, channel, "meta"));
  const int from = cluster_->owner_of(slot);
  const int to = other_master(from);
  ASSERT_NE(to, 0);
  ASSERT_TRUE(migrate_keys(slot, from, to, channel, {"meta", "hist", "idem:key-1"}));

  // Every key is on the importing node now: the old owner answers ASK.
  const PublishResult repeat = publish_sync(*engine_, message(channel, "1", keep(10, 0s, 60s), "key-1"));
  ASSERT_EQ(repeat.error, EngineErrc::ok) << repeat.message;
  EXPECT_TRUE(repeat.duplicate) << "the script ran on the importing node, which has the key";
  EXPECT_EQ(repeat.position, first.position);

  ASSERT_TRUE(assign_slot(slot, to));
  // The old owner answers MOVED now: the engine updates its map and follows.
  const PublishResult second = publish_sync(*engine_, message(channel, "2", keep(10)));
  ASSERT_EQ(second.error, EngineErrc::ok) << second.message;
  EXPECT_EQ(second.position.offset, 2u);
  EXPECT_EQ(second.position.epoch, first.position.epoch) << "the channel moved with its epoch";
  EXPECT_EQ(offsets_of(history_sync(*engine_, newest(channel, 10))), range(1, 2));
  EXPECT_EQ(cluster_->node(to).query({"LLEN", channel_key(prefix_, channel, "hist")}), 2);
  EXPECT_EQ(redis_text(from, {"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)}), "0")
      << "nothing left on the old owner";
}

// cluster_pubsub = "sharded" (the default): the subscription is an
// SSUBSCRIBE on the channel's slot master only, and when the slot migrates
// the old owner drops it (sunsubscribe); the subscriber is told to
// resubscribe and the engine subscribes on the new owner by itself.
TEST_F(RedisClusterContract, ShardedPubSubStaysOnTheChannelsShardAndFollowsAMigratedSlot) {
  const std::string channel = "sharded";
  ASSERT_EQ(subscribe_sync(*engine_, channel), EngineErrc::ok);
  const int slot = cluster_->keyslot(channel_key(prefix_, channel, "meta"));
  ASSERT_EQ(cluster_->keyslot(channel_key(prefix_, channel, "ch")), slot) << "the shard channel shares the keys' slot";
  const int from = cluster_->owner_of(slot);
  for (int port : cluster_->master_ports()) {
    EXPECT_EQ(subscribers_on(port, "sharded", prefix_, channel), port == from ? 1 : 0) << "master " << port;
    EXPECT_EQ(subscribers_on(port, "global", prefix_, channel), 0) << "no global subscription on " << port;
  }
  const PublishResult first = publish_sync(*engine_, message(channel, "1", keep(10)));
  ASSERT_EQ(first.error, EngineErrc::ok) << first.message;
  ASSERT_TRUE(recorder_.wait_until([&] { return recorder_.offsets(channel) == std::vector<std::uint64_t>{1}; }));

  const int to = other_master(from);
  ASSERT_NE(to, 0);
  ASSERT_TRUE(migrate_keys(slot, from, to, channel, {"meta", "hist"}));
  ASSERT_TRUE(assign_slot(slot, to));

  EXPECT_TRUE(recorder_.wait_until([&] { return recorder_.count(ChannelEvent::Kind::resubscribe, channel) > 0; }))
      << "the old owner dropped the shard channel: publications may have been missed";
  EXPECT_TRUE(wait_for([&] { return subscribers_on(to, "sharded", prefix_, channel) == 1; }, 10s))
      << "subscribed again on the new owner";
  EXPECT_EQ(subscribers_on(from, "sharded", prefix_, channel), 0);
  const PublishResult second = publish_sync(*engine_, message(channel, "2", keep(10)));
  ASSERT_EQ(second.error, EngineErrc::ok) << second.message;
  EXPECT_EQ(second.position.epoch, first.position.epoch);
  EXPECT_TRUE(recorder_.wait_until([&] {
    const auto offsets = recorder_.offsets(channel);
    return !offsets.empty() && offsets.back() == second.position.offset;
  })) << "delivered live from the new owner";
  EXPECT_TRUE(wait_for([&] { return engine_->healthy(); }, 10s));
}

// The engine's slot map is stale (the slot moved while nothing was sent
// there): the old owner answers the SSUBSCRIBE with MOVED, which drops no
// connection; the engine refreshes the map and subscribes on the new owner.
TEST_F(RedisClusterContract, ShardedSubscribeWithAStaleSlotMapFollowsMoved) {
  const std::string channel = "stale-map";
  ASSERT_EQ(publish_sync(*engine_, message("warm-up", "1")).error, EngineErrc::ok);  // the map is loaded
  const int slot = cluster_->keyslot(channel_key(prefix_, channel, "meta"));
  const int from = cluster_->owner_of(slot);
  const int to = other_master(from);
  ASSERT_NE(to, 0);
  ASSERT_EQ(redis_text(from, {"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)}), "0") << "an empty slot";
  ASSERT_TRUE(assign_slot(slot, to));
  const auto reconnects = engine_->health().reconnects;

  ASSERT_EQ(subscribe_sync(*engine_, channel), EngineErrc::ok) << "subscribed despite the MOVED";
  EXPECT_EQ(subscribers_on(to, "sharded", prefix_, channel), 1);
  EXPECT_EQ(subscribers_on(from, "sharded", prefix_, channel), 0);
  EXPECT_EQ(engine_->health().reconnects, reconnects) << "the MOVED dropped no connection";
  const PublishResult published = publish_sync(*engine_, message(channel, "1", keep(10)));
  ASSERT_EQ(published.error, EngineErrc::ok) << published.message;
  EXPECT_TRUE(recorder_.wait_until([&] { return recorder_.offsets(channel) == std::vector<std::uint64_t>{1}; }));
}

TEST_F(RedisClusterContract, AStaleSeedListStillFindsEveryMaster) {
  // Only one seed, and a dead one before it: the map names the rest.
  std::vector<std::string> seeds{"127.0.0.1:" + std::to_string(free_loopback_port()), cluster_->addresses().back()};
  RedisEngine engine(cluster_options(seeds, prefix_ + "s"));
  for (int i = 0; i < 6; ++i) {
    const PublishResult published = publish_sync(engine, message("seed:" + std::to_string(i), "x"));
    ASSERT_EQ(published.error, EngineErrc::ok) << published.message;
  }
  EXPECT_TRUE(wait_for([&] { return engine.health().backends_up == 3; }, 10s));
  engine.stop();
}

TEST(RedisClusterConfig, ClusterExcludesSentinels) {
  RedisEngineOptions options = cluster_options({"127.0.0.1:1"}, "t");
  options.config.sentinels = {"127.0.0.1:2"};
  options.config.sentinel_master = "m";
  EXPECT_THROW(RedisEngine engine(std::move(options)), std::runtime_error);
}

// Publishes to `channel` until stopped, recording what was acknowledged.
class PublishLoad {
 public:
  PublishLoad(Engine& engine, std::string channel) : engine_(engine), channel_(std::move(channel)) {
    thread_ = std::thread([this] { run(); });
  }
  ~PublishLoad() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::size_t acknowledged_count() const {
    std::lock_guard lock(mutex_);
    return acknowledged_.size();
  }
  std::map<std::uint64_t, std::string> acknowledged() const {
    std::lock_guard lock(mutex_);
    return acknowledged_;
  }
  std::vector<std::string> failures() const {
    std::lock_guard lock(mutex_);
    return failures_;
  }
  std::set<std::string> epochs() const {
    std::lock_guard lock(mutex_);
    return epochs_;
  }

 private:
  void run() {
    for (int n = 1; !stop_; ++n) {
      const std::string data = "{\"n\":" + std::to_string(n) + "}";
      const PublishResult result = publish_sync(engine_, message(channel_, data, keep(100'000)));
      std::lock_guard lock(mutex_);
      if (result.error == EngineErrc::ok) {
        acknowledged_[result.position.offset] = data;
        epochs_.insert(result.position.epoch);
      } else {
        failures_.push_back(result.message);
        std::this_thread::sleep_for(20ms);
      }
    }
  }
  Engine& engine_;
  std::string channel_;
  mutable std::mutex mutex_;
  std::map<std::uint64_t, std::string> acknowledged_;
  std::vector<std::string> failures_;
  std::set<std::string> epochs_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// After a failover: every acknowledged publish is in history, under one
// epoch, and the subscriber received each one or was told to resubscribe.
void expect_nothing_acknowledged_lost(Engine& engine, const PublishLoad& load, const Recorder& recorder,
                                      const std::string& channel) {
  const auto acknowledged = load.acknowledged();
  ASSERT_FALSE(acknowledged.empty());
  EXPECT_EQ(load.epochs().size(), 1u) << "the promoted replica kept the channel's epoch";
  const HistoryResult history = history_sync(engine, newest(channel, 100'000, keep(100'000)));
  ASSERT_EQ(history.error, EngineErrc::ok) << history.message;
  EXPECT_EQ(history.top.epoch, *load.epochs().begin());
  std::map<std::uint64_t, std::string> stored;
  for (const auto& p : history.publications) stored[p->offset] = p->data;
  for (const auto& [offset, data] : acknowledged) {
    const auto it = stored.find(offset);
    ASSERT_NE(it, stored.end()) << "acknowledged offset " << offset << " is lost";
    EXPECT_EQ(it->second, data) << "offset " << offset << " holds another publication";
  }
  const auto delivered = recorder.offsets(channel);
  const std::set<std::uint64_t> received(delivered.begin(), delivered.end());
  const bool told = recorder.count(ChannelEvent::Kind::resubscribe, channel) > 0;
  std::size_t missed = 0;
  for (const auto& [offset, data] : acknowledged) missed += received.count(offset) == 0 ? 1 : 0;
  ::testing::Test::RecordProperty("acknowledged", static_cast<int>(acknowledged.size()));
  ::testing::Test::RecordProperty("missed_live", static_cast<int>(missed));
  ::testing::Test::RecordProperty("told_to_resubscribe", told ? 1 : 0);
  EXPECT_TRUE(missed == 0 || told) << missed << " acknowledged publications never reached the subscriber, "
                                   << "and it was not told to resubscribe";
  EXPECT_TRUE(std::is_sorted(delivered.begin(), delivered.end())) << "delivered in offset order";
}

// The seeds with the master of `channel`'s slot first: the engine's pub/sub
// connection goes to the first seed (no map is known yet when it connects),
// so the failover of that master is also one of the pub/sub connection.
std::vector<std::string> seeds_with_master_first(const RedisClusterGroup& cluster, int master) {
  std::vector<std::string> seeds{"127.0.0.1:" + std::to_string(master)};
  for (const auto& address : cluster.addresses()) {
    if (address != seeds.front()) seeds.push_back(address);
  }
  return seeds;
}

// Both pub/sub modes (engine.redis.cluster_pubsub) under every failover.
class RedisClusterFailover : public ::testing::TestWithParam<std::string> {
 protected:
  RedisEngineOptions options(const RedisClusterGroup& cluster, int master) const {
    RedisEngineOptions out = cluster_options(seeds_with_master_first(cluster, master), "t");
    out.config.cluster_pubsub = GetParam();
    return out;
  }
  bool sharded() const { return GetParam() == "sharded"; }
};

// Global: the pub/sub connection stays on the demoted master, which still
// relays the publications, so the subscriber misses nothing. Sharded: the
// demoted master gives the slot's shard channels up (sunsubscribe), the
// subscriber is told to resubscribe, and the engine subscribes on the
// promoted replica by itself.
TEST_P(RedisClusterFailover, AManualFailoverUnderLoadLosesNoAcknowledgedPublish) {
  RedisClusterGroup cluster;
  const std::string channel = "load";
  const int master = cluster.owner_of(cluster.keyslot(channel_key("t", channel, "meta")));
  Recorder recorder;  // outlives the engine, whose thread delivers to it
  RedisEngine engine(options(cluster, master));
  engine.set_deliver(recorder.callback());
  ASSERT_TRUE(wait_for([&] { return subscribe_sync(engine, channel) == EngineErrc::ok; }, 10s));
  EXPECT_EQ(subscribers_on(master, GetParam(), "t", channel), 1);
  PublishLoad load(engine, channel);
  ASSERT_TRUE(wait_for([&] { return load.acknowledged_count() >= 50; }, 10s));
  const int replica = cluster.replica_of(master);
  ASSERT_NE(replica, 0) << "the master has a replica";
  const int promoted = cluster.manual_failover(master, 30s);
  ASSERT_NE(promoted, 0) << "the replica took over; the master's log:" << cluster.log_of(master)
                         << "\nthe replica's log:" << cluster.log_of(replica);
  const std::size_t before = load.acknowledged_count();
  ASSERT_TRUE(wait_for([&] { return load.acknowledged_count() >= before + 50; }, 15s))
      << "publishes go to the promoted replica: " << (load.failures().empty() ? "" : load.failures().back());
  load.stop();
  ASSERT_TRUE(recorder.wait_until([&] {
    const auto acknowledged = load.acknowledged();
    const auto offsets = recorder.offsets(channel);
    return recorder.count(ChannelEvent::Kind::resubscribe, channel) > 0 ||
           (!offsets.empty() && offsets.back() == acknowledged.rbegin()->first);
  })) << "the subscriber keeps receiving, or is told to resubscribe";
  expect_nothing_acknowledged_lost(engine, load, recorder, channel);
  EXPECT_EQ(cluster.node(promoted).query({"EXISTS", channel_key("t", channel, "meta")}), 1)
      << "served by the promoted replica";
  if (!sharded()) {
    const auto delivered = recorder.offsets(channel);
    const std::set<std::uint64_t> received(delivered.begin(), delivered.end());
    for (const auto& [offset, data] : load.acknowledged()) EXPECT_TRUE(received.count(offset)) << offset << " not delivered";
  } else {
    EXPECT_GT(recorder.count(ChannelEvent::Kind::resubscribe, channel), 0u) << "the slot's shard channels moved";
    EXPECT_TRUE(wait_for([&] { return subscribers_on(promoted, "sharded", "t", channel) == 1; }, 10s))
        << "subscribed again on the promoted replica";
    EXPECT_EQ(subscribers_on(master, "sharded", "t", channel), 0) << "and no longer on the demoted master";
    const auto after = publish_sync(engine, message(channel, "{\"after\":1}", keep(100'000)));
    ASSERT_EQ(after.error, EngineErrc::ok) << after.message;
    EXPECT_TRUE(recorder.wait_until([&] {
      const auto offsets = recorder.offsets(channel);
      return !offsets.empty() && offsets.back() == after.position.offset;
    })) << "a publication after the failover arrives live";
  }
  engine.stop();
}

// The killed master also held the engine's pub/sub connection: the
// subscriber is told to resubscribe, and history has what it missed.
TEST_P(RedisClusterFailover, AKilledMasterLosesNoAcknowledgedPublishWithWaitReplicas) {
  RedisClusterGroup cluster;
  const std::string channel = "load";
  const int master = cluster.owner_of(cluster.keyslot(channel_key("t", channel, "meta")));
  RedisEngineOptions with_wait = options(cluster, master);
  with_wait.config.wait_replicas = 1;
  with_wait.config.wait_timeout = 500ms;
  Recorder recorder;  // outlives the engine, whose thread delivers to it
  RedisEngine engine(std::move(with_wait));
  engine.set_deliver(recorder.callback());
  ASSERT_TRUE(wait_for([&] { return subscribe_sync(engine, channel) == EngineErrc::ok; }, 10s));
  EXPECT_EQ(subscribers_on(master, GetParam(), "t", channel), 1);
  PublishLoad load(engine, channel);
  ASSERT_TRUE(wait_for([&] { return load.acknowledged_count() >= 50; }, 10s));
  const int promoted = cluster.kill_master(master, 20s);
  ASSERT_NE(promoted, 0) << "the cluster promoted the replica";
  // The killed node comes back as the replica of the promoted one (its
  // nodes.conf says so): with wait_replicas = 1, publishes need it.
  cluster.node(master).start();
  const std::size_t before = load.acknowledged_count();
  ASSERT_TRUE(wait_for([&] { return load.acknowledged_count() >= before + 50; }, 20s))
      << "publishes resume on the promoted replica: " << (load.failures().empty() ? "" : load.failures().back());
  load.stop();
  EXPECT_FALSE(load.failures().empty()) << "publishes failed while the master was gone";
  for (const auto& why : load.failures()) {
    EXPECT_TRUE(why.ends_with("; not published") || why.ends_with("; not acknowledged")) << why;
  }
  recorder.wait_until([&] {
    const auto offsets = recorder.offsets(channel);
    return !offsets.empty() && offsets.back() == load.acknowledged().rbegin()->first;
  });
  expect_nothing_acknowledged_lost(engine, load, recorder, channel);
  EXPECT_GT(recorder.count(ChannelEvent::Kind::resubscribe, channel), 0u) << "the pub/sub connection dropped";
  if (sharded()) {
    EXPECT_TRUE(wait_for([&] { return subscribers_on(promoted, "sharded", "t", channel) == 1; }, 10s))
        << "subscribed again on the promoted replica";
  }
  engine.stop();
}

// The engine's map still names the demoted master (nothing it did since the
// failover was redirected), so the SSUBSCRIBE goes there, and the node, now
// a replica of the slot's master, serves it without a MOVED. The first
// redirected publish refreshes the map, and the channel moves to the master.
TEST(RedisClusterShardedFailover, AChannelSubscribedOnADemotedMasterMovesToTheNewMaster) {
  RedisClusterGroup cluster;
  const std::string channel = "demoted";
  const int master = cluster.owner_of(cluster.keyslot(channel_key("t", channel, "meta")));
  Recorder recorder;  // outlives the engine, whose thread delivers to it
  RedisEngine engine(cluster_options(seeds_with_master_first(cluster, master), "t"));
  engine.set_deliver(recorder.callback());
  const PublishResult first = publish_sync(engine, message(channel, "1", keep(100)));
  ASSERT_EQ(first.error, EngineErrc::ok) << first.message;  // the map is loaded
  const int promoted = cluster.manual_failover(master, 30s);
  ASSERT_NE(promoted, 0) << "the replica took over; the master's log:" << cluster.log_of(master);

  ASSERT_EQ(subscribe_sync(engine, channel), EngineErrc::ok);
  ASSERT_EQ(subscribers_on(master, "sharded", "t", channel), 1) << "the demoted master serves it as a replica";
  const PublishResult second = publish_sync(engine, message(channel, "2", keep(100)));
  ASSERT_EQ(second.error, EngineErrc::ok) << second.message;
  EXPECT_TRUE(wait_for([&] { return subscribers_on(promoted, "sharded", "t", channel) == 1; }, 10s))
      << "subscribed on the new master";
  EXPECT_TRUE(wait_for([&] { return subscribers_on(master, "sharded", "t", channel) == 0; }, 10s))
      << "and no longer on the replica";
  EXPECT_TRUE(recorder.wait_until([&] { return recorder.count(ChannelEvent::Kind::resubscribe, channel) > 0; }))
      << "told to resubscribe: the move may have lost publications";
  const PublishResult third = publish_sync(engine, message(channel, "3", keep(100)));
  ASSERT_EQ(third.error, EngineErrc::ok) << third.message;
  EXPECT_TRUE(recorder.wait_until([&] {
    const auto offsets = recorder.offsets(channel);
    return !offsets.empty() && offsets.back() == third.position.offset;
  })) << "live from the new master";
  engine.stop();
}

INSTANTIATE_TEST_SUITE_P(PubSub, RedisClusterFailover, ::testing::Values("sharded", "global"),
                         [](const auto& info) { return info.param; });

}  // namespace
