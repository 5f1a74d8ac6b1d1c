#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "duplex/protocol/http_server.hpp"

using namespace duplex::protocol;
using Event = HttpServerSession::Event;
using State = HttpServerSession::State;

namespace {

HttpServerSession plain(HttpLimits limits = {}) { return HttpServerSession(limits, true); }

// Feeds `bytes` and expects one event that used exactly `expected_used` bytes.
Event feed(HttpServerSession& session, std::string_view bytes, std::size_t& used) {
  used = 99999;
  return session.feed(bytes, used);
}

}  // namespace

TEST(HttpServerSession, GetIsAnsweredAndTheConnectionReadsTheNext) {
  auto session = plain();
  const std::string_view request = "GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
  std::size_t used = 0;
  ASSERT_EQ(feed(session, request, used), Event::request);
  EXPECT_EQ(used, request.size());
  EXPECT_EQ(session.state(), State::awaiting_response);
  EXPECT_TRUE(session.response_pending());
  EXPECT_EQ(session.target(), "/healthz?x=1");
  EXPECT_EQ(session.head().method, "GET");
  EXPECT_TRUE(session.body().empty());
  EXPECT_TRUE(session.keep_alive());
  EXPECT_TRUE(session.saw_plain_request());

  std::string out;
  ASSERT_TRUE(session.respond(out, 200, "text/plain", "ok"));
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << out;
  EXPECT_NE(out.find("Content-Type: text/plain\r\n"), std::string::npos);
  EXPECT_NE(out.find("Content-Length: 2\r\n"), std::string::npos);
  EXPECT_NE(out.find("Connection: keep-alive\r\n"), std::string::npos);
  EXPECT_EQ(out.substr(out.size() - 6), "\r\n\r\nok");
  EXPECT_EQ(session.state(), State::reading_head);
  EXPECT_FALSE(session.respond(out, 200, "", "twice")) << "one answer per request";

  ASSERT_EQ(feed(session, "GET /b HTTP/1.1\r\n\r\n", used), Event::request);
  EXPECT_EQ(session.target(), "/b");
}

TEST(HttpServerSession, BodyArrivesAcrossFeeds) {
  auto session = plain();
  std::size_t used = 0;
  const std::string_view head = "POST /api HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello";
  ASSERT_EQ(feed(session, head, used), Event::need_more);
  EXPECT_EQ(used, head.size());
  EXPECT_EQ(session.state(), State::reading_body);
  EXPECT_TRUE(session.reading());
  ASSERT_EQ(feed(session, " world", used), Event::request);
  EXPECT_EQ(used, 6u);
  EXPECT_EQ(session.body(), "hello world");
}

TEST(HttpServerSession, HeadSplitByteByByte) {
  auto session = plain();
  const std::string request = "POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
  std::size_t used = 0;
  for (std::size_t i = 0; i + 1 < request.size(); ++i) {
    ASSERT_EQ(feed(session, request.substr(i, 1), used), Event::need_more) << i;
    ASSERT_EQ(used, 1u);
  }
  ASSERT_EQ(feed(session, request.substr(request.size() - 1), used), Event::request);
  EXPECT_EQ(session.body(), "abc");
}

TEST(HttpServerSession, PipelinedRequestsWaitForTheAnswerInOrder) {
  auto session = plain();
  const std::string first = "GET /1 HTTP/1.1\r\n\r\n";
  const std::string second = "POST /2 HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
  const std::string both = first + second;
  std::size_t used = 0;
  ASSERT_EQ(feed(session, both, used), Event::request);
  EXPECT_EQ(used, first.size()) << "the second request is not touched";
  EXPECT_EQ(feed(session, std::string_view(both).substr(used), used), Event::busy);
  EXPECT_EQ(used, 0u);

  // The connection keeps the rest in order while the answer is pending.
  ASSERT_TRUE(session.hold(std::string_view(second).substr(0, 10)));
  ASSERT_TRUE(session.hold(std::string_view(second).substr(10)));
  EXPECT_TRUE(session.holding());
  std::string out;
  ASSERT_TRUE(session.respond(out, 204, "", ""));
  const std::string held = session.take_held();
  EXPECT_EQ(held, second);
  EXPECT_FALSE(session.holding());
  ASSERT_EQ(feed(session, held, used), Event::request);
  EXPECT_EQ(used, held.size());
  EXPECT_EQ(session.target(), "/2");
  EXPECT_EQ(session.body(), "hi");
}

TEST(HttpServerSession, PutBackGoesInFrontOfWhatArrivedLater) {
  auto session = plain();
  std::size_t used = 0;
  ASSERT_EQ(feed(session, "GET / HTTP/1.1\r\n\r\n", used), Event::request);
  ASSERT_TRUE(session.hold("abc"));
  std::string taken = session.take_held();
  ASSERT_TRUE(session.hold("def"));  // arrived while `taken` was being parsed
  session.put_back(std::string_view(taken).substr(1));
  EXPECT_EQ(session.take_held(), "bcdef");
}

