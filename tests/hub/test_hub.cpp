// The hub end to end over loopback WebSockets: auth, permissions, ordering,
// recovery (also racing live publishes), idempotency, token expiry,
// presence cleanup, the HTTP API and the Origin check.
#include <gtest/gtest.h>

#include <atomic>
#include <set>

#include "duplex/protocol/frame.hpp"
#include "hub_fixture.hpp"

using namespace hub_test;

namespace {

std::string subscribe_cmd(std::uint64_t id, const std::string& channel) {
  return R"({"type":"subscribe","id":)" + std::to_string(id) + R"(,"channel":")" + channel + "\"}";
}
std::string publish_cmd(std::uint64_t id, const std::string& channel, const std::string& data, const std::string& key = {}) {
  std::string s = R"({"type":"publish","id":)" + std::to_string(id) + R"(,"channel":")" + channel + R"(","data":)" + data;
  if (!key.empty()) s += R"(,"idempotency_key":")" + key + "\"";
  return s + "}";
}
std::int64_t error_code_of(const Frame& f) {
  std::int64_t code = 0;
  if (f.root.at_pointer("/error/code").get(code) != simdjson::SUCCESS) return 0;
  return code;
}

}  // namespace

TEST(HubAuth, TokenInQueryGivesConnectedAndInvalidTokenGets401) {
  Server server;
  auto a = connect_as(server, "42");
  Client bad(server.port(), "?token=not.a.token");
  EXPECT_FALSE(bad.wait_open());
  EXPECT_NE(bad.error().find("401"), std::string::npos) << bad.error();
  auto expired = std::make_unique<Client>(server.port(), "?token=" + token_for("1", -10));
  EXPECT_FALSE(expired->wait_open());
  EXPECT_NE(expired->error().find("401"), std::string::npos) << expired->error();
}

TEST(HubAuth, AuthenticateCommandAndCommandsBeforeAuth) {
  Server server;
  Client c(server.port());
  ASSERT_TRUE(c.wait_open());
  auto early = c.call(1, subscribe_cmd(1, "chat:a"));
  EXPECT_EQ(error_code_of(*early), 101);
  auto r = c.call(2, R"({"type":"authenticate","id":2,"token":")" + token_for("7") + "\"}");
  EXPECT_EQ(r->str("type"), "reply");
  std::string_view user;
  ASSERT_EQ(r->root.at_pointer("/result/user").get(user), simdjson::SUCCESS) << r->text;
  EXPECT_EQ(user, "7");
  auto anon = std::make_unique<Client>(server.port());
  ASSERT_TRUE(anon->wait_open());
  EXPECT_EQ(error_code_of(*anon->call(1, R"({"type":"authenticate","id":1})")), 101);  // anonymous off
  // Malformed JSON is a protocol violation: disconnect 4500.
  c.send("{not json");
  EXPECT_TRUE(c.wait_closed());
  EXPECT_EQ(c.close_code(), 4500);
}

TEST(HubAuth, AuthTimeoutDisconnects) {
  auto config = test_config();
  config.auth.auth_timeout = std::chrono::seconds(1);
  Server server(config);
  Client c(server.port());
  ASSERT_TRUE(c.wait_open());
  auto push = c.next("disconnect", 4000ms);
  EXPECT_EQ(push->u64("code"), 4001u);
  EXPECT_TRUE(c.wait_closed());
  EXPECT_EQ(c.close_code(), 4001);
}

TEST(HubChannels, PublishReachesSubscribersInOffsetOrderWithPublisherInfo) {
  Server server;
  auto a = connect_as(server, "alice");
  auto b = connect_as(server, "bob");
  auto ra = a->call(1, subscribe_cmd(1, "chat:room"));
  ASSERT_FALSE(ra->has("/error")) << ra->text;
  ASSERT_FALSE(b->call(1, subscribe_cmd(1, "chat:room"))->has("/error"));
  for (int i = 1; i <= 50; ++i) {
    auto r = b->call(100 + i, publish_cmd(100 + i, "chat:room", "{\"n\":" + std::to_string(i) + "}"));
    ASSERT_EQ(r->u64_at("/result/offset"), static_cast<std::uint64_t>(i)) << r->text;
  }
  for (int i = 1; i <= 50; ++i) {
    auto m = a->next("message");
    EXPECT_EQ(m->u64("offset"), static_cast<std::uint64_t>(i));
    EXPECT_EQ(m->str("channel"), "chat:room");
    EXPECT_EQ(static_cast<std::int64_t>(m->u64_at("/data/n")), i);
    std::string_view publisher;
    ASSERT_EQ(m->root.at_pointer("/info/user").get(publisher), simdjson::SUCCESS);
    EXPECT_EQ(publisher, "bob");
  }
}

