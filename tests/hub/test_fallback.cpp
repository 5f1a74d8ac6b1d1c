// The fallback transports end to end over raw loopback HTTP: an SSE session
// (commands by POST answered with their replies, ordered pushes, resume with
// Last-Event-ID after the stream dropped), a long-poll session (commands,
// polling, expiry ends the session in the hub: presence leave), CORS for the
// API and the fallback endpoints, and the HTTP/1.1 details (keep-alive,
// chunked stream, no compression).
#include <gtest/gtest.h>

#include "transport_client.hpp"

using namespace hub_test;

namespace {

int connect_loopback(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("connect failed");
  timeval tv{0, 200000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// One request on its own connection; returns status and body (Content-Length).
struct HttpResult {
  int status = 0;
  std::string head;
  std::string body;
};
HttpResult http(std::uint16_t port, const std::string& method, const std::string& target, const std::string& body = {},
                const std::string& extra_headers = {}, std::chrono::milliseconds timeout = 5000ms) {
  const int fd = connect_loopback(port);
  const std::string req = method + " " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + extra_headers +
                          "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[8192];
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) out.append(buf, static_cast<std::size_t>(n));
    else if (n == 0 || std::chrono::steady_clock::now() > deadline) break;
  }
  ::close(fd);
  HttpResult r;
  if (out.size() > 12) r.status = std::stoi(out.substr(9, 3));
  const auto p = out.find("\r\n\r\n");
  if (p != std::string::npos) {
    r.head = out.substr(0, p);
    r.body = out.substr(p + 4);
  }
  return r;
}

// An SSE stream read event by event (de-chunked).
class SseStream {
 public:
  SseStream(std::uint16_t port, const std::string& target, const std::string& extra_headers = {}) : fd_(connect_loopback(port)) {
    const std::string req = "GET " + target + " HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n" + extra_headers + "\r\n";
    ::send(fd_, req.data(), req.size(), MSG_NOSIGNAL);
    while (raw_.find("\r\n\r\n") == std::string::npos) read_some();
    const auto p = raw_.find("\r\n\r\n");
    head = raw_.substr(0, p);
    raw_.erase(0, p + 4);
  }
  ~SseStream() { ::close(fd_); }

  struct Event {
    std::string id, event, data;
  };
  // The next event (comments skipped).
  Event next() {
    for (;;) {
      const auto end = text_.find("\n\n");
      if (end == std::string::npos) {
        read_some();
        continue;
      }
      const std::string block = text_.substr(0, end);
      text_.erase(0, end + 2);
      Event e;
      std::size_t start = 0;
      while (start <= block.size()) {
        std::size_t nl = block.find('\n', start);
        if (nl == std::string::npos) nl = block.size();
        const std::string line = block.substr(start, nl - start);
        start = nl + 1;
        if (line.starts_with("id: ")) e.id = line.substr(4);
        else if (line.starts_with("event: ")) e.event = line.substr(7);
        else if (line.starts_with("data: ")) e.data += line.substr(6);
      }
      if (e.data.empty()) continue;  // comment or retry only
      return e;
    }
  }
  // The next event whose JSON "type" is `type`.
  std::pair<std::string, std::unique_ptr<Frame>> next_of(const std::string& type) {
    for (;;) {
      Event e = next();
      if (!e.event.empty()) continue;
      auto f = std::make_unique<Frame>(e.data);
      if (f->str("type") == type) return {e.id, std::move(f)};
    }
  }

 private:
  void read_some() {
    if (std::chrono::steady_clock::now() > deadline_) throw std::runtime_error("SSE read timed out; got: " + text_);
    char buf[8192];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n == 0) throw std::runtime_error("SSE stream closed; got: " + text_);
    if (n > 0) raw_.append(buf, static_cast<std::size_t>(n));
    if (head.empty()) return;
    // De-chunk what is complete.
    for (;;) {
      const auto crlf = raw_.find("\r\n");
      if (crlf == std::string::npos) return;
      const std::size_t size = std::stoul(raw_.substr(0, crlf), nullptr, 16);
      if (raw_.size() < crlf + 2 + size + 2) return;
      text_ += raw_.substr(crlf + 2, size);
      raw_.erase(0, crlf + 2 + size + 2);
    }
  }

