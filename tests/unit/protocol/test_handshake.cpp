#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/protocol/handshake.hpp"

using namespace duplex::protocol;
using Kind = HttpHeadParser::Kind;

namespace {

constexpr std::string_view kSampleKey = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr std::string_view kSampleAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

HttpHead parse(Kind kind, std::string_view text) {
  HttpHeadParser p(kind);
  std::size_t used = 0;
  const auto st = p.feed(text, used);
  EXPECT_EQ(st, HttpParseStatus::complete) << p.error() << "\n" << text;
  return p.head();
}

// A valid request; `replace` swaps one header line (by name prefix) or, with
// an empty replacement, removes it; `add` appends lines.
std::string request(std::string_view drop_name = {}, std::string_view replacement = {},
                    std::string_view add = {}, std::string_view request_line = "GET /chat HTTP/1.1") {
  const std::vector<std::pair<std::string, std::string>> lines = {
      {"Host", "server.example.com"},
      {"Upgrade", "websocket"},
      {"Connection", "Upgrade"},
      {"Sec-WebSocket-Key", std::string(kSampleKey)},
      {"Origin", "http://example.com"},
      {"Sec-WebSocket-Version", "13"},
  };
  std::string s(request_line);
  s += "\r\n";
  for (const auto& [n, v] : lines) {
    if (n == drop_name) {
      if (!replacement.empty()) {
        s += replacement;
        s += "\r\n";
      }
      continue;
    }
    s += n + ": " + v + "\r\n";
  }
  s += add;
  s += "\r\n";
  return s;
}

struct Validation {
  bool ok;
  UpgradeRequest req;
  HandshakeRejection rej;
  HttpHead head;  // keeps the views alive
};

// Validates into a heap-stable result (the views point into result.head).
std::unique_ptr<Validation> validate(std::string_view text) {
  auto v = std::make_unique<Validation>();
  v->head = parse(Kind::request, text);
  v->ok = validate_upgrade_request(v->head, v->req, v->rej);
  return v;
}

void expect_reject(std::string_view text, int status, std::string_view msg_part = {}) {
  auto v = validate(text);
  EXPECT_FALSE(v->ok) << text;
  EXPECT_EQ(v->rej.status, status) << text << "\n" << v->rej.message;
  EXPECT_FALSE(v->rej.message.empty());
  if (!msg_part.empty()) {
    EXPECT_NE(v->rej.message.find(msg_part), std::string::npos) << v->rej.message;
  }
}

std::string response_for(std::string_view key, std::string_view extra = {},
                         std::string_view status_line = "HTTP/1.1 101 Switching Protocols") {
  std::string s(status_line);
  s += "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ";
  s += compute_accept_key(key);
  s += "\r\n";
  s += extra;
  s += "\r\n";
  return s;
}

bool client_validate(std::string_view text, std::string_view key,
                     const std::vector<std::string>& offered, UpgradeResponse& out,
                     std::string& error) {
  const auto head = parse(Kind::response, text);
  return validate_upgrade_response(head, key, offered, out, error);
}

}  // namespace

// ---- base64 / accept key ---------------------------------------------------

TEST(HandshakeCrypto, RfcSampleAcceptKey) {
  EXPECT_EQ(compute_accept_key(kSampleKey), kSampleAccept);
}

TEST(HandshakeCrypto, AcceptKeyOfOtherKeys) {
  // Values cross-checked with Python: base64(sha1(key + GUID)).
  EXPECT_EQ(compute_accept_key("x3JJHMbDL1EzLkh9GBhXDw=="), "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
  EXPECT_EQ(compute_accept_key("").size(), 28u);
}

TEST(HandshakeBase64, EncodeRfc4648Vectors) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64_encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64_encode(std::string_view("\xff\xfe\x00", 3)), "//4A");
}

TEST(HandshakeBase64, DecodeRfc4648Vectors) {
  std::string out;
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""}, {"Zg==", "f"}, {"Zm8=", "fo"}, {"Zm9v", "foo"},
      {"Zm9vYg==", "foob"}, {"Zm9vYmE=", "fooba"}, {"Zm9vYmFy", "foobar"}};
  for (const auto& [enc, dec] : vectors) {
    ASSERT_TRUE(base64_decode(enc, out)) << enc;
    EXPECT_EQ(out, dec);
  }
  ASSERT_TRUE(base64_decode("//4A", out));
  EXPECT_EQ(out, std::string("\xff\xfe\x00", 3));
  ASSERT_TRUE(base64_decode(kSampleKey, out));
  EXPECT_EQ(out, "the sample nonce");
}

