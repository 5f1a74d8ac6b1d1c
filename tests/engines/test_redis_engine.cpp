// The Redis engine against real redis-servers (started per test on free
// loopback ports, see redis_server.hpp): the engine contract (ported from
// tests/unit/engines/test_engines.cpp: Redis epochs are per channel and deliveries
// come from pub/sub, so a node receives only what it node_subscribe()d),
// then several engines as several nodes, sharding, and failures (killed,
// restarted and paused Redis).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "duplex/engines/factory.hpp"
#include "duplex/engines/redis_engine.hpp"
#include "jump_hash.hpp"
#include "engine_contract_cases.hpp"
#include "engine_test_support.hpp"
#include "redis_server.hpp"
#include "redis_wire.hpp"
#include "tcp_proxy.hpp"

namespace {

using namespace duplex::engines;
using namespace std::chrono_literals;
using duplex::hub::ClientInfo;

using namespace duplex::test;

// Fast timeouts so failure tests stay short.
RedisEngineOptions options_for(std::vector<std::string> addresses, std::function<std::int64_t()> clock = {}) {
  RedisEngineOptions options;
  options.config.addresses = std::move(addresses);
  options.config.prefix = "t";
  options.config.subscriber_connections = 2;
  options.config.connect_timeout = 500ms;
  options.config.command_timeout = 800ms;
  options.config.reconnect_min = 50ms;
  options.config.reconnect_max = 300ms;
  options.config.presence_ttl = 3s;
  options.config.node_ttl = 2s;
  options.clock = std::move(clock);
  return options;
}

// One redis-server, one engine (node "a"), a recorder and a test clock.
class RedisContract : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = std::make_unique<RedisEngine>(options_for({redis_.address()}, clock_.function()));
    engine_->set_deliver(recorder_.callback());
    engine_->set_node_name("a");
  }
  void TearDown() override {
    if (engine_) engine_->stop();
  }
  std::string epoch(const std::string& channel) { return history_sync(*engine_, newest(channel, 0)).top.epoch; }

  RedisServer redis_;
  TestClock clock_;
  Recorder recorder_;
  std::unique_ptr<RedisEngine> engine_;
};

TEST_F(RedisContract, NameAndHealth) {
  EXPECT_EQ(engine_->name(), "redis");
  publish_sync(*engine_, message("warmup", "1"));
  ASSERT_TRUE(recorder_.wait_until([&] { return engine_->healthy(); }));
  const EngineHealth health = engine_->health();
  EXPECT_TRUE(health.healthy);
  EXPECT_EQ(health.backends_up, 1u);
  EXPECT_EQ(health.backends_total, 1u);
  EXPECT_EQ(health.errors, 0u);
}

TEST_F(RedisContract, OffsetsStartAtOneAndGrowPerChannelWithAStableEpoch) {
  Engine& engine = *engine_;
  const HistoryResult untouched = history_sync(engine, newest("chat:a", 10));
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
  const PublishResult other = publish_sync(engine, message("chat:b", "1"));
  EXPECT_EQ(other.position.offset, 1u);
  EXPECT_TRUE(is_hex_epoch(other.position.epoch));
  EXPECT_EQ(publish_sync(engine, message("chat:a", "4")).position, (StreamPosition{epoch, 4}));
  EXPECT_EQ(history_sync(engine, newest("chat:a", 0)).top, (StreamPosition{epoch, 4}));
  EXPECT_EQ(history_sync(engine, newest("chat:b", 0)).top, other.position);
}

TEST_F(RedisContract, DeliversEachPublicationInOrderToASubscribedNode) {
  Engine& engine = *engine_;
  ASSERT_EQ(subscribe_sync(engine, "room"), EngineErrc::ok);
  Completions completions;
  for (std::size_t i = 0; i < 5; ++i) {
    engine.publish(message("room", "{\"n\":" + std::to_string(i + 1) + "}"),
                   [&](PublishResult result) { completions.add(std::move(result)); });
  }
  ASSERT_TRUE(completions.wait_for(5));
  ASSERT_TRUE(recorder_.wait_until([&] { return recorder_.offsets("room").size() == 5; }));
  const std::string epoch = this->epoch("room");
  const auto events = recorder_.events();
  ASSERT_EQ(events.size(), 5u);
  for (std::size_t i = 0; i < events.size(); ++i) {
    const ChannelEvent& event = events[i];
    EXPECT_EQ(event.kind, ChannelEvent::Kind::publication);
    EXPECT_EQ(event.channel, "room");
    EXPECT_EQ(event.epoch, epoch);
    ASSERT_TRUE(event.publication);
    EXPECT_EQ(event.publication->offset, i + 1);
    EXPECT_EQ(event.publication->data, "{\"n\":" + std::to_string(i + 1) + "}");
    EXPECT_EQ(event.publication->publisher, R"({"user":"u1","client":"c1"})");
    EXPECT_EQ(event.publication->time_ms, clock_.now());
  }
  EXPECT_TRUE(recorder_.offsets("unsubscribed").empty());
}

TEST_F(RedisContract, HistoryKeepsDataPublisherAndTime) {
  contract::history_keeps_data_publisher_and_time(*engine_, clock_, R"({"text":"hi:there"})");
}

TEST_F(RedisContract, HistoryWithoutSinceGivesNewestInOrderOrReversed) {
  HistoryResult all;
  ASSERT_NO_FATAL_FAILURE(all = contract::history_without_since_gives_newest_in_order_or_reversed(*engine_));
  EXPECT_TRUE(all.complete);
}

TEST_F(RedisContract, HistoryIsTrimmedToSize) {
  const contract::EpochOf epoch_of = [this](const std::string& channel) { return epoch(channel); };
  ASSERT_NO_FATAL_FAILURE(contract::history_is_trimmed_to_size(*engine_, epoch_of));
  EXPECT_EQ(redis_.query({"LLEN", "t:hist:c"}), 3);
}