 public:
  std::string head;

 private:
  int fd_;
  std::string raw_, text_;
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::now() + 5s;
};

std::string subscribe_cmd(std::uint64_t id, const std::string& channel) {
  return R"({"type":"subscribe","id":)" + std::to_string(id) + R"(,"channel":")" + channel + "\"}";
}
std::string publish_cmd(std::uint64_t id, const std::string& channel, int n) {
  return R"({"type":"publish","id":)" + std::to_string(id) + R"(,"channel":")" + channel + R"(","data":{"n":)" + std::to_string(n) + "}}";
}

}  // namespace

TEST(HubFallback, SseSessionCommandsOrderedPushesAndResumeWithLastEventId) {
  Server server;
  auto bob = connect_as(server, "bob");
  ASSERT_FALSE(bob->call(1, subscribe_cmd(1, "chat:sse"))->has("/error"));

  std::string session;
  std::string last_id;
  {
    SseStream sse(server.port(), "/connection/sse?token=" + token_for("alice"));
    EXPECT_NE(sse.head.find("text/event-stream"), std::string::npos) << sse.head;
    EXPECT_NE(sse.head.find("X-Accel-Buffering: no"), std::string::npos) << sse.head;
    EXPECT_NE(sse.head.find("Cache-Control: no-cache"), std::string::npos) << sse.head;
    auto first = sse.next();
    ASSERT_EQ(first.event, "session");
    session = Frame(first.data).str("session");
    ASSERT_EQ(session.substr(32), ".test-node") << "the session id names its node";
    auto [connected_id, connected] = sse.next_of("connected");
    EXPECT_EQ(connected_id, "1");

    // Two commands in one POST, one per line; the POST's response carries both replies.
    auto posted = http(server.port(), "POST", "/connection/sse/" + session,
                       subscribe_cmd(1, "chat:sse") + "\n" + publish_cmd(2, "chat:sse", 0) + "\n");
    ASSERT_EQ(posted.status, 200) << posted.body;
    Frame replies(posted.body);
    ASSERT_EQ(replies.array("/replies").size(), 2u) << posted.body;
    EXPECT_EQ(replies.u64_at("/replies/0/id"), 1u) << posted.body;
    EXPECT_EQ(replies.str_at("/replies/0/result/channel"), "chat:sse") << posted.body;
    EXPECT_EQ(replies.u64_at("/replies/1/id"), 2u) << posted.body;
    EXPECT_EQ(replies.u64_at("/replies/1/result/offset"), 1u) << posted.body;
    EXPECT_FALSE(replies.has("/pending")) << posted.body;
    for (int i = 1; i <= 3; ++i) ASSERT_FALSE(bob->call(10 + static_cast<std::uint64_t>(i), publish_cmd(10 + static_cast<std::uint64_t>(i), "chat:sse", i))->has("/error"));
    for (std::uint64_t offset = 1; offset <= 4; ++offset) {
      auto [id, m] = sse.next_of("message");
      EXPECT_EQ(m->u64("offset"), offset) << m->text;
      last_id = id;
    }
    EXPECT_EQ(bob->next("message")->u64("offset"), 1u);  // alice's publish reached the WebSocket client
  }  // the stream drops

  for (int i = 4; i <= 6; ++i) ASSERT_FALSE(bob->call(10 + static_cast<std::uint64_t>(i), publish_cmd(10 + static_cast<std::uint64_t>(i), "chat:sse", i))->has("/error"));
  SseStream resumed(server.port(), "/connection/sse?session=" + session, "Last-Event-ID: " + last_id + "\r\n");
  EXPECT_EQ(resumed.next().event, "session");
  for (std::uint64_t offset = 5; offset <= 7; ++offset) {
    auto [id, m] = resumed.next_of("message");
    EXPECT_EQ(m->u64("offset"), offset) << m->text;
    EXPECT_EQ(std::stoull(id), std::stoull(last_id) + offset - 4);
  }
  // Commands still work on the resumed session.
  auto again = http(server.port(), "POST", "/connection/sse/" + session, publish_cmd(3, "chat:sse", 7));
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(Frame(again.body).u64_at("/replies/0/result/offset"), 8u) << again.body;
  EXPECT_EQ(resumed.next_of("message").second->u64("offset"), 8u);
  // Pushes stay on the stream: no reply was sent there.
  auto ping = http(server.port(), "POST", "/connection/sse/" + session, R"({"type":"ping","id":4})");
  EXPECT_EQ(ping.body, R"({"replies":[{"type":"reply","id":4,"result":{}}]})");

  EXPECT_EQ(http(server.port(), "POST", "/connection/sse/nosuchsession", publish_cmd(4, "chat:sse", 8)).status, 404);
  EXPECT_EQ(http(server.port(), "GET", "/connection/sse?token=garbage").status, 401);
}