TEST(HubChannels, PermissionsNamespacesPersonalChannelsAndLimits) {
  Server server;
  auto a = connect_as(server, "42");
  EXPECT_EQ(error_code_of(*a->call(1, subscribe_cmd(1, "secret:x"))), 103);
  EXPECT_EQ(error_code_of(*a->call(2, subscribe_cmd(2, "user:#43"))), 103);
  EXPECT_FALSE(a->call(3, subscribe_cmd(3, "user:#42"))->has("/error"));
  EXPECT_EQ(error_code_of(*a->call(4, subscribe_cmd(4, "user:#42"))), 105);
  EXPECT_EQ(error_code_of(*a->call(5, subscribe_cmd(5, "bad channel"))), 102);
  EXPECT_EQ(error_code_of(*a->call(6, publish_cmd(6, "secret:x", "1"))), 103);
  EXPECT_EQ(error_code_of(*a->call(7, R"({"type":"presence","id":7,"channel":"chat:zz"})")), 111);
  EXPECT_EQ(error_code_of(*a->call(8, R"({"type":"nope","id":8})")), 104);
  // A token's channel patterns open a closed namespace; so does a subscribe token.
  auto b = std::make_unique<Client>(server.port(), "?token=" + token_for("9", 3600, {"secret:*"}));
  ASSERT_TRUE(b->wait_open());
  b->next("connected");
  EXPECT_FALSE(b->call(1, subscribe_cmd(1, "secret:x"))->has("/error"));
  const std::string grant = token_for("42", 3600, {}, {}, "secret:y");
  EXPECT_FALSE(a->call(9, R"({"type":"subscribe","id":9,"channel":"secret:y","token":")" + grant + "\"}")->has("/error"));
  const std::string wrong = token_for("42", 3600, {}, {}, "secret:other");
  EXPECT_EQ(error_code_of(*a->call(10, R"({"type":"subscribe","id":10,"channel":"secret:z","token":")" + wrong + "\"}")), 103);
  // A backend reaches every device of user 42 through the personal channel.
  http_post(server.port(), "/api/publish", R"({"channel":"user:#42","data":{"note":"hi"}})");
  EXPECT_EQ(a->next("message")->str("channel"), "user:#42");
}

TEST(HubRecovery, ReconnectRecoversExactlyTheMissedMessagesThenLive) {
  Server server;
  auto pub = connect_as(server, "pub");
  std::string epoch;
  std::uint64_t last = 0;
  {
    auto a = connect_as(server, "a");
    auto r = a->call(1, subscribe_cmd(1, "chat:r"));
    epoch = r->str_at("/result/epoch");
    for (int i = 1; i <= 5; ++i) pub->call(i, publish_cmd(i, "chat:r", std::to_string(i)));
    for (int i = 1; i <= 5; ++i) last = a->next("message")->u64("offset");
    a->drop();  // dies without a close frame
  }
  for (int i = 6; i <= 25; ++i) pub->call(i, publish_cmd(i, "chat:r", std::to_string(i)));
  auto a = connect_as(server, "a");
  auto r = a->call(1, R"({"type":"subscribe","id":1,"channel":"chat:r","recover":true,"epoch":")" + epoch +
                          R"(","offset":)" + std::to_string(last) + "}");
  EXPECT_TRUE(r->bool_at("/result/recovered")) << r->text;
  auto pubs = r->array("/result/publications");
  std::uint64_t expect = 6;
  for (auto p : pubs) {
    std::uint64_t offset = 0;
    ASSERT_EQ(p["offset"].get(offset), simdjson::SUCCESS);
    EXPECT_EQ(offset, expect++);
  }
  EXPECT_EQ(expect, 26u);
  pub->call(26, publish_cmd(26, "chat:r", "26"));
  EXPECT_EQ(a->next("message")->u64("offset"), 26u);
  // A wrong epoch cannot be recovered: the client must reload.
  auto b = connect_as(server, "b");
  auto rb = b->call(1, R"({"type":"subscribe","id":1,"channel":"chat:r","recover":true,"epoch":"other","offset":3})");
  EXPECT_FALSE(rb->bool_at("/result/recovered")) << rb->text;
}

