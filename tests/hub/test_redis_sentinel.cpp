// A hub on Redis Sentinel (tests/engines/redis_sentinel.hpp: master,
// replica, three sentinels) whose master is killed while an API client
// publishes: a WebSocket subscriber stays connected, is told to
// resubscribe (2500) when the node's pub/sub connection drops, recovers
// from history on the promoted replica, and ends up with every
// acknowledged publication exactly once, in offset order.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "../engines/redis_sentinel.hpp"
#include "transport_client.hpp"

using namespace hub_test;

namespace {

std::uint64_t offset_in(const std::string& response) {
  const auto at = response.find("\"offset\":");
  return at == std::string::npos ? 0 : std::strtoull(response.c_str() + at + 9, nullptr, 10);
}

TEST(RedisSentinelHub, ASubscriberStaysConnectedThroughAFailoverAndMissesNothing) {
  if (::access("/usr/bin/redis-server", X_OK) != 0) GTEST_SKIP() << "no redis-server";
  duplex::test::RedisSentinelGroup group;
  hub::HubConfig c = test_config();
  c.engine.type = "redis";
  c.engine.redis.addresses.clear();
  c.engine.redis.sentinels = group.sentinel_addresses();
  c.engine.redis.sentinel_master = duplex::test::RedisSentinelGroup::kMaster;
  c.engine.redis.prefix = "sentinel-hub";
  c.engine.redis.wait_replicas = 1;
  c.engine.redis.wait_timeout = 500ms;
  c.engine.redis.connect_timeout = 500ms;
  c.engine.redis.command_timeout = 1500ms;
  c.engine.redis.reconnect_max = 300ms;
  Server server(c);
  ASSERT_TRUE(duplex::test::eventually(
      [&] { return http_get(server.port(), "/readyz").find(" 200 ") != std::string::npos; }, 10s));

  const std::string channel = "chat:failover";
  auto sub = connect_over(Transport::websocket, server, "sub");
  auto r = sub->call(1, R"({"type":"subscribe","id":1,"channel":")" + channel + "\"}");
  ASSERT_FALSE(r->has("/error")) << r->text;
  std::string epoch = r->str_at("/result/epoch");

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
  const bool promoted = group.kill_master_and_wait_for_failover(30s);
  failed_over = true;
  if (promoted) group.add_replica_of_promoted();  // wait_replicas = 1 needs one
  const bool resumed = duplex::test::eventually([&] { return acks_after >= 30; }, 20s);
  stop = true;
  publisher.join();
  ASSERT_TRUE(promoted);
  ASSERT_TRUE(resumed) << "publishes succeed again on the promoted replica";
  const std::uint64_t last = *acknowledged.rbegin();

  // Read what the subscriber got: live messages, and after a 2500 push a
  // recovering resubscribe (retried while no master is known).
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
