// The hub's integration tests over every transport: the same scenarios run
// on WebSocket, Server-Sent Events and long-polling (transport_client.hpp),
// and clients on different transports share channels, presence and order.
#include <gtest/gtest.h>

#include <set>

#include "../engines/redis_server.hpp"
#include "transport_client.hpp"

using namespace hub_test;

namespace {

std::string subscribe_cmd(std::uint64_t id, const std::string& channel) {
  return R"({"type":"subscribe","id":)" + std::to_string(id) + R"(,"channel":")" + channel + "\"}";
}
std::string publish_cmd(std::uint64_t id, const std::string& channel, int n) {
  return R"({"type":"publish","id":)" + std::to_string(id) + R"(,"channel":")" + channel + R"(","data":{"n":)" + std::to_string(n) + "}}";
}
void api_publish(Server& server, const std::string& channel, int n) {
  const std::string r = http_post(server.port(), "/api/publish", R"({"channel":")" + channel + R"(","data":{"n":)" + std::to_string(n) + "}}");
  ASSERT_NE(r.find(" 200 "), std::string::npos) << r;
}

class Transports : public ::testing::TestWithParam<Transport> {};
class FallbackTransports : public ::testing::TestWithParam<Transport> {};

std::string param_name(const ::testing::TestParamInfo<Transport>& info) { return transport_name(info.param); }

}  // namespace

INSTANTIATE_TEST_SUITE_P(Hub, Transports, ::testing::Values(Transport::websocket, Transport::sse, Transport::longpoll), param_name);
INSTANTIATE_TEST_SUITE_P(Hub, FallbackTransports, ::testing::Values(Transport::sse, Transport::longpoll), param_name);

TEST_P(Transports, TokenInQueryHeaderOrCommandAndBadTokenGets401) {
  Server server;
  for (TokenIn where : {TokenIn::query, TokenIn::header, TokenIn::command}) {
    auto c = make_transport_client(GetParam(), server.port());
    const int status = c->open(token_for("alice"), where);
    ASSERT_TRUE(status == 101 || status == 200) << status;
    auto f = where == TokenIn::command ? c->reply(999999) : c->next("connected");
    const std::string user = where == TokenIn::command ? f->str_at("/result/user") : f->str("user");
    EXPECT_EQ(user, "alice") << f->text;
    auto pong = c->call(7, R"({"type":"ping","id":7})");
    EXPECT_FALSE(pong->has("/error")) << pong->text;
  }
  for (TokenIn where : {TokenIn::query, TokenIn::header}) {
    auto bad = make_transport_client(GetParam(), server.port());
    EXPECT_EQ(bad->open("garbage.token.here", where), 401);
    auto expired = make_transport_client(GetParam(), server.port());
    EXPECT_EQ(expired->open(token_for("alice", -10), where), 401);
  }
  // A bad token in the command: error 101 and the session ends.
  auto c = make_transport_client(GetParam(), server.port());
  ASSERT_NE(c->open("garbage", TokenIn::command), 0);
  EXPECT_EQ(c->reply(999999)->u64_at("/error/code"), 101u);
  EXPECT_EQ(c->next("disconnect")->u64("code"), 4501u);
}

TEST_P(Transports, FiveHundredPublishesArriveInOffsetOrder) {
  hub::HubConfig config = test_config();
  config.limits.publish_rate = 1e6;
  config.limits.publish_burst = 1e6;
  Server server(config);
  auto c = connect_over(GetParam(), server, "alice");
  ASSERT_FALSE(c->call(1, subscribe_cmd(1, "chat:order"))->has("/error"));
  constexpr int count = 500;
  for (int i = 0; i < count; ++i) c->send(publish_cmd(100 + static_cast<std::uint64_t>(i), "chat:order", i));
  for (int i = 0; i < count; ++i) {
    auto r = c->reply(100 + static_cast<std::uint64_t>(i));
    ASSERT_EQ(r->u64_at("/result/offset"), static_cast<std::uint64_t>(i + 1)) << r->text;
  }
  for (int i = 0; i < count; ++i) {
    auto m = c->next("message");
    ASSERT_EQ(m->u64("offset"), static_cast<std::uint64_t>(i + 1)) << m->text;
    ASSERT_EQ(m->u64_at("/data/n"), static_cast<std::uint64_t>(i));
  }
  EXPECT_FALSE(c->has("message", 200ms)) << "nothing twice";
}