TEST(HubFallback, LongPollSessionCommandsPollsAndExpiryLeavesPresence) {
  Server server;
  auto watcher = connect_as(server, "watcher");
  ASSERT_FALSE(watcher->call(1, subscribe_cmd(1, "chat:lp"))->has("/error"));
  watcher->next("join");

  auto opened = http(server.port(), "POST", "/connection/poll/open?idle_timeout=1000", {},
                     "Authorization: Bearer " + token_for("carol") + "\r\n");
  ASSERT_EQ(opened.status, 200) << opened.body;
  const std::string session = Frame(opened.body).str("session");
  ASSERT_EQ(session.substr(32), ".test-node") << "the session id names its node";
  const std::string poll_path = "/connection/poll/" + session;

  auto first = http(server.port(), "GET", poll_path + "?last=0");
  ASSERT_EQ(first.status, 200);
  Frame connected(first.body);
  EXPECT_EQ(connected.str_at("/0/data/type"), "connected") << first.body;
  std::uint64_t last = connected.u64_at("/0/id");

  auto subscribed = http(server.port(), "POST", poll_path, subscribe_cmd(1, "chat:lp"));
  ASSERT_EQ(subscribed.status, 200);
  EXPECT_EQ(Frame(subscribed.body).str_at("/replies/0/result/channel"), "chat:lp") << subscribed.body;
  EXPECT_EQ(watcher->next("join")->str_at("/client/user"), "carol");
  for (int i = 1; i <= 3; ++i) ASSERT_FALSE(watcher->call(10 + static_cast<std::uint64_t>(i), publish_cmd(10 + static_cast<std::uint64_t>(i), "chat:lp", i))->has("/error"));

  // Poll until the three messages have arrived, in order (no reply among them).
  std::vector<std::uint64_t> offsets;
  bool replied = false;
  const auto until = std::chrono::steady_clock::now() + 3s;
  while (offsets.size() < 3 && std::chrono::steady_clock::now() < until) {
    auto polled = http(server.port(), "GET", poll_path + "?last=" + std::to_string(last));
    ASSERT_EQ(polled.status, 200) << polled.body;
    Frame events(polled.body);
    for (auto e : events.array("")) {
      std::uint64_t id = 0;
      ASSERT_EQ(e["id"].get(id), simdjson::SUCCESS);
      EXPECT_EQ(id, last + 1);
      last = id;
      std::string_view type;
      ASSERT_EQ(e["data"]["type"].get(type), simdjson::SUCCESS);
      if (type == "reply") replied = true;
      std::uint64_t offset = 0;
      if (type == "message" && e["data"]["offset"].get(offset) == simdjson::SUCCESS) offsets.push_back(offset);
    }
  }
  EXPECT_FALSE(replied);
  EXPECT_EQ(offsets, (std::vector<std::uint64_t>{1, 2, 3}));

  // A poll with nothing queued is answered once an event arrives.
  std::thread publisher([&] {
    std::this_thread::sleep_for(200ms);
    watcher->send(publish_cmd(20, "chat:lp", 4));
  });
  const auto waited_since = std::chrono::steady_clock::now();
  auto waited = http(server.port(), "GET", poll_path + "?last=" + std::to_string(last));
  publisher.join();
  EXPECT_GE(std::chrono::steady_clock::now() - waited_since, 150ms);
  EXPECT_EQ(Frame(waited.body).u64_at("/0/data/offset"), 4u) << waited.body;

  // No more polls: the session expires and leaves the channel.
  const auto idle_since = std::chrono::steady_clock::now();
  EXPECT_EQ(watcher->next("leave", 4000ms)->str_at("/client/user"), "carol");
  EXPECT_GE(std::chrono::steady_clock::now() - idle_since, 700ms);
  EXPECT_EQ(http(server.port(), "GET", poll_path + "?last=0").status, 404);
}

