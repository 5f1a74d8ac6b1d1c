// The NATS engine against a real nats-server and redis-server (started per
// test on free loopback ports): several NatsEngine instances as the nodes of
// one cluster. Every node must deliver every publication of the channels it
// subscribed to exactly once and in offset order, also when publishers on
// several nodes race, when NATS never carried a publication (it is filled
// from Redis history) and across a nats-server restart (resubscribe events,
// then delivery resumes).
#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "duplex/engines/factory.hpp"
#include "duplex/engines/nats_engine.hpp"
#include "duplex/engines/redis_engine.hpp"
#include "nats_broker.hpp"
#include "engine_contract_cases.hpp"
#include "engine_test_support.hpp"
#include "nats_server.hpp"
#include "redis_server.hpp"
#include "redis_wire.hpp"
#include "tcp_proxy.hpp"

namespace {

using namespace duplex::engines;
using namespace std::chrono_literals;
using duplex::hub::ClientInfo;
using duplex::hub::Publication;

using namespace duplex::test;

// Publishes without a publisher; history of 1000 by default.
PublishRequest anonymous(const std::string& channel, const std::string& data, HistoryOptions history = keep(1000)) {
  PublishRequest request = message(channel, data, history);
  request.publisher.clear();
  return request;
}

HistoryResult top_sync(Engine& engine, const std::string& channel) {
  HistoryRequest request;
  request.channel = channel;
  return history_sync(engine, std::move(request));
}

struct Node {
  Recorder events;
  std::unique_ptr<NatsEngine> engine;
  std::mutex node_mutex;
  std::vector<std::string> node_messages;

  std::vector<std::string> received() {
    std::lock_guard lock(node_mutex);
    return node_messages;
  }
};

class NatsEngineTest : public ::testing::Test {
 protected:
  NatsEngineOptions options() const {
    NatsEngineOptions o;
    o.nats.url = nats.url();
    o.nats.subject_prefix = "t";
    o.nats.reorder_window = 100ms;
    o.redis.addresses = {redis.address()};
    o.redis.prefix = "t";
    o.redis.connect_timeout = 1000ms;
    o.redis.command_timeout = 3000ms;
    o.redis.reconnect_min = 50ms;
    o.redis.reconnect_max = 500ms;
    return o;
  }

  Node& add_node(const std::string& name, std::optional<NatsEngineOptions> with = std::nullopt) {
    auto node = std::make_unique<Node>();
    node->engine = std::make_unique<NatsEngine>(with ? std::move(*with) : options());
    node->engine->set_deliver(node->events.callback());
    node->engine->set_node_name(name);
    Node* raw = node.get();
    node->engine->set_node_message_handler([raw](std::string payload) {
      std::lock_guard lock(raw->node_mutex);
      raw->node_messages.push_back(std::move(payload));
    });
    nodes.push_back(std::move(node));
    return *nodes.back();
  }

  // A node whose Redis connections go through `link` (a partition cuts only it
  // off); commands time out within a second once the link is cut.
  Node& add_node_behind(const TcpProxy& link, const std::string& name) {
    NatsEngineOptions o = options();
    o.redis.addresses = {link.address()};
    o.redis.command_timeout = 800ms;
    return add_node(name, std::move(o));
  }

  // A Redis engine on the nodes' Redis and prefix: what it publishes is
  // stored in history but never travels over NATS (a publication the NATS
  // nodes lost in transit).
  std::unique_ptr<RedisEngine> bypass_engine() const {
    RedisEngineOptions o;
    o.config = options().redis;
    auto engine = std::make_unique<RedisEngine>(std::move(o));
    engine->set_deliver([](const ChannelEvent&) {});
    return engine;
  }

  void TearDown() override {
    // Engines first (they close their connections), then the servers.
    for (auto& node : nodes)
      if (node->engine) node->engine->stop();
    nodes.clear();
  }