// A gap too large for one reply (over half of server.max_send_buffer) is
// not recovered: the reply says recovered:false and the connection stays
// open (it used to be closed 1008 as a slow consumer, and every reconnect
// asked for the same reply again). The missed messages are still readable
// through history, page by page.
TEST(HubRecovery, GapLargerThanHalfTheSendBufferIsNotRecoveredAndTheConnectionStays) {
  hub::HubConfig config = test_config();
  config.server.max_send_buffer = 64u << 10;
  Server server(config);
  auto pub = connect_as(server, "pub");
  auto a = connect_as(server, "a");
  const std::string epoch = a->call(1, subscribe_cmd(1, "chat:big"))->str_at("/result/epoch");
  a->drop();
  const std::string blob(1000, 'x');
  for (int i = 1; i <= 60; ++i) pub->call(i, publish_cmd(i, "chat:big", "\"" + blob + "\""));  // ~60 KB of data

  auto b = connect_as(server, "a");
  auto r = b->call(1, R"({"type":"subscribe","id":1,"channel":"chat:big","recover":true,"epoch":")" + epoch + R"(","offset":0})");
  EXPECT_FALSE(r->bool_at("/result/recovered")) << r->text.substr(0, 300);
  EXPECT_EQ(r->array("/result/publications").size(), 0u);
  EXPECT_EQ(r->u64_at("/result/offset"), 60u);
  auto h = b->call(2, R"({"type":"history","id":2,"channel":"chat:big","limit":20})");
  EXPECT_FALSE(h->has("/error")) << h->text.substr(0, 300);
  EXPECT_EQ(h->array("/result/publications").size(), 20u) << "the connection is still open and pages through history";
  pub->call(61, publish_cmd(61, "chat:big", "61"));
  EXPECT_EQ(b->next("message")->u64("offset"), 61u);

  // A gap that fits is recovered as before.
  auto c = connect_as(server, "c");
  auto rc = c->call(1, R"({"type":"subscribe","id":1,"channel":"chat:big","recover":true,"epoch":")" + epoch + R"(","offset":55})");
  EXPECT_TRUE(rc->bool_at("/result/recovered")) << rc->text.substr(0, 300);
  EXPECT_EQ(rc->array("/result/publications").size(), 6u);
}

TEST(HubRecovery, RecoveryRacingLivePublishesHasNoGapAndNoDuplicate) {
  Server server;
  std::atomic<bool> stop{false};
  std::atomic<int> published{0};
  std::thread publisher([&] {
    for (int i = 0; !stop && i < 3000; ++i) {
      http_post(server.port(), "/api/publish", R"({"channel":"chat:race","data":)" + std::to_string(i) + "}");
      published = i + 1;
    }
  });
  while (published < 50) std::this_thread::sleep_for(1ms);
  std::string epoch;
  std::uint64_t last = 0;
  for (int round = 0; round < 5; ++round) {
    auto a = connect_as(server, "r");
    std::string cmd = R"({"type":"subscribe","id":1,"channel":"chat:race")";
    if (round > 0) cmd += R"(,"recover":true,"epoch":")" + epoch + R"(","offset":)" + std::to_string(last);
    auto r = a->call(1, cmd + "}");
    ASSERT_FALSE(r->has("/error")) << r->text;
    epoch = r->str_at("/result/epoch");
    if (round == 0) {
      last = r->u64_at("/result/offset");
    } else {
      ASSERT_TRUE(r->bool_at("/result/recovered")) << r->text;
      auto publications = r->array("/result/publications");
      for (auto p : publications) {
        std::uint64_t offset = 0;
        ASSERT_EQ(p["offset"].get(offset), simdjson::SUCCESS);
        ASSERT_EQ(offset, last + 1);
        last++;
      }
    }
    for (int k = 0; k < 40; ++k) {
      auto m = a->next("message");
      ASSERT_EQ(m->u64("offset"), last + 1) << "gap or duplicate in round " << round;
      last++;
    }
    a->drop();
  }
  stop = true;
  publisher.join();
}

TEST(HubPublish, IdempotencyKeyAppliesOnce) {
  Server server;
  auto a = connect_as(server, "a");
  a->call(1, subscribe_cmd(1, "chat:i"));
  auto first = a->call(2, publish_cmd(2, "chat:i", "1", "key-1"));
  auto again = a->call(3, publish_cmd(3, "chat:i", "1", "key-1"));
  EXPECT_EQ(first->u64_at("/result/offset"),
            again->u64_at("/result/offset"));
  EXPECT_TRUE(again->bool_at("/result/duplicate"));
  a->call(4, publish_cmd(4, "chat:i", "2", "key-2"));
  EXPECT_EQ(a->next("message")->u64("offset"), 1u);
  EXPECT_EQ(a->next("message")->u64("offset"), 2u);  // the repeat was not delivered
}