TEST(HttpServerSession, HoldRefusesMoreThanOneRequestsWorth) {
  HttpLimits limits;
  limits.max_head_bytes = 100;
  limits.max_body_bytes = 50;
  auto session = plain(limits);
  std::size_t used = 0;
  ASSERT_EQ(feed(session, "GET / HTTP/1.1\r\n\r\n", used), Event::request);
  EXPECT_TRUE(session.hold(std::string(150, 'x')));
  EXPECT_FALSE(session.hold("y")) << "the peer sends faster than it reads answers";
  EXPECT_EQ(session.take_held().size(), 150u) << "a refused hold keeps nothing";
}

TEST(HttpServerSession, UpgradeStopsTheSessionAndLeavesTheRest) {
  auto session = plain();
  const std::string head =
      "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  const std::string frame = "\x81\x85\x01\x02\x03\x04";
  std::size_t used = 0;
  ASSERT_EQ(feed(session, head + frame, used), Event::upgrade);
  EXPECT_EQ(used, head.size());
  EXPECT_EQ(session.state(), State::upgrade);
  EXPECT_EQ(session.head().get("Sec-WebSocket-Version"), "13");
  EXPECT_EQ(session.target(), "/ws");
  EXPECT_FALSE(session.saw_plain_request());
  EXPECT_EQ(feed(session, frame, used), Event::busy);
  EXPECT_EQ(used, 0u);
  std::string out;
  EXPECT_FALSE(session.respond(out, 200, "", "")) << "an upgrade is answered by the handshake, not here";
  EXPECT_TRUE(out.empty());
}

TEST(HttpServerSession, WithoutPlainHttpEveryHeadIsAnUpgrade) {
  HttpServerSession session(HttpLimits{}, false);
  std::size_t used = 0;
  ASSERT_EQ(feed(session, "GET /index.html HTTP/1.1\r\n\r\n", used), Event::upgrade);
  EXPECT_EQ(session.head().target, "/index.html");
  EXPECT_FALSE(session.saw_plain_request());
}

TEST(HttpServerSession, MalformedHeadIsRejectedWithTheParsersStatus) {
  auto session = plain();
  std::size_t used = 0;
  ASSERT_EQ(feed(session, "GET / HTTP/2.0\r\n\r\n", used), Event::rejected);
  EXPECT_EQ(session.state(), State::rejected);
  EXPECT_EQ(session.rejection_status(), 505);
  EXPECT_FALSE(session.rejection_message().empty());
  EXPECT_EQ(feed(session, "GET / HTTP/1.1\r\n\r\n", used), Event::busy);
  std::string out;
  EXPECT_FALSE(session.respond(out, 200, "", ""));
}

TEST(HttpServerSession, OversizedHeadIs431) {
  HttpLimits limits;
  limits.max_head_bytes = 64;
  auto session = plain(limits);
  std::size_t used = 0;
  EXPECT_EQ(feed(session, "GET / HTTP/1.1\r\nX-Long: " + std::string(100, 'a') + "\r\n\r\n", used),
            Event::rejected);
  EXPECT_EQ(session.rejection_status(), 431);
}

TEST(HttpServerSession, ContentLengthRules) {
  struct Case {
    std::string headers;
    int status;
  };
  const Case cases[] = {
      {"Transfer-Encoding: chunked\r\n", 411},
      {"Content-Length: 1\r\nContent-Length: 1\r\n", 400},
      {"Content-Length: -1\r\n", 400},
      {"Content-Length: 1x\r\n", 400},
      {"Content-Length: 0x10\r\n", 400},
      {"Content-Length: 1234567890123\r\n", 413},
      {"Content-Length: 1025\r\n", 413},
  };
  HttpLimits limits;
  limits.max_body_bytes = 1024;
  for (const Case& c : cases) {
    auto session = plain(limits);
    std::size_t used = 0;
    ASSERT_EQ(feed(session, "POST / HTTP/1.1\r\n" + c.headers + "\r\n", used), Event::rejected) << c.headers;
    EXPECT_EQ(session.rejection_status(), c.status) << c.headers;
    EXPECT_TRUE(session.saw_plain_request());
  }
  auto at_limit = plain(limits);
  std::size_t used = 0;
  EXPECT_EQ(feed(at_limit, "POST / HTTP/1.1\r\nContent-Length: 1024\r\n\r\n" + std::string(1024, 'b'), used),
            Event::request);
  EXPECT_EQ(at_limit.body().size(), 1024u);
}