  RedisServer redis;
  NatsServer nats;
  std::vector<std::unique_ptr<Node>> nodes;
};

TEST(NatsSubjects, EscapingIsReversibleAndKeepsOneToken) {
  using duplex::engines::detail::NatsBroker;
  const std::vector<std::string> names{"chat",        "chat:room-1", "a.b",         "*",  ">",
                                       "a.*.>",       "100%",        "%2E",         "",   std::string("x\x01y\x7f", 4),
                                       "tab\there",   "space here",  "\xc3\xa9t\xc3\xa9"};
  for (const auto& name : names) {
    const std::string token = NatsBroker::escape(name);
    EXPECT_FALSE(token.empty());
    for (char c : token) {
      const auto u = static_cast<unsigned char>(c);
      EXPECT_TRUE(u > 0x20 && u < 0x7f && c != '.' && c != '*' && c != '>') << "'" << token << "' from '" << name << "'";
    }
    auto back = NatsBroker::unescape(token);
    ASSERT_TRUE(back) << token;
    EXPECT_EQ(*back, name);
  }
  EXPECT_EQ(NatsBroker::escape("a.b"), "a%2Eb");
  EXPECT_FALSE(NatsBroker::unescape("%4"));
  EXPECT_FALSE(NatsBroker::unescape("%zz"));
  EXPECT_FALSE(NatsBroker::unescape(""));
}

TEST_F(NatsEngineTest, PublishAssignsOffsetsStoresHistoryAndDeliversLocally) {
  Node& a = add_node("node-a");
  EXPECT_EQ(a.engine->name(), "nats");
  ASSERT_TRUE(wait_for([&] { return a.engine->healthy(); }));
  ASSERT_EQ(subscribe_sync(*a.engine, "solo"), EngineErrc::ok);
  for (int i = 1; i <= 3; ++i) {
    auto r = publish_sync(*a.engine, anonymous("solo", "\"m" + std::to_string(i) + "\""));
    ASSERT_EQ(r.error, EngineErrc::ok) << r.message;
    EXPECT_EQ(r.position.offset, static_cast<std::uint64_t>(i));
  }
  PublishRequest keyed = anonymous("solo", "\"again\"");
  keyed.idempotency_key = "k1";
  auto first = publish_sync(*a.engine, keyed);
  auto second = publish_sync(*a.engine, keyed);
  EXPECT_FALSE(first.duplicate);
  EXPECT_TRUE(second.duplicate);
  EXPECT_EQ(second.position, first.position);
  ASSERT_TRUE(a.events.wait_until([&] { return a.events.offsets("solo").size() >= 4; }));
  std::this_thread::sleep_for(200ms);  // the NATS echo arrives too: a duplicate, dropped
  EXPECT_EQ(a.events.offsets("solo"), range(1, 4));
  auto top = top_sync(*a.engine, "solo");
  EXPECT_EQ(top.top.offset, 4u);
  EXPECT_EQ(top.top.epoch, first.position.epoch);
  EXPECT_TRUE(wait_for([&] { return a.engine->ordering_stats().duplicates >= 4; }, 2s));
  const auto h = a.engine->health();
  EXPECT_EQ(h.backends_total, 2u);
  EXPECT_EQ(h.backends_up, 2u);
}

TEST_F(NatsEngineTest, ThreeNodesConcurrentPublishersEveryPublicationOnceInOrder) {
  Node& a = add_node("node-a");
  Node& b = add_node("node-b");
  Node& c = add_node("node-c");
  std::vector<Node*> all{&a, &b, &c};
  // One name needs escaping into a single subject token.
  const std::vector<std::string> channels{"room:0", "room:1", "room:2", "odd.name*>%"};
  for (Node* node : all)
    for (const auto& channel : channels) ASSERT_EQ(subscribe_sync(*node->engine, channel), EngineErrc::ok);

  constexpr int kPerNode = 300;
  std::atomic<int> acked{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> publishers;
  for (std::size_t n = 0; n < all.size(); ++n) {
    publishers.emplace_back([&, n] {
      for (int i = 0; i < kPerNode; ++i) {
        const std::string& channel = channels[static_cast<std::size_t>(i) % channels.size()];
        all[n]->engine->publish(anonymous(channel, "\"n" + std::to_string(n) + "-" + std::to_string(i) + "\""),
                                [&](PublishResult r) {
                                  (r.error == EngineErrc::ok ? acked : failed).fetch_add(1);
                                });
        if (i % 50 == 0) std::this_thread::sleep_for(1ms);
      }
    });
  }
  for (auto& t : publishers) t.join();
  ASSERT_TRUE(wait_for([&] { return acked + failed == kPerNode * 3; }, 20s));
  ASSERT_EQ(failed.load(), 0);

  for (const auto& channel : channels) {
    const std::uint64_t top = top_sync(*a.engine, channel).top.offset;
    EXPECT_EQ(top, static_cast<std::uint64_t>(kPerNode * 3 / 4));
    for (Node* node : all) {
      ASSERT_TRUE(node->events.wait_until([&] { return node->events.offsets(channel).size() >= top; }, 15s))
          << channel << ": " << node->events.offsets(channel).size() << " of " << top;
      EXPECT_EQ(node->events.offsets(channel), range(1, top)) << channel;
    }
  }
  std::this_thread::sleep_for(300ms);  // nothing more arrives (no late duplicates)
  for (Node* node : all) {
    for (const auto& channel : channels)
      EXPECT_EQ(node->events.offsets(channel).size(), static_cast<std::size_t>(kPerNode * 3 / 4));
    EXPECT_TRUE(node->events.of_kind(ChannelEvent::Kind::resubscribe).empty());
    const auto stats = node->engine->ordering_stats();
    std::printf("  node: %llu delivered, %llu reordered, %llu duplicates dropped, %llu fills\n",
                static_cast<unsigned long long>(stats.delivered), static_cast<unsigned long long>(stats.reordered),
                static_cast<unsigned long long>(stats.duplicates), static_cast<unsigned long long>(stats.fills));
  }
}

TEST_F(NatsEngineTest, MissedAndReorderedOffsetsAreRepaired) {
  Node& a = add_node("node-a");
  Node& b = add_node("node-b");
  ASSERT_EQ(subscribe_sync(*a.engine, "gap"), EngineErrc::ok);
  ASSERT_EQ(subscribe_sync(*a.engine, "lost"), EngineErrc::ok);
  ASSERT_EQ(subscribe_sync(*a.engine, "swap"), EngineErrc::ok);

  // Publications that never travel over NATS: lost messages for the nodes.
  auto bypass = bypass_engine();

  // Offset 1 only in Redis, offset 2 over NATS: node A holds 2, fills 1
  // from history after the reorder window, delivers 1, 2.
  ASSERT_EQ(publish_sync(*bypass, anonymous("gap", "\"only in redis\"")).error, EngineErrc::ok);
  ASSERT_EQ(publish_sync(*b.engine, anonymous("gap", "\"over nats\"")).error, EngineErrc::ok);
  ASSERT_TRUE(a.events.wait_until([&] { return a.events.offsets("gap").size() >= 2; }));
  EXPECT_EQ(a.events.offsets("gap"), range(1, 2));
  // (the stats are published right after the deliveries)
  EXPECT_TRUE(wait_for([&] { return a.engine->ordering_stats().filled >= 1; }, 2s));
  EXPECT_GE(a.engine->ordering_stats().fills, 1u);
  EXPECT_EQ(a.events.count(ChannelEvent::Kind::resubscribe, "gap"), 0u);

  // The missing offset is no longer in history (trimmed to 1 entry): the
  // gap cannot be filled, the channel's subscribers must resubscribe.
  ASSERT_EQ(publish_sync(*bypass, anonymous("lost", "\"gone\"")).error, EngineErrc::ok);
  ASSERT_EQ(publish_sync(*b.engine, anonymous("lost", "\"trims\"", keep(1))).error, EngineErrc::ok);
  ASSERT_TRUE(a.events.wait_until([&] { return a.events.count(ChannelEvent::Kind::resubscribe, "lost") > 0; }));
  EXPECT_TRUE(a.events.offsets("lost").empty());
  // As the hub does: unsubscribe, subscribe again, then read history;
  // publications after that arrive again.
  a.engine->node_unsubscribe("lost");
  ASSERT_EQ(subscribe_sync(*a.engine, "lost"), EngineErrc::ok);
  ASSERT_EQ(publish_sync(*b.engine, anonymous("lost", "\"after\"")).error, EngineErrc::ok);
  ASSERT_TRUE(a.events.wait_until([&] { return !a.events.offsets("lost").empty(); }));
  EXPECT_EQ(a.events.offsets("lost"), std::vector<std::uint64_t>{3});

  // Out of order over NATS (a raw client sends N+2 before N+1): delivered
  // in order, without a history read.
  const auto top = top_sync(*a.engine, "swap").top;
  const auto fills_before = a.engine->ordering_stats().fills;
  natsConnection* raw = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&raw, nats.url().c_str()), NATS_OK);
  for (std::uint64_t offset : {top.offset + 2, top.offset + 1}) {
    Publication p;
    p.offset = offset;
    p.data = "\"raw" + std::to_string(offset) + "\"";
    const std::string payload = redis_wire::encode_publication(top.epoch, p);
    ASSERT_EQ(natsConnection_Publish(raw, "t.ch.swap", payload.data(), static_cast<int>(payload.size())), NATS_OK);
    ASSERT_EQ(natsConnection_Flush(raw), NATS_OK);
  }
  natsConnection_Destroy(raw);
  ASSERT_TRUE(a.events.wait_until([&] { return a.events.offsets("swap").size() >= 2; }));
  EXPECT_EQ(a.events.offsets("swap"), (std::vector<std::uint64_t>{top.offset + 1, top.offset + 2}));
  EXPECT_TRUE(wait_for([&] { return a.engine->ordering_stats().reordered >= 1; }, 2s));
  EXPECT_EQ(a.engine->ordering_stats().fills, fills_before);
  bypass->stop();
}

