// A hub on the Redis engine with an ACL user: with the user's password it
// is ready and serves publishes; with a wrong one /readyz says not ready
// (503) and a publish is refused, never acknowledged.
#include <gtest/gtest.h>

#include <unistd.h>

#include <thread>

#include "../engines/redis_server.hpp"
#include "transport_client.hpp"

using namespace hub_test;

namespace {

hub::HubConfig acl_config(const duplex::test::RedisServer& redis, const std::string& password) {
  hub::HubConfig c = test_config();
  c.engine.type = "redis";
  c.engine.redis.addresses = {redis.address()};
  c.engine.redis.prefix = "acl";
  c.engine.redis.username = "alice";
  c.engine.redis.password = password;
  c.engine.redis.connect_timeout = std::chrono::milliseconds(500);
  c.engine.redis.reconnect_max = std::chrono::milliseconds(300);
  return c;
}

bool ready_within(Server& server, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (http_get(server.port(), "/readyz").find(" 200 ") != std::string::npos) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

TEST(RedisAcl, ReadyWithTheUsersPasswordNotReadyWithAWrongOne) {
  if (::access("/usr/bin/redis-server", X_OK) != 0) GTEST_SKIP() << "no redis-server";
  duplex::test::RedisServer redis({"--user", "default", "off", "--user", "alice", "on", ">pw-alice", "~*", "&*", "+@all"});
  {
    Server good(acl_config(redis, "pw-alice"));
    ASSERT_TRUE(ready_within(good, 5s));
    const std::string r = http_post(good.port(), "/api/publish", R"({"channel":"chat:acl","data":{"n":1}})");
    EXPECT_NE(r.find(" 200 "), std::string::npos) << r;
  }
  Server bad(acl_config(redis, "wrong"));
  EXPECT_FALSE(ready_within(bad, 1500ms));
  const std::string readyz = http_get(bad.port(), "/readyz");
  EXPECT_NE(readyz.find(" 503 "), std::string::npos) << readyz;
  const std::string r = http_post(bad.port(), "/api/publish", R"({"channel":"chat:acl","data":{"n":2}})");
  EXPECT_EQ(r.find(" 200 "), std::string::npos) << "not acknowledged: " << r;
}

}  // namespace