TEST(HubFallback, CorsForConfiguredOriginsOnApiAndFallbackEndpoints) {
  hub::HubConfig config = test_config();
  config.web.cors_origins = {"https://app.example"};
  config.auth.allowed_origins = {"https://app.example"};  // CORS lets the page read; this lets it in
  Server server(config);
  const std::string allowed = "Origin: https://app.example\r\n", other = "Origin: https://evil.example\r\n";
  const std::string acao = "Access-Control-Allow-Origin: https://app.example";

  // Preflight for the API and each fallback endpoint.
  for (const std::string path : {"/api/publish", "/connection/sse", "/connection/poll/open", "/connection/sse/abc", "/connection/poll/abc"}) {
    auto pre = http(server.port(), "OPTIONS", path, {},
                    allowed + "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\n");
    EXPECT_EQ(pre.status, 204) << path;
    EXPECT_NE(pre.head.find(acao), std::string::npos) << path << pre.head;
    EXPECT_NE(pre.head.find("Access-Control-Allow-Methods: GET, POST, OPTIONS"), std::string::npos) << pre.head;
    EXPECT_NE(pre.head.find("Authorization"), std::string::npos) << pre.head;
    EXPECT_NE(pre.head.find("Content-Type"), std::string::npos) << pre.head;
    EXPECT_NE(pre.head.find("Vary: Origin"), std::string::npos) << pre.head;
    auto denied = http(server.port(), "OPTIONS", path, {}, other + "Access-Control-Request-Method: POST\r\n");
    EXPECT_EQ(denied.head.find("Access-Control-"), std::string::npos) << path << denied.head;
  }

  // Actual requests: the allowed origin gets the header, another origin none.
  auto api = http(server.port(), "POST", "/api/publish", R"({"channel":"chat:c","data":1})", allowed + "X-API-Key: test-api-key\r\n");
  EXPECT_EQ(api.status, 200);
  EXPECT_NE(api.head.find(acao), std::string::npos) << api.head;
  auto api_other = http(server.port(), "POST", "/api/publish", R"({"channel":"chat:c","data":1})", other + "X-API-Key: test-api-key\r\n");
  EXPECT_EQ(api_other.head.find("Access-Control-"), std::string::npos) << api_other.head;
  auto api_bad_key = http(server.port(), "POST", "/api/publish", R"({"channel":"chat:c","data":1})", allowed + "X-API-Key: nope\r\n");
  EXPECT_EQ(api_bad_key.status, 401);
  EXPECT_NE(api_bad_key.head.find(acao), std::string::npos) << "errors are readable by the allowed page too";

  auto opened = http(server.port(), "POST", "/connection/poll/open?token=" + token_for("alice"), {}, allowed);
  ASSERT_EQ(opened.status, 200);
  EXPECT_NE(opened.head.find(acao), std::string::npos) << opened.head;
  const std::string session = Frame(opened.body).str("session");
  auto posted = http(server.port(), "POST", "/connection/poll/" + session, R"({"type":"ping","id":1})", allowed);
  EXPECT_EQ(posted.status, 200);
  EXPECT_NE(posted.head.find(acao), std::string::npos) << posted.head;
  auto polled = http(server.port(), "GET", "/connection/poll/" + session + "?last=0", {}, allowed);
  EXPECT_EQ(polled.status, 200);
  EXPECT_NE(polled.head.find(acao), std::string::npos) << polled.head;
  auto polled_other = http(server.port(), "GET", "/connection/poll/" + session + "?last=0", {}, other, 300ms);
  EXPECT_EQ(polled_other.status, 403) << "the session's requests pass the Origin check too";
  EXPECT_EQ(polled_other.head.find("Access-Control-"), std::string::npos) << polled_other.head;
  auto unknown = http(server.port(), "POST", "/connection/sse/nosuchsession", R"({"type":"ping","id":1})", allowed);
  EXPECT_EQ(unknown.status, 404);
  EXPECT_NE(unknown.head.find(acao), std::string::npos) << unknown.head;

  SseStream sse(server.port(), "/connection/sse?token=" + token_for("bob"), allowed);
  EXPECT_NE(sse.head.find(acao), std::string::npos) << sse.head;
  SseStream sse_other(server.port(), "/connection/sse?token=" + token_for("bob"), other);
  EXPECT_NE(sse_other.head.find(" 403 "), std::string::npos) << sse_other.head;
  EXPECT_EQ(sse_other.head.find("Access-Control-"), std::string::npos) << sse_other.head;

  // Without cors_origins no response carries CORS headers.
  Server plain;
  auto none = http(plain.port(), "OPTIONS", "/api/publish", {}, allowed + "Access-Control-Request-Method: POST\r\n");
  EXPECT_EQ(none.head.find("Access-Control-"), std::string::npos) << none.head;
  auto none_api = http(plain.port(), "POST", "/api/publish", R"({"channel":"chat:c","data":1})", allowed + "X-API-Key: test-api-key\r\n");
  EXPECT_EQ(none_api.head.find("Access-Control-"), std::string::npos) << none_api.head;
}