// A NATS server that goes silent (SIGSTOP here; a partition from it looks
// the same) is noticed by a node that only listens: its pings go
// unanswered, the connection is dropped as stale and every subscribed
// channel is told to resubscribe. Once the server answers again the node
// reconnects and live delivery resumes.
TEST_F(NatsEngineTest, APausedNatsServerIsNoticedThroughPingsAndDeliveryResumes) {
  NatsEngineOptions quick = options();
  quick.nats.ping_interval = 200ms;
  Node& listener = add_node("node-b", quick);
  Node& publisher = add_node("node-a", quick);
  ASSERT_EQ(subscribe_sync(*listener.engine, "quiet"), EngineErrc::ok);
  ASSERT_EQ(publish_sync(*publisher.engine, anonymous("quiet", "\"1\"")).error, EngineErrc::ok);
  ASSERT_TRUE(listener.events.wait_until([&] { return listener.events.offsets("quiet").size() == 1; }));
  std::this_thread::sleep_for(1s);  // pings answered: nothing happens while the server answers
  ASSERT_EQ(listener.events.count(ChannelEvent::Kind::resubscribe, "quiet"), 0u);

  nats.pause();
  const auto paused = std::chrono::steady_clock::now();
  ASSERT_TRUE(listener.events.wait_until(
      [&] { return listener.events.count(ChannelEvent::Kind::resubscribe, "quiet") > 0; }, 10s))
      << "the silent server was never noticed";
  EXPECT_LT(std::chrono::steady_clock::now() - paused, 3s) << "about four ping intervals, plus slack";
  EXPECT_FALSE(listener.engine->healthy());
  nats.resume();

  ASSERT_TRUE(wait_for([&] { return listener.engine->healthy() && publisher.engine->healthy(); }, 15s));
  // As the hub does for each subscriber: unsubscribe, subscribe again.
  listener.engine->node_unsubscribe("quiet");
  ASSERT_TRUE(subscribe_when_up(*listener.engine, "quiet", 10s));
  ASSERT_EQ(publish_sync(*publisher.engine, anonymous("quiet", "\"2\"")).error, EngineErrc::ok);
  EXPECT_TRUE(listener.events.wait_until([&] {
    const auto offsets = listener.events.offsets("quiet");
    return !offsets.empty() && offsets.back() == 2;
  }));
}

