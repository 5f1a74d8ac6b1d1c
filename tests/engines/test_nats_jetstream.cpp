// The NATS engine with engine.nats.storage = "jetstream": a cluster that
// needs only NATS. Real nats-server processes with JetStream on free
// loopback ports: the engine contract (offsets, epochs, history, TTL,
// idempotency, presence, stop) on both storages of the NATS engine, several
// nodes racing for one channel's offsets, a nats-server restart with and
// without its data, and a 3-server JetStream cluster losing a server
// under publish load.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "duplex/engines/factory.hpp"
#include "duplex/engines/nats_engine.hpp"
#include "engine_contract_cases.hpp"
#include "engine_test_support.hpp"
#include "jetstream_storage.hpp"
#include "nats_server.hpp"
#include "redis_server.hpp"

namespace {

using namespace duplex::engines;
using namespace std::chrono_literals;
using duplex::hub::ClientInfo;
using duplex::hub::StreamPosition;

using namespace duplex::test;

NatsServerSettings with_jetstream() {
  NatsServerSettings settings;
  settings.jetstream = true;
  return settings;
}

NatsEngineOptions jetstream_options(const std::string& url, std::function<std::int64_t()> clock = {}) {
  NatsEngineOptions o;
  o.nats.url = url;
  o.nats.subject_prefix = "t";
  o.nats.reorder_window = 100ms;
  o.nats.storage = "jetstream";
  o.nats.request_timeout = 3000ms;
  o.nats.presence_ttl = 30s;
  o.clock = std::move(clock);
  o.redis.addresses.clear();  // nothing of Redis is needed
  return o;
}

// Publishes until one succeeds (JetStream may still be electing its
// leaders right after the servers started); the last result.
PublishResult publish_when_ready(Engine& engine, const std::string& channel, std::chrono::seconds within = 30s) {
  PublishResult result;
  const auto deadline = std::chrono::steady_clock::now() + within;
  do {
    result = publish_sync(engine, message(channel, "\"warmup\""));
    if (result.error == EngineErrc::ok) break;
    std::this_thread::sleep_for(200ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return result;
}

// The engine contract for both storages of the NATS engine (the
// parameter: "jetstream", or "redis" with a redis-server of its own).
class NatsStorageContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    NatsEngineOptions options = jetstream_options(nats_.url(), clock_.function());
    if (GetParam() == "redis") {
      redis_ = std::make_unique<RedisServer>();
      options.nats.storage = "redis";
      options.redis.addresses = {redis_->address()};
      options.redis.prefix = "t";
    }
    engine_ = std::make_unique<NatsEngine>(options);
    engine_->set_deliver(recorder_.callback());
    engine_->set_node_name("a");
  }
  void TearDown() override {
    if (engine_) engine_->stop();
  }
  std::string epoch(const std::string& channel) { return history_sync(*engine_, newest(channel, 0)).top.epoch; }

  NatsServer nats_{with_jetstream()};
  std::unique_ptr<RedisServer> redis_;
  TestClock clock_;
  Recorder recorder_;
  std::unique_ptr<NatsEngine> engine_;
};

INSTANTIATE_TEST_SUITE_P(Storage, NatsStorageContract, ::testing::Values("jetstream", "redis"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST_P(NatsStorageContract, NameAndHealth) {
  EXPECT_EQ(engine_->name(), "nats");
  ASSERT_EQ(publish_sync(*engine_, message("warmup", "1")).error, EngineErrc::ok);
  ASSERT_TRUE(wait_for([&] { return engine_->healthy(); }));
  const EngineHealth health = engine_->health();
  EXPECT_EQ(health.backends_total, 2u) << "the storage's connection (JetStream or one Redis) and the fan-out's";
  EXPECT_EQ(health.backends_up, 2u);
  EXPECT_EQ(health.errors, 0u);
}

TEST_P(NatsStorageContract, OffsetsStartAtOneAndGrowPerChannelWithAStableEpoch) {
  Engine& engine = *engine_;
  const HistoryResult untouched = history_sync(engine, newest("chat:a", 10));
  ASSERT_EQ(untouched.error, EngineErrc::ok) << untouched.message;
  EXPECT_TRUE(is_hex_epoch(untouched.top.epoch)) << untouched.top.epoch;
  EXPECT_EQ(untouched.top.offset, 0u);
  EXPECT_TRUE(untouched.publications.empty());
  const std::string epoch = untouched.top.epoch;
  EXPECT_EQ(this->epoch("chat:a"), epoch) << "the epoch created by the first read stays";
  for (std::uint64_t expected = 1; expected <= 3; ++expected) {
    const PublishResult result = publish_sync(engine, message("chat:a", std::to_string(expected)));
    ASSERT_EQ(result.error, EngineErrc::ok) << result.message;
    EXPECT_FALSE(result.duplicate);
    EXPECT_EQ(result.position, (StreamPosition{epoch, expected}));
  }
  const PublishResult other = publish_sync(engine, message("chat.b*>", "1"));
  EXPECT_EQ(other.position.offset, 1u) << "a channel with subject wildcards in its name is a channel of its own";
  EXPECT_NE(other.position.epoch, epoch);
  EXPECT_EQ(history_sync(engine, newest("chat:a", 0)).top, (StreamPosition{epoch, 3}));
}

TEST_P(NatsStorageContract, DeliversEachPublicationInOrderToASubscribedNode) {
  ASSERT_EQ(subscribe_sync(*engine_, "room"), EngineErrc::ok);
  for (int i = 1; i <= 5; ++i) ASSERT_EQ(publish_sync(*engine_, message("room", std::to_string(i))).error, EngineErrc::ok);
  ASSERT_TRUE(recorder_.wait_until([&] { return recorder_.offsets("room").size() == 5; }));
  EXPECT_EQ(recorder_.offsets("room"), range(1, 5));
  for (const auto& event : recorder_.events()) {
    EXPECT_EQ(event.epoch, epoch("room"));
    EXPECT_EQ(event.publication->time_ms, clock_.now());
  }
}

TEST_P(NatsStorageContract, HistoryKeepsDataPublisherAndTime) {
  contract::history_keeps_data_publisher_and_time(*engine_, clock_, R"({"text":"hi:there\r\nNats-Msg-Id: x"})");
}

TEST_P(NatsStorageContract, HistoryWithoutSinceGivesNewestInOrderOrReversed) {
  HistoryResult all;
  ASSERT_NO_FATAL_FAILURE(all = contract::history_without_since_gives_newest_in_order_or_reversed(*engine_));
  EXPECT_TRUE(all.complete);
}

TEST_P(NatsStorageContract, HistoryIsTrimmedToSize) {
  const contract::EpochOf epoch_of = [this](const std::string& channel) { return epoch(channel); };
  ASSERT_NO_FATAL_FAILURE(contract::history_is_trimmed_to_size(*engine_, epoch_of));
}

TEST_P(NatsStorageContract, TheStreamKeepsAChannelsHistorySizeAndItsTop) {
  if (GetParam() != "jetstream") GTEST_SKIP() << "JetStream's purge; Redis trims in the publish script";
  // 100 publications with history.size 3: purged every 32nd, so at most
  // 3 + 1 + 31 messages of the channel stay in the stream.
  for (int i = 1; i <= 100; ++i) ASSERT_EQ(publish_sync(*engine_, message("c", "x", keep(3))).error, EngineErrc::ok);
  EXPECT_EQ(offsets_of(history_sync(*engine_, newest("c", 100, keep(3)))), range(98, 100));
  const HistoryResult all = history_sync(*engine_, newest("c", 1000, keep(1000)));
  EXPECT_LE(all.publications.size(), 3u + 1u + 31u) << "older messages are purged";
  EXPECT_GE(all.publications.size(), 4u);
  EXPECT_EQ(all.top.offset, 100u);
}

TEST_P(NatsStorageContract, CompleteFlagWithSince) {
  const contract::EpochOf epoch_of = [this](const std::string& channel) { return epoch(channel); };
  contract::complete_flag_with_since(*engine_, epoch_of);
}

TEST_P(NatsStorageContract, HistoryTtlHidesExpiredPublications) {
  const contract::EpochOf epoch_of = [this](const std::string& channel) { return epoch(channel); };
  contract::history_ttl_hides_expired_publications(*engine_, clock_, epoch_of);
}

TEST_P(NatsStorageContract, OffsetsGrowWithoutHistory) {
  const std::string epoch = this->epoch("c");
  for (std::uint64_t i = 1; i <= 3; ++i) EXPECT_EQ(publish_sync(*engine_, message("c", "x", keep(0))).position.offset, i);
  const HistoryResult none = history_sync(*engine_, newest("c", 10, keep(0)));
  EXPECT_TRUE(none.publications.empty());
  EXPECT_EQ(none.top, (StreamPosition{epoch, 3}));
  EXPECT_FALSE(history_sync(*engine_, after("c", {epoch, 0}, 10, keep(0))).complete);
  publish_sync(*engine_, message("c", "y", keep(5)));
  const HistoryResult one = history_sync(*engine_, after("c", {epoch, 3}, 10, keep(5)));
  EXPECT_EQ(offsets_of(one), (std::vector<std::uint64_t>{4}));
  EXPECT_TRUE(one.complete);
}

TEST_P(NatsStorageContract, IdempotentRepeatReturnsFirstPositionWithoutDelivery) {
  Engine& engine = *engine_;
  const std::string epoch = this->epoch("c");
  ASSERT_EQ(subscribe_sync(engine, "c"), EngineErrc::ok);
  const HistoryOptions window = keep(100, 0s, 1s);
  const PublishResult first = publish_sync(engine, message("c", "a", window, "key-1"));
  ASSERT_EQ(first.error, EngineErrc::ok) << first.message;
  ASSERT_FALSE(first.duplicate);
  EXPECT_EQ(first.position, (StreamPosition{epoch, 1}));
  publish_sync(engine, message("c", "b", window));
  const PublishResult repeat = publish_sync(engine, message("c", "a-again", window, "key-1"));
  EXPECT_EQ(repeat.error, EngineErrc::ok);
  EXPECT_TRUE(repeat.duplicate);
  EXPECT_EQ(repeat.position, (StreamPosition{epoch, 1}));
  EXPECT_EQ(history_sync(engine, newest("c", 10)).publications.size(), 2u);

  const PublishResult elsewhere = publish_sync(engine, message("other", "a", window, "key-1"));
  EXPECT_FALSE(elsewhere.duplicate) << "keys are per channel";

  // A wider window elsewhere widens the stream's; this namespace's second
  // still ends its key (the engine's clock, as the Redis storage does).
  publish_sync(engine, message("wide", "w", keep(100, 0s, 300s), "key-w"));
  clock_.advance(1100ms);
  const PublishResult after_window = publish_sync(engine, message("c", "a-late", window, "key-1"));
  EXPECT_FALSE(after_window.duplicate);
  EXPECT_EQ(after_window.position.offset, 3u);
  const PublishResult repeat_again = publish_sync(engine, message("c", "a-late", window, "key-1"));
  EXPECT_TRUE(repeat_again.duplicate);
  EXPECT_EQ(repeat_again.position.offset, 3u);
  ASSERT_TRUE(recorder_.wait_until([&] { return recorder_.offsets("c").size() >= 3; }));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(recorder_.offsets("c"), (std::vector<std::uint64_t>{1, 2, 3})) << "duplicates are not delivered";
  const PublishResult wide_repeat = publish_sync(engine, message("wide", "w", keep(100, 0s, 300s), "key-w"));
  EXPECT_TRUE(wide_repeat.duplicate) << "300 s have not passed";
}

TEST_P(NatsStorageContract, IdempotencyHoldsWithinOneBurst) { contract::idempotency_holds_within_one_burst(*engine_); }

TEST_P(NatsStorageContract, PresenceListsEntriesAndAnnouncesRealChanges) {
  contract::presence_announced_through_the_fan_out(*engine_, recorder_);
}

TEST_P(NatsStorageContract, ConcurrentPublishersGetUniqueOffsetsDeliveredInOrder) {
  contract::concurrent_publishers_delivered_through_the_fan_out(*engine_, recorder_);
}

TEST_P(NatsStorageContract, CompletionsMayCallBackIntoTheEngine) {
  contract::completions_may_call_back_into_the_engine(*engine_);
}

TEST_P(NatsStorageContract, StopRacingPublishersCompletesEveryPublishExactlyOnce) {
  contract::stop_racing_publishers_completes_every_publish_exactly_once(*engine_);
  EXPECT_EQ(publish_sync(*engine_, message("race", "after")).error, EngineErrc::unavailable);
}

TEST_P(NatsStorageContract, StopFromACompletionCompletesTheRestOnce) {
  const PublishResult late = contract::stop_from_a_completion_completes_the_rest_once(*engine_);
  EXPECT_EQ(late.error, EngineErrc::unavailable);
}

TEST_P(NatsStorageContract, RegistryListsLiveNodes) {
  NodeInfo self;
  self.name = "a";
  self.connections = 7;
  engine_->node_heartbeat(self);
  ASSERT_TRUE(wait_for([&] { return nodes_sync(*engine_).size() == 1; }));
  const auto nodes = nodes_sync(*engine_);
  EXPECT_EQ(nodes[0].name, "a");
  EXPECT_EQ(nodes[0].connections, 7u);
}

// --- several nodes, restarts, a cluster

struct JetStreamNode {
  Recorder events;
  std::unique_ptr<NatsEngine> engine;
};

std::unique_ptr<JetStreamNode> start_node(const std::string& url, const std::string& name) {
  auto node = std::make_unique<JetStreamNode>();
  node->engine = std::make_unique<NatsEngine>(jetstream_options(url));
  node->engine->set_deliver(node->events.callback());
  node->engine->set_node_name(name);
  return node;
}

// Every acknowledged publication in history once, in offset order, and
// every offset of the epoch up to the top there.
// Right after a server loss the cluster may still be electing the leader
// that creates consumers: the read is retried for up to 30 s.
void expect_history_holds(Engine& engine, const std::string& channel, const std::set<std::string>& acknowledged) {
  HistoryResult all;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  do {
    all = history_sync(engine, newest(channel, 100'000, keep(100'000)));
    if (all.error == EngineErrc::ok) break;
    std::this_thread::sleep_for(250ms);
  } while (std::chrono::steady_clock::now() < deadline);
  ASSERT_EQ(all.error, EngineErrc::ok) << all.message;
  EXPECT_EQ(offsets_of(all), range(1, all.top.offset)) << "no gap, no duplicate";
  std::set<std::string> found;
  for (const auto& p : all.publications) found.insert(p->data);
  for (const auto& data : acknowledged) EXPECT_TRUE(found.count(data)) << data << " was acknowledged and is gone";
}

TEST(JetStreamNodes, ThreeNodesRacingForOneChannelGetUniqueOffsetsAndDeliverInOrder) {
  NatsServer nats(with_jetstream());
  std::vector<std::unique_ptr<JetStreamNode>> nodes;
  for (const char* name : {"a", "b", "c"}) nodes.push_back(start_node(nats.url(), name));
  for (auto& node : nodes) ASSERT_EQ(subscribe_sync(*node->engine, "hot"), EngineErrc::ok);
  constexpr int kEach = 150;
  std::mutex mutex;
  std::set<std::uint64_t> offsets;
  std::set<std::string> acknowledged;
  std::vector<std::thread> publishers;
  for (std::size_t n = 0; n < nodes.size(); ++n) {
    publishers.emplace_back([&, n] {
      for (int i = 0; i < kEach; ++i) {
        const std::string data = "\"" + std::to_string(n) + "-" + std::to_string(i) + "\"";
        const PublishResult r = publish_sync(*nodes[n]->engine, message("hot", data, keep(1000)));
        std::lock_guard lock(mutex);
        EXPECT_EQ(r.error, EngineErrc::ok) << r.message;
        EXPECT_TRUE(offsets.insert(r.position.offset).second) << "offset " << r.position.offset << " given twice";
        acknowledged.insert(data);
      }
    });
  }
  for (auto& t : publishers) t.join();
  EXPECT_EQ(offsets.size(), 3u * kEach);
  EXPECT_EQ(*offsets.rbegin(), 3u * kEach);
  for (auto& node : nodes) {
    ASSERT_TRUE(node->events.wait_until([&] { return node->events.offsets("hot").size() >= 3u * kEach; }));
    EXPECT_EQ(node->events.offsets("hot"), range(1, 3 * kEach)) << "each node: every offset once, in order";
  }
  expect_history_holds(*nodes[0]->engine, "hot", acknowledged);
  for (auto& node : nodes) node->engine->stop();
}

TEST(JetStreamNodes, PresenceAndRegistryAcrossNodes) {
  NatsServer nats(with_jetstream());
  auto a = start_node(nats.url(), "a");
  auto b = start_node(nats.url(), "b");
  ASSERT_EQ(subscribe_sync(*b->engine, "room"), EngineErrc::ok);
  ClientInfo alice;
  alice.client = "c-alice";
  alice.user = "alice";
  a->engine->presence_add("room", alice, true);
  ASSERT_TRUE(b->events.wait_until([&] { return b->events.count(ChannelEvent::Kind::join, "room") == 1; }));
  const auto seen = presence_sync(*b->engine, "room");
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].user, "alice");
  a->engine->presence_remove("room", alice, true);
  ASSERT_TRUE(b->events.wait_until([&] { return b->events.count(ChannelEvent::Kind::leave, "room") == 1; }));
  EXPECT_TRUE(presence_sync(*b->engine, "room").empty());
  // The hub beats every node_ttl / 3 and a beat is fire-and-forget: one lost
  // to a request timeout under load is made up by the next, so beat on.
  auto last_beat = std::chrono::steady_clock::time_point{};
  ASSERT_TRUE(wait_for([&] {
    if (std::chrono::steady_clock::now() - last_beat > 500ms) {
      last_beat = std::chrono::steady_clock::now();
      for (auto* node : {a.get(), b.get()}) {
        NodeInfo info;
        info.name = node == a.get() ? "a" : "b";
        node->engine->node_heartbeat(info);
      }
    }
    return nodes_sync(*a->engine).size() == 2;
  }));
  a->engine->stop();
  b->engine->stop();
}