TEST(HubTransports, ApiPublishReachesEveryTransportAtOnce) {
  Server server;
  std::vector<std::unique_ptr<TransportClient>> clients;
  for (Transport t : {Transport::websocket, Transport::sse, Transport::longpoll}) {
    clients.push_back(connect_over(t, server, std::string("u-") + transport_name(t)));
    ASSERT_FALSE(clients.back()->call(1, subscribe_cmd(1, "chat:fan"))->has("/error"));
  }
  constexpr int count = 50;
  for (int i = 1; i <= count; ++i) api_publish(server, "chat:fan", i);
  for (auto& c : clients) {
    for (int i = 1; i <= count; ++i) {
      auto m = c->next("message");
      ASSERT_EQ(m->u64("offset"), static_cast<std::uint64_t>(i)) << transport_name(c->transport()) << ": " << m->text;
      ASSERT_FALSE(m->has("/info")) << "API publications carry no publisher";
    }
  }
  // A publish from one transport reaches the other two (with its publisher).
  ASSERT_FALSE(clients[1]->call(2, publish_cmd(2, "chat:fan", 0))->has("/error"));
  for (auto& c : clients) {
    auto m = c->next("message");
    EXPECT_EQ(m->u64("offset"), static_cast<std::uint64_t>(count + 1));
    EXPECT_EQ(m->str_at("/info/user"), "u-sse");
  }
}

TEST_P(Transports, RecoveryAfterReconnectFillsTheGapOnce) {
  Server server;
  std::string epoch;
  {
    auto c = connect_over(GetParam(), server, "alice");
    auto sub = c->call(1, subscribe_cmd(1, "chat:rec"));
    ASSERT_FALSE(sub->has("/error")) << sub->text;
    epoch = sub->str_at("/result/epoch");
    for (int i = 1; i <= 3; ++i) api_publish(server, "chat:rec", i);
    for (std::uint64_t i = 1; i <= 3; ++i) ASSERT_EQ(c->next("message")->u64("offset"), i);
    c->drop();  // the client vanishes without a word
  }
  for (int i = 4; i <= 8; ++i) api_publish(server, "chat:rec", i);

  auto c = connect_over(GetParam(), server, "alice");
  auto sub = c->call(2, R"({"type":"subscribe","id":2,"channel":"chat:rec","recover":true,"epoch":")" + epoch + R"(","offset":3})");
  ASSERT_TRUE(sub->bool_at("/result/recovered")) << sub->text;
  std::vector<std::uint64_t> recovered;
  for (auto p : sub->array("/result/publications")) {
    std::uint64_t offset = 0;
    ASSERT_EQ(p["offset"].get(offset), simdjson::SUCCESS);
    recovered.push_back(offset);
  }
  EXPECT_EQ(recovered, (std::vector<std::uint64_t>{4, 5, 6, 7, 8}));
  api_publish(server, "chat:rec", 9);
  EXPECT_EQ(c->next("message")->u64("offset"), 9u) << "live messages follow the recovered ones, none twice";
  EXPECT_FALSE(c->has("message", 200ms));
}

TEST(HubTransports, PresenceAndJoinLeaveAcrossTransports) {
  Server server;
  auto ws = connect_over(Transport::websocket, server, "u-ws");
  auto sse = connect_over(Transport::sse, server, "u-sse", TokenIn::header);
  auto lp = connect_over(Transport::longpoll, server, "u-lp", TokenIn::command);
  auto join_of = [](TransportClient& c, const std::string& user) {
    return c.next_where([&](const Frame& f) { return f.str("type") == "join" && f.str_at("/client/user") == user; },
                        "the join of " + user, 5000ms);
  };
  auto leave_of = [](TransportClient& c, const std::string& user) {
    return c.next_where([&](const Frame& f) { return f.str("type") == "leave" && f.str_at("/client/user") == user; },
                        "the leave of " + user, 5000ms);
  };
  ASSERT_FALSE(ws->call(1, subscribe_cmd(1, "chat:pres"))->has("/error"));
  ASSERT_FALSE(sse->call(1, subscribe_cmd(1, "chat:pres"))->has("/error"));
  join_of(*ws, "u-sse");
  ASSERT_FALSE(lp->call(1, subscribe_cmd(1, "chat:pres"))->has("/error"));
  join_of(*ws, "u-lp");
  join_of(*sse, "u-lp");
  for (TransportClient* c : {ws.get(), sse.get(), lp.get()}) {
    auto p = c->call(2, R"({"type":"presence","id":2,"channel":"chat:pres"})");
    std::set<std::string> users;
    for (auto who : p->array("/result/clients")) {
      std::string_view user;
      ASSERT_EQ(who["user"].get(user), simdjson::SUCCESS);
      users.emplace(user);
    }
    EXPECT_EQ(users, (std::set<std::string>{"u-ws", "u-sse", "u-lp"})) << transport_name(c->transport()) << ": " << p->text;
  }
  ASSERT_FALSE(sse->call(3, R"({"type":"unsubscribe","id":3,"channel":"chat:pres"})")->has("/error"));
  leave_of(*ws, "u-sse");
  leave_of(*lp, "u-sse");
  ws->drop();
  leave_of(*lp, "u-ws");
}