// A partition between one node and Redis while NATS still reaches it: live
// delivery over NATS goes on (consecutive offsets need no history read),
// nobody is told anything, and only that node's publishes fail, until the
// link heals.
TEST_F(NatsEngineTest, APartitionOfOneNodeFromRedisLeavesItsLiveDeliveryOverNats) {
  TcpProxy link(redis.port());
  Node& cut = add_node_behind(link, "cut");
  Node& spared = add_node("spared");
  ASSERT_EQ(subscribe_sync(*cut.engine, "split"), EngineErrc::ok);
  ASSERT_EQ(subscribe_sync(*spared.engine, "split"), EngineErrc::ok);

  link.partition();
  for (int i = 1; i <= 3; ++i)
    ASSERT_EQ(publish_sync(*spared.engine, anonymous("split", "\"" + std::to_string(i) + "\"")).error, EngineErrc::ok);
  ASSERT_TRUE(cut.events.wait_until([&] { return cut.events.offsets("split") == range(1, 3); }, 5s))
      << "live delivery over NATS stopped with Redis out of reach";
  const PublishResult refused = publish_sync(*cut.engine, anonymous("elsewhere", "\"x\""));
  EXPECT_EQ(refused.error, EngineErrc::unavailable) << refused.message;
  EXPECT_EQ(cut.events.count(ChannelEvent::Kind::resubscribe, "split"), 0u) << "nothing was missed";

  link.heal();
  ASSERT_TRUE(wait_for([&] { return publish_sync(*cut.engine, anonymous("split", "\"4\"")).error == EngineErrc::ok; }));
  EXPECT_TRUE(spared.events.wait_until([&] { return spared.events.offsets("split") == range(1, 4); }));
}