TEST_F(RedisContract, CompleteFlagWithSince) {
  const contract::EpochOf epoch_of = [this](const std::string& channel) { return epoch(channel); };
  contract::complete_flag_with_since(*engine_, epoch_of);
}

TEST_F(RedisContract, HistoryTtlHidesExpiredPublications) {
  const contract::EpochOf epoch_of = [this](const std::string& channel) { return epoch(channel); };
  ASSERT_NO_FATAL_FAILURE(contract::history_ttl_hides_expired_publications(*engine_, clock_, epoch_of));
  EXPECT_GT(redis_.query({"PTTL", "t:hist:c"}), 0) << "the history key expires on its own";
}

TEST_F(RedisContract, OffsetsGrowWithoutHistory) {
  Engine& engine = *engine_;
  const std::string epoch = this->epoch("c");
  ASSERT_EQ(subscribe_sync(engine, "c"), EngineErrc::ok);
  for (std::uint64_t i = 1; i <= 3; ++i) {
    EXPECT_EQ(publish_sync(engine, message("c", "x", keep(0))).position.offset, i);
  }
  const HistoryResult none = history_sync(engine, newest("c", 10, keep(0)));
  EXPECT_TRUE(none.publications.empty());
  EXPECT_EQ(none.top.offset, 3u);
  EXPECT_FALSE(history_sync(engine, after("c", {epoch, 0}, 10)).complete);
  EXPECT_TRUE(recorder_.wait_until([&] { return recorder_.offsets("c") == range(1, 3); }))
      << "delivered even without history";
  publish_sync(engine, message("c", "y", keep(5)));
  const HistoryResult one = history_sync(engine, after("c", {epoch, 3}, 10));
  EXPECT_EQ(offsets_of(one), (std::vector<std::uint64_t>{4}));
  EXPECT_TRUE(one.complete);
}

TEST_F(RedisContract, IdempotentRepeatReturnsFirstPositionWithoutDelivery) {
  Engine& engine = *engine_;
  const std::string epoch = this->epoch("c");
  ASSERT_EQ(subscribe_sync(engine, "c"), EngineErrc::ok);
  const HistoryOptions window = keep(100, 0s, 1s);
  const PublishResult first = publish_sync(engine, message("c", "a", window, "key-1"));
  ASSERT_FALSE(first.duplicate);
  EXPECT_EQ(first.position, (StreamPosition{epoch, 1}));
  publish_sync(engine, message("c", "b", window));
  const PublishResult repeat = publish_sync(engine, message("c", "a-again", window, "key-1"));
  EXPECT_EQ(repeat.error, EngineErrc::ok);
  EXPECT_TRUE(repeat.duplicate);
  EXPECT_EQ(repeat.position, (StreamPosition{epoch, 1}));
  EXPECT_EQ(history_sync(engine, newest("c", 0)).top.offset, 2u);
  EXPECT_EQ(history_sync(engine, newest("c", 10)).publications.size(), 2u);

  const PublishResult elsewhere = publish_sync(engine, message("other", "a", window, "key-1"));
  EXPECT_FALSE(elsewhere.duplicate) << "keys are per channel";
  EXPECT_EQ(elsewhere.position.offset, 1u);

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
}

TEST_F(RedisContract, IdempotencyHoldsWithinOneBurst) {
  contract::idempotency_holds_within_one_burst(*engine_);
}

TEST_F(RedisContract, PresenceListsEntriesAndAnnouncesRealChanges) {
  contract::presence_announced_through_the_fan_out(*engine_, recorder_);
}

TEST_F(RedisContract, ConcurrentPublishersGetUniqueOffsetsDeliveredInOrder) {
  contract::concurrent_publishers_delivered_through_the_fan_out(*engine_, recorder_);
}

TEST_F(RedisContract, CompletionsMayCallBackIntoTheEngine) {
  contract::completions_may_call_back_into_the_engine(*engine_);
}

TEST_F(RedisContract, StopRacingPublishersCompletesEveryPublishExactlyOnce) {
  contract::stop_racing_publishers_completes_every_publish_exactly_once(*engine_);
  EXPECT_EQ(publish_sync(*engine_, message("race", "after")).error, EngineErrc::unavailable);
}

TEST_F(RedisContract, StopFromACompletionCompletesTheRestOnce) {
  const PublishResult late = contract::stop_from_a_completion_completes_the_rest_once(*engine_);
  EXPECT_EQ(late.error, EngineErrc::unavailable) << "a publish after stop() is refused";
}

TEST_F(RedisContract, SubscribeUnsubscribeRacesEndSubscribed) {
  Engine& engine = *engine_;
  // Waiters of one turn, an unsubscribe in flight, and a subscribe behind it.
  ASSERT_EQ(subscribe_sync(engine, "race"), EngineErrc::ok);
  engine.node_unsubscribe("race");  // count 0: UNSUBSCRIBE goes out
  std::promise<EngineErrc> again;
  engine.node_subscribe("race", [&](EngineErrc e) { again.set_value(e); });
  auto future = again.get_future();
  ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(future.get(), EngineErrc::ok);
  for (int i = 0; i < 20; ++i) {
    engine.node_subscribe("race", [](EngineErrc) {});
    engine.node_unsubscribe("race");
  }
  ASSERT_EQ(subscribe_sync(engine, "race"), EngineErrc::ok);
  const PublishResult published = publish_sync(engine, message("race", "1"));
  ASSERT_EQ(published.error, EngineErrc::ok);
  EXPECT_TRUE(recorder_.wait_until([&] { return recorder_.offsets("race").size() == 1; }))
      << "still subscribed after the races";

  // Down to zero: no longer delivered.
  engine.node_unsubscribe("race");
  engine.node_unsubscribe("race");
  ASSERT_TRUE(recorder_.wait_until([&] { return redis_.query({"PUBSUB", "NUMSUB", "t:ch:race"}) >= 0; }));
  ASSERT_TRUE(recorder_.wait_until([&] {
    return publish_sync(engine, message("probe", "x")).error == EngineErrc::ok &&
           redis_.query({"PUBLISH", "t:ch:race", "pnone:1:1:0:"}) == 0;
  }));
}