TEST(HubFallback, Http11KeepAliveChunkedStreamNoCompression) {
  Server server;
  auto watcher = connect_as(server, "watcher");
  ASSERT_FALSE(watcher->call(1, subscribe_cmd(1, "chat:ka"))->has("/error"));

  // The SSE stream: chunked, no Content-Encoding even when gzip is offered.
  SseStream sse(server.port(), "/connection/sse?token=" + token_for("alice"), "Accept-Encoding: gzip, deflate, br\r\n");
  EXPECT_NE(sse.head.find("HTTP/1.1 200"), std::string::npos) << sse.head;
  EXPECT_NE(sse.head.find("Transfer-Encoding: chunked"), std::string::npos) << sse.head;
  EXPECT_EQ(sse.head.find("Content-Encoding"), std::string::npos) << sse.head;
  EXPECT_EQ(sse.head.find("Content-Length"), std::string::npos) << sse.head;
  const std::string session = Frame(sse.next().data).str("session");

  // Several POSTs on one keep-alive connection, each answered with its reply.
  HttpConnection conn(server.port());
  for (int i = 1; i <= 5; ++i) {
    auto r = conn.request("POST", "/connection/sse/" + session, i == 1 ? subscribe_cmd(1, "chat:ka") : publish_cmd(static_cast<std::uint64_t>(i), "chat:ka", i),
                          "Accept-Encoding: gzip\r\n");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.head.find("Connection: close"), std::string::npos) << r.head;
    EXPECT_EQ(r.head.find("Content-Encoding"), std::string::npos) << r.head;
    EXPECT_EQ(Frame(r.body).u64_at("/replies/0/id"), static_cast<std::uint64_t>(i)) << r.body;
  }
  EXPECT_EQ(conn.connects(), 1) << "the POSTs shared one connection";
  for (std::uint64_t offset = 1; offset <= 4; ++offset) EXPECT_EQ(sse.next_of("message").second->u64("offset"), offset);

  // Long-poll: open, polls and POSTs on one connection too.
  HttpConnection lp(server.port());
  auto opened = lp.request("POST", "/connection/poll/open?token=" + token_for("carol"));
  ASSERT_EQ(opened.status, 200);
  const std::string path = "/connection/poll/" + Frame(opened.body).str("session");
  auto subscribed = lp.request("POST", path, subscribe_cmd(1, "chat:ka"));
  ASSERT_EQ(subscribed.status, 200) << subscribed.body;
  std::uint64_t last = 0;
  for (int i = 0; i < 3; ++i) {
    ASSERT_FALSE(watcher->call(20 + static_cast<std::uint64_t>(i), publish_cmd(20 + static_cast<std::uint64_t>(i), "chat:ka", i))->has("/error"));
    // The publish's reply can beat the delivery to carol's loop: a poll may
    // first return what was queued before (connected, join); the next one
    // waits for the message.
    bool got_message = false;
    for (int poll = 0; poll < 3 && !got_message; ++poll) {
      auto polled = lp.request("GET", path + "?last=" + std::to_string(last));
      ASSERT_EQ(polled.status, 200) << polled.body;
      EXPECT_EQ(polled.head.find("Content-Encoding"), std::string::npos);
      got_message = polled.body.find("\"type\":\"message\"") != std::string::npos;
      Frame events(polled.body);
      for (auto e : events.array("")) ASSERT_EQ(e["id"].get(last), simdjson::SUCCESS);
    }
    EXPECT_TRUE(got_message) << "publication " << i << " never reached the long-poll";
    auto posted = lp.request("POST", path, R"({"type":"ping","id":)" + std::to_string(10 + i) + "}");
    ASSERT_EQ(posted.status, 200);
    EXPECT_EQ(Frame(posted.body).u64_at("/replies/0/id"), static_cast<std::uint64_t>(10 + i));
  }
  EXPECT_EQ(lp.connects(), 1);
}