TEST(HubAuth, ExpiringTokenIsAskedToRefreshThenDisconnected) {
  auto config = test_config();
  config.auth.refresh_before = std::chrono::seconds(2);
  Server server(config);
  auto a = std::make_unique<Client>(server.port(), "?token=" + token_for("u", 3));
  ASSERT_TRUE(a->wait_open());
  a->next("connected");
  auto b = std::make_unique<Client>(server.port(), "?token=" + token_for("u", 3));
  ASSERT_TRUE(b->wait_open());
  b->next("connected");
  EXPECT_TRUE(a->next("refresh", 4000ms)->u64("expires") > 0);
  b->next("refresh", 4000ms);
  // b refreshes with a fresh token and stays; a does not and is cut with 4502.
  auto r = b->call(50, R"({"type":"refresh","id":50,"token":")" + token_for("u", 3600) + "\"}");
  EXPECT_FALSE(r->has("/error")) << r->text;
  EXPECT_EQ(error_code_of(*b->call(51, R"({"type":"refresh","id":51,"token":")" + token_for("other") + "\"}")), 101);
  auto d = a->next("disconnect", 5000ms);
  EXPECT_EQ(d->u64("code"), 4502u);
  EXPECT_TRUE(a->wait_closed());
  EXPECT_EQ(a->close_code(), 4502);
  std::this_thread::sleep_for(1500ms);
  EXPECT_FALSE(b->call(52, R"({"type":"ping","id":52})")->has("/error"));
}