TEST_F(RedisContract, ManyChannelsInOneTurnAreSubscribedTogether) {
  Engine& engine = *engine_;
  std::atomic<int> ok{0};
  constexpr int kChannels = 200;
  for (int i = 0; i < kChannels; ++i) {
    engine.node_subscribe("many:" + std::to_string(i), [&](EngineErrc e) {
      if (e == EngineErrc::ok) ok.fetch_add(1);
    });
  }
  ASSERT_TRUE(recorder_.wait_until([&] { return ok.load() == kChannels; }));
  publish_sync(engine, message("many:7", "x"));
  EXPECT_TRUE(recorder_.wait_until([&] { return recorder_.offsets("many:7").size() == 1; }));
}

// ---------------------------------------------------------------------------
// Several nodes on the same Redis.

class RedisNodes : public ::testing::Test {
 protected:
  std::unique_ptr<RedisEngine> node(const std::string& name, Recorder& recorder,
                                    std::vector<std::string> addresses = {}) {
    if (addresses.empty()) addresses = {redis_.address()};
    auto engine = std::make_unique<RedisEngine>(options_for(std::move(addresses), clock_.function()));
    engine->set_deliver(recorder.callback());
    engine->set_node_name(name);
    return engine;
  }

  RedisServer redis_;
  TestClock clock_;
  Recorder recorder_a_;
  Recorder recorder_b_;
};

TEST_F(RedisNodes, PublishOnOneNodeReachesSubscribersOnAnotherInOrder) {
  auto a = node("a", recorder_a_);
  auto b = node("b", recorder_b_);
  ASSERT_EQ(subscribe_sync(*b, "shared"), EngineErrc::ok);
  Completions completions;
  constexpr std::size_t kCount = 500;
  for (std::size_t i = 1; i <= kCount; ++i) {
    a->publish(message("shared", std::to_string(i)), [&](PublishResult r) { completions.add(std::move(r)); });
  }
  ASSERT_TRUE(completions.wait_for(kCount));
  for (const auto& r : completions.results()) ASSERT_EQ(r.error, EngineErrc::ok) << r.message;
  ASSERT_TRUE(recorder_b_.wait_until([&] { return recorder_b_.offsets("shared").size() >= kCount; }));
  EXPECT_EQ(recorder_b_.offsets("shared"), range(1, kCount));
  EXPECT_TRUE(recorder_a_.offsets("shared").empty()) << "a never subscribed";
  EXPECT_TRUE(recorder_b_.of_kind(ChannelEvent::Kind::resubscribe).empty());

  // Both nodes see the same stream position.
  EXPECT_EQ(history_sync(*a, newest("shared", 0)).top, history_sync(*b, newest("shared", 0)).top);
  a->stop();
  b->stop();
}

TEST_F(RedisNodes, IdempotencyHoldsAcrossNodes) {
  auto a = node("a", recorder_a_);
  auto b = node("b", recorder_b_);
  const PublishResult first = publish_sync(*a, message("c", "1", keep(10), "k"));
  const PublishResult second = publish_sync(*b, message("c", "1", keep(10), "k"));
  EXPECT_FALSE(first.duplicate);
  EXPECT_TRUE(second.duplicate);
  EXPECT_EQ(first.position, second.position);
  EXPECT_EQ(history_sync(*b, newest("c", 10)).publications.size(), 1u);
}

TEST_F(RedisNodes, PresenceIsSharedAndADeadNodesEntriesExpire) {
  auto a = node("a", recorder_a_);
  auto b = node("b", recorder_b_);
  ASSERT_EQ(subscribe_sync(*b, "room"), EngineErrc::ok);
  a->presence_add("room", {"conn-a", "alice", ""}, true);
  b->presence_add("room", {"conn-b", "bob", ""}, true);
  ASSERT_TRUE(recorder_b_.wait_until([&] { return recorder_b_.of_kind(ChannelEvent::Kind::join).size() == 2; }));
  const auto joins = recorder_b_.of_kind(ChannelEvent::Kind::join);
  std::set<std::string> joined{joins[0].client.client, joins[1].client.client};
  EXPECT_EQ(joined, (std::set<std::string>{"conn-a", "conn-b"})) << "a's join reached b";
  ASSERT_EQ(presence_sync(*a, "room").size(), 2u);
  ASSERT_EQ(presence_sync(*b, "room").size(), 2u);

  a->presence_remove("room", {"conn-a", "alice", ""}, true);
  ASSERT_TRUE(recorder_b_.wait_until([&] { return recorder_b_.of_kind(ChannelEvent::Kind::leave).size() == 1; }));
  a->presence_add("room", {"conn-a2", "alice", ""}, false);
  ASSERT_EQ(presence_sync(*a, "room").size(), 2u);  // a's own connection: its add is applied
  ASSERT_EQ(presence_sync(*b, "room").size(), 2u);

  // Node a dies without removing its entry: gone after presence_ttl (3s
  // here), while b's own entry is refreshed and stays.
  a->stop();
  clock_.advance(2s);
  ASSERT_EQ(presence_sync(*b, "room").size(), 2u);
  std::this_thread::sleep_for(1200ms);  // b refreshes every ttl/3 = 1s
  clock_.advance(2s);
  const auto left = presence_sync(*b, "room");
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].client, "conn-b");
  b->stop();
}