// The Origin policy of the WebSocket upgrade (auth.allowed_origins, by
// default the page's own host) guards every fallback request: a foreign page
// can neither open a session nor use one it learned the id of.
TEST(HubFallback, ForeignOriginCanNeitherOpenNorUseASession) {
  Server server;  // no allow-list: same host only (Host: x)
  const std::string foreign = "Origin: https://evil.example\r\n", same = "Origin: http://x\r\n";
  EXPECT_EQ(http(server.port(), "POST", "/connection/poll/open?token=" + token_for("alice"), {}, foreign).status, 403);
  EXPECT_EQ(http(server.port(), "GET", "/connection/sse?token=" + token_for("alice"), {}, foreign, 300ms).status, 403);
  auto opened = http(server.port(), "POST", "/connection/poll/open?token=" + token_for("alice"), {}, same);
  ASSERT_EQ(opened.status, 200) << opened.head;
  const std::string session = Frame(opened.body).str("session");
  auto hijack = http(server.port(), "POST", "/connection/poll/" + session, subscribe_cmd(1, "chat:private"), foreign);
  EXPECT_EQ(hijack.status, 403);
  EXPECT_EQ(http(server.port(), "GET", "/connection/poll/" + session + "?last=0", {}, foreign, 300ms).status, 403);
  // An SSE resume opens no session (so Hub::admit never sees it): checked too
  // (without the check this is 404, the session being a long-poll one).
  EXPECT_EQ(http(server.port(), "GET", "/connection/sse?session=" + session, {}, foreign, 300ms).status, 403);
  // The session is untouched: its own page still uses it, and the refused
  // subscribe never ran.
  auto own = http(server.port(), "POST", "/connection/poll/" + session, subscribe_cmd(2, "chat:private"), same);
  ASSERT_EQ(own.status, 200) << own.body;
  EXPECT_NE(own.body.find("\"id\":2"), std::string::npos) << own.body;
  EXPECT_EQ(own.body.find("already subscribed"), std::string::npos) << own.body;
}