TEST(JetStreamNodes, ServerRestartKeepsHistoryAndEpochAndSubscribersResubscribe) {
  NatsServer nats(with_jetstream());
  auto a = start_node(nats.url(), "a");
  ASSERT_EQ(subscribe_sync(*a->engine, "kept"), EngineErrc::ok);
  std::string epoch;
  for (int i = 1; i <= 5; ++i) {
    const PublishResult r = publish_sync(*a->engine, message("kept", std::to_string(i)));
    ASSERT_EQ(r.error, EngineErrc::ok) << r.message;
    epoch = r.position.epoch;
  }
  nats.kill();  // SIGKILL: the file store has what JetStream acknowledged
  ASSERT_TRUE(a->events.wait_until([&] { return a->events.count(ChannelEvent::Kind::resubscribe, "kept") > 0; }));
  const PublishResult down = publish_sync(*a->engine, message("kept", "lost"));
  EXPECT_EQ(down.error, EngineErrc::unavailable);
  nats.start();
  ASSERT_TRUE(wait_for([&] { return a->engine->healthy(); }, 15s));
  const PublishResult next = publish_when_ready(*a->engine, "kept");
  ASSERT_EQ(next.error, EngineErrc::ok) << next.message;
  EXPECT_EQ(next.position, (StreamPosition{epoch, 6})) << "same epoch, the next offset";
  const HistoryResult recovered = history_sync(*a->engine, after("kept", {epoch, 2}, 10));
  EXPECT_TRUE(recovered.complete);
  EXPECT_EQ(offsets_of(recovered), range(3, 6));
  a->engine->stop();
}