// The same partition, and a publication lost in transit while it lasts:
// offset 4 reaches Redis but never NATS (a Redis engine on the same prefix
// stores it), offset 5 travels over NATS. The spared node fills 4 from
// history; the cut-off node cannot read history, so its subscribers are
// told to resubscribe rather than left without 4. After the heal they
// resubscribe, as the hub does, and live delivery is back.
TEST_F(NatsEngineTest, AGapOnANodePartitionedFromRedisTellsItsSubscribersWhileTheOtherNodeFillsIt) {
  TcpProxy link(redis.port());
  Node& cut = add_node_behind(link, "cut");
  Node& spared = add_node("spared");
  ASSERT_EQ(subscribe_sync(*cut.engine, "gap"), EngineErrc::ok);
  ASSERT_EQ(subscribe_sync(*spared.engine, "gap"), EngineErrc::ok);
  for (int i = 1; i <= 3; ++i)
    ASSERT_EQ(publish_sync(*spared.engine, anonymous("gap", "\"" + std::to_string(i) + "\"")).error, EngineErrc::ok);
  ASSERT_TRUE(cut.events.wait_until([&] { return cut.events.offsets("gap") == range(1, 3); }));

  auto bypass = bypass_engine();

  link.partition();
  ASSERT_EQ(publish_sync(*bypass, anonymous("gap", "\"only in redis\"")).error, EngineErrc::ok);
  ASSERT_EQ(publish_sync(*spared.engine, anonymous("gap", "\"over nats\"")).error, EngineErrc::ok);
  EXPECT_TRUE(spared.events.wait_until([&] { return spared.events.offsets("gap") == range(1, 5); }))
      << "the node that reaches Redis fills the gap";
  ASSERT_TRUE(cut.events.wait_until([&] { return cut.events.count(ChannelEvent::Kind::resubscribe, "gap") > 0; }, 5s))
      << "a gap the cut-off node cannot fill went unannounced";
  EXPECT_EQ(cut.events.offsets("gap"), range(1, 3)) << "5 must not be delivered without 4";
  EXPECT_EQ(spared.events.count(ChannelEvent::Kind::resubscribe, "gap"), 0u);

  link.heal();
  cut.engine->node_unsubscribe("gap");
  ASSERT_TRUE(wait_for([&] { return subscribe_sync(*cut.engine, "gap") == EngineErrc::ok; }));
  const HistoryResult recovered = top_sync(*cut.engine, "gap");
  ASSERT_EQ(recovered.error, EngineErrc::ok) << recovered.message;
  EXPECT_EQ(recovered.top.offset, 5u) << "the history the hub reads on resubscribe holds 4 and 5";
  ASSERT_EQ(publish_sync(*spared.engine, anonymous("gap", "\"6\"")).error, EngineErrc::ok);
  EXPECT_TRUE(cut.events.wait_until([&] {
    const auto offsets = cut.events.offsets("gap");
    return !offsets.empty() && offsets.back() == 6;
  }));
  bypass->stop();
}