TEST_F(RedisNodes, NodeRegistryListsLiveNodesUntilNodeTtl) {
  auto a = node("a", recorder_a_);
  auto b = node("b", recorder_b_);
  NodeInfo info_a;
  info_a.name = "a";
  info_a.started_ms = clock_.now();
  info_a.updated_ms = clock_.now();
  info_a.connections = 3;
  info_a.pushes_out = 42;
  NodeInfo info_b = info_a;
  info_b.name = "b";
  info_b.connections = 5;
  a->node_heartbeat(info_a);
  b->node_heartbeat(info_b);
  std::vector<NodeInfo> nodes;
  ASSERT_TRUE(recorder_a_.wait_until([&] { return (nodes = nodes_sync(*a)).size() == 2; }));
  EXPECT_EQ(nodes[0].name, "a");
  EXPECT_EQ(nodes[0].connections, 3u);
  EXPECT_EQ(nodes[0].pushes_out, 42u);
  EXPECT_EQ(nodes[0].started_ms, clock_.now());
  EXPECT_EQ(nodes[1].name, "b");
  EXPECT_EQ(nodes[1].connections, 5u);

  // b keeps beating, a stops: after node_ttl (2s) only b is left.
  clock_.advance(1500ms);
  b->node_heartbeat(info_b);
  clock_.advance(1000ms);
  b->node_heartbeat(info_b);
  ASSERT_TRUE(recorder_a_.wait_until([&] { return (nodes = nodes_sync(*b)).size() == 1; }));
  EXPECT_EQ(nodes[0].name, "b");
}

TEST_F(RedisNodes, SendToNodeReachesOnlyThatNode) {
  // Declared before the engines, so destroyed after them: a "hello b" sent
  // twice may still arrive while the test ends, on an engine's thread.
  std::mutex mutex;
  std::vector<std::string> got_a;
  std::vector<std::string> got_b;
  auto a = node("a", recorder_a_);
  auto b = node("b", recorder_b_);
  a->set_node_message_handler([&](std::string payload) {
    std::lock_guard lock(mutex);
    got_a.push_back(std::move(payload));
  });
  b->set_node_message_handler([&](std::string payload) {
    std::lock_guard lock(mutex);
    got_b.push_back(std::move(payload));
  });
  // The node channels are subscribed asynchronously: send until it lands.
  ASSERT_TRUE(recorder_a_.wait_until([&] {
    a->send_to_node("b", "hello b");
    std::this_thread::sleep_for(50ms);
    std::lock_guard lock(mutex);
    return !got_b.empty();
  }));
  ASSERT_TRUE(b->send_to_node("a", "hello a"));
  ASSERT_TRUE(recorder_a_.wait_until([&] {
    std::lock_guard lock(mutex);
    return !got_a.empty();
  }));
  std::lock_guard lock(mutex);
  EXPECT_EQ(got_a, (std::vector<std::string>{"hello a"}));
  EXPECT_EQ(got_b.front(), "hello b");
  EXPECT_FALSE(a->send_to_node("b", "x") && false);
}

TEST_F(RedisNodes, ChannelsAreShardedOverTwoServers) {
  RedisServer second;
  const std::vector<std::string> addresses{redis_.address(), second.address()};
  auto a = node("a", recorder_a_, addresses);
  auto b = node("b", recorder_b_, addresses);
  std::map<std::size_t, int> per_shard;
  std::vector<std::string> channels;
  for (int i = 0; i < 40; ++i) {
    const std::string channel = "s" + std::to_string(i);
    channels.push_back(channel);
    ++per_shard[a->shard_of(channel)];
    EXPECT_EQ(a->shard_of(channel), b->shard_of(channel)) << "every node shards alike";
    EXPECT_EQ(a->shard_of(channel),
              duplex::engines::detail::jump_hash(duplex::engines::detail::fnv1a64(channel), 2));
  }
  EXPECT_GE(per_shard[0], 8);
  EXPECT_GE(per_shard[1], 8);
  for (const auto& channel : channels) ASSERT_EQ(subscribe_sync(*b, channel), EngineErrc::ok);
  for (const auto& channel : channels) ASSERT_EQ(publish_sync(*a, message(channel, "1")).error, EngineErrc::ok);
  for (const auto& channel : channels) {
    EXPECT_TRUE(recorder_b_.wait_until([&] { return recorder_b_.offsets(channel).size() == 1; })) << channel;
    const RedisServer& holder = a->shard_of(channel) == 0 ? redis_ : second;
    const RedisServer& other = a->shard_of(channel) == 0 ? second : redis_;
    EXPECT_EQ(holder.query({"EXISTS", "t:meta:" + channel}), 1) << channel;
    EXPECT_EQ(other.query({"EXISTS", "t:meta:" + channel}), 0) << channel;
  }
  EXPECT_EQ(a->health().backends_total, 2u);
  EXPECT_TRUE(recorder_a_.wait_until([&] { return a->health().backends_up == 2; }));

  // One server down: its channels fail, the other's still work.
  second.kill();
  std::string on_first, on_second;
  for (const auto& channel : channels) (a->shard_of(channel) == 0 ? on_first : on_second) = channel;
  EXPECT_EQ(publish_sync(*a, message(on_second, "2")).error, EngineErrc::unavailable);
  EXPECT_EQ(publish_sync(*a, message(on_first, "2")).error, EngineErrc::ok);
  EXPECT_TRUE(recorder_a_.wait_until([&] { return !a->healthy() && a->health().backends_up == 1; }));
  a->stop();
  b->stop();
}

// ---------------------------------------------------------------------------
// Failures.