TEST(JetStreamNodes, ServerThatLostItsDataStartsANewEpochThatSubscribersAreToldOf) {
  NatsServer nats(with_jetstream());
  auto a = start_node(nats.url(), "a");
  auto b = start_node(nats.url(), "b");
  ASSERT_EQ(subscribe_sync(*b->engine, "lost"), EngineErrc::ok);
  PublishResult before;
  for (int i = 1; i <= 3; ++i) before = publish_sync(*a->engine, message("lost", std::to_string(i)));
  ASSERT_EQ(before.error, EngineErrc::ok) << before.message;
  ASSERT_TRUE(b->events.wait_until([&] { return b->events.offsets("lost").size() == 3; }));
  nats.kill();
  nats.wipe_store();
  nats.start();
  ASSERT_TRUE(wait_for([&] { return a->engine->healthy() && b->engine->healthy(); }, 15s));
  const PublishResult after_loss = publish_when_ready(*a->engine, "lost");
  ASSERT_EQ(after_loss.error, EngineErrc::ok) << after_loss.message;
  EXPECT_NE(after_loss.position.epoch, before.position.epoch) << "history was lost: a new epoch, never old offsets";
  EXPECT_EQ(after_loss.position.offset, 1u);
  const HistoryResult stale = history_sync(*b->engine, after("lost", before.position, 10));
  EXPECT_FALSE(stale.complete) << "a subscriber of the old epoch cannot recover";
  EXPECT_EQ(stale.top.epoch, after_loss.position.epoch);
  EXPECT_GT(b->events.count(ChannelEvent::Kind::resubscribe, "lost"), 0u) << "told to resubscribe";
  a->engine->stop();
  b->engine->stop();
}