TEST_F(NatsEngineTest, NatsServerRestartMidStreamResubscribesThenDeliveryResumes) {
  Node& a = add_node("node-a");
  Node& b = add_node("node-b");
  ASSERT_EQ(subscribe_sync(*a.engine, "live"), EngineErrc::ok);
  ASSERT_EQ(subscribe_sync(*b.engine, "live"), EngineErrc::ok);

  std::atomic<bool> run{true};
  std::atomic<int> ok{0};
  std::atomic<int> unavailable{0};
  std::mutex why_mutex;
  std::string why;
  std::thread publisher([&] {
    int i = 0;
    while (run) {
      auto r = publish_sync(*a.engine, anonymous("live", "\"p" + std::to_string(i++) + "\""));
      if (r.error == EngineErrc::ok) {
        ok.fetch_add(1);
      } else {
        unavailable.fetch_add(1);
        std::lock_guard lock(why_mutex);
        why = r.message;
      }
      std::this_thread::sleep_for(3ms);
    }
  });

  ASSERT_TRUE(wait_for([&] { return ok > 50; }));
  nats.kill();
  // Both nodes may have missed publications: resubscribe events.
  ASSERT_TRUE(a.events.wait_until([&] { return a.events.count(ChannelEvent::Kind::resubscribe, "live") > 0; }));
  ASSERT_TRUE(b.events.wait_until([&] { return b.events.count(ChannelEvent::Kind::resubscribe, "live") > 0; }));
  EXPECT_FALSE(a.engine->healthy());
  EXPECT_EQ(a.engine->health().backends_up, 1u);  // Redis still up
  ASSERT_TRUE(wait_for([&] { return unavailable > 0; }));
  {
    std::lock_guard lock(why_mutex);
    EXPECT_NE(why.find("nats"), std::string::npos) << why;
    EXPECT_NE(why.find("unavailable"), std::string::npos) << why;
  }
  EXPECT_EQ(subscribe_sync(*b.engine, "other"), EngineErrc::unavailable);
  b.engine->node_unsubscribe("other");
  EXPECT_FALSE(b.engine->send_to_node("node-a", "while down"));

  std::this_thread::sleep_for(300ms);
  nats.start();
  ASSERT_TRUE(wait_for([&] { return a.engine->healthy() && b.engine->healthy(); }, 15s));

  // As the hub does for each subscriber: unsubscribe, subscribe again, then
  // read history. Everything after the read must arrive, once, in order.
  b.events.clear();
  b.engine->node_unsubscribe("live");
  ASSERT_EQ(subscribe_sync(*b.engine, "live"), EngineErrc::ok);
  const std::uint64_t read_top = top_sync(*b.engine, "live").top.offset;
  const int ok_at_read = ok.load();
  ASSERT_TRUE(wait_for([&] { return ok > ok_at_read + 50; }));
  run = false;
  publisher.join();
  const std::uint64_t final_top = top_sync(*a.engine, "live").top.offset;
  ASSERT_GT(final_top, read_top);
  ASSERT_TRUE(b.events.wait_until([&] {
    auto offsets = b.events.offsets("live");
    return !offsets.empty() && offsets.back() >= final_top;
  }));
  auto offsets = b.events.offsets("live");
  EXPECT_TRUE(std::is_sorted(offsets.begin(), offsets.end()));
  EXPECT_EQ(std::adjacent_find(offsets.begin(), offsets.end()), offsets.end()) << "a duplicate";
  std::vector<std::uint64_t> after;
  for (auto o : offsets)
    if (o > read_top) after.push_back(o);
  std::vector<std::uint64_t> want;
  for (std::uint64_t o = read_top + 1; o <= final_top; ++o) want.push_back(o);
  EXPECT_EQ(after, want);
  EXPECT_GE(a.engine->health().reconnects, 1u);
}