TEST(HandshakeBase64, DecodeRejectsInvalid) {
  std::string out = "junk";
  EXPECT_FALSE(base64_decode("Zg=", out));          // bad length
  EXPECT_TRUE(out.empty());
  EXPECT_FALSE(base64_decode("Zg", out));           // missing padding
  EXPECT_FALSE(base64_decode("Zm9", out));
  EXPECT_FALSE(base64_decode("Z===", out));         // too much padding
  EXPECT_FALSE(base64_decode("====", out));
  EXPECT_FALSE(base64_decode("Zg==Zg==", out));     // padding in the middle
  EXPECT_FALSE(base64_decode("Z=g=", out));
  EXPECT_FALSE(base64_decode("Zm=v", out));
  EXPECT_FALSE(base64_decode("Zh==", out));         // non-zero pad bits
  EXPECT_FALSE(base64_decode("Zm9=", out));
  EXPECT_FALSE(base64_decode("Zm 9", out));         // whitespace
  EXPECT_FALSE(base64_decode("Zm9v\n", out));
  EXPECT_FALSE(base64_decode("Zm-_", out));         // base64url alphabet
  EXPECT_FALSE(base64_decode("Zm9*", out));
  EXPECT_FALSE(base64_decode(std::string_view("Zm\0v", 4), out));
  EXPECT_FALSE(base64_decode("Zm9\xc3", out));
}

TEST(HandshakeBase64, RoundTripAllLengths) {
  std::string bytes;
  for (int n = 0; n < 70; ++n) {
    std::string out;
    ASSERT_TRUE(base64_decode(base64_encode(bytes), out));
    EXPECT_EQ(out, bytes);
    bytes.push_back(static_cast<char>(n * 37 + 11));
  }
}

// ---- server: validate_upgrade_request -----------------------------------------

TEST(HandshakeServer, AcceptsRfcSampleRequest) {
  auto v = validate(request());
  ASSERT_TRUE(v->ok) << v->rej.message;
  EXPECT_EQ(v->req.target, "/chat");
  EXPECT_EQ(v->req.host, "server.example.com");
  EXPECT_EQ(v->req.key, kSampleKey);
  EXPECT_EQ(v->req.origin, "http://example.com");
  EXPECT_TRUE(v->req.subprotocols.empty());
  EXPECT_TRUE(v->req.extensions.empty());
}

TEST(HandshakeServer, OriginIsOptional) {
  auto v = validate(request("Origin"));
  ASSERT_TRUE(v->ok) << v->rej.message;
  EXPECT_EQ(v->req.origin, "");
  expect_reject(request({}, {}, "Origin: http://evil.example\r\n"), 400, "Origin");
}

TEST(HandshakeServer, CaseInsensitiveNamesAndTokens) {
  const std::string text =
      "GET / HTTP/1.1\r\nhost: h\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, UPGRADE\r\n"
      "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n";
  auto v = validate(text);
  EXPECT_TRUE(v->ok) << v->rej.message;
}

TEST(HandshakeServer, MultipleConnectionTokensAndHeaders) {
  EXPECT_TRUE(validate(request("Connection", "Connection: keep-alive, Upgrade"))->ok);
  EXPECT_TRUE(validate(request("Connection", "Connection: Upgrade, keep-alive"))->ok);
  EXPECT_TRUE(
      validate(request("Connection", "Connection: keep-alive\r\nConnection: upgrade"))->ok);
  EXPECT_TRUE(validate(request("Upgrade", "Upgrade: h2c, websocket"))->ok);
  EXPECT_TRUE(validate(request("Upgrade", "Upgrade: h2c\r\nUpgrade: websocket"))->ok);
}

TEST(HandshakeServer, MethodMustBeGet) {
  expect_reject(request({}, {}, {}, "POST /chat HTTP/1.1"), 400, "method must be GET");
  expect_reject(request({}, {}, {}, "get /chat HTTP/1.1"), 400, "GET");
  expect_reject(request({}, {}, {}, "HEAD /chat HTTP/1.1"), 400);
}

TEST(HandshakeServer, HttpVersion) {
  expect_reject(request({}, {}, {}, "GET /chat HTTP/1.0"), 400, "HTTP/1.1");
  EXPECT_TRUE(validate(request({}, {}, {}, "GET /chat HTTP/1.2"))->ok);
}

TEST(HandshakeServer, Host) {
  expect_reject(request("Host"), 400, "Host");
  expect_reject(request("Host", "Host: a\r\nHost: b"), 400, "Host");
  expect_reject(request("Host", "Host: a\r\nhost: a"), 400, "Host");
  expect_reject(request("Host", "Host:"), 400, "Host");
  auto v = validate(request("Host", "Host: example.com:8080"));
  ASSERT_TRUE(v->ok);
  EXPECT_EQ(v->req.host, "example.com:8080");
}

TEST(HandshakeServer, Upgrade) {
  expect_reject(request("Upgrade"), 400, "Upgrade");
  expect_reject(request("Upgrade", "Upgrade: h2c"), 400, "Upgrade");
  expect_reject(request("Upgrade", "Upgrade: websockets"), 400, "Upgrade");
  expect_reject(request("Upgrade", "Upgrade: web socket"), 400, "Upgrade");
}