TEST(JetStreamNodes, WithoutJetStreamAPublishFailsSayingSo) {
  NatsServer plain;  // no -js
  auto a = start_node(plain.url(), "a");
  const PublishResult r = publish_sync(*a->engine, message("c", "1"));
  EXPECT_EQ(r.error, EngineErrc::unavailable);
  EXPECT_NE(r.message.find("-js"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find(plain.url()), std::string::npos) << r.message;
  a->engine->stop();
}

TEST(JetStreamNodes, ConfigurationErrorsNameTheKey) {
  NatsEngineOptions bad = jetstream_options("nats://127.0.0.1:1");
  bad.nats.subject_prefix = "has space";
  try {
    NatsEngine engine(bad);
    FAIL() << "accepted a prefix that cannot name a stream";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("engine.nats.subject_prefix"), std::string::npos) << e.what();
  }
  bad = jetstream_options("nats://127.0.0.1:1");
  bad.nats.storage = "disk";
  EXPECT_THROW(NatsEngine{bad}, std::runtime_error);
  EngineConfig config;
  config.type = "nats";
  config.nats = jetstream_options("nats://127.0.0.1:1").nats;
  config.redis.addresses.clear();
  auto engine = make_engine(config);
  EXPECT_EQ(engine->name(), "nats") << "the factory needs no Redis address for JetStream";
  engine->stop();
}