TEST_F(NatsEngineTest, PresenceAndJoinLeaveAcrossNodes) {
  Node& a = add_node("node-a");
  Node& b = add_node("node-b");
  ASSERT_EQ(subscribe_sync(*a.engine, "p"), EngineErrc::ok);
  ASSERT_EQ(subscribe_sync(*b.engine, "p"), EngineErrc::ok);
  const ClientInfo alice{"c-alice", "alice", R"({"name":"Alice"})"};
  const ClientInfo bob{"c-bob", "bob", ""};
  a.engine->presence_add("p", alice, true);
  b.engine->presence_add("p", bob, false);  // quietly: no join
  ASSERT_TRUE(b.events.wait_until([&] { return b.events.count(ChannelEvent::Kind::join, "p") == 1; }));
  const auto joins = b.events.of_kind(ChannelEvent::Kind::join);
  EXPECT_EQ(joins[0].client.client, "c-alice");
  EXPECT_EQ(joins[0].client.user, "alice");
  EXPECT_EQ(joins[0].client.info, R"({"name":"Alice"})");
  ASSERT_TRUE(wait_for([&] { return presence_sync(*b.engine, "p").size() == 2; }));
  auto seen = presence_sync(*a.engine, "p");
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].client, "c-alice");
  EXPECT_EQ(seen[1].client, "c-bob");
  // Adding again is not a second join.
  a.engine->presence_add("p", alice, true);
  a.engine->presence_remove("p", alice, true);
  ASSERT_TRUE(b.events.wait_until([&] { return b.events.count(ChannelEvent::Kind::leave, "p") == 1; }));
  EXPECT_EQ(b.events.count(ChannelEvent::Kind::join, "p"), 1u);
  EXPECT_TRUE(a.events.wait_until([&] { return a.events.count(ChannelEvent::Kind::leave, "p") == 1; }));
  auto left = presence_sync(*b.engine, "p");
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].client, "c-bob");
}

TEST_F(NatsEngineTest, NodeMessagesAndRegistry) {
  Node& a = add_node("node-a");
  Node& b = add_node("node.b*");  // escaped like a channel
  Node& c = add_node("node-c");
  ASSERT_TRUE(wait_for([&] { return a.engine->healthy() && b.engine->healthy() && c.engine->healthy(); }));
  // set_node_name's SUB goes out asynchronously; retry until it lands.
  ASSERT_TRUE(wait_for([&] {
    a.engine->send_to_node("node.b*", "hello b");
    std::this_thread::sleep_for(50ms);
    return !b.received().empty();
  }));
  EXPECT_EQ(b.received().front(), "hello b");
  EXPECT_TRUE(a.received().empty());
  EXPECT_TRUE(c.received().empty());

  NodeInfo self;
  self.name = "node-a";
  self.connections = 3;
  a.engine->node_heartbeat(self);
  self.name = "node.b*";
  b.engine->node_heartbeat(self);
  std::vector<NodeInfo> listed;
  ASSERT_TRUE(wait_for([&] {
    std::promise<std::vector<NodeInfo>> promise;
    c.engine->nodes([&promise](std::vector<NodeInfo> list) { promise.set_value(std::move(list)); });
    listed = promise.get_future().get();
    return listed.size() == 2;
  }));
  EXPECT_EQ(listed[0].name, "node-a");
  EXPECT_EQ(listed[0].connections, 3u);
}

