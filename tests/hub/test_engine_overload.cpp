// An engine with engine.max_in_flight operations waiting (here: Redis
// paused) refuses the next publish at once: the HTTP API answers 503 and a
// client gets error 113 with the reason; nothing is queued beyond the limit,
// and the accepted publish is acknowledged once Redis answers again.
#include <gtest/gtest.h>

#include <unistd.h>

#include <future>
#include <thread>

#include "../engines/redis_server.hpp"
#include "hub_fixture.hpp"

using namespace hub_test;

namespace {

TEST(EngineOverload, PublishesPastMaxInFlightAreRefusedWith503And113AndTheAcceptedOneIsAcknowledged) {
  if (::access("/usr/bin/redis-server", X_OK) != 0) GTEST_SKIP() << "no redis-server";
  duplex::test::RedisServer redis;
  hub::HubConfig config = test_config();
  config.engine.type = "redis";
  config.engine.redis.addresses = {redis.address()};
  config.engine.redis.prefix = "overload";
  config.engine.redis.command_timeout = std::chrono::milliseconds(20'000);
  config.engine.max_in_flight = 1;
  Server server(config);
  wait_ready(server);
  auto alice = connect_as(server, "alice");

  redis.pause();
  // The one operation allowed in flight: an API publish waiting for Redis.
  auto accepted = std::async(std::launch::async, [&] {
    return http_post(server.port(), "/api/publish", R"({"channel":"chat:busy","data":{"n":1}})");
  });
  std::this_thread::sleep_for(300ms);  // it reached the engine

  const std::string refused = http_post(server.port(), "/api/publish", R"({"channel":"chat:busy","data":{"n":2}})");
  EXPECT_NE(refused.find(" 503 "), std::string::npos) << refused;
  EXPECT_NE(refused.find("overloaded"), std::string::npos) << refused;
  auto r = alice->call(7, R"({"type":"publish","id":7,"channel":"chat:busy","data":{"n":3}})");
  EXPECT_EQ(r->u64_at("/error/code"), 113u) << r->text;
  EXPECT_NE(r->text.find("engine.max_in_flight"), std::string::npos) << r->text;

  redis.resume();
  const std::string acknowledged = accepted.get();
  EXPECT_NE(acknowledged.find(" 200 "), std::string::npos) << acknowledged;
  EXPECT_NE(http_body(acknowledged).find("\"offset\":1"), std::string::npos) << acknowledged;
  // Only the accepted one was stored: the next offset is 2.
  const std::string next = http_post(server.port(), "/api/publish", R"({"channel":"chat:busy","data":{"n":4}})");
  EXPECT_NE(http_body(next).find("\"offset\":2"), std::string::npos) << next;
  const std::string metrics = http_body(http_get(server.port(), "/metrics"));
  EXPECT_NE(metrics.find("duplex_engine_refused_total 2"), std::string::npos) << metrics;
}

}  // namespace