TEST_F(RedisNodes, KilledRedisFailsPublishesResubscribesAndRecoversWithoutLosingAcks) {
  auto a = node("a", recorder_a_);
  auto b = node("b", recorder_b_);
  ASSERT_EQ(subscribe_sync(*b, "live"), EngineErrc::ok);
  ASSERT_EQ(subscribe_sync(*b, "live"), EngineErrc::ok) << "second local subscriber: ready at once";

  // Publish continuously from a thread while Redis dies and comes back.
  std::atomic<bool> running{true};
  std::mutex acked_mutex;
  std::vector<PublishResult> acked;
  std::atomic<int> failed{0};
  std::thread publisher([&] {
    int n = 0;
    while (running) {
      const PublishResult r = publish_sync(*a, message("live", std::to_string(++n), keep(100000)));
      if (r.error == EngineErrc::ok) {
        std::lock_guard lock(acked_mutex);
        acked.push_back(r);
      } else {
        EXPECT_EQ(r.error, EngineErrc::unavailable);
        EXPECT_NE(r.message.find("unavailable"), std::string::npos) << r.message;
        EXPECT_NE(r.message.find("not published"), std::string::npos) << r.message;
        failed.fetch_add(1);
        std::this_thread::sleep_for(5ms);
      }
    }
  });
  std::this_thread::sleep_for(200ms);
  redis_.kill();
  ASSERT_TRUE(recorder_b_.wait_until(
      [&] { return !recorder_b_.of_kind(ChannelEvent::Kind::resubscribe).empty(); }, 3s))
      << "b lost its pub/sub connection: resubscribe for 'live'";
  EXPECT_EQ(recorder_b_.of_kind(ChannelEvent::Kind::resubscribe).front().channel, "live");
  EXPECT_TRUE(recorder_a_.wait_until([&] { return !a->healthy(); }, 3s));

  // While down: a publish fails quickly, a node subscription fails.
  const auto before = std::chrono::steady_clock::now();
  const PublishResult down = publish_sync(*a, message("other", "x"));
  EXPECT_EQ(down.error, EngineErrc::unavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - before, 1500ms) << "within command_timeout";
  EXPECT_EQ(subscribe_sync(*b, "elsewhere"), EngineErrc::unavailable);
  b->node_unsubscribe("elsewhere");
  // The hub unsubscribes its clients on resubscribe: counts drop to zero.
  b->node_unsubscribe("live");
  b->node_unsubscribe("live");

  std::this_thread::sleep_for(300ms);
  redis_.start();  // same port and dir: the append-only file comes back
  // Clients retry: node_subscribe succeeds once the connection is back.
  ASSERT_TRUE(recorder_b_.wait_until([&] { return b->healthy() && a->healthy(); }, 5s));
  ASSERT_TRUE(subscribe_when_up(*b, "live", 5s));
  const std::size_t delivered_before = recorder_b_.offsets("live").size();
  std::this_thread::sleep_for(300ms);
  running = false;
  publisher.join();
  EXPECT_GT(failed.load(), 0);
  EXPECT_GE(a->health().reconnects, 1u);
  EXPECT_GE(b->health().reconnects, 1u);

  // Every acknowledged publication is in Redis' history, in one epoch.
  std::lock_guard lock(acked_mutex);
  ASSERT_FALSE(acked.empty());
  const HistoryResult history = history_sync(*b, newest("live", 100000, keep(100000)));
  EXPECT_TRUE(history.complete) << "nothing trimmed or lost";
  std::set<std::uint64_t> stored;
  for (const auto& p : history.publications) stored.insert(p->offset);
  for (const auto& r : acked) {
    EXPECT_EQ(r.position.epoch, history.top.epoch);
    EXPECT_TRUE(stored.count(r.position.offset)) << "acknowledged offset " << r.position.offset << " lost";
  }
  // And b receives the live stream again.
  EXPECT_GT(recorder_b_.offsets("live").size(), delivered_before);
  a->stop();
  b->stop();
}

TEST_F(RedisNodes, PausedRedisTimesCommandsOut) {
  auto a = node("a", recorder_a_);
  ASSERT_EQ(publish_sync(*a, message("c", "1")).error, EngineErrc::ok);
  redis_.pause();
  const auto before = std::chrono::steady_clock::now();
  const PublishResult stuck = publish_sync(*a, message("c", "2"));
  const auto took = std::chrono::steady_clock::now() - before;
  EXPECT_EQ(stuck.error, EngineErrc::unavailable);
  EXPECT_NE(stuck.message.find("command timeout"), std::string::npos) << stuck.message;
  EXPECT_GE(took, 700ms);
  EXPECT_LT(took, 2500ms);
  EXPECT_GE(a->health().errors, 1u);
  redis_.resume();
  // The script may or may not have run before the pause: either way the
  // next publish works once reconnected, and offsets stay unique.
  ASSERT_TRUE(recorder_a_.wait_until([&] { return publish_sync(*a, message("c", "3")).error == EngineErrc::ok; }, 10s));
  a->stop();
}

TEST_F(RedisNodes, PausedRedisRefusesOperationsPastMaxInFlightAndCompletesTheAcceptedOnesOnResume) {
  RedisEngineOptions options = options_for({redis_.address()}, clock_.function());
  options.config.command_timeout = 20s;  // the accepted ones wait for Redis instead of timing out
  options.max_in_flight = 4;
  RedisEngine a(std::move(options));
  a.set_deliver(recorder_a_.callback());
  ASSERT_TRUE(recorder_a_.wait_until([&] { return a.healthy(); }));
  redis_.pause();
  Completions accepted;
  for (int i = 1; i <= 4; ++i) a.publish(message("c", std::to_string(i)), [&](PublishResult r) { accepted.add(std::move(r)); });
  EXPECT_TRUE(wait_for([&] { return a.health().in_flight == 4; }, 2s)) << a.health().in_flight;

  // Past the limit: refused at once, with the reason, not queued.
  const auto before = std::chrono::steady_clock::now();
  const PublishResult refused = publish_sync(a, message("c", "5"));
  EXPECT_EQ(refused.error, EngineErrc::unavailable);
  EXPECT_NE(refused.message.find("overloaded"), std::string::npos) << refused.message;
  EXPECT_NE(refused.message.find("engine.max_in_flight"), std::string::npos) << refused.message;
  EXPECT_EQ(history_sync(a, newest("c", 10)).error, EngineErrc::unavailable) << "history reads count too";
  EXPECT_LT(std::chrono::steady_clock::now() - before, 500ms) << "a refusal does not wait for Redis";
  EXPECT_EQ(a.health().refused, 2u);
  EXPECT_TRUE(accepted.results().empty()) << "the accepted ones wait for Redis";

  redis_.resume();
  ASSERT_TRUE(accepted.wait_for(4, 10s));
  std::vector<std::uint64_t> offsets;
  for (const auto& r : accepted.results()) {
    EXPECT_EQ(r.error, EngineErrc::ok) << r.message;
    offsets.push_back(r.position.offset);
  }
  std::sort(offsets.begin(), offsets.end());
  EXPECT_EQ(offsets, range(1, 4)) << "every accepted publish was stored once";
  EXPECT_TRUE(wait_for([&] { return a.health().in_flight == 0; }, 2s));
  EXPECT_EQ(publish_sync(a, message("c", "6")).position.offset, 5u) << "the refused one was never stored";
  a.stop();
}