TEST_F(NatsEngineTest, StartsWhileNatsIsDownAndConnectsLater) {
  nats.kill();
  Node& a = add_node("node-a");
  EXPECT_FALSE(a.engine->healthy());
  auto refused = publish_sync(*a.engine, anonymous("late", "\"x\""));
  EXPECT_EQ(refused.error, EngineErrc::unavailable);
  EXPECT_NE(refused.message.find(nats.url()), std::string::npos) << refused.message;
  EXPECT_EQ(subscribe_sync(*a.engine, "late"), EngineErrc::unavailable);
  a.engine->node_unsubscribe("late");
  // Nothing was written to Redis for the refused publish.
  EXPECT_EQ(top_sync(*a.engine, "late").top.offset, 0u);

  nats.start();
  ASSERT_TRUE(wait_for([&] { return a.engine->healthy(); }, 15s));
  ASSERT_EQ(subscribe_sync(*a.engine, "late"), EngineErrc::ok);
  ASSERT_EQ(publish_sync(*a.engine, anonymous("late", "\"y\"")).error, EngineErrc::ok);
  ASSERT_TRUE(a.events.wait_until([&] { return a.events.offsets("late").size() == 1; }));
  EXPECT_EQ(a.events.offsets("late"), range(1, 1));

  const auto started = std::chrono::steady_clock::now();
  a.engine->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  EXPECT_EQ(publish_sync(*a.engine, anonymous("late", "\"z\"")).error, EngineErrc::unavailable);
}

TEST_F(NatsEngineTest, StopRacingPublishersCompletesEveryPublishExactlyOnce) {
  Node& a = add_node("node-a");
  ASSERT_TRUE(wait_for([&] { return a.engine->healthy(); }));
  contract::stop_racing_publishers_completes_every_publish_exactly_once(*a.engine);
  EXPECT_EQ(publish_sync(*a.engine, anonymous("race", "1")).error, EngineErrc::unavailable);
}

TEST_F(NatsEngineTest, StopFromACompletionCompletesTheRestOnce) {
  Node& a = add_node("node-a");
  ASSERT_TRUE(wait_for([&] { return a.engine->healthy(); }));
  const PublishResult late = contract::stop_from_a_completion_completes_the_rest_once(*a.engine);
  EXPECT_EQ(late.error, EngineErrc::unavailable) << "a publish after stop() is refused";
}

TEST_F(NatsEngineTest, DestroyedAfterStopFromACallbackWaitsForThatCallback) {
  Node& a = add_node("node-a");
  ASSERT_TRUE(wait_for([&] { return a.engine->healthy(); }));
  NatsEngine* engine = a.engine.get();
  std::promise<void> stopped;
  std::atomic<bool> callback_returned{false};
  engine->publish(anonymous("c", "1"), [&](PublishResult) {
    engine->stop();
    stopped.set_value();
    std::this_thread::sleep_for(200ms);  // the io thread still runs the engine's code
    callback_returned = true;
  });
  ASSERT_EQ(stopped.get_future().wait_for(10s), std::future_status::ready);
  a.engine.reset();
  EXPECT_TRUE(callback_returned) << "the engine was freed while its io thread still ran a callback";
  nodes.clear();
}

TEST_F(NatsEngineTest, FactoryBuildsTheNatsEngine) {
  duplex::engines::EngineConfig config;
  config.type = "nats";
  config.nats = options().nats;
  config.redis = options().redis;
  auto engine = make_engine(config);
  ASSERT_TRUE(engine);
  EXPECT_EQ(engine->name(), "nats");
  engine->stop();

  config.nats.url = "";
  EXPECT_THROW(make_engine(config), std::runtime_error);
}

}  // namespace
