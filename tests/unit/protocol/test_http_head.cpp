#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "duplex/protocol/http_head.hpp"

using namespace duplex::protocol;
using Kind = HttpHeadParser::Kind;

namespace {

constexpr std::string_view kRequest =
    "GET /chat?room=1 HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "Sec-WebSocket-Protocol: v2\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

struct Result {
  HttpParseStatus status;
  std::size_t consumed;
  HttpHead head;
  int error_status;
  std::string error;
};

Result parse_all(Kind kind, std::string_view text, HttpLimits limits = {}) {
  HttpHeadParser p(kind, limits);
  std::size_t consumed = 0;
  const auto st = p.feed(text, consumed);
  EXPECT_EQ(st, p.status());
  return {st, consumed, p.head(), p.error_status(), std::string(p.error())};
}

HttpParseStatus req_status(std::string_view text, HttpLimits limits = {}) {
  return parse_all(Kind::request, text, limits).status;
}

int req_error(std::string_view text, HttpLimits limits = {}) {
  auto r = parse_all(Kind::request, text, limits);
  EXPECT_EQ(r.status, HttpParseStatus::error) << text;
  return r.error_status;
}

int resp_error(std::string_view text, HttpLimits limits = {}) {
  auto r = parse_all(Kind::response, text, limits);
  EXPECT_EQ(r.status, HttpParseStatus::error) << text;
  return r.error_status;
}

void expect_same_head(const HttpHead& a, const HttpHead& b) {
  EXPECT_EQ(a.method, b.method);
  EXPECT_EQ(a.target, b.target);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.version_major, b.version_major);
  EXPECT_EQ(a.version_minor, b.version_minor);
  ASSERT_EQ(a.headers.size(), b.headers.size());
  for (std::size_t i = 0; i < a.headers.size(); ++i) {
    EXPECT_EQ(a.headers[i].name, b.headers[i].name);
    EXPECT_EQ(a.headers[i].value, b.headers[i].value);
  }
}

std::string request_with_header_line(std::size_t line_len) {
  // "X: " + value, total line length `line_len` (excluding CRLF).
  return "GET / HTTP/1.1\r\nX: " + std::string(line_len - 3, 'a') + "\r\n\r\n";
}

}  // namespace

// ---- basic parsing ------------------------------------------------------

TEST(HttpHeadParser, ParsesFullRequest) {
  auto r = parse_all(Kind::request, kRequest);
  ASSERT_EQ(r.status, HttpParseStatus::complete) << r.error;
  EXPECT_EQ(r.consumed, kRequest.size());
  EXPECT_EQ(r.head.method, "GET");
  EXPECT_EQ(r.head.target, "/chat?room=1");
  EXPECT_EQ(r.head.version_major, 1);
  EXPECT_EQ(r.head.version_minor, 1);
  ASSERT_EQ(r.head.headers.size(), 8u);
  EXPECT_EQ(r.head.headers[0].name, "Host");
  EXPECT_EQ(r.head.headers[0].value, "server.example.com");
  EXPECT_EQ(r.head.get("host"), "server.example.com");
  EXPECT_EQ(r.head.get("SEC-WEBSOCKET-KEY"), "dGhlIHNhbXBsZSBub25jZQ==");
  EXPECT_TRUE(r.head.has("origin"));
  EXPECT_FALSE(r.head.has("Cookie"));
  EXPECT_EQ(r.head.get("Cookie"), "");
  EXPECT_EQ(r.head.count("sec-websocket-protocol"), 2u);
  EXPECT_EQ(r.head.count("Host"), 1u);
  EXPECT_EQ(r.head.count("Nope"), 0u);
  EXPECT_EQ(r.head.joined("Sec-WebSocket-Protocol"), "chat, superchat, v2");
  EXPECT_EQ(r.head.joined("Nope"), "");
  EXPECT_EQ(r.head.get("Sec-WebSocket-Protocol"), "chat, superchat");
}