TEST(HttpServerSession, ConnectionCloseAndHttp10EndAfterTheAnswer) {
  for (const std::string_view request : {"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", "GET / HTTP/1.0\r\n\r\n"}) {
    auto session = plain();
    std::size_t used = 0;
    ASSERT_EQ(feed(session, request, used), Event::request) << request;
    EXPECT_FALSE(session.keep_alive());
    std::string out;
    ASSERT_TRUE(session.respond(out, 200, "text/plain", "bye"));
    EXPECT_NE(out.find("Connection: close\r\n"), std::string::npos) << out;
    EXPECT_EQ(session.state(), State::last_response_done);
    EXPECT_EQ(feed(session, "GET / HTTP/1.1\r\n\r\n", used), Event::busy);
  }
  auto kept = plain();
  std::size_t used = 0;
  ASSERT_EQ(feed(kept, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", used), Event::request);
  EXPECT_TRUE(kept.keep_alive());
}

TEST(HttpServerSession, CloseAfterAnswerMakesThisTheLast) {
  auto session = plain();
  std::size_t used = 0;
  ASSERT_EQ(feed(session, "GET / HTTP/1.1\r\n\r\n", used), Event::request);
  session.close_after_answer();  // e.g. the peer half-closed
  std::string out;
  ASSERT_TRUE(session.respond(out, 200, "", "x"));
  EXPECT_NE(out.find("Connection: close\r\n"), std::string::npos);
  EXPECT_EQ(session.state(), State::last_response_done);
}

TEST(HttpServerSession, HeadRequestGetsTheLengthButNoBody) {
  auto session = plain();
  std::size_t used = 0;
  ASSERT_EQ(feed(session, "HEAD / HTTP/1.1\r\n\r\n", used), Event::request);
  std::string out;
  ASSERT_TRUE(session.respond(out, 200, "text/html", "<html></html>"));
  EXPECT_NE(out.find("Content-Length: 13\r\n"), std::string::npos);
  EXPECT_EQ(out.substr(out.size() - 4), "\r\n\r\n") << "no body after the head";
  // The next GET has its body again.
  ASSERT_EQ(feed(session, "GET / HTTP/1.1\r\n\r\n", used), Event::request);
  out.clear();
  ASSERT_TRUE(session.respond(out, 200, "text/html", "<html></html>"));
  EXPECT_EQ(out.substr(out.size() - 13), "<html></html>");
}

TEST(HttpServerSession, ChunkedStreamInOrderAndOnlyInItsState) {
  auto session = plain();
  std::string out;
  EXPECT_FALSE(session.begin_stream(out, 200, "text/event-stream")) << "no request yet";
  EXPECT_FALSE(session.write_chunk(out, "x"));
  EXPECT_FALSE(session.end_stream(out));
  EXPECT_TRUE(out.empty());

  std::size_t used = 0;
  ASSERT_EQ(feed(session, "GET /sse HTTP/1.1\r\n\r\n", used), Event::request);
  ASSERT_TRUE(session.begin_stream(out, 200, "text/event-stream", {{"Cache-Control", "no-store"}}));
  EXPECT_TRUE(session.streaming());
  EXPECT_TRUE(session.response_pending());
  EXPECT_NE(out.find("Transfer-Encoding: chunked\r\n\r\n"), std::string::npos);
  EXPECT_NE(out.find("Cache-Control: no-store\r\n"), std::string::npos);
  EXPECT_FALSE(session.respond(out, 200, "", "")) << "a stream is open";
  EXPECT_FALSE(session.begin_stream(out, 200, ""));
  out.clear();
  ASSERT_TRUE(session.write_chunk(out, "data: 1\n\n"));
  EXPECT_EQ(out, "9\r\ndata: 1\n\n\r\n");
  out.clear();
  ASSERT_TRUE(session.end_stream(out));
  EXPECT_EQ(out, "0\r\n\r\n");
  EXPECT_EQ(session.state(), State::reading_head);
  EXPECT_FALSE(session.write_chunk(out, "late"));
  ASSERT_EQ(feed(session, "GET /next HTTP/1.1\r\n\r\n", used), Event::request);
}

TEST(HttpServerSession, ALargeBodyIsNotKeptForTheNextRequest) {
  auto session = plain();
  std::size_t used = 0;
  ASSERT_EQ(feed(session, "POST / HTTP/1.1\r\nContent-Length: 65536\r\n\r\n" + std::string(65536, 'z'), used),
            Event::request);
  std::string out;
  ASSERT_TRUE(session.respond(out, 204, "", ""));
  ASSERT_EQ(feed(session, "GET / HTTP/1.1\r\n\r\n", used), Event::request);
  EXPECT_TRUE(session.body().empty()) << "the previous request's body is gone";
}
