// Plain HTTP on the WebSocket port: keep-alive, bodies, deferred answers,
// chunked streams, pipelining, limits, and upgrades after HTTP requests.
#include <gtest/gtest.h>

#include <memory>
#include <mutex>
#include <string>

#include "duplex/duplex.hpp"
#include "support.hpp"

using namespace duplex;
using namespace std::chrono_literals;
using test_support::RawClient;
using test_support::TestServer;

namespace {

net::Handlers echo_http_handlers() {
  net::Handlers h;
  h.on_http = [](net::Connection& c, const net::HttpRequest& r) {
    std::string body = std::string(r.method) + " " + std::string(r.path) + " q=" + std::string(r.query) +
                       " body=" + std::string(r.body);
    c.http_respond(200, "text/plain", body, {{"X-Test", "1"}});
  };
  return h;
}

std::size_t count(const std::string& s, std::string_view needle) {
  std::size_t n = 0;
  for (auto pos = s.find(needle); pos != std::string::npos; pos = s.find(needle, pos + 1)) ++n;
  return n;
}

}  // namespace

TEST(Http, AnswersAPlainRequestAndKeepsTheConnection) {
  TestServer server({}, echo_http_handlers());
  RawClient client(server.port());
  ASSERT_TRUE(client.send("GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"));
  std::string reply = client.read_all(500ms);
  EXPECT_NE(reply.find("HTTP/1.1 200 OK\r\n"), std::string::npos) << reply;
  EXPECT_NE(reply.find("X-Test: 1\r\n"), std::string::npos);
  EXPECT_NE(reply.find("Connection: keep-alive"), std::string::npos);
  EXPECT_NE(reply.find("GET /a/b q=x=1 body="), std::string::npos);
  EXPECT_FALSE(client.peer_closed());
  ASSERT_TRUE(client.send("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"));
  reply = client.read_all(500ms);
  EXPECT_NE(reply.find("POST /p q= body=hello"), std::string::npos) << reply;
}

TEST(Http, BodySplitAcrossWritesAndPipelinedRequests) {
  TestServer server({}, echo_http_handlers());
  RawClient client(server.port());
  ASSERT_TRUE(client.send("POST /one HTTP/1.1\r\nContent-Length: 6\r\n\r\nab"));
  std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(client.send("cdef" "GET /two HTTP/1.1\r\n\r\n" "GET /three HTTP/1.1\r\nConnection: close\r\n\r\n"));
  const std::string reply = client.read_all(2000ms);
  EXPECT_NE(reply.find("POST /one q= body=abcdef"), std::string::npos) << reply;
  EXPECT_NE(reply.find("GET /two"), std::string::npos) << reply;
  EXPECT_NE(reply.find("GET /three"), std::string::npos) << reply;
  EXPECT_LT(reply.find("/one"), reply.find("/two"));
  EXPECT_LT(reply.find("/two"), reply.find("/three"));
  EXPECT_TRUE(client.peer_closed());  // Connection: close honoured
}

TEST(Http, DeferredAnswerFromAnotherTurn) {
  net::Handlers h;
  h.on_http = [](net::Connection& c, const net::HttpRequest&) {
    auto keep = c.shared_from_this();
    c.loop().post([keep] { keep->http_respond(202, "application/json", "{\"late\":true}"); });
  };
  TestServer server({}, h);
  RawClient client(server.port());
  ASSERT_TRUE(client.send("GET /x HTTP/1.1\r\n\r\n"));
  const std::string reply = client.read_all(500ms);
  EXPECT_NE(reply.find("HTTP/1.1 202 "), std::string::npos) << reply;
  EXPECT_NE(reply.find("{\"late\":true}"), std::string::npos);
}