TEST_P(Transports, History) {
  Server server;
  for (int i = 1; i <= 5; ++i) api_publish(server, "chat:hist", i);
  auto c = connect_over(GetParam(), server, "alice");
  EXPECT_EQ(c->call(1, R"({"type":"history","id":1,"channel":"chat:hist","limit":3})")->u64_at("/error/code"), 111u)
      << "history needs a subscription";
  ASSERT_FALSE(c->call(2, subscribe_cmd(2, "chat:hist"))->has("/error"));
  auto h = c->call(3, R"({"type":"history","id":3,"channel":"chat:hist","limit":3})");
  std::vector<std::uint64_t> offsets;
  for (auto p : h->array("/result/publications")) {
    std::uint64_t offset = 0;
    ASSERT_EQ(p["offset"].get(offset), simdjson::SUCCESS);
    offsets.push_back(offset);
  }
  EXPECT_EQ(offsets, (std::vector<std::uint64_t>{3, 4, 5})) << h->text;
  EXPECT_EQ(h->u64_at("/result/offset"), 5u);
}

TEST_P(Transports, ServerSideUnsubscribeAndDisconnectPushes) {
  Server server;
  auto c = connect_over(GetParam(), server, "victim");
  ASSERT_FALSE(c->call(1, subscribe_cmd(1, "chat:srv"))->has("/error"));
  ASSERT_NE(http_post(server.port(), "/api/unsubscribe", R"({"user":"victim","channel":"chat:srv"})").find(" 200 "), std::string::npos);
  auto u = c->next("unsubscribe");
  EXPECT_EQ(u->str("channel"), "chat:srv");
  EXPECT_EQ(u->u64("code"), 2000u);
  api_publish(server, "chat:srv", 1);
  EXPECT_FALSE(c->has("message", 300ms)) << "no messages after the unsubscribe push";

  ASSERT_NE(http_post(server.port(), "/api/disconnect", R"({"user":"victim"})").find(" 200 "), std::string::npos);
  auto d = c->next("disconnect");
  EXPECT_EQ(d->u64("code"), 4503u) << d->text;
  EXPECT_FALSE(d->bool_at("/reconnect"));
  EXPECT_TRUE(c->wait_closed()) << "the session ends after the disconnect push";
}

// One admission for every transport (hub::Hub::admit): the Origin
// allow-list applies to SSE and long-polling as it does to the WebSocket
// upgrade, and for the fallbacks to every later request of the session too.
TEST_P(Transports, OriginAllowListAppliesToEveryTransport) {
  hub::HubConfig config = test_config();
  config.auth.allowed_origins = {"https://app.example"};
  Server server(config);
  auto foreign = make_transport_client(GetParam(), server.port());
  foreign->origin = "https://evil.example";
  EXPECT_EQ(foreign->open(token_for("mallory"), TokenIn::query), 403);
  auto foreign_anonymous = make_transport_client(GetParam(), server.port());
  foreign_anonymous->origin = "https://evil.example";
  EXPECT_EQ(foreign_anonymous->open(token_for("mallory"), TokenIn::command), 403) << "refused before any command";

  auto allowed = make_transport_client(GetParam(), server.port());
  allowed->origin = "https://app.example";
  const int status = allowed->open(token_for("alice"), TokenIn::query);
  ASSERT_TRUE(status == 101 || status == 200) << status;
  EXPECT_EQ(allowed->next("connected")->str("user"), "alice");
  EXPECT_FALSE(allowed->call(7, R"({"type":"ping","id":7})")->has("/error"));

  // Not a browser (no Origin): nothing to hijack, admitted.
  auto native = make_transport_client(GetParam(), server.port());
  const int native_status = native->open(token_for("bob"), TokenIn::query);
  EXPECT_TRUE(native_status == 101 || native_status == 200) << native_status;
}

