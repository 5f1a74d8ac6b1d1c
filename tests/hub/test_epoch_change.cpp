// A channel's epoch changes while its subscribers stay connected: Redis
// lost the channel's metadata (it expired, FLUSHALL, eviction, a failover
// to a replica that missed writes, a restart without its data) and the next
// publish starts a new epoch at offset 1. Every subscriber, on every node, is told (the unsubscribe
// push with code 2500), and its resubscribe says recovered:false with the
// new epoch: never a silent gap.
#include <gtest/gtest.h>

#include <unistd.h>

#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../engines/nats_server.hpp"
#include "../engines/redis_server.hpp"
#include "transport_client.hpp"

using namespace hub_test;

namespace {

// Publishes through the HTTP API; a refusal (Redis not reached yet after a
// restart: 503, never acknowledged) is retried for a few seconds.
void api_publish(Server& server, const std::string& channel, int n) {
  const auto until = std::chrono::steady_clock::now() + 10s;
  std::string r;
  do {
    r = http_post(server.port(), "/api/publish",
                  R"({"channel":")" + channel + R"(","data":{"n":)" + std::to_string(n) + "}}");
    if (r.find(" 200 ") != std::string::npos) return;
    std::this_thread::sleep_for(100ms);
  } while (std::chrono::steady_clock::now() < until);
  FAIL() << r;
}

enum class Reset { metadata_expiry, flushall, eviction, restart_empty };

// Redis under maxmemory with allkeys-lru evicts the channel's keys once
// newer keys need the room: fill it until the channel's metadata is gone.
void evict_channel_metadata(const duplex::test::RedisServer& redis, const std::string& meta_key) {
  ASSERT_EQ(redis.query({"EXISTS", meta_key}), 1) << "the test's key name is out of date: " << meta_key;
  redis.query({"CONFIG", "SET", "maxmemory-policy", "allkeys-lru"});
  redis.query({"CONFIG", "SET", "maxmemory", "4mb"});
  const std::string fill =
      "for i = 1, 1000 do redis.call('SET', 'filler:' .. ARGV[1] .. ':' .. i, string.rep('x', 1024)) end return 1";
  bool evicted = false;
  for (int batch = 0; batch < 200 && !evicted; ++batch) {  // at most 200 MiB written
    redis.query({"EVAL", fill, "0", std::to_string(batch)});
    evicted = redis.query({"EXISTS", meta_key}) == 0;
  }
  ASSERT_TRUE(evicted) << meta_key << " was never evicted";
  redis.query({"CONFIG", "SET", "maxmemory", "0"});  // what comes next is stored again
}

// Both compositions that keep history in Redis: fan-out over Redis pub/sub
// (the publish script sees the new epoch) and over NATS (the reorder stage
// does). JetStream's lost store: JetStreamNodes.* in tests/engines.
struct EpochCase {
  std::string broker;  // "redis" or "nats"
  Reset reset;
};

class EpochChange : public ::testing::TestWithParam<EpochCase> {};

TEST_P(EpochChange, EverySubscriberOnEveryNodeIsToldAndRecoversWithTheNewEpoch) {
  const Reset reset = GetParam().reset;
  duplex::test::RedisServer redis;
  std::optional<duplex::test::NatsServer> nats;
  if (GetParam().broker == "nats") nats.emplace();
  auto node_config = [&](const std::string& name) {
    hub::HubConfig c = test_config();
    c.node_name = name;
    c.engine.type = GetParam().broker;
    c.engine.redis.addresses = {redis.address()};
    c.engine.redis.prefix = "epoch-change";
    if (nats) c.engine.nats.url = nats->url();
    // Only the expiry case lets the metadata expire by itself.
    c.engine.redis.history_meta_ttl = std::chrono::seconds(reset == Reset::metadata_expiry ? 2 : 0);
    return c;
  };
  Server a(node_config("node-a")), b(node_config("node-b"));
  wait_ready(a);
  wait_ready(b);
  const std::string channel = "chat:epoch";
  auto on_a = connect_over(Transport::websocket, a, "sub-a");
  auto on_b = connect_over(Transport::websocket, b, "sub-b");
  std::string first_epoch;
  for (auto* c : {on_a.get(), on_b.get()}) {
    auto r = c->call(1, R"({"type":"subscribe","id":1,"channel":")" + channel + "\"}");
    ASSERT_FALSE(r->has("/error")) << r->text;
    first_epoch = r->str_at("/result/epoch");
  }
  ASSERT_FALSE(first_epoch.empty());
  for (int i = 1; i <= 5; ++i) api_publish(a, channel, i);
  for (auto* c : {on_a.get(), on_b.get()})
    for (std::uint64_t offset = 1; offset <= 5; ++offset) ASSERT_EQ(c->next("message")->u64("offset"), offset);