TEST(HttpHeadParser, ParsesResponse) {
  auto r = parse_all(Kind::response,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\n\r\n");
  ASSERT_EQ(r.status, HttpParseStatus::complete) << r.error;
  EXPECT_EQ(r.head.status, 101);
  EXPECT_EQ(r.head.reason, "Switching Protocols");
  EXPECT_EQ(r.head.headers.size(), 2u);
}

TEST(HttpHeadParser, ResponseReasonMayBeEmptyOrMissing) {
  auto a = parse_all(Kind::response, "HTTP/1.1 404 \r\n\r\n");
  ASSERT_EQ(a.status, HttpParseStatus::complete) << a.error;
  EXPECT_EQ(a.head.status, 404);
  EXPECT_EQ(a.head.reason, "");
  auto b = parse_all(Kind::response, "HTTP/1.1 404\r\n\r\n");
  ASSERT_EQ(b.status, HttpParseStatus::complete) << b.error;
  EXPECT_EQ(b.head.status, 404);
  EXPECT_EQ(b.head.reason, "");
  auto c = parse_all(Kind::response, "HTTP/1.0 200 OK  with\tspaces\r\n\r\n");
  ASSERT_EQ(c.status, HttpParseStatus::complete) << c.error;
  EXPECT_EQ(c.head.reason, "OK  with\tspaces");
  EXPECT_EQ(c.head.version_minor, 0);
  auto d = parse_all(Kind::response, "HTTP/1.1 200 caf\xc3\xa9\r\n\r\n");  // obs-text
  EXPECT_EQ(d.status, HttpParseStatus::complete);
}

TEST(HttpHeadParser, MalformedStatusLines) {
  EXPECT_EQ(resp_error("HTTP/1.1 20 OK\r\n\r\n"), 400);
  EXPECT_EQ(resp_error("HTTP/1.1 2000 OK\r\n\r\n"), 400);
  EXPECT_EQ(resp_error("HTTP/1.1 099 OK\r\n\r\n"), 400);
  EXPECT_EQ(resp_error("HTTP/1.1 abc OK\r\n\r\n"), 400);
  EXPECT_EQ(resp_error("HTTP/1.1  200 OK\r\n\r\n"), 400);
  EXPECT_EQ(resp_error("HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(resp_error("HTTP/1.1 \r\n\r\n"), 400);
  EXPECT_EQ(resp_error("http/1.1 200 OK\r\n\r\n"), 400);
  EXPECT_EQ(resp_error("HTTP/1.1 200 O\x01K\r\n\r\n"), 400);
  EXPECT_EQ(resp_error("HTTP/1.1 200 O\x7fK\r\n\r\n"), 400);
  EXPECT_EQ(resp_error("HTTP/2.0 200 OK\r\n\r\n"), 505);
  EXPECT_EQ(resp_error("GET / HTTP/1.1\r\n\r\n"), 400);
}

TEST(HttpHeadParser, EmptyHeaderBlockIsFine) {
  auto r = parse_all(Kind::request, "GET / HTTP/1.1\r\n\r\n");
  ASSERT_EQ(r.status, HttpParseStatus::complete);
  EXPECT_TRUE(r.head.headers.empty());
  EXPECT_EQ(r.consumed, 18u);
}

TEST(HttpHeadParser, AcceptsBareLf) {
  auto r = parse_all(Kind::request, "GET / HTTP/1.1\nHost: a\r\nX: y\n\n");
  ASSERT_EQ(r.status, HttpParseStatus::complete) << r.error;
  ASSERT_EQ(r.head.headers.size(), 2u);
  EXPECT_EQ(r.head.headers[0].value, "a");
  EXPECT_EQ(r.head.headers[1].value, "y");
}

TEST(HttpHeadParser, RejectsBareCr) {
  EXPECT_EQ(req_error("GET / HTTP/1.1\rHost: a\r\n\r\n"), 400);
  EXPECT_EQ(req_error("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), 400);
  EXPECT_EQ(req_error("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n"), 400);
  EXPECT_EQ(req_error("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n"), 400);
  EXPECT_EQ(req_error("GET /\r HTTP/1.1\r\n\r\n"), 400);
}

TEST(HttpHeadParser, BareCrFailsWithoutWaitingForLineEnd) {
  HttpHeadParser p(Kind::request);
  std::size_t used = 0;
  EXPECT_EQ(p.feed("GET / HTTP/1.1\r", used), HttpParseStatus::incomplete);
  EXPECT_EQ(used, 15u);
  EXPECT_EQ(p.feed("X", used), HttpParseStatus::error);
  EXPECT_EQ(p.error_status(), 400);
}

TEST(HttpHeadParser, HeaderValueTrimmingAndEmptyValue) {
  auto r = parse_all(Kind::request,
                     "GET / HTTP/1.1\r\nA:   spaced  out \t \r\nB:\r\nC: \t\r\nD:x\r\n\r\n");
  ASSERT_EQ(r.status, HttpParseStatus::complete) << r.error;
  ASSERT_EQ(r.head.headers.size(), 4u);
  EXPECT_EQ(r.head.headers[0].value, "spaced  out");
  EXPECT_EQ(r.head.headers[1].value, "");
  EXPECT_EQ(r.head.headers[2].value, "");
  EXPECT_EQ(r.head.headers[3].value, "x");
  EXPECT_TRUE(r.head.has("B"));
}

TEST(HttpHeadParser, HeaderNameKeptAsReceived) {
  auto r = parse_all(Kind::request, "GET / HTTP/1.1\r\nsEc-WeBsOcKeT-kEy: k\r\n\r\n");
  ASSERT_EQ(r.status, HttpParseStatus::complete);
  EXPECT_EQ(r.head.headers[0].name, "sEc-WeBsOcKeT-kEy");
  EXPECT_EQ(r.head.get("Sec-WebSocket-Key"), "k");
}

TEST(HttpHeadParser, ValueMayContainColonsAndObsText) {
  auto r = parse_all(Kind::request,
                     "GET / HTTP/1.1\r\nOrigin: http://a:8080\r\nX: \xe2\x9c\x93\r\n\r\n");
  ASSERT_EQ(r.status, HttpParseStatus::complete);
  EXPECT_EQ(r.head.get("Origin"), "http://a:8080");
  EXPECT_EQ(r.head.get("X"), "\xe2\x9c\x93");
}

TEST(HttpHeadParser, RejectsBadHeaderLines) {
  EXPECT_EQ(req_error("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);       // space before colon
  EXPECT_EQ(req_error("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), 400);
  EXPECT_EQ(req_error("GET / HTTP/1.1\r\nHost a\r\n\r\n"), 400);         // no colon
  EXPECT_EQ(req_error("GET / HTTP/1.1\r\n: a\r\n\r\n"), 400);            // empty name
  EXPECT_EQ(req_error("GET / HTTP/1.1\r\nHo(st: a\r\n\r\n"), 400);       // non-tchar
  EXPECT_EQ(req_error("GET / HTTP/1.1\r\nHo\xc3\xa9st: a\r\n\r\n"), 400);
  EXPECT_EQ(req_error("GET / HTTP/1.1\r\nX: a\x01" "b\r\n\r\n"), 400);   // CTL in value
  EXPECT_EQ(req_error("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n"), 400);       // DEL
  EXPECT_EQ(req_error(std::string_view("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 27)), 400);
  EXPECT_EQ(req_status("GET / HTTP/1.1\r\nX: a\tb\r\n\r\n"), HttpParseStatus::complete);
}

TEST(HttpHeadParser, RejectsObsFold) {
  EXPECT_EQ(req_error("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), 400);
  EXPECT_EQ(req_error("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n"), 400);
  EXPECT_EQ(req_error("GET / HTTP/1.1\r\n X: a\r\n\r\n"), 400);
}

TEST(HttpHeadParser, RequestLineRules) {
  EXPECT_EQ(req_status("OPTIONS * HTTP/1.1\r\n\r\n"), HttpParseStatus::complete);
  EXPECT_EQ(req_status("M-SEARCH http://a/b?c=%20 HTTP/1.0\r\n\r\n"), HttpParseStatus::complete);
  EXPECT_EQ(req_error("\r\nGET / HTTP/1.1\r\n\r\n"), 400);         // leading empty line
  EXPECT_EQ(req_error("GET  / HTTP/1.1\r\n\r\n"), 400);            // double SP
  EXPECT_EQ(req_error("GET /  HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(req_error("GET / HTTP/1.1 \r\n\r\n"), 400);            // trailing SP
  EXPECT_EQ(req_error(" GET / HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(req_error("GET /\tx HTTP/1.1\r\n\r\n"), 400);          // tab in target
  EXPECT_EQ(req_error("GET /\x01 HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(req_error("GET /\x7f HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(req_error("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n"), 400);  // raw non-ASCII
  EXPECT_EQ(req_error("GET /\r\n\r\n"), 400);
  EXPECT_EQ(req_error("GET\r\n\r\n"), 400);
  EXPECT_EQ(req_error("G(ET / HTTP/1.1\r\n\r\n"), 400);            // method not a token
  EXPECT_EQ(req_error("GET\t/ HTTP/1.1\r\n\r\n"), 400);
}

TEST(HttpHeadParser, VersionRules) {
  auto r = parse_all(Kind::request, "GET / HTTP/1.0\r\n\r\n");
  ASSERT_EQ(r.status, HttpParseStatus::complete);
  EXPECT_EQ(r.head.version_major, 1);
  EXPECT_EQ(r.head.version_minor, 0);
  EXPECT_EQ(parse_all(Kind::request, "GET / HTTP/1.9\r\n\r\n").head.version_minor, 9);
  EXPECT_EQ(req_error("GET / HTTP/2.0\r\n\r\n"), 505);
  EXPECT_EQ(req_error("GET / HTTP/0.9\r\n\r\n"), 505);
  EXPECT_EQ(req_error("GET / HTTP/1.10\r\n\r\n"), 400);
  EXPECT_EQ(req_error("GET / HTTP/11\r\n\r\n"), 400);
  EXPECT_EQ(req_error("GET / HTTP/1\r\n\r\n"), 400);
  EXPECT_EQ(req_error("GET / http/1.1\r\n\r\n"), 400);
  EXPECT_EQ(req_error("GET / HTTP/a.1\r\n\r\n"), 400);
  EXPECT_EQ(req_error("GET / HTTP/1,1\r\n\r\n"), 400);
  EXPECT_EQ(req_error("GET / HTTPS/1.1\r\n\r\n"), 400);
}

// ---- incremental feeding ------------------------------------------------

TEST(HttpHeadParser, OneByteAtATime) {
  const auto whole = parse_all(Kind::request, kRequest);
  ASSERT_EQ(whole.status, HttpParseStatus::complete);
  HttpHeadParser p(Kind::request);
  std::size_t total = 0;
  for (std::size_t i = 0; i < kRequest.size(); ++i) {
    std::size_t used = 0;
    const auto st = p.feed(kRequest.substr(i, 1), used);
    EXPECT_EQ(used, 1u);
    total += used;
    if (i + 1 < kRequest.size()) {
      ASSERT_EQ(st, HttpParseStatus::incomplete) << "at byte " << i;
    } else {
      ASSERT_EQ(st, HttpParseStatus::complete);
    }
  }
  EXPECT_EQ(total, kRequest.size());
  expect_same_head(p.head(), whole.head);
}

TEST(HttpHeadParser, SplitAtEveryBoundary) {
  const std::string input = std::string(kRequest) + "\x81\x85tail";
  const auto whole = parse_all(Kind::request, input);
  ASSERT_EQ(whole.status, HttpParseStatus::complete);
  ASSERT_EQ(whole.consumed, kRequest.size());
  for (std::size_t split = 0; split <= input.size(); ++split) {
    HttpHeadParser p(Kind::request);
    std::size_t used1 = 0;
    std::size_t used2 = 0;
    const std::string_view in(input);
    auto st = p.feed(in.substr(0, split), used1);
    if (st == HttpParseStatus::incomplete) {
      EXPECT_EQ(used1, split);
      st = p.feed(in.substr(used1), used2);
    }
    ASSERT_EQ(st, HttpParseStatus::complete) << "split " << split;
    EXPECT_EQ(used1 + used2, kRequest.size()) << "split " << split;
    expect_same_head(p.head(), whole.head);
  }
}

TEST(HttpHeadParser, SplitCrlfBetweenFeeds) {
  HttpHeadParser p(Kind::response);
  std::size_t used = 0;
  EXPECT_EQ(p.feed("HTTP/1.1 101 OK\r", used), HttpParseStatus::incomplete);
  EXPECT_EQ(p.feed("\nA: b\r", used), HttpParseStatus::incomplete);
  EXPECT_EQ(p.feed("\n\r", used), HttpParseStatus::incomplete);
  EXPECT_EQ(p.feed("\nrest", used), HttpParseStatus::complete);
  EXPECT_EQ(used, 1u);
  EXPECT_EQ(p.head().get("a"), "b");
  EXPECT_EQ(p.head().reason, "OK");
}

TEST(HttpHeadParser, LeftoverBytesNotConsumed) {
  const std::string frames = "\x81\x05hello\x88\x00";
  const std::string input = std::string(kRequest) + frames;
  HttpHeadParser p(Kind::request);
  std::size_t used = 0;
  ASSERT_EQ(p.feed(input, used), HttpParseStatus::complete);
  EXPECT_EQ(used, kRequest.size());
  EXPECT_EQ(std::string_view(input).substr(used), frames);
}

TEST(HttpHeadParser, EmptyFeedIsHarmless) {
  HttpHeadParser p(Kind::request);
  std::size_t used = 99;
  EXPECT_EQ(p.feed("", used), HttpParseStatus::incomplete);
  EXPECT_EQ(used, 0u);
}

TEST(HttpHeadParser, StickyAfterComplete) {
  HttpHeadParser p(Kind::request);
  std::size_t used = 0;
  ASSERT_EQ(p.feed("GET / HTTP/1.1\r\n\r\n", used), HttpParseStatus::complete);
  EXPECT_EQ(p.feed("GET /other HTTP/1.1\r\nX: y\r\n\r\n", used), HttpParseStatus::complete);
  EXPECT_EQ(used, 0u);
  EXPECT_EQ(p.head().target, "/");
  EXPECT_TRUE(p.head().headers.empty());
}

TEST(HttpHeadParser, StickyAfterError) {
  HttpHeadParser p(Kind::request);
  std::size_t used = 0;
  ASSERT_EQ(p.feed("BAD LINE\r\n", used), HttpParseStatus::error);
  EXPECT_EQ(p.error_status(), 400);
  EXPECT_FALSE(p.error().empty());
  EXPECT_EQ(p.feed("GET / HTTP/1.1\r\n\r\n", used), HttpParseStatus::error);
  EXPECT_EQ(used, 0u);
  EXPECT_EQ(p.status(), HttpParseStatus::error);
}

TEST(HttpHeadParser, ResetAllowsReuse) {
  HttpHeadParser p(Kind::request);
  std::size_t used = 0;
  ASSERT_EQ(p.feed("garbage\r\n", used), HttpParseStatus::error);
  p.reset();
  EXPECT_EQ(p.status(), HttpParseStatus::incomplete);
  EXPECT_EQ(p.error_status(), 0);
  EXPECT_TRUE(p.error().empty());
  ASSERT_EQ(p.feed("GET /x HTTP/1.1\r\nA: 1\r\n\r\n", used), HttpParseStatus::complete);
  EXPECT_EQ(p.head().target, "/x");
  p.reset();
  EXPECT_TRUE(p.head().headers.empty());
  EXPECT_EQ(p.head().target, "");
  ASSERT_EQ(p.feed("GET /y HTTP/1.1\r\n\r\n", used), HttpParseStatus::complete);
  EXPECT_EQ(p.head().target, "/y");
}

TEST(HttpHeadParser, MutableHeadAccessor) {
  HttpHeadParser p(Kind::request);
  std::size_t used = 0;
  ASSERT_EQ(p.feed("GET / HTTP/1.1\r\nA: 1\r\n\r\n", used), HttpParseStatus::complete);
  p.head().headers.push_back({"B", "2"});
  EXPECT_EQ(p.head().get("b"), "2");
}

// ---- limits ----------------------------------------------------------------

TEST(HttpHeadLimits, HeaderLineAtLimitAndOneOver) {
  HttpLimits limits;
  limits.max_line_bytes = 100;
  EXPECT_EQ(req_status(request_with_header_line(100), limits), HttpParseStatus::complete);
  EXPECT_EQ(req_error(request_with_header_line(101), limits), 431);
  // Bare-LF terminators don't change what counts.
  std::string lf = "GET / HTTP/1.1\nX: " + std::string(97, 'a') + "\n\n";
  EXPECT_EQ(req_status(lf, limits), HttpParseStatus::complete);
}

TEST(HttpHeadLimits, RequestLineAtLimitAndOneOver) {
  HttpLimits limits;
  limits.max_line_bytes = 64;
  // "GET " + target + " HTTP/1.1" == 64 bytes
  const std::string at = "GET /" + std::string(64 - 4 - 9 - 1, 'p') + " HTTP/1.1";
  ASSERT_EQ(at.size(), 64u);
  EXPECT_EQ(req_status(at + "\r\n\r\n", limits), HttpParseStatus::complete);
  const std::string over = "GET /" + std::string(64 - 4 - 9, 'p') + " HTTP/1.1";
  EXPECT_EQ(req_error(over + "\r\n\r\n", limits), 414);
}

TEST(HttpHeadLimits, StatusLineTooLong) {
  HttpLimits limits;
  limits.max_line_bytes = 20;
  EXPECT_EQ(parse_all(Kind::response, "HTTP/1.1 101 abcdefg\r\n\r\n", limits).status,
            HttpParseStatus::complete);  // exactly 20
  EXPECT_EQ(resp_error("HTTP/1.1 101 abcdefgh\r\n\r\n", limits), 400);
}

TEST(HttpHeadLimits, LongLineFailsBeforeLineEnd) {
  HttpLimits limits;
  limits.max_line_bytes = 1000;
  limits.max_head_bytes = 1 << 30;
  HttpHeadParser p(Kind::request, limits);
  std::size_t used = 0;
  ASSERT_EQ(p.feed("GET / HTTP/1.1\r\nX: ", used), HttpParseStatus::incomplete);
  const std::string chunk(1 << 20, 'a');  // 1 MiB with no line end
  EXPECT_EQ(p.feed(chunk, used), HttpParseStatus::error);
  EXPECT_EQ(p.error_status(), 431);
  EXPECT_LE(used, 1000u);  // stopped as soon as the limit was crossed
}

TEST(HttpHeadLimits, LongLineFailsByteByByte) {
  HttpLimits limits;
  limits.max_line_bytes = 10;
  HttpHeadParser p(Kind::request, limits);
  std::size_t used = 0;
  int fed = 0;
  HttpParseStatus st = HttpParseStatus::incomplete;
  while (st == HttpParseStatus::incomplete && fed < 100) {
    st = p.feed("A", used);
    ++fed;
  }
  EXPECT_EQ(st, HttpParseStatus::error);
  EXPECT_EQ(fed, 11);
  EXPECT_EQ(p.error_status(), 414);
}

TEST(HttpHeadLimits, CrAtLineLimitIsNotCounted) {
  HttpLimits limits;
  limits.max_line_bytes = 10;
  HttpHeadParser p(Kind::request, limits);
  std::size_t used = 0;
  ASSERT_EQ(p.feed("GET / HTTP/1.1\r\n", used), HttpParseStatus::error);  // 14 > 10
  HttpHeadParser q(Kind::response, limits);
  ASSERT_EQ(q.feed("HTTP/1.1 1", used), HttpParseStatus::incomplete);
  EXPECT_EQ(q.feed("\r", used), HttpParseStatus::incomplete);
}

TEST(HttpHeadLimits, HeaderCountAtLimitAndOneOver) {
  HttpLimits limits;
  limits.max_header_count = 5;
  auto make = [](int n) {
    std::string s = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < n; ++i) s += "H" + std::to_string(i) + ": v\r\n";
    return s + "\r\n";
  };
  auto ok = parse_all(Kind::request, make(5), limits);
  EXPECT_EQ(ok.status, HttpParseStatus::complete);
  EXPECT_EQ(ok.head.headers.size(), 5u);
  EXPECT_EQ(req_error(make(6), limits), 431);
}

TEST(HttpHeadLimits, DefaultHeaderCount) {
  std::string s = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 64; ++i) s += "H: v\r\n";
  EXPECT_EQ(req_status(s + "\r\n"), HttpParseStatus::complete);
  EXPECT_EQ(req_error(s + "H: v\r\n\r\n"), 431);
}

TEST(HttpHeadLimits, HeadBytesAtLimitAndOneOver) {
  const std::string head = "GET / HTTP/1.1\r\nHost: example\r\n\r\n";
  HttpLimits limits;
  limits.max_head_bytes = head.size();
  auto r = parse_all(Kind::request, head + "extra", limits);
  EXPECT_EQ(r.status, HttpParseStatus::complete);
  EXPECT_EQ(r.consumed, head.size());
  limits.max_head_bytes = head.size() - 1;
  EXPECT_EQ(req_error(head, limits), 431);
}

TEST(HttpHeadLimits, HeadBytesCountAcrossFeeds) {
  HttpLimits limits;
  limits.max_head_bytes = 40;
  HttpHeadParser p(Kind::request, limits);
  std::size_t used = 0;
  ASSERT_EQ(p.feed("GET / HTTP/1.1\r\n", used), HttpParseStatus::incomplete);  // 16
  ASSERT_EQ(p.feed("A: 12345678901234567\r\n", used), HttpParseStatus::incomplete);  // 38
  EXPECT_EQ(p.feed("B", used), HttpParseStatus::incomplete);  // 39
  EXPECT_EQ(p.feed(":", used), HttpParseStatus::incomplete);  // 40
  EXPECT_EQ(p.feed(" ", used), HttpParseStatus::error);       // 41
  EXPECT_EQ(p.error_status(), 431);
}

// ---- helpers ------------------------------------------------------------------

TEST(HttpHelpers, Iequals) {
  EXPECT_TRUE(iequals("Upgrade", "upgrade"));
  EXPECT_TRUE(iequals("WEBSOCKET", "websocket"));
  EXPECT_TRUE(iequals("", ""));
  EXPECT_TRUE(iequals("a-1_~", "A-1_~"));
  EXPECT_FALSE(iequals("upgrade", "upgrades"));
  EXPECT_FALSE(iequals("a", "b"));
  EXPECT_FALSE(iequals("@", "`"));  // 0x40 vs 0x60: not letters
  EXPECT_FALSE(iequals("[", "{"));
  EXPECT_FALSE(iequals("\xc3\xa9", "\xc3\x89"));  // no Unicode folding
}

TEST(HttpHelpers, ListContainsToken) {
  EXPECT_TRUE(list_contains_token("keep-alive, Upgrade", "upgrade"));
  EXPECT_TRUE(list_contains_token("Upgrade", "upgrade"));
  EXPECT_TRUE(list_contains_token("  upgrade\t", "Upgrade"));
  EXPECT_TRUE(list_contains_token("a,b,  UPGRADE  ,c", "upgrade"));
  EXPECT_TRUE(list_contains_token(",,upgrade,", "upgrade"));
  EXPECT_TRUE(list_contains_token("websocket", "websocket"));
  EXPECT_FALSE(list_contains_token("keep-alive", "upgrade"));
  EXPECT_FALSE(list_contains_token("upgrades", "upgrade"));
  EXPECT_FALSE(list_contains_token("up grade", "upgrade"));
  EXPECT_FALSE(list_contains_token("keep-alive upgrade", "upgrade"));
  EXPECT_FALSE(list_contains_token("", "upgrade"));
  EXPECT_FALSE(list_contains_token("websocket/13", "websocket"));
}