TEST(Http, ChunkedStreamAndClientGoneIsReported) {
  std::atomic<int> closed{0};
  net::Handlers h;
  h.on_http = [](net::Connection& c, const net::HttpRequest&) {
    c.http_begin_stream(200, "text/event-stream", {{"Cache-Control", "no-cache"}});
    c.http_stream_write("data: one\n\n");
    c.http_stream_write("data: two\n\n");
  };
  h.on_http_closed = [&](net::Connection&) { closed.fetch_add(1); };
  TestServer server({}, h);
  {
    RawClient client(server.port());
    ASSERT_TRUE(client.send("GET /events HTTP/1.1\r\n\r\n"));
    const std::string reply = client.read_all(500ms);
    EXPECT_NE(reply.find("Transfer-Encoding: chunked\r\n"), std::string::npos) << reply;
    EXPECT_NE(reply.find("b\r\ndata: one\n\n\r\n"), std::string::npos) << reply;
    EXPECT_NE(reply.find("b\r\ndata: two\n\n\r\n"), std::string::npos) << reply;
    EXPECT_FALSE(client.peer_closed());
  }
  for (int i = 0; i < 100 && closed.load() == 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(closed.load(), 1);
}

TEST(Http, PendingResponseIsNotCutByTheHandshakeTimeout) {
  net::ServerOptions options;
  options.timeouts.handshake = 200ms;
  std::shared_ptr<net::Connection> held;
  std::mutex m;
  net::Handlers h;
  h.on_http = [&](net::Connection& c, const net::HttpRequest&) {
    std::lock_guard lock(m);
    held = c.shared_from_this();
  };
  TestServer server(options, h);
  RawClient client(server.port());
  ASSERT_TRUE(client.send("GET /poll HTTP/1.1\r\n\r\n"));
  const std::string reply = client.read_all(700ms);
  EXPECT_TRUE(reply.empty());
  EXPECT_FALSE(client.peer_closed());
  {
    std::lock_guard lock(m);
    ASSERT_TRUE(held);
    auto c = held;
    c->loop().post([c] { c->http_respond(200, "text/plain", "done"); });
  }
  EXPECT_NE(client.read_all(300ms).find("done"), std::string::npos);
  // Idle keep-alive afterwards is bounded by the handshake timeout.
  client.read_all(600ms);
  EXPECT_TRUE(client.peer_closed());
  std::lock_guard lock(m);
  held.reset();
}

TEST(Http, LimitsAndBadFraming) {
  net::ServerOptions options;
  options.http.max_body_bytes = 16;
  TestServer server(options, echo_http_handlers());
  {
    RawClient client(server.port());
    ASSERT_TRUE(client.send("POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n"));
    const std::string reply = client.read_all(500ms);
    EXPECT_NE(reply.find("HTTP/1.1 413 "), std::string::npos) << reply;
    EXPECT_TRUE(client.peer_closed());
  }
  {
    // A client that sends its body anyway (8 MiB, more than the kernel
    // buffers) is read to its end, not reset, so it gets the 413.
    RawClient client(server.port());
    ASSERT_TRUE(client.send("POST / HTTP/1.1\r\nContent-Length: 8388608\r\n\r\n"));
    EXPECT_TRUE(client.send(std::string(8u << 20, 'b'))) << "reset while sending the body";
    const std::string reply = client.read_all(3000ms);
    EXPECT_NE(reply.find("HTTP/1.1 413 "), std::string::npos) << reply;
    EXPECT_TRUE(client.peer_closed());
  }
  {
    RawClient client(server.port());
    ASSERT_TRUE(client.send("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"));
    EXPECT_NE(client.read_all(500ms).find("HTTP/1.1 411 "), std::string::npos);
  }
  {
    RawClient client(server.port());
    ASSERT_TRUE(client.send("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"));
    EXPECT_NE(client.read_all(500ms).find("HTTP/1.1 400 "), std::string::npos);
  }
  {
    RawClient client(server.port());
    ASSERT_TRUE(client.send("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"));
    EXPECT_NE(client.read_all(500ms).find("HTTP/1.1 400 "), std::string::npos);
  }
  {
    RawClient client(server.port());
    ASSERT_TRUE(client.send("HEAD /h HTTP/1.1\r\nConnection: close\r\n\r\n"));
    const std::string reply = client.read_all(500ms);
    EXPECT_NE(reply.find("Content-Length: 16\r\n"), std::string::npos) << reply;  // "HEAD /h q= body="
    EXPECT_EQ(reply.find("body="), std::string::npos);  // no body for HEAD
  }
}

TEST(Http, UpgradeStillWorksAndAfterAKeepAliveRequest) {
  net::Handlers h = echo_http_handlers();
  TestServer server({}, h);
  RawClient client(server.port());
  ASSERT_TRUE(client.send("GET /first HTTP/1.1\r\n\r\n"));
  EXPECT_NE(client.read_all(300ms).find("GET /first"), std::string::npos);
  ASSERT_TRUE(client.send(
      "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"));
  const std::string head = client.read_head();
  EXPECT_NE(head.find("HTTP/1.1 101 "), std::string::npos) << head;
  EXPECT_EQ(count(head, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), 1u);
}

TEST(HttpTarget, QueryParametersArePercentDecoded) {
  std::string v;
  EXPECT_TRUE(protocol::query_param("a=1&token=x%2By+z&b", "token", v));
  EXPECT_EQ(v, "x+y z");
  EXPECT_FALSE(protocol::query_param("a=1", "token", v));
  EXPECT_FALSE(protocol::query_param("token=%zz", "token", v));
  EXPECT_FALSE(protocol::query_param("token=%2", "token", v));
  EXPECT_EQ(protocol::target_path("/p?q"), "/p");
  EXPECT_EQ(protocol::target_query("/p?q=1"), "q=1");
}