// Three JetStream servers (replicas = 3), two hub nodes on different
// servers publishing to one channel; one server is killed mid-stream.
// Every acknowledged publication stays in history once, in order.
TEST(JetStreamCluster, AKilledServerLosesNoAcknowledgedPublication) {
  const int cluster_ports[3] = {free_loopback_port(), free_loopback_port(), free_loopback_port()};
  std::vector<std::unique_ptr<NatsServer>> servers;
  for (int i = 0; i < 3; ++i) {
    NatsServerSettings settings = with_jetstream();
    settings.name = "n" + std::to_string(i);
    settings.cluster_port = cluster_ports[i];
    for (int j = 0; j < 3; ++j)
      if (j != i) settings.routes.push_back(cluster_ports[j]);
    servers.push_back(std::make_unique<NatsServer>(settings, false));
  }
  for (auto& server : servers) server->start();
  NatsEngineOptions options = jetstream_options(servers[0]->url() + "," + servers[1]->url());
  options.nats.jetstream_replicas = 3;
  NatsEngine a(options);
  options.nats.url = servers[1]->url() + "," + servers[0]->url();
  NatsEngine b(options);
  ASSERT_EQ(publish_when_ready(a, "replicated", 60s).error, EngineErrc::ok);

  std::atomic<bool> run{true};
  std::mutex mutex;
  std::set<std::string> acknowledged;
  std::atomic<int> ok{0};
  auto publisher = [&](NatsEngine& engine, const std::string& who) {
    for (int i = 0; run; ++i) {
      const std::string data = "\"" + who + std::to_string(i) + "\"";
      if (publish_sync(engine, message("replicated", data, keep(100'000))).error == EngineErrc::ok) {
        std::lock_guard lock(mutex);
        acknowledged.insert(data);
        ++ok;
      }
    }
  };
  std::thread pa(publisher, std::ref(a), "a");
  std::thread pb(publisher, std::ref(b), "b");
  ASSERT_TRUE(wait_for([&] { return ok > 100; }, 30s));
  servers[2]->kill();
  const int at_kill = ok.load();
  ASSERT_TRUE(wait_for([&] { return ok > at_kill + 100; }, 30s)) << "publishing goes on with 2 of 3 servers";
  run = false;
  pa.join();
  pb.join();
  expect_history_holds(a, "replicated", acknowledged);
  a.stop();
  b.stop();
}

}  // namespace