TEST_F(RedisNodes, PausedRedisFailsUnconfirmedSubscriptions) {
  auto b = node("b", recorder_b_);
  ASSERT_TRUE(recorder_b_.wait_until([&] { return b->healthy(); }));
  redis_.pause();
  const auto before = std::chrono::steady_clock::now();
  EXPECT_EQ(subscribe_sync(*b, "quiet"), EngineErrc::unavailable) << "no SUBSCRIBE confirmation";
  const auto took = std::chrono::steady_clock::now() - before;
  EXPECT_GE(took, 700ms);
  EXPECT_LT(took, 2500ms);
  b->node_unsubscribe("quiet");
  redis_.resume();
  ASSERT_TRUE(subscribe_when_up(*b, "quiet", 10s));
  b->stop();
}

// A node that only listens still notices a Redis gone silent (SIGSTOP here;
// a partition between the node and Redis looks the same from the node): the
// pub/sub connection's PING goes unanswered, the connection drops, and the
// channel's subscribers are told to resubscribe — not after TCP keepalive's
// 30 s, and not only when the node next publishes. Without pings the same
// pause goes unnoticed.
TEST_F(RedisNodes, APausedRedisIsNoticedByAnIdleSubscriptionThroughItsPings) {
  auto listening_node = [&](std::chrono::milliseconds ping_interval) {
    RedisEngineOptions options = options_for({redis_.address()}, clock_.function());
    options.config.pubsub_ping_interval = ping_interval;
    auto engine = std::make_unique<RedisEngine>(std::move(options));
    engine->set_deliver(recorder_b_.callback());
    engine->set_node_name("b");
    return engine;
  };
  const auto resubscribes = [&] { return recorder_b_.of_kind(ChannelEvent::Kind::resubscribe).size(); };

  auto deaf = listening_node(0ms);
  ASSERT_EQ(subscribe_sync(*deaf, "idle"), EngineErrc::ok);
  redis_.pause();
  std::this_thread::sleep_for(2500ms);  // three command timeouts
  EXPECT_EQ(resubscribes(), 0u) << "with no pings and nothing sent, the pause cannot be seen";
  redis_.resume();
  deaf->stop();
  deaf.reset();

  auto b = listening_node(200ms);
  ASSERT_EQ(subscribe_sync(*b, "idle"), EngineErrc::ok);
  std::this_thread::sleep_for(1s);  // pings answered: nothing happens while Redis answers
  ASSERT_EQ(resubscribes(), 0u);
  redis_.pause();
  const auto paused = std::chrono::steady_clock::now();
  ASSERT_TRUE(recorder_b_.wait_until([&] { return resubscribes() > 0; }, 5s)) << "the silent Redis was never noticed";
  const auto took = std::chrono::steady_clock::now() - paused;
  EXPECT_LT(took, 2000ms) << "ping interval + command timeout (1 s), plus slack";
  EXPECT_EQ(recorder_b_.of_kind(ChannelEvent::Kind::resubscribe).front().channel, "idle");
  EXPECT_FALSE(b->healthy());
  redis_.resume();
  // Redis answers again: the hub's resubscribe goes through.
  b->node_unsubscribe("idle");
  ASSERT_TRUE(subscribe_when_up(*b, "idle", 10s));
  b->stop();
}

// A partition between one node and Redis (a relay that stops relaying and
// holds the connections): the cut-off node's subscribers are told within a
// ping interval and a command timeout and its publishes fail; the other
// node notices nothing. Once the link heals the cut-off node subscribes
// again, history has what it missed, and delivery is live again.
TEST_F(RedisNodes, APartitionOfOneNodeTellsItsSubscribersAndSparesTheOtherNode) {
  TcpProxy link(redis_.port());
  auto make = [&](const std::string& name, Recorder& recorder, const std::string& address) {
    RedisEngineOptions options = options_for({address}, clock_.function());
    options.config.pubsub_ping_interval = 200ms;
    auto engine = std::make_unique<RedisEngine>(std::move(options));
    engine->set_deliver(recorder.callback());
    engine->set_node_name(name);
    return engine;
  };
  auto cut = make("cut", recorder_a_, link.address());
  auto spared = make("spared", recorder_b_, redis_.address());
  ASSERT_EQ(subscribe_sync(*cut, "split"), EngineErrc::ok);
  ASSERT_EQ(subscribe_sync(*spared, "split"), EngineErrc::ok);
  ASSERT_EQ(publish_sync(*spared, message("split", "1")).error, EngineErrc::ok);
  ASSERT_TRUE(recorder_a_.wait_until([&] { return recorder_a_.offsets("split") == range(1, 1); }));

  link.partition();
  ASSERT_TRUE(recorder_a_.wait_until([&] { return recorder_a_.count(ChannelEvent::Kind::resubscribe, "split") > 0; }, 5s))
      << "the cut-off node's subscribers were never told";
  // (Its own channel: a command held across the partition may still be
  // applied when the link heals, as across a real one.)
  const PublishResult refused = publish_sync(*cut, message("elsewhere", "x"));
  EXPECT_EQ(refused.error, EngineErrc::unavailable) << refused.message;
  for (int i = 2; i <= 4; ++i)
    ASSERT_EQ(publish_sync(*spared, message("split", std::to_string(i))).error, EngineErrc::ok);
  ASSERT_TRUE(recorder_b_.wait_until([&] { return recorder_b_.offsets("split") == range(1, 4); }));
  EXPECT_EQ(recorder_b_.count(ChannelEvent::Kind::resubscribe, "split"), 0u) << "the other node noticed nothing";

  link.heal();
  cut->node_unsubscribe("split");
  ASSERT_TRUE(subscribe_when_up(*cut, "split"));
  HistoryResult missed;  // its command connection may still be reconnecting: a read fails until it is back
  ASSERT_TRUE(wait_for([&] { return (missed = history_sync(*cut, newest("split", 10))).error == EngineErrc::ok; }));
  EXPECT_EQ(offsets_of(missed), range(1, 4)) << "what it missed is in history";
  ASSERT_EQ(publish_sync(*spared, message("split", "5")).error, EngineErrc::ok);
  EXPECT_TRUE(recorder_a_.wait_until([&] {
    const auto offsets = recorder_a_.offsets("split");
    return !offsets.empty() && offsets.back() == 5;
  }));
  cut->stop();
  spared->stop();
}