// Graceful shutdown drains every transport the same way (Hub::drain): the
// disconnect push (1001, reconnect) is on the wire before the session ends.
TEST_P(Transports, ShutdownGivesEveryClientItsDisconnectPushBeforeTheEnd) {
  for (int round = 0; round < 3; ++round) {
    auto server = std::make_unique<Server>();
    auto c = connect_over(GetParam(), *server, "leaver");
    ASSERT_FALSE(c->call(1, subscribe_cmd(1, "chat:drain"))->has("/error"));
    server->get().shutdown(std::chrono::milliseconds(2000));
    auto d = c->next("disconnect");
    EXPECT_EQ(d->u64("code"), 1001u) << d->text;
    EXPECT_TRUE(d->bool_at("/reconnect")) << d->text;
    EXPECT_TRUE(c->wait_closed()) << "the session ends after its disconnect push";
  }
}

// A fallback client that never reads (SSE) or never polls (long-poll) is cut
// off like a slow WebSocket: its session leaves the hub (1008), its memory is
// bounded by server.max_send_buffer, and everyone else keeps receiving.
TEST_P(FallbackTransports, SlowConsumerIsCutOffAndOthersAreUnaffected) {
  hub::HubConfig config = test_config();
  config.server.max_send_buffer = 64 * 1024;
  Server server(config);
  auto watcher = connect_over(Transport::websocket, server, "watcher");
  ASSERT_FALSE(watcher->call(1, subscribe_cmd(1, "chat:slow"))->has("/error"));

  // The slow client: opens its session, subscribes, then reads nothing more.
  const std::string token = token_for("slow");
  HttpConnection stream(server.port());
  std::string session;
  if (GetParam() == Transport::sse) {
    ASSERT_TRUE(stream.send_raw("GET /connection/sse?token=" + token + " HTTP/1.1\r\nHost: x\r\n\r\n"));
    const int small = 4096;
    ::setsockopt(stream.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    ASSERT_EQ(stream.read_head(3000ms).status, 200);
    std::string chunk;
    ASSERT_TRUE(stream.read_chunk(chunk, 3000ms));
    session = Frame(chunk.substr(chunk.find("data: ") + 6, chunk.find('\n', chunk.find("data: ")) - chunk.find("data: ") - 6)).str("session");
  } else {
    HttpConnection opener(server.port());
    auto r = opener.request("POST", "/connection/poll/open?token=" + token);
    ASSERT_EQ(r.status, 200);
    session = Frame(r.body).str("session");
  }
  const std::string kind = GetParam() == Transport::sse ? "sse" : "poll";
  HttpConnection posts(server.port());
  auto subscribed = posts.request("POST", "/connection/" + kind + "/" + session, subscribe_cmd(1, "chat:slow"));
  ASSERT_EQ(subscribed.status, 200) << subscribed.body;
  ASSERT_FALSE(Frame(subscribed.body).has("/replies/0/error")) << subscribed.body;
  watcher->next_where([](const Frame& f) { return f.str("type") == "join" && f.str_at("/client/user") == "slow"; }, "join", 3000ms);

  // 16 KiB messages until the hub gives up on the slow session.
  const std::string blob(16 * 1024, 'x');
  int published = 0;
  bool left = false;
  while (!left && published < 1000) {
    for (int i = 0; i < 25; ++i, ++published) {
      const std::string r = http_post(server.port(), "/api/publish", R"({"channel":"chat:slow","data":")" + blob + "\"}");
      ASSERT_NE(r.find(" 200 "), std::string::npos) << r.substr(0, 200);
    }
    left = watcher->has("leave", 100ms);
  }
  ASSERT_TRUE(left) << "the slow session was not cut off after " << published << " messages";
  EXPECT_EQ(watcher->next("leave")->str_at("/client/user"), "slow");
  // The watcher got every message, in order.
  for (int i = 1; i <= published; ++i) ASSERT_EQ(watcher->next("message")->u64("offset"), static_cast<std::uint64_t>(i));

  if (GetParam() == Transport::sse) {
    // The hub closed the stream and forgot the session: a resume gets 404
    // (the client then opens a new session and recovers its channels).
    EXPECT_EQ(http_get(server.port(), "/connection/sse?session=" + session).substr(9, 3), "404") << "the session is gone";
  } else {
    // The next poll gets the disconnect push with the slow-consumer code.
    auto polled = stream.request("GET", "/connection/poll/" + session + "?last=0");
    ASSERT_EQ(polled.status, 200);
    Frame events(polled.body);
    ASSERT_EQ(events.array("").size(), 1u) << polled.body;
    EXPECT_EQ(events.str_at("/0/data/type"), "disconnect");
    EXPECT_EQ(events.u64_at("/0/data/code"), 1008u);
    EXPECT_TRUE(events.bool_at("/0/data/reconnect"));
  }
  EXPECT_NE(http_get(server.port(), "/metrics").find("duplex_sessions_closed_total{code=\"1008\"}"), std::string::npos);
  // And the hub serves a new client as usual.
  auto fresh = connect_over(GetParam(), server, "fresh");
  ASSERT_FALSE(fresh->call(1, subscribe_cmd(1, "chat:slow"))->has("/error"));
  api_publish(server, "chat:slow", 0);
  EXPECT_EQ(fresh->next("message")->u64("offset"), static_cast<std::uint64_t>(published + 1));
}