TEST(HandshakeServer, Connection) {
  expect_reject(request("Connection"), 400, "Connection");
  expect_reject(request("Connection", "Connection: keep-alive"), 400, "Connection");
  expect_reject(request("Connection", "Connection: close"), 400, "Connection");
  expect_reject(request("Connection", "Connection: upgraded"), 400, "Connection");
}

TEST(HandshakeServer, VersionMissingOrWrongIs426) {
  expect_reject(request("Sec-WebSocket-Version"), 426);
  expect_reject(request("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8"), 426);
  expect_reject(request("Sec-WebSocket-Version", "Sec-WebSocket-Version: 12"), 426);
  expect_reject(request("Sec-WebSocket-Version", "Sec-WebSocket-Version: 13, 8"), 426);
  expect_reject(request("Sec-WebSocket-Version", "Sec-WebSocket-Version:"), 426);
  expect_reject(request("Sec-WebSocket-Version", "Sec-WebSocket-Version: 013"), 426);
}

TEST(HandshakeServer, VersionDuplicates) {
  expect_reject(
      request("Sec-WebSocket-Version", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 8"),
      400);
  expect_reject(
      request("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Version: 13"),
      400);
  EXPECT_TRUE(validate(request("Sec-WebSocket-Version",
                               "Sec-WebSocket-Version: 13\r\nsec-websocket-version: 13"))
                  ->ok);
}

TEST(HandshakeServer, Version8Gives426ResponseWithVersionHeader) {
  auto v = validate(request("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8"));
  ASSERT_FALSE(v->ok);
  ASSERT_EQ(v->rej.status, 426);
  const auto resp = build_rejection_response(v->rej);
  EXPECT_EQ(resp.rfind("HTTP/1.1 426 Upgrade Required\r\n", 0), 0u) << resp;
  EXPECT_NE(resp.find("\r\nSec-WebSocket-Version: 13\r\n"), std::string::npos) << resp;
  const auto head = parse(Kind::response, resp);
  EXPECT_EQ(head.status, 426);
  EXPECT_EQ(head.get("Sec-WebSocket-Version"), "13");
}

TEST(HandshakeServer, CheckOrder) {
  // Method before everything, version (426) before key.
  auto v = validate("POST / HTTP/1.0\r\n\r\n");
  EXPECT_EQ(v->rej.message, "method must be GET");
  v = validate("GET / HTTP/1.0\r\n\r\n");
  EXPECT_NE(v->rej.message.find("HTTP/1.1"), std::string::npos);
  v = validate("GET / HTTP/1.1\r\n\r\n");
  EXPECT_NE(v->rej.message.find("Host"), std::string::npos);
  v = validate("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_NE(v->rej.message.find("Upgrade"), std::string::npos);
  v = validate("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_NE(v->rej.message.find("Connection"), std::string::npos);
  v = validate("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n");
  EXPECT_EQ(v->rej.status, 426);
  v = validate(
      "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n");
  EXPECT_EQ(v->rej.status, 400);
  EXPECT_NE(v->rej.message.find("Sec-WebSocket-Key"), std::string::npos);
}

TEST(HandshakeServer, KeyMissingOrDuplicate) {
  expect_reject(request("Sec-WebSocket-Key"), 400, "Sec-WebSocket-Key");
  expect_reject(request("Sec-WebSocket-Key",
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="),
                400, "Sec-WebSocket-Key");
}

TEST(HandshakeServer, KeyMustBeBase64Of16Bytes) {
  auto with_key = [](std::string_view key) {
    return request("Sec-WebSocket-Key", "Sec-WebSocket-Key: " + std::string(key));
  };
  EXPECT_TRUE(validate(with_key("AAAAAAAAAAAAAAAAAAAAAA=="))->ok);
  EXPECT_TRUE(validate(with_key("/////////////////////w=="))->ok);
  expect_reject(with_key(""), 400, "Sec-WebSocket-Key");
  expect_reject(with_key("dGhlIHNhbXBsZSBub25jZQ"), 400);           // no padding
  expect_reject(with_key("dGhlIHNhbXBsZSBub25jZQ="), 400);          // length 23
  expect_reject(with_key("dGhlIHNhbXBsZSBub25jZQ==="), 400);        // length 25
  expect_reject(with_key("dGhlIHNhbXBsZSBub25j"), 400);             // 15 bytes, 20 chars
  expect_reject(with_key(base64_encode(std::string(15, 'x'))), 400);  // 15 bytes
  expect_reject(with_key(base64_encode(std::string(17, 'x'))), 400);  // 17 bytes, 24 chars
  expect_reject(with_key(base64_encode(std::string(18, 'x'))), 400);  // 24 chars, no padding
  expect_reject(with_key("dGhlIHNhbXBsZSBub25jZR=="), 400);         // non-zero pad bits
  expect_reject(with_key("dGhlIHNhbXBsZSBub25jZ*=="), 400);         // bad char
  expect_reject(with_key("dGhlIHNhbXBsZSBub25j-Q=="), 400);         // base64url
  expect_reject(with_key("dGhlIHNhbX Bsb25jZQ=="), 400);
  expect_reject(with_key("dGhlIHNhbXBsZSBub25=ZQ=="), 400);         // padding inside
  expect_reject(with_key("the sample nonce"), 400);
}

TEST(HandshakeServer, BodyIsRefused) {
  expect_reject(request({}, {}, "Content-Length: 5\r\n"), 400, "body");
  expect_reject(request({}, {}, "Transfer-Encoding: chunked\r\n"), 400, "body");
  EXPECT_TRUE(validate(request({}, {}, "Content-Length: 0\r\n"))->ok);
}

TEST(HandshakeServer, Subprotocols) {
  auto v = validate(request({}, {},
                            "Sec-WebSocket-Protocol: chat, superchat\r\n"
                            "Sec-WebSocket-Protocol: v2.json\r\n"));
  ASSERT_TRUE(v->ok) << v->rej.message;
  EXPECT_EQ(v->req.subprotocols, (std::vector<std::string>{"chat", "superchat", "v2.json"}));
  v = validate(request({}, {}, "Sec-WebSocket-Protocol:chat,,  mqtt ,\r\n"));
  ASSERT_TRUE(v->ok) << v->rej.message;
  EXPECT_EQ(v->req.subprotocols, (std::vector<std::string>{"chat", "mqtt"}));
}

TEST(HandshakeServer, BadSubprotocols) {
  expect_reject(request({}, {}, "Sec-WebSocket-Protocol: chat room\r\n"), 400, "Protocol");
  expect_reject(request({}, {}, "Sec-WebSocket-Protocol: a/b\r\n"), 400);
  expect_reject(request({}, {}, "Sec-WebSocket-Protocol: \"chat\"\r\n"), 400);
  expect_reject(request({}, {}, "Sec-WebSocket-Protocol: chat; q=1\r\n"), 400);
  expect_reject(request({}, {}, "Sec-WebSocket-Protocol:\r\n"), 400);
  expect_reject(request({}, {}, "Sec-WebSocket-Protocol: ,\r\n"), 400);
  expect_reject(request({}, {}, "Sec-WebSocket-Protocol: chat, chat\r\n"), 400);
  expect_reject(request({}, {}, "Sec-WebSocket-Protocol: \xc3\xa9\r\n"), 400);
}

TEST(HandshakeServer, Extensions) {
  auto v = validate(request({}, {},
                            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                            "Sec-WebSocket-Extensions: x-foo, permessage-deflate\r\n"));
  ASSERT_TRUE(v->ok) << v->rej.message;
  ASSERT_EQ(v->req.extensions.size(), 3u);
  EXPECT_EQ(v->req.extensions[0].name, "permessage-deflate");
  ASSERT_EQ(v->req.extensions[0].params.size(), 1u);
  EXPECT_EQ(v->req.extensions[0].params[0].name, "client_max_window_bits");
  EXPECT_FALSE(v->req.extensions[0].params[0].value.has_value());
  EXPECT_EQ(v->req.extensions[1].name, "x-foo");
  EXPECT_EQ(v->req.extensions[2].name, "permessage-deflate");
  EXPECT_TRUE(validate(request({}, {}, "Sec-WebSocket-Extensions:\r\n"))->ok);
}

TEST(HandshakeServer, BadExtensions) {
  expect_reject(request({}, {}, "Sec-WebSocket-Extensions: permessage-deflate;\r\n"), 400,
                "Extensions");
  expect_reject(request({}, {}, "Sec-WebSocket-Extensions: a; b=\"x y\"\r\n"), 400);
  expect_reject(request({}, {}, "Sec-WebSocket-Extensions: a; b=\"x\r\n"), 400);
  expect_reject(request({}, {},
                        "Sec-WebSocket-Extensions: a; b=\"1\r\nSec-WebSocket-Extensions: 2\"\r\n"),
                400);
}

TEST(HandshakeServer, ValidateResetsOutput) {
  auto v = validate(request({}, {}, "Sec-WebSocket-Protocol: chat\r\n"));
  ASSERT_TRUE(v->ok);
  HttpHead bad = parse(Kind::request, "GET / HTTP/1.1\r\n\r\n");
  EXPECT_FALSE(validate_upgrade_request(bad, v->req, v->rej));
  EXPECT_TRUE(v->req.subprotocols.empty());
  EXPECT_TRUE(v->req.key.empty());
}

// ---- server: responses -------------------------------------------------------

TEST(HandshakeServer, AcceptResponseExact) {
  const auto resp = build_accept_response(kSampleKey, {});
  EXPECT_EQ(resp,
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "\r\n");
}

TEST(HandshakeServer, AcceptResponseWithOptions) {
  AcceptOptions opts;
  opts.subprotocol = "chat";
  opts.extensions = "permessage-deflate; server_no_context_takeover";
  opts.extra_headers = {{"Set-Cookie", "a=b"}, {"X-Server", "duplex"}};
  const auto resp = build_accept_response(kSampleKey, opts);
  EXPECT_EQ(resp,
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "Sec-WebSocket-Protocol: chat\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
            "Set-Cookie: a=b\r\n"
            "X-Server: duplex\r\n"
            "\r\n");
}

TEST(HandshakeServer, AcceptResponseNeverEmitsCrLf) {
  AcceptOptions opts;
  opts.subprotocol = "chat\r\nX-Evil: 1";
  opts.extensions = "a\r\nX-Evil: 2";
  opts.extra_headers = {{"X-Ok", "fine"},
                        {"X-Bad", "v\r\nX-Evil: 3"},
                        {"X-Bad2", "v\nX-Evil: 4"},
                        {"X-Bad3", "v\rX"},
                        {"X-Bad4", std::string("v\0x", 3)},
                        {"Bad Name", "v"},
                        {"X-Evil: 5\r\nY", "v"},
                        {"", "v"}};
  const auto resp = build_accept_response(kSampleKey, opts);
  EXPECT_EQ(resp.find("X-Evil"), std::string::npos) << resp;
  EXPECT_EQ(resp.find("X-Bad"), std::string::npos) << resp;
  EXPECT_EQ(resp.find("Bad Name"), std::string::npos) << resp;
  EXPECT_NE(resp.find("X-Ok: fine\r\n"), std::string::npos);
  EXPECT_EQ(resp.find("Sec-WebSocket-Protocol"), std::string::npos);
  EXPECT_EQ(resp.find("Sec-WebSocket-Extensions"), std::string::npos);
  EXPECT_EQ(resp.find('\0'), std::string::npos);
  // Every CR is followed by LF and every LF preceded by CR.
  for (std::size_t i = 0; i < resp.size(); ++i) {
    if (resp[i] == '\r') {
      EXPECT_EQ(resp[i + 1], '\n');
    }
    if (resp[i] == '\n') {
      EXPECT_EQ(resp[i - 1], '\r');
    }
  }
  const auto head = parse(Kind::response, resp);
  EXPECT_EQ(head.headers.size(), 4u);
}

TEST(HandshakeServer, AcceptResponseDropsNonTokenSubprotocol) {
  AcceptOptions opts;
  opts.subprotocol = "two words";
  EXPECT_EQ(build_accept_response(kSampleKey, opts).find("Sec-WebSocket-Protocol"),
            std::string::npos);
}

TEST(HandshakeServer, AcceptResponseDropsManagedExtraHeaders) {
  AcceptOptions opts;
  opts.extra_headers = {{"connection", "close"},
                        {"Sec-WebSocket-Accept", "forged"},
                        {"Upgrade", "h2c"},
                        {"Content-Length", "10"},
                        {"X-Kept", "1"}};
  const auto resp = build_accept_response(kSampleKey, opts);
  const auto head = parse(Kind::response, resp);
  EXPECT_EQ(head.count("Connection"), 1u);
  EXPECT_EQ(head.count("Upgrade"), 1u);
  EXPECT_EQ(head.count("Sec-WebSocket-Accept"), 1u);
  EXPECT_FALSE(head.has("Content-Length"));
  EXPECT_EQ(head.get("X-Kept"), "1");
}

TEST(HandshakeServer, RejectionResponse) {
  const auto resp = build_rejection_response({400, "method must be GET"});
  EXPECT_EQ(resp,
            "HTTP/1.1 400 Bad Request\r\n"
            "Content-Type: text/plain\r\n"
            "Content-Length: 19\r\n"
            "Connection: close\r\n"
            "\r\n"
            "method must be GET\n");
  EXPECT_EQ(resp.find("Sec-WebSocket-Version"), std::string::npos);
  HttpHeadParser p(Kind::response);
  std::size_t used = 0;
  ASSERT_EQ(p.feed(resp, used), HttpParseStatus::complete);
  EXPECT_EQ(resp.size() - used, 19u);
  EXPECT_EQ(p.head().get("Content-Length"), "19");
}

TEST(HandshakeServer, RejectionReasonPhrases) {
  const std::pair<int, const char*> cases[] = {
      {400, "Bad Request"},         {401, "Unauthorized"},
      {403, "Forbidden"},           {404, "Not Found"},
      {405, "Method Not Allowed"},  {414, "URI Too Long"},
      {426, "Upgrade Required"},    {431, "Request Header Fields Too Large"},
      {500, "Internal Server Error"}, {503, "Service Unavailable"},
      {505, "HTTP Version Not Supported"}};
  for (const auto& [code, phrase] : cases) {
    const auto resp = build_rejection_response({code, "x"});
    const std::string line = "HTTP/1.1 " + std::to_string(code) + " " + phrase + "\r\n";
    EXPECT_EQ(resp.rfind(line, 0), 0u) << resp;
    EXPECT_EQ(resp.find("Sec-WebSocket-Version") != std::string::npos, code == 426);
  }
  EXPECT_EQ(build_rejection_response({0, "x"}).rfind("HTTP/1.1 500 ", 0), 0u);
  EXPECT_EQ(build_rejection_response({1234, "x"}).rfind("HTTP/1.1 500 ", 0), 0u);
  EXPECT_EQ(build_rejection_response({-7, "x"}).rfind("HTTP/1.1 500 ", 0), 0u);
  EXPECT_EQ(build_rejection_response({418, "x"}).rfind("HTTP/1.1 418 ", 0), 0u);
}

TEST(HandshakeServer, RejectionBodyWithNewlinesStaysInBody) {
  const auto resp = build_rejection_response({403, "line1\r\nX-Evil: 1"});
  HttpHeadParser p(Kind::response);
  std::size_t used = 0;
  ASSERT_EQ(p.feed(resp, used), HttpParseStatus::complete);
  EXPECT_FALSE(p.head().has("X-Evil"));
  EXPECT_EQ(std::to_string(resp.size() - used), p.head().get("Content-Length"));
}

TEST(HandshakeServer, SelectSubprotocol) {
  const std::vector<std::string> offered = {"v2", "v1", "chat"};
  EXPECT_EQ(select_subprotocol(offered, {"chat", "v1"}), "v1");
  EXPECT_EQ(select_subprotocol(offered, {"chat"}), "chat");
  EXPECT_EQ(select_subprotocol(offered, {"V1"}), "");  // case-sensitive
  EXPECT_EQ(select_subprotocol(offered, {}), "");
  EXPECT_EQ(select_subprotocol({}, {"chat"}), "");
}

// ---- client -------------------------------------------------------------------

TEST(HandshakeClient, MakeClientKey) {
  std::array<std::uint8_t, 16> bytes{};
  for (std::size_t i = 0; i < 16; ++i) bytes[i] = static_cast<std::uint8_t>("the sample nonce"[i]);
  EXPECT_EQ(make_client_key(bytes), kSampleKey);
  std::array<std::uint8_t, 16> ff;
  ff.fill(0xff);
  const auto key = make_client_key(ff);
  EXPECT_EQ(key, "/////////////////////w==");
  std::string decoded;
  ASSERT_TRUE(base64_decode(key, decoded));
  EXPECT_EQ(decoded.size(), 16u);
}

TEST(HandshakeClient, BuildUpgradeRequestMinimal) {
  ClientRequestOptions o;
  o.host = "example.com";
  EXPECT_EQ(build_upgrade_request(o, kSampleKey),
            "GET / HTTP/1.1\r\n"
            "Host: example.com\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "\r\n");
}

TEST(HandshakeClient, BuildUpgradeRequestFull) {
  ClientRequestOptions o;
  o.host = "example.com:8080";
  o.target = "/chat?x=1";
  o.origin = "http://example.com";
  o.subprotocols = {"chat", "superchat"};
  o.extensions = "permessage-deflate; client_max_window_bits";
  o.extra_headers = {{"Authorization", "Bearer t"}};
  const auto req = build_upgrade_request(o, kSampleKey);
  EXPECT_EQ(req,
            "GET /chat?x=1 HTTP/1.1\r\n"
            "Host: example.com:8080\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Origin: http://example.com\r\n"
            "Sec-WebSocket-Protocol: chat, superchat\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            "Authorization: Bearer t\r\n"
            "\r\n");
  // And our own server accepts it.
  auto v = validate(req);
  ASSERT_TRUE(v->ok) << v->rej.message;
  EXPECT_EQ(v->req.target, "/chat?x=1");
  EXPECT_EQ(v->req.subprotocols, o.subprotocols);
  ASSERT_EQ(v->req.extensions.size(), 1u);
}

TEST(HandshakeClient, BuildUpgradeRequestDropsInjection) {
  ClientRequestOptions o;
  o.host = "example.com";
  o.target = "/a b\r\nX-Evil: 1";
  o.origin = "http://x\r\nX-Evil: 2";
  o.subprotocols = {"ok", "bad\r\nX-Evil: 3", "two words"};
  o.extensions = "x\nX-Evil: 4";
  o.extra_headers = {{"X-Evil", "a\r\nb"}, {"X-Evil: 5\r\n", "v"}, {"X-Fine", "yes"}};
  const auto req = build_upgrade_request(o, kSampleKey);
  EXPECT_EQ(req.rfind("GET /a%20b%0D%0AX-Evil:%201 HTTP/1.1\r\n", 0), 0u) << req;
  const auto head = parse(Kind::request, req);
  EXPECT_FALSE(head.has("X-Evil"));
  EXPECT_FALSE(head.has("Origin"));
  EXPECT_FALSE(head.has("Sec-WebSocket-Extensions"));
  EXPECT_EQ(head.get("Sec-WebSocket-Protocol"), "ok");
  EXPECT_EQ(head.get("X-Fine"), "yes");
}

TEST(HandshakeClient, BuildUpgradeRequestDropsManagedExtraHeaders) {
  ClientRequestOptions o;
  o.host = "h";
  o.extra_headers = {{"Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA=="},
                     {"HOST", "other"},
                     {"Sec-WebSocket-Version", "8"},
                     {"Transfer-Encoding", "chunked"},
                     {"Cookie", "a=b"}};
  const auto req = build_upgrade_request(o, kSampleKey);
  auto v = validate(req);
  ASSERT_TRUE(v->ok) << v->rej.message;
  EXPECT_EQ(v->req.key, kSampleKey);
  EXPECT_EQ(v->req.host, "h");
  EXPECT_EQ(v->head.get("Cookie"), "a=b");
}

TEST(HandshakeClient, BuildUpgradeRequestEmptyTargetIsSlash) {
  ClientRequestOptions o;
  o.host = "h";
  o.target = "";
  EXPECT_EQ(build_upgrade_request(o, kSampleKey).rfind("GET / HTTP/1.1\r\n", 0), 0u);
}

TEST(HandshakeClient, AcceptsValidResponse) {
  UpgradeResponse out;
  std::string err;
  ASSERT_TRUE(client_validate(response_for(kSampleKey), kSampleKey, {}, out, err)) << err;
  EXPECT_TRUE(out.subprotocol.empty());
  EXPECT_TRUE(out.extensions.empty());
  EXPECT_TRUE(err.empty());
}

TEST(HandshakeClient, RfcSampleResponse) {
  UpgradeResponse out;
  std::string err;
  const std::string resp =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n";
  ASSERT_TRUE(client_validate(resp, kSampleKey, {"chat", "superchat"}, out, err)) << err;
  EXPECT_EQ(out.subprotocol, "chat");
}

TEST(HandshakeClient, ServerAcceptRoundTrip) {
  AcceptOptions opts;
  opts.subprotocol = "superchat";
  opts.extensions = "permessage-deflate; server_max_window_bits=10";
  const auto resp = build_accept_response(kSampleKey, opts);
  UpgradeResponse out;
  std::string err;
  ASSERT_TRUE(client_validate(resp, kSampleKey, {"chat", "superchat"}, out, err)) << err;
  EXPECT_EQ(out.subprotocol, "superchat");
  ASSERT_EQ(out.extensions.size(), 1u);
  EXPECT_EQ(out.extensions[0].name, "permessage-deflate");
  ASSERT_EQ(out.extensions[0].params.size(), 1u);
  EXPECT_EQ(out.extensions[0].params[0].value, "10");
}

TEST(HandshakeClient, CaseInsensitiveTokens) {
  UpgradeResponse out;
  std::string err;
  std::string resp =
      "HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nconnection: keep-alive, UPGRADE\r\n"
      "sec-websocket-accept: " + compute_accept_key(kSampleKey) + "\r\n\r\n";
  EXPECT_TRUE(client_validate(resp, kSampleKey, {}, out, err)) << err;
}

TEST(HandshakeClient, Non101) {
  UpgradeResponse out;
  std::string err;
  EXPECT_FALSE(client_validate(response_for(kSampleKey, {}, "HTTP/1.1 403 Forbidden"),
                               kSampleKey, {}, out, err));
  EXPECT_EQ(err, "server answered 403 Forbidden, not 101");
  EXPECT_FALSE(client_validate("HTTP/1.1 200 OK\r\n\r\n", kSampleKey, {}, out, err));
  EXPECT_NE(err.find("200 OK"), std::string::npos);
  EXPECT_FALSE(client_validate("HTTP/1.1 426\r\nSec-WebSocket-Version: 13\r\n\r\n", kSampleKey,
                               {}, out, err));
  EXPECT_EQ(err, "server answered 426, not 101");
}

TEST(HandshakeClient, MissingUpgradeOrConnection) {
  UpgradeResponse out;
  std::string err;
  const auto accept = compute_accept_key(kSampleKey);
  EXPECT_FALSE(client_validate("HTTP/1.1 101 X\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
                                   accept + "\r\n\r\n",
                               kSampleKey, {}, out, err));
  EXPECT_NE(err.find("Upgrade"), std::string::npos);
  EXPECT_FALSE(client_validate("HTTP/1.1 101 X\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: " + accept + "\r\n\r\n",
                               kSampleKey, {}, out, err));
  EXPECT_FALSE(client_validate("HTTP/1.1 101 X\r\nUpgrade: websocket\r\n"
                               "Sec-WebSocket-Accept: " + accept + "\r\n\r\n",
                               kSampleKey, {}, out, err));
  EXPECT_NE(err.find("Connection"), std::string::npos);
  EXPECT_FALSE(client_validate("HTTP/1.1 101 X\r\nUpgrade: websocket\r\nConnection: close\r\n"
                               "Sec-WebSocket-Accept: " + accept + "\r\n\r\n",
                               kSampleKey, {}, out, err));
}

TEST(HandshakeClient, WrongAccept) {
  UpgradeResponse out;
  std::string err;
  EXPECT_FALSE(client_validate(response_for("AAAAAAAAAAAAAAAAAAAAAA=="), kSampleKey, {}, out, err));
  EXPECT_NE(err.find("Sec-WebSocket-Accept"), std::string::npos);
  // Missing.
  EXPECT_FALSE(client_validate("HTTP/1.1 101 X\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                               kSampleKey, {}, out, err));
  EXPECT_NE(err.find("Sec-WebSocket-Accept"), std::string::npos);
  // Duplicated (even if both are right).
  EXPECT_FALSE(client_validate(
      response_for(kSampleKey, "Sec-WebSocket-Accept: " + std::string(kSampleAccept) + "\r\n"),
      kSampleKey, {}, out, err));
  // Case matters in base64.
  std::string lower(kSampleAccept);
  lower[0] = 'S';
  EXPECT_FALSE(client_validate(
      "HTTP/1.1 101 X\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
          lower + "\r\n\r\n",
      kSampleKey, {}, out, err));
  // The raw key echoed back.
  EXPECT_FALSE(client_validate(
      "HTTP/1.1 101 X\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
          std::string(kSampleKey) + "\r\n\r\n",
      kSampleKey, {}, out, err));
}

TEST(HandshakeClient, Subprotocol) {
  UpgradeResponse out;
  std::string err;
  EXPECT_FALSE(client_validate(response_for(kSampleKey, "Sec-WebSocket-Protocol: mqtt\r\n"),
                               kSampleKey, {"chat"}, out, err));
  EXPECT_NE(err.find("mqtt"), std::string::npos);
  EXPECT_FALSE(client_validate(response_for(kSampleKey, "Sec-WebSocket-Protocol: chat\r\n"),
                               kSampleKey, {}, out, err));  // none offered
  EXPECT_FALSE(client_validate(response_for(kSampleKey, "Sec-WebSocket-Protocol: Chat\r\n"),
                               kSampleKey, {"chat"}, out, err));  // case-sensitive
  EXPECT_FALSE(client_validate(response_for(kSampleKey, "Sec-WebSocket-Protocol: chat, v2\r\n"),
                               kSampleKey, {"chat", "v2"}, out, err));
  EXPECT_FALSE(client_validate(response_for(kSampleKey, "Sec-WebSocket-Protocol:\r\n"),
                               kSampleKey, {"chat"}, out, err));
  EXPECT_FALSE(client_validate(
      response_for(kSampleKey, "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n"),
      kSampleKey, {"chat"}, out, err));
  ASSERT_TRUE(client_validate(response_for(kSampleKey, "Sec-WebSocket-Protocol: v2\r\n"),
                              kSampleKey, {"chat", "v2"}, out, err))
      << err;
  EXPECT_EQ(out.subprotocol, "v2");
}

TEST(HandshakeClient, Extensions) {
  UpgradeResponse out;
  std::string err;
  ASSERT_TRUE(client_validate(
      response_for(kSampleKey,
                   "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
                   "client_max_window_bits=\"12\"\r\n"),
      kSampleKey, {}, out, err))
      << err;
  ASSERT_EQ(out.extensions.size(), 1u);
  ASSERT_EQ(out.extensions[0].params.size(), 2u);
  EXPECT_EQ(out.extensions[0].params[1].value, "12");
  EXPECT_FALSE(client_validate(
      response_for(kSampleKey, "Sec-WebSocket-Extensions: permessage-deflate; =1\r\n"),
      kSampleKey, {}, out, err));
  EXPECT_NE(err.find("Extensions"), std::string::npos);
  EXPECT_TRUE(out.extensions.empty());
}

TEST(HandshakeClient, FullRoundTripWithGeneratedKey) {
  std::array<std::uint8_t, 16> bytes{};
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i * 17 + 3);
  const auto key = make_client_key(bytes);
  ClientRequestOptions o;
  o.host = "localhost:9001";
  o.target = "/ws";
  o.subprotocols = {"a", "b"};
  const auto req_text = build_upgrade_request(o, key);
  auto v = validate(req_text);
  ASSERT_TRUE(v->ok) << v->rej.message;
  AcceptOptions a;
  a.subprotocol = select_subprotocol(v->req.subprotocols, {"b"});
  EXPECT_EQ(a.subprotocol, "b");
  const auto resp = build_accept_response(v->req.key, a);
  UpgradeResponse out;
  std::string err;
  ASSERT_TRUE(client_validate(resp, key, o.subprotocols, out, err)) << err;
  EXPECT_EQ(out.subprotocol, "b");
}