TEST_F(RedisNodes, StopFailsPendingAndRefusesLaterCalls) {
  auto a = node("a", recorder_a_);
  redis_.pause();
  std::promise<PublishResult> pending;
  a->publish(message("c", "1"), [&](PublishResult r) { pending.set_value(std::move(r)); });
  std::this_thread::sleep_for(100ms);
  a->stop();
  auto future = pending.get_future();
  ASSERT_EQ(future.wait_for(0s), std::future_status::ready) << "stop completes what is pending";
  EXPECT_EQ(future.get().error, EngineErrc::unavailable);
  EXPECT_EQ(publish_sync(*a, message("c", "2")).error, EngineErrc::unavailable);
  EXPECT_FALSE(a->healthy());
  redis_.resume();
}

TEST_F(RedisNodes, DestroyedAfterStopFromACallbackWaitsForThatCallback) {
  auto a = node("a", recorder_a_);
  RedisEngine* engine = a.get();
  std::promise<void> stopped;
  std::atomic<bool> callback_returned{false};
  engine->publish(message("c", "1"), [&](PublishResult) {
    engine->stop();
    stopped.set_value();
    std::this_thread::sleep_for(200ms);  // the io thread still runs the engine's code
    callback_returned = true;
  });
  ASSERT_EQ(stopped.get_future().wait_for(10s), std::future_status::ready);
  a.reset();
  EXPECT_TRUE(callback_returned) << "the engine was freed while its io thread still ran a callback";
}

TEST_F(RedisNodes, DestroyedFromItsOwnCallbackCompletesWhatItAccepted) {
  auto a = node("a", recorder_a_);
  std::promise<PublishResult> second;
  std::promise<void> destroyed;
  a->publish(message("c", "1"), [&](PublishResult) {
    a->publish(message("c", "2"), [&](PublishResult result) { second.set_value(std::move(result)); });
    a.reset();  // on the engine's own io thread
    destroyed.set_value();
  });
  ASSERT_EQ(destroyed.get_future().wait_for(10s), std::future_status::ready);
  auto result = second.get_future();
  ASSERT_EQ(result.wait_for(10s), std::future_status::ready) << "a publish accepted before the destructor was dropped";
  EXPECT_EQ(result.get().error, EngineErrc::unavailable);
}

TEST_F(RedisNodes, RedisDownAtStartFailsThenConnects) {
  const std::string address = redis_.address();
  redis_.kill();
  auto a = node("a", recorder_a_, {address});
  EXPECT_EQ(publish_sync(*a, message("c", "1")).error, EngineErrc::unavailable);
  EXPECT_EQ(subscribe_sync(*a, "c"), EngineErrc::unavailable);
  a->node_unsubscribe("c");
  redis_.start();
  ASSERT_TRUE(recorder_a_.wait_until([&] { return publish_sync(*a, message("c", "2")).error == EngineErrc::ok; }, 10s));
  // The pub/sub connections come up on their own schedule: retry like a client.
  ASSERT_TRUE(subscribe_when_up(*a, "c", 10s));
  a->stop();
}

TEST_F(RedisContract, SkippedOffsetsInOneEpochAskForResubscribe) {
  Engine& engine = *engine_;
  ASSERT_EQ(subscribe_sync(engine, "gappy"), EngineErrc::ok);
  const PublishResult first = publish_sync(engine, message("gappy", "1"));
  ASSERT_TRUE(recorder_.wait_until([&] { return recorder_.offsets("gappy").size() == 1; }));
  // A message that skips offset 2 (as if one were lost on the way).
  Publication skipped;
  skipped.offset = 3;
  skipped.data = "3";
  ASSERT_EQ(redis_.query({"PUBLISH", "t:ch:gappy",
                          duplex::engines::redis_wire::encode_publication(first.position.epoch, skipped)}),
            1);
  ASSERT_TRUE(recorder_.wait_until([&] { return !recorder_.of_kind(ChannelEvent::Kind::resubscribe).empty(); }));
  EXPECT_EQ(recorder_.of_kind(ChannelEvent::Kind::resubscribe).front().channel, "gappy");
  EXPECT_EQ(recorder_.offsets("gappy"), (std::vector<std::uint64_t>{1, 3}));
}

TEST_F(RedisContract, FlushedScriptsAreRunAgainByBody) {
  Engine& engine = *engine_;
  ASSERT_EQ(publish_sync(engine, message("c", "1")).position.offset, 1u);
  ASSERT_EQ(redis_.query({"SCRIPT", "FLUSH"}), -1);  // status reply
  const PublishResult after_flush = publish_sync(engine, message("c", "2"));
  ASSERT_EQ(after_flush.error, EngineErrc::ok) << after_flush.message;
  EXPECT_EQ(after_flush.position.offset, 2u);
  EXPECT_EQ(offsets_of(history_sync(engine, newest("c", 10))), range(1, 2));
}