// No sticky sessions: two hubs on one Redis, and a fallback session's
// requests land on either. Its commands and polls reach the owning node
// through the engine (node messages) and are answered from there.
TEST(HubTransports, FallbackSessionRequestsWorkOnEitherNode) {
  if (::access("/usr/bin/redis-server", X_OK) != 0) GTEST_SKIP() << "no redis-server";
  duplex::test::RedisServer redis;
  auto node_config = [&](const std::string& name) {
    hub::HubConfig c = test_config();
    c.node_name = name;
    c.engine.type = "redis";
    c.engine.redis.addresses = {redis.address()};
    c.engine.redis.prefix = "fallback-nodes";
    return c;
  };
  Server a(node_config("node-a")), b(node_config("node-b"));
  wait_ready(a);
  wait_ready(b);
  auto ws = connect_over(Transport::websocket, a, "u-ws");
  ASSERT_FALSE(ws->call(1, subscribe_cmd(1, "chat:nodes"))->has("/error"));

  // SSE: the stream on node A, every command POST on node B.
  SseTransportClient sse(a.port(), b.port());
  ASSERT_EQ(sse.open(token_for("u-sse"), TokenIn::query), 200);
  sse.next("connected");
  EXPECT_EQ(sse.session().substr(32), ".node-a");
  auto sub = sse.call(1, subscribe_cmd(1, "chat:nodes"));
  ASSERT_FALSE(sub->has("/error")) << sub->text;
  EXPECT_EQ(sub->str_at("/result/channel"), "chat:nodes");
  EXPECT_EQ(sse.post_failure(), 0);

  // Long-poll: opened on A, commands and polls on B.
  PollTransportClient lp(a.port(), b.port(), b.port());
  ASSERT_EQ(lp.open(token_for("u-lp"), TokenIn::header), 200);
  lp.next("connected");
  EXPECT_EQ(lp.session().substr(32), ".node-a");
  ASSERT_FALSE(lp.call(1, subscribe_cmd(1, "chat:nodes"))->has("/error"));
  ws->next_where([](const Frame& f) { return f.str("type") == "join" && f.str_at("/client/user") == "u-lp"; }, "join", 5000ms);

  // Publications on both nodes reach all three in order, once.
  for (int i = 1; i <= 20; ++i) api_publish(i % 2 ? a : b, "chat:nodes", i);
  ASSERT_FALSE(lp.call(2, publish_cmd(2, "chat:nodes", 21))->has("/error"));
  for (TransportClient* c : {static_cast<TransportClient*>(ws.get()), static_cast<TransportClient*>(&sse), static_cast<TransportClient*>(&lp)}) {
    for (std::uint64_t offset = 1; offset <= 21; ++offset)
      ASSERT_EQ(c->next("message")->u64("offset"), offset) << transport_name(c->transport());
    EXPECT_FALSE(c->has("message", 100ms));
  }
  // Presence through a forwarded command.
  auto p = sse.call(3, R"({"type":"presence","id":3,"channel":"chat:nodes"})");
  EXPECT_EQ(p->array("/result/clients").size(), 3u) << p->text;

  // The SSE stream drops and resumes on node B: B relays it from A (the
  // session's node), starting after the last event the client saw.
  const std::vector<std::uint64_t> seen = sse.event_ids();
  ASSERT_FALSE(seen.empty());
  const std::string session = sse.session();
  sse.drop();
  api_publish(b, "chat:nodes", 22);
  HttpConnection resumed(b.port());
  ASSERT_TRUE(resumed.send_raw("GET /connection/sse?session=" + session + " HTTP/1.1\r\nHost: x\r\nLast-Event-ID: " +
                               std::to_string(seen.back()) + "\r\n\r\n"));
  auto head = resumed.read_head(5000ms);
  ASSERT_EQ(head.status, 200) << head.head;
  EXPECT_NE(head.head.find("text/event-stream"), std::string::npos);
  std::string text;
  auto next_message_offset = [&]() -> std::uint64_t {
    for (;;) {
      const auto end = text.find("\n\n");
      if (end != std::string::npos) {
        const std::string block = text.substr(0, end);
        text.erase(0, end + 2);
        const auto data = block.find("data: ");
        if (data == std::string::npos || block.find("event: ") != std::string::npos) continue;
        Frame f(block.substr(data + 6, block.find('\n', data) == std::string::npos ? std::string::npos : block.find('\n', data) - data - 6));
        if (f.str("type") == "message") return f.u64("offset");
        continue;
      }
      std::string chunk;
      if (!resumed.read_chunk(chunk, 5000ms)) throw std::runtime_error("relayed stream ended; got: " + text);
      text += chunk;
    }
  };
  EXPECT_EQ(next_message_offset(), 22u) << "the message published while the stream was down";
  api_publish(a, "chat:nodes", 23);
  EXPECT_EQ(next_message_offset(), 23u) << "live messages follow on the relayed stream";
  auto posted = http_post(b.port(), "/connection/sse/" + session, publish_cmd(4, "chat:nodes", 24));
  EXPECT_NE(posted.find("\"offset\":24"), std::string::npos) << posted;
  EXPECT_EQ(next_message_offset(), 24u);

  // A session the owning node does not know: 404, answered by that node.
  auto unknown = http_post(b.port(), "/connection/poll/0123456789abcdef0123456789abcdef.node-a", subscribe_cmd(9, "chat:nodes"));
  EXPECT_NE(unknown.find(" 404 "), std::string::npos) << unknown;
}