TEST(HubPresence, JoinLeaveAndDeadConnectionsDisappear) {
  auto config = test_config();
  config.server.timeouts.ping_interval = std::chrono::milliseconds(300);
  config.server.timeouts.pong_timeout = std::chrono::milliseconds(300);
  Server server(config);
  auto a = connect_as(server, "a");
  a->call(1, subscribe_cmd(1, "chat:p"));
  // A peer that goes silent: no pongs, no FIN (a dead network or a frozen
  // process). Only the heartbeat can notice it.
  int silent = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(server.port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(silent, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  std::string out = "GET /connection/websocket?token=" + token_for("b") +
                    " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  protocol::append_masked_frame(out, protocol::Opcode::text, subscribe_cmd(1, "chat:p"), {1, 2, 3, 4});
  ASSERT_EQ(::send(silent, out.data(), out.size(), MSG_NOSIGNAL), static_cast<ssize_t>(out.size()));
  EXPECT_EQ(a->next("join")->str_at("/client/user"), "a");  // its own join first
  EXPECT_EQ(a->next("join")->str_at("/client/user"), "b");
  auto pr2 = a->call(2, R"({"type":"presence","id":2,"channel":"chat:p"})");
  EXPECT_EQ(pr2->array("/result/clients").size(), 2u) << pr2->text;
  const auto silent_since = std::chrono::steady_clock::now();
  auto leave = a->next("leave", 3000ms);
  EXPECT_EQ(leave->str_at("/client/user"), "b");
  EXPECT_GE(std::chrono::steady_clock::now() - silent_since, 300ms);  // it was the heartbeat, not a FIN
  ::close(silent);
  auto pr = a->call(3, R"({"type":"presence","id":3,"channel":"chat:p"})");
  EXPECT_EQ(pr->array("/result/clients").size(), 1u) << pr->text;
}

TEST(HubApi, PublishBroadcastHistoryPresenceChannelsInfoDisconnect) {
  Server server;
  auto a = connect_as(server, "a");
  a->call(1, subscribe_cmd(1, "chat:api"));
  EXPECT_NE(http_post(server.port(), "/api/publish", R"({"channel":"chat:api","data":1})", "wrong").find(" 401 "), std::string::npos);
  const std::string p = http_body(http_post(server.port(), "/api/publish", R"({"channel":"chat:api","data":{"x":1}})"));
  EXPECT_NE(p.find("\"offset\":1"), std::string::npos) << p;
  const std::string b = http_body(http_post(server.port(), "/api/broadcast", R"({"channels":["chat:api","chat:other"],"data":2})"));
  EXPECT_NE(b.find("\"responses\":["), std::string::npos) << b;
  EXPECT_EQ(a->next("message")->u64("offset"), 1u);
  EXPECT_EQ(a->next("message")->u64("offset"), 2u);
  const std::string h = http_body(http_post(server.port(), "/api/history", R"({"channel":"chat:api","limit":10})"));
  EXPECT_NE(h.find("\"publications\":[{\"offset\":1"), std::string::npos) << h;
  const std::string pr = http_body(http_post(server.port(), "/api/presence", R"({"channel":"chat:api"})"));
  EXPECT_NE(pr.find("\"user\":\"a\""), std::string::npos) << pr;
  const std::string ch = http_body(http_post(server.port(), "/api/channels", "{}"));
  EXPECT_NE(ch.find("{\"channel\":\"chat:api\",\"subscribers\":1}"), std::string::npos) << ch;
  const std::string info = http_body(http_post(server.port(), "/api/info", "{}"));
  EXPECT_NE(info.find("\"node\":\"test-node\""), std::string::npos) << info;
  EXPECT_NE(http_post(server.port(), "/api/nope", "{}").find(" 404 "), std::string::npos);
  EXPECT_NE(http_post(server.port(), "/api/publish", "[1]").find(" 400 "), std::string::npos);
  // Server-side unsubscribe: the push, and no more messages from the channel.
  http_post(server.port(), "/api/unsubscribe", R"({"user":"a","channel":"chat:api"})");
  auto unsub = a->next("unsubscribe");
  EXPECT_EQ(unsub->str("channel"), "chat:api");
  EXPECT_EQ(unsub->u64("code"), 2000u);
  http_post(server.port(), "/api/publish", R"({"channel":"chat:api","data":3})");
  EXPECT_EQ(error_code_of(*a->call(90, R"({"type":"presence","id":90,"channel":"chat:api"})")), 111);
  EXPECT_THROW(a->next("message", 300ms), std::runtime_error);
  EXPECT_FALSE(a->call(91, subscribe_cmd(91, "chat:api2"))->has("/error"));
  http_post(server.port(), "/api/disconnect", R"({"user":"a"})");
  EXPECT_EQ(a->next("disconnect")->u64("code"), 4503u);
  EXPECT_TRUE(a->wait_closed());
  EXPECT_EQ(a->close_code(), 4503);
  // Prometheus: the fan-out histogram saw the deliveries, the close is counted by code.
  std::string metrics;
  for (int i = 0; i < 50 && metrics.find("code=\"4503\"") == std::string::npos; ++i) {
    std::this_thread::sleep_for(20ms);
    metrics = http_body(http_get(server.port(), "/metrics"));
  }
  EXPECT_NE(metrics.find("duplex_sessions_closed_total{code=\"4503\"} 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\nduplex_subscriptions 0\n"), std::string::npos) << metrics;  // freed at close
  EXPECT_NE(metrics.find("duplex_fanout_seconds_bucket{le=\"+Inf\"} "), std::string::npos) << metrics;
  EXPECT_EQ(metrics.find("duplex_fanout_seconds_count 0\n"), std::string::npos) << metrics;
}

TEST(HubSecurity, ForeignOriginIsRefused) {
  Server server;
  net::ClientOptions options;
  options.origin = "http://evil.example";
  Client c(server.port(), "?token=" + token_for("a"), options);
  EXPECT_FALSE(c.wait_open());
  EXPECT_NE(c.error().find("403"), std::string::npos) << c.error();
}

// A binary frame ends the session like any other disconnect: the push, the
// close code, and nothing the client sent after it is carried out.
TEST(HubProtocol, BinaryFrameDisconnectsAndDropsTheCommandsAfterIt) {
  Server server;
  auto watcher = connect_as(server, "w");
  EXPECT_FALSE(watcher->call(1, subscribe_cmd(1, "chat:bin"))->has("/error"));
  auto a = connect_as(server, "a");
  a->send_binary_then_text("\x01\x02", publish_cmd(2, "chat:bin", "\"after\""));
  auto d = a->next("disconnect");
  EXPECT_EQ(d->u64("code"), 4500u);
  EXPECT_TRUE(a->wait_closed());
  EXPECT_EQ(a->close_code(), 4500);
  EXPECT_THROW(watcher->next("message", 500ms), std::runtime_error);
  const std::string h = http_body(http_post(server.port(), "/api/history", R"({"channel":"chat:bin","limit":10})"));
  EXPECT_EQ(h.find("after"), std::string::npos) << h;
}

TEST(HubShutdown, ClientsGetDisconnectPushAnd1001) {
  auto server = std::make_unique<Server>();
  auto a = connect_as(*server, "a");
  server->get().shutdown(std::chrono::milliseconds(2000));
  auto d = a->next("disconnect");
  EXPECT_EQ(d->u64("code"), 1001u);
  EXPECT_TRUE(a->wait_closed());
  EXPECT_EQ(a->close_code(), 1001);
}