  switch (reset) {
    case Reset::metadata_expiry:
      std::this_thread::sleep_for(3500ms);  // idle past history_meta_ttl: the channel's epoch and top expire
      break;
    case Reset::flushall:
      redis.query({"FLUSHALL"});
      break;
    case Reset::eviction:
      evict_channel_metadata(redis, "epoch-change:meta:" + channel);
      break;
    case Reset::restart_empty:
      redis.restart_empty();  // Redis' pub/sub connections drop too; NATS' do not
      break;
  }
  for (int i = 1; i <= 10; ++i) api_publish(i % 2 ? a : b, channel, i);

  for (auto* c : {on_a.get(), on_b.get()}) {
    // The first thing after offset 5 is the push that says the stream was
    // reset, not a message whose offset the subscriber cannot place.
    auto told = c->next_where([](const Frame& f) { return f.str("type") == "unsubscribe" || f.str("type") == "message"; },
                              "an unsubscribe push", 5000ms);
    ASSERT_EQ(told->str("type"), "unsubscribe") << told->text;
    EXPECT_EQ(told->str("channel"), channel);
    EXPECT_EQ(told->u64("code"), 2500u) << told->text;
    // Recovery from where it was: not recovered, the new epoch, the new top.
    // Refused with 113 while the node's pub/sub connections are still
    // coming back (after a restart), it is retried, as clients do.
    auto subscribe = [&](int id) {
      return c->call(id, R"({"type":"subscribe","id":)" + std::to_string(id) + R"(,"channel":")" + channel +
                             R"(","recover":true,"epoch":")" + first_epoch + R"(","offset":5})");
    };
    int id = 2;
    auto r = subscribe(id);
    for (int retry = 0; retry < 50 && r->has("/error") && r->u64_at("/error/code") == 113; ++retry) {
      std::this_thread::sleep_for(100ms);
      r = subscribe(++id);
    }
    ASSERT_FALSE(r->has("/error")) << r->text;
    EXPECT_FALSE(r->bool_at("/result/recovered")) << r->text;
    EXPECT_NE(r->str_at("/result/epoch"), first_epoch) << r->text;
    EXPECT_EQ(r->u64_at("/result/offset"), 10u) << r->text;
  }
  // Live again in the new epoch, on both nodes.
  api_publish(b, channel, 11);
  for (auto* c : {on_a.get(), on_b.get()}) EXPECT_EQ(c->next("message")->u64("offset"), 11u);
}

std::vector<EpochCase> epoch_cases() {
  std::vector<EpochCase> cases;
  for (const char* broker : {"redis", "nats"})
    for (Reset reset : {Reset::metadata_expiry, Reset::flushall, Reset::eviction, Reset::restart_empty})
      cases.push_back({broker, reset});
  return cases;
}

std::string case_name(const ::testing::TestParamInfo<EpochCase>& info) {
  const std::string broker = info.param.broker == "redis" ? "RedisPubSub" : "Nats";
  switch (info.param.reset) {
    case Reset::metadata_expiry: return broker + "MetadataExpiry";
    case Reset::flushall: return broker + "Flushall";
    case Reset::eviction: return broker + "Eviction";
    case Reset::restart_empty: return broker + "RestartWithoutData";
  }
  return broker;
}

INSTANTIATE_TEST_SUITE_P(RedisHistory, EpochChange, ::testing::ValuesIn(epoch_cases()), case_name);

}  // namespace