// A reply slower than post_reply_timeout (5 s): the POST is answered without
// it ("pending") and the reply follows on the stream. Redis is paused so the
// publish waits for it.
TEST(HubTransports, ReplySlowerThanThePostTimeoutFollowsOnTheStream) {
  if (::access("/usr/bin/redis-server", X_OK) != 0) GTEST_SKIP() << "no redis-server";
  duplex::test::RedisServer redis;
  hub::HubConfig config = test_config();
  config.engine.type = "redis";
  config.engine.redis.addresses = {redis.address()};
  config.engine.redis.prefix = "fallback-timeout";
  config.engine.redis.command_timeout = 20000ms;
  Server server(config);
  wait_ready(server);
  SseTransportClient sse(server.port());
  ASSERT_EQ(sse.open(token_for("alice"), TokenIn::query), 200);
  sse.next("connected");
  ASSERT_FALSE(sse.call(1, subscribe_cmd(1, "chat:slowreply"))->has("/error"));

  redis.pause();
  HttpConnection conn(server.port());
  const auto posted_at = std::chrono::steady_clock::now();
  auto r = conn.request("POST", "/connection/sse/" + sse.session(),
                        R"({"type":"ping","id":2})" "\n" + publish_cmd(3, "chat:slowreply", 1), {}, 10s);
  const auto waited = std::chrono::steady_clock::now() - posted_at;
  redis.resume();
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_GE(waited, 4500ms);
  EXPECT_LT(waited, 8000ms);
  Frame answer(r.body);
  EXPECT_EQ(answer.u64_at("/replies/0/id"), 2u) << r.body;
  EXPECT_EQ(answer.array("/replies").size(), 1u) << r.body;
  EXPECT_EQ(answer.u64_at("/pending/0"), 3u) << r.body;
  // Once Redis answers, the publish reply comes on the stream, then the message.
  auto late = sse.reply(3, 10s);
  EXPECT_EQ(late->u64_at("/result/offset"), 1u) << late->text;
  EXPECT_EQ(sse.next("message")->u64("offset"), 1u);
}
