// A hub on a Redis Cluster (tests/engines/redis_cluster.hpp: three masters
// with a replica each) whose master of the channel's slot is killed while
// an API client publishes (wait_replicas = 1). That master also held the
// node's pub/sub connection (it is the first seed): the WebSocket
// subscriber stays connected, is told to resubscribe (2500), recovers from
// history on the promoted replica, and ends up with every acknowledged
// publication exactly once, in offset order.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "../engines/redis_cluster.hpp"
#include "transport_client.hpp"

using namespace hub_test;

namespace {

std::uint64_t offset_in(const std::string& response) {
  const auto at = response.find("\"offset\":");
  return at == std::string::npos ? 0 : std::strtoull(response.c_str() + at + 9, nullptr, 10);
}

TEST(RedisClusterHub, ASubscriberStaysConnectedThroughAKilledMasterAndMissesNothing) {
  if (::access("/usr/bin/redis-server", X_OK) != 0) GTEST_SKIP() << "no redis-server";
  duplex::test::RedisClusterGroup cluster;
  const std::string prefix = "cluster-hub";
  const std::string channel = "chat:failover";
  const std::string tag = prefix + ":" + std::to_string(channel.size()) + ":" + channel;
  const int master = cluster.owner_of(cluster.keyslot("{" + tag + "}:meta"));
  hub::HubConfig c = test_config();
  c.engine.type = "redis";
  c.engine.redis.cluster = true;
  c.engine.redis.addresses = {"127.0.0.1:" + std::to_string(master)};
  for (const auto& address : cluster.addresses()) {
    if (address != c.engine.redis.addresses.front()) c.engine.redis.addresses.push_back(address);
  }
  c.engine.redis.prefix = prefix;
  c.engine.redis.subscriber_connections = 1;
  c.engine.redis.wait_replicas = 1;
  c.engine.redis.wait_timeout = 500ms;
  c.engine.redis.connect_timeout = 500ms;
  c.engine.redis.command_timeout = 1500ms;
  c.engine.redis.reconnect_min = 50ms;
  c.engine.redis.reconnect_max = 300ms;
  Server server(c);
  ASSERT_TRUE(duplex::test::eventually(
      [&] { return http_get(server.port(), "/readyz").find(" 200 ") != std::string::npos; }, 10s));

  auto sub = connect_over(Transport::websocket, server, "sub");
  auto r = sub->call(1, R"({"type":"subscribe","id":1,"channel":")" + channel + "\"}");
  ASSERT_FALSE(r->has("/error")) << r->text;
  const std::string epoch = r->str_at("/result/epoch");
  const std::string shard_channel = "{" + tag + "}:ch";  // cluster_pubsub = "sharded", the default
  ASSERT_EQ(duplex::test::redis_text(master, {"PUBSUB", "SHARDNUMSUB", shard_channel}), shard_channel + " 1")
      << "the node's pub/sub connection is on the channel's master";

  std::mutex mutex;
  std::set<std::uint64_t> acknowledged;
  std::atomic<bool> stop{false};
  std::atomic<bool> failed_over{false};
  std::atomic<int> acks_after{0};
  std::thread publisher([&] {
    for (int n = 1; !stop; ++n) {
      const std::string response = http_post(server.port(), "/api/publish",
                                             R"({"channel":")" + channel + R"(","data":{"n":)" + std::to_string(n) + "}}");
      if (response.find(" 200 ") != std::string::npos) {
        std::lock_guard lock(mutex);
        acknowledged.insert(offset_in(response));
        if (failed_over) ++acks_after;
      } else {
        std::this_thread::sleep_for(20ms);
      }
    }
  });
  ASSERT_TRUE(duplex::test::eventually([&] {
    std::lock_guard lock(mutex);
    return acknowledged.size() >= 30;
  }, 10s));
  const int promoted = cluster.kill_master(master, 20s);
  failed_over = true;
  // The killed node rejoins as the promoted one's replica: wait_replicas = 1 needs it.
  if (promoted != 0) cluster.node(master).start();
  const bool resumed = duplex::test::eventually([&] { return acks_after >= 30; }, 20s);
  stop = true;
  publisher.join();
  ASSERT_NE(promoted, 0) << "the cluster promoted the replica";
  ASSERT_TRUE(resumed) << "publishes succeed again on the promoted replica";
  const std::uint64_t last = *acknowledged.rbegin();

  // Live messages, and after a 2500 push a recovering resubscribe (retried
  // while the slot has no reachable master).
  std::vector<std::uint64_t> received;
  bool told_to_resubscribe = false;
  std::uint64_t id = 2;
  while (received.empty() || received.back() < last) {
    auto f = sub->next_where([](const Frame& x) { return x.str("type") == "message" || x.str("type") == "unsubscribe"; },
                             "a message or an unsubscribe push", 15000ms);
    if (f->str("type") == "message") {
      received.push_back(f->u64("offset"));
      continue;
    }
    ASSERT_EQ(f->u64("code"), 2500u) << f->text;
    told_to_resubscribe = true;
    const std::uint64_t from = received.empty() ? 0 : received.back();
    std::unique_ptr<Frame> again;
    ASSERT_TRUE(duplex::test::eventually([&] {
      ++id;
      again = sub->call(id, R"({"type":"subscribe","id":)" + std::to_string(id) + R"(,"channel":")" + channel +
                                R"(","recover":true,"epoch":")" + epoch + R"(","offset":)" + std::to_string(from) + "}");
      return !again->has("/error");
    }, 20s)) << again->text;
    EXPECT_TRUE(again->bool_at("/result/recovered")) << again->text.substr(0, 300);
    EXPECT_EQ(again->str_at("/result/epoch"), epoch) << "the promoted replica kept the epoch";
    for (auto p : again->array("/result/publications")) {
      std::uint64_t offset = 0;
      ASSERT_EQ(p["offset"].get(offset), simdjson::SUCCESS);
      received.push_back(offset);
    }
  }
  EXPECT_TRUE(told_to_resubscribe) << "the node's pub/sub connection to the dead master dropped";
  EXPECT_FALSE(sub->is_closed()) << "the subscriber stayed connected";
  for (std::size_t i = 1; i < received.size(); ++i) ASSERT_LT(received[i - 1], received[i]) << "in order, once each";
  const std::set<std::uint64_t> got(received.begin(), received.end());
  for (const std::uint64_t offset : acknowledged) EXPECT_TRUE(got.count(offset)) << "acknowledged offset " << offset << " missed";
}

}  // namespace