TEST(RedisAuth, AuthAndSelectOnConnect) {
  RedisServer redis({"--requirepass", "s3cret"});
  redis.set_password("s3cret");
  RedisEngineOptions options = options_for({redis.address()});
  options.config.password = "s3cret";
  options.config.db = 3;
  Recorder recorder;  // outlives the engine, whose thread delivers to it
  RedisEngine engine(std::move(options));
  engine.set_deliver(recorder.callback());
  const PublishResult published = publish_sync(engine, message("c", "1"));
  ASSERT_EQ(published.error, EngineErrc::ok) << published.message;
  EXPECT_EQ(redis.query({"EXISTS", "t:meta:c"}, 3), 1) << "stored in db 3";
  EXPECT_EQ(redis.query({"EXISTS", "t:meta:c"}, 0), 0);
  ASSERT_TRUE(recorder.wait_until([&] { return subscribe_sync(engine, "c") == EngineErrc::ok; }));
  engine.stop();

  RedisEngineOptions wrong = options_for({redis.address()});
  wrong.config.password = "wrong";
  RedisEngine refused(std::move(wrong));
  const PublishResult denied = publish_sync(refused, message("c", "2"));
  EXPECT_EQ(denied.error, EngineErrc::unavailable);
  EXPECT_NE(denied.message.find("handshake failed"), std::string::npos) << denied.message;
  refused.stop();
}

// An ACL user: `AUTH alice pw` works where the default user is off; a
// wrong password is refused with a message naming the server and the user,
// never the password, and the engine stays unhealthy.
TEST(RedisAuth, AclUserWithPassword) {
  RedisServer redis({"--user", "default", "off", "--user", "alice", "on", ">pw-alice", "~*", "&*", "+@all"});
  RedisEngineOptions options = options_for({redis.address()});
  options.config.username = "alice";
  options.config.password = "pw-alice";
  Recorder recorder;  // outlives the engine, whose thread delivers to it
  RedisEngine engine(std::move(options));
  engine.set_deliver(recorder.callback());
  const PublishResult published = publish_sync(engine, message("c", "1"));
  ASSERT_EQ(published.error, EngineErrc::ok) << published.message;
  ASSERT_TRUE(recorder.wait_until([&] { return subscribe_sync(engine, "c") == EngineErrc::ok; }));
  ASSERT_EQ(publish_sync(engine, message("c", "2")).error, EngineErrc::ok);
  ASSERT_TRUE(recorder.wait_until([&] { return recorder.offsets("c").size() == 1; })) << "pub/sub logged in too";
  EXPECT_EQ(offsets_of(history_sync(engine, newest("c", 10))), range(1, 2));
  EXPECT_TRUE(recorder.wait_until([&] { return engine.healthy(); }));
  engine.stop();

  RedisEngineOptions wrong = options_for({redis.address()});
  wrong.config.username = "alice";
  wrong.config.password = "not-the-password";
  RedisEngine refused(std::move(wrong));
  const PublishResult denied = publish_sync(refused, message("c", "3"));
  EXPECT_EQ(denied.error, EngineErrc::unavailable);
  EXPECT_NE(denied.message.find(redis.address()), std::string::npos) << denied.message;
  EXPECT_NE(denied.message.find("AUTH as user \"alice\" refused"), std::string::npos) << denied.message;
  EXPECT_NE(denied.message.find("WRONGPASS"), std::string::npos) << denied.message;
  EXPECT_EQ(denied.message.find("not-the-password"), std::string::npos) << denied.message;
  EXPECT_FALSE(refused.healthy());
  EXPECT_EQ(refused.health().backends_up, 0u);
  refused.stop();

  // Without a user name the password goes to the default user, which is off.
  RedisEngineOptions no_user = options_for({redis.address()});
  no_user.config.password = "pw-alice";
  RedisEngine as_default(std::move(no_user));
  const PublishResult as_default_result = publish_sync(as_default, message("c", "4"));
  EXPECT_EQ(as_default_result.error, EngineErrc::unavailable);
  EXPECT_NE(as_default_result.message.find("AUTH as user \"default\" refused"), std::string::npos)
      << as_default_result.message;
  as_default.stop();
}

TEST(RedisWire, RoundTrips) {
  using namespace duplex::engines::redis_wire;
  Publication p;
  p.offset = 42;
  p.time_ms = 1'700'000'000'123;
  p.publisher = R"({"user":"a:b"})";
  p.data = R"({"x":"1:2"})";
  const auto message = decode_message(encode_publication("00ff00ff00ff00ff", p));
  ASSERT_TRUE(message);
  EXPECT_EQ(message->kind, ChannelEvent::Kind::publication);
  EXPECT_EQ(message->epoch, "00ff00ff00ff00ff");
  EXPECT_EQ(message->publication->offset, 42u);
  EXPECT_EQ(message->publication->time_ms, p.time_ms);
  EXPECT_EQ(message->publication->publisher, p.publisher);
  EXPECT_EQ(message->publication->data, p.data);
  const ClientInfo client{"c:1", "", R"({"n":1})"};
  const auto leave = decode_message(encode_leave(client));
  ASSERT_TRUE(leave);
  EXPECT_EQ(leave->kind, ChannelEvent::Kind::leave);
  EXPECT_EQ(leave->client.client, "c:1");
  EXPECT_EQ(leave->client.user, "");
  EXPECT_EQ(leave->client.info, R"({"n":1})");
  EXPECT_FALSE(decode_message("x"));
  EXPECT_FALSE(decode_message("p123"));
  EXPECT_FALSE(decode_message("pe:1:2:99:short"));
  NodeInfo node;
  node.name = "node one";
  node.connections = 7;
  const auto decoded = decode_node(encode_node(node));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->name, "node one");
  EXPECT_EQ(decoded->connections, 7u);
}

TEST(RedisFactory, MakesTheRedisEngine) {
  RedisServer redis;
  duplex::engines::EngineConfig config;
  config.type = "redis";
  config.redis.addresses = {redis.address()};
  auto engine = make_engine(config);
  EXPECT_EQ(engine->name(), "redis");
  EXPECT_EQ(publish_sync(*engine, message("c", "1")).position.offset, 1u);
  engine->stop();
}

}  // namespace
