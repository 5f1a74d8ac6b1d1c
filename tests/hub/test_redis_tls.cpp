// A hub on the Redis engine over TLS (tests/engines/redis_tls.hpp: a
// redis-server with a TLS port and throwaway certificates): ready, a
// WebSocket subscriber receives what the HTTP API publishes; with a CA that
// did not sign the server's certificate /readyz says not ready (503) and a
// publish is refused.
#include <gtest/gtest.h>

#include <unistd.h>

#include "../engines/redis_sentinel.hpp"
#include "../engines/redis_tls.hpp"
#include "transport_client.hpp"

using namespace hub_test;

namespace {

hub::HubConfig tls_config(const duplex::test::RedisTlsServer& redis, const std::string& ca) {
  hub::HubConfig c = test_config();
  c.engine.type = "redis";
  c.engine.redis.addresses = {redis.tls_address()};
  c.engine.redis.prefix = "tls-hub";
  c.engine.redis.tls = true;
  c.engine.redis.tls_ca = ca;
  c.engine.redis.connect_timeout = std::chrono::milliseconds(1000);
  c.engine.redis.reconnect_max = std::chrono::milliseconds(300);
  return c;
}

bool ready(Server& server) { return http_get(server.port(), "/readyz").find(" 200 ") != std::string::npos; }

TEST(RedisTlsHub, PublishesReachASubscriberOverTlsAndAWrongCaIsNotReady) {
  if (::access("/usr/bin/redis-server", X_OK) != 0) GTEST_SKIP() << "no redis-server";
  const duplex::test::TestCertificates certs;
  duplex::test::RedisTlsServer redis(certs);
  {
    Server server(tls_config(redis, certs.ca()));
    ASSERT_TRUE(duplex::test::eventually([&] { return ready(server); }, 10s));
    auto sub = connect_over(Transport::websocket, server, "sub");
    auto r = sub->call(1, R"({"type":"subscribe","id":1,"channel":"chat:tls"})");
    ASSERT_FALSE(r->has("/error")) << r->text;
    const std::string published = http_post(server.port(), "/api/publish", R"({"channel":"chat:tls","data":{"n":1}})");
    ASSERT_NE(published.find(" 200 "), std::string::npos) << published;
    auto message = sub->next("message", 5000ms);
    EXPECT_EQ(message->u64("offset"), 1u) << message->text;
    EXPECT_NE(message->text.find("\"n\":1"), std::string::npos) << message->text;
  }
  Server wrong(tls_config(redis, certs.other_ca()));
  EXPECT_FALSE(duplex::test::eventually([&] { return ready(wrong); }, 1500ms));
  const std::string readyz = http_get(wrong.port(), "/readyz");
  EXPECT_NE(readyz.find(" 503 "), std::string::npos) << readyz;
  const std::string r = http_post(wrong.port(), "/api/publish", R"({"channel":"chat:tls","data":{"n":2}})");
  EXPECT_EQ(r.find(" 200 "), std::string::npos) << "not acknowledged: " << r;
  EXPECT_NE(r.find("certificate verify failed"), std::string::npos) << "the reason reaches the caller: " << r;
}

}  // namespace
