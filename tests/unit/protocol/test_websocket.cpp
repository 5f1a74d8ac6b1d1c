// RFC 6455 protocol core: every receive-side rule, the close handshake, and
// the send side, driven with frames encoded by hand in this file (so the
// encoder under test is not used to check itself).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/protocol/websocket.hpp"

using namespace duplex::protocol;

namespace {

constexpr std::uint8_t FIN = 0x80, RSV1 = 0x40, RSV2 = 0x20, RSV3 = 0x10;
constexpr std::uint8_t OP_CONT = 0x0, OP_TEXT = 0x1, OP_BIN = 0x2, OP_CLOSE = 0x8, OP_PING = 0x9, OP_PONG = 0xA;
enum class Len { minimal, force16, force64 };

constexpr MaskKey kKey{0x37, 0xfa, 0x21, 0x3d};  // the RFC 6455 §5.7 key

std::string bytes(std::initializer_list<int> list) {
  std::string s;
  for (int b : list) s.push_back(static_cast<char>(b));
  return s;
}

// A frame header with any (possibly illegal) declared length.
std::string header(std::uint8_t b0, std::uint64_t len, const MaskKey* key, Len form = Len::minimal) {
  std::string h;
  h.push_back(static_cast<char>(b0));
  const std::uint8_t m = key ? 0x80 : 0;
  if (form == Len::minimal && len < 126) {
    h.push_back(static_cast<char>(m | len));
  } else if (form == Len::force16 || (form == Len::minimal && len <= 0xFFFF)) {
    h.push_back(static_cast<char>(m | 126));
    h.push_back(static_cast<char>(len >> 8));
    h.push_back(static_cast<char>(len));
  } else {
    h.push_back(static_cast<char>(m | 127));
    for (int i = 7; i >= 0; --i) h.push_back(static_cast<char>(len >> (8 * i)));
  }
  if (key) h.append(reinterpret_cast<const char*>(key->data()), 4);
  return h;
}

// What a client sends (masked): input for a server.
std::string cframe(std::uint8_t b0, std::string_view payload, MaskKey key = kKey, Len form = Len::minimal) {
  std::string f = header(b0, payload.size(), &key, form);
  for (std::size_t i = 0; i < payload.size(); ++i) f.push_back(static_cast<char>(payload[i] ^ key[i % 4]));
  return f;
}

// What a server sends (unmasked): input for a client.
std::string sframe(std::uint8_t b0, std::string_view payload, Len form = Len::minimal) {
  return header(b0, payload.size(), nullptr, form) + std::string(payload);
}

std::string frame_for(Role receiver, std::uint8_t b0, std::string_view payload, Len form = Len::minimal) {
  return receiver == Role::server ? cframe(b0, payload, kKey, form) : sframe(b0, payload, form);
}

std::string close_payload(std::uint16_t code, std::string_view reason = {}) {
  std::string p;
  p.push_back(static_cast<char>(code >> 8));
  p.push_back(static_cast<char>(code));
  p += reason;
  return p;
}

// Frames found in the protocol's output, decoded by hand.
struct OutFrame {
  bool fin = false;
  std::uint8_t rsv = 0;
  std::uint8_t op = 0;
  bool masked = false;
  MaskKey key{};
  std::string payload;
};

std::vector<OutFrame> parse_out(std::string_view s) {
  std::vector<OutFrame> frames;
  std::size_t at = 0;
  while (at < s.size()) {
    if (s.size() - at < 2) {
      ADD_FAILURE() << "truncated frame header in output";
      break;
    }
    OutFrame f;
    const auto b0 = static_cast<std::uint8_t>(s[at]);
    const auto b1 = static_cast<std::uint8_t>(s[at + 1]);
    f.fin = b0 & 0x80;
    f.rsv = b0 & 0x70;
    f.op = b0 & 0x0F;
    f.masked = b1 & 0x80;
    std::uint64_t len = b1 & 0x7F;
    at += 2;
    if (len == 126) {
      len = (std::uint64_t{static_cast<std::uint8_t>(s[at])} << 8) | static_cast<std::uint8_t>(s[at + 1]);
      EXPECT_GE(len, 126u) << "non-minimal 16-bit length in output";
      at += 2;
    } else if (len == 127) {
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<std::uint8_t>(s[at + i]);
      EXPECT_GT(len, 0xFFFFu) << "non-minimal 64-bit length in output";
      at += 8;
    }
    if (f.masked) {
      std::memcpy(f.key.data(), s.data() + at, 4);
      at += 4;
    }
    if (s.size() - at < len) {
      ADD_FAILURE() << "truncated frame payload in output";
      break;
    }
    f.payload.assign(s.data() + at, len);
    if (f.masked)
      for (std::size_t i = 0; i < f.payload.size(); ++i) f.payload[i] = static_cast<char>(f.payload[i] ^ f.key[i % 4]);
    at += len;
    frames.push_back(std::move(f));
  }
  return frames;
}

std::uint16_t code_of(const std::string& close_payload_bytes) {
  return static_cast<std::uint16_t>((static_cast<std::uint8_t>(close_payload_bytes[0]) << 8) |
                                    static_cast<std::uint8_t>(close_payload_bytes[1]));
}

struct Recorder : EventHandler {
  std::vector<std::string> events;
  std::string last_error_what;
  void on_message(Opcode kind, std::string_view payload) override {
    events.push_back((kind == Opcode::text ? "text:" : kind == Opcode::binary ? "binary:" : "??:") +
                     std::string(payload));
  }
  void on_ping(std::string_view payload) override { events.push_back("ping:" + std::string(payload)); }
  void on_pong(std::string_view payload) override { events.push_back("pong:" + std::string(payload)); }
  void on_close(std::uint16_t code, std::string_view reason) override {
    events.push_back("close:" + std::to_string(code) + ":" + std::string(reason));
  }
  void on_protocol_error(std::uint16_t code, std::string_view what) override {
    events.push_back("error:" + std::to_string(code));
    last_error_what = std::string(what);
  }
};

// Copies each piece into its own exactly sized heap buffer, so that the
// sanitizers see any read past a piece.
void receive_piece(WebSocket& ws, std::string_view piece, EventHandler& h, std::string& out) {
  std::vector<std::uint8_t> buf(piece.begin(), piece.end());
  ws.receive(buf.empty() ? nullptr : buf.data(), buf.size(), h, out);
}

struct Peer {
  Limits limits;
  WebSocket ws;
  Recorder rec;
  std::string out;
  explicit Peer(Role role, Limits l = {}, std::uint64_t seed = 42) : limits(l), ws(role, &limits, seed) {}
  void feed(std::string_view data) { receive_piece(ws, data, rec, out); }
  void feed_split(std::string_view data, std::size_t at) {
    feed(data.substr(0, at));
    feed(data.substr(at));
  }
  void feed_bytewise(std::string_view data) {
    for (std::size_t i = 0; i < data.size(); ++i) feed(data.substr(i, 1));
  }
  std::vector<OutFrame> out_frames() const { return parse_out(out); }
};

const char* role_name(Role r) { return r == Role::server ? "server" : "client"; }

// The connection failed with `code`: the close frame is the last thing in
// `out`, masked exactly when we are a client, and nothing else happens.
void expect_failed(Peer& p, std::uint16_t code) {
  SCOPED_TRACE(role_name(p.ws.role()));
  ASSERT_FALSE(p.rec.events.empty());
  EXPECT_EQ(p.rec.events.back(), "error:" + std::to_string(code)) << p.rec.last_error_what;
  EXPECT_EQ(p.ws.state(), WebSocket::State::closed);
  EXPECT_TRUE(p.ws.failed());
  EXPECT_TRUE(p.ws.close_sent());
  EXPECT_TRUE(p.ws.wants_transport_close());
  const auto frames = p.out_frames();
  ASSERT_FALSE(frames.empty());
  const OutFrame& f = frames.back();
  EXPECT_EQ(f.op, OP_CLOSE);
  EXPECT_TRUE(f.fin);
  EXPECT_EQ(f.rsv, 0);
  EXPECT_EQ(f.masked, p.ws.role() == Role::client);
  ASSERT_GE(f.payload.size(), 2u);
  EXPECT_EQ(code_of(f.payload), code);
  // A reason, if any, fits and is UTF-8 (is_valid_utf8 is tested on its own).
  EXPECT_LE(f.payload.size(), 125u);
  EXPECT_TRUE(is_valid_utf8(reinterpret_cast<const std::uint8_t*>(f.payload.data()) + 2, f.payload.size() - 2));
  // Nothing more is processed.
  const auto events = p.rec.events;
  const auto out = p.out;
  p.feed(frame_for(p.ws.role(), FIN | OP_TEXT, "after"));
  p.feed(frame_for(p.ws.role(), FIN | OP_PING, "after"));
  EXPECT_EQ(p.rec.events, events);
  EXPECT_EQ(p.out, out);
  EXPECT_FALSE(p.ws.send_text(p.out, "x"));
  EXPECT_FALSE(p.ws.ping(p.out));
  EXPECT_FALSE(p.ws.close(p.out));
  EXPECT_EQ(p.out, out);
}

void expect_fails_both_roles(std::uint8_t b0, std::string_view payload, std::uint16_t code, Len form = Len::minimal) {
  for (Role role : {Role::server, Role::client}) {
    Peer p(role);
    p.feed(frame_for(role, b0, payload, form));
    expect_failed(p, code);
  }
}

constexpr Role kRoles[] = {Role::server, Role::client};

std::string pattern(std::size_t n, unsigned seed = 1) {
  std::string s(n, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

}  // namespace

// ---- RFC 6455 §5.7 examples ---------------------------------------------------

// Connections on one thread share the buffer an assembled message leaves
// behind: each message is still exactly its own bytes, whichever connection
// had the buffer before and however large its message was.
TEST(WebSocketMessageBuffer, AssembledMessagesOfConnectionsTakingTurnsAreTheirOwn) {
  Peer a(Role::server), b(Role::server);
  const std::string big = pattern(100000, 7), small = "xy", huge = pattern(300000, 9);
  for (int round = 0; round < 3; ++round) {
    a.feed(frame_for(Role::server, OP_BIN, big.substr(0, 60000)));
    b.feed(frame_for(Role::server, OP_BIN, small.substr(0, 1)));  // both mid-message at once
    a.feed(frame_for(Role::server, FIN | OP_CONT, big.substr(60000)));
    b.feed(frame_for(Role::server, FIN | OP_CONT, small.substr(1)));
    const std::string whole = frame_for(Role::server, FIN | OP_BIN, huge);
    b.feed_split(whole, whole.size() / 2);  // assembled across two reads, larger than what is kept
  }
  ASSERT_EQ(a.rec.events.size(), 3u);
  ASSERT_EQ(b.rec.events.size(), 6u);
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(a.rec.events[round], "binary:" + big) << round;
    EXPECT_EQ(b.rec.events[2 * round], "binary:" + small) << round;
    EXPECT_EQ(b.rec.events[2 * round + 1], "binary:" + huge) << round;
  }
  EXPECT_EQ(a.ws.buffered_message_bytes(), 0u);
  EXPECT_EQ(b.ws.buffered_message_bytes(), 0u);
}

TEST(WebSocketRfcExamples, MaskedHelloToServer) {
  Peer p(Role::server);
  p.feed(bytes({0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}));
  EXPECT_EQ(p.rec.events, std::vector<std::string>{"text:Hello"});
  EXPECT_TRUE(p.out.empty());
  EXPECT_TRUE(p.ws.is_open());
  EXPECT_EQ(p.ws.buffered_message_bytes(), 0u);
}

TEST(WebSocketRfcExamples, UnmaskedHelloToClient) {
  Peer p(Role::client);
  p.feed(bytes({0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}));
  EXPECT_EQ(p.rec.events, std::vector<std::string>{"text:Hello"});
  EXPECT_TRUE(p.out.empty());
}

TEST(WebSocketRfcExamples, FragmentedUnmaskedHello) {
  Peer p(Role::client);
  p.feed(bytes({0x01, 0x03, 0x48, 0x65, 0x6c}));
  EXPECT_TRUE(p.rec.events.empty());
  EXPECT_EQ(p.ws.buffered_message_bytes(), 3u);
  p.feed(bytes({0x80, 0x02, 0x6c, 0x6f}));
  EXPECT_EQ(p.rec.events, std::vector<std::string>{"text:Hello"});
  EXPECT_EQ(p.ws.buffered_message_bytes(), 0u);
}

TEST(WebSocketRfcExamples, UnmaskedPingAnsweredWithMaskedPong) {
  Peer p(Role::client);
  p.feed(bytes({0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}));
  EXPECT_EQ(p.rec.events, std::vector<std::string>{"ping:Hello"});
  const auto frames = p.out_frames();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].op, OP_PONG);
  EXPECT_TRUE(frames[0].fin);
  EXPECT_TRUE(frames[0].masked);
  EXPECT_EQ(frames[0].payload, "Hello");
}

TEST(WebSocketRfcExamples, MaskedPingAnsweredWithUnmaskedPong) {
  Peer p(Role::server);
  p.feed(bytes({0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}));
  EXPECT_EQ(p.rec.events, std::vector<std::string>{"ping:Hello"});
  // The server's pong is exactly the RFC's unmasked pong example.
  EXPECT_EQ(p.out, bytes({0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}));
}

TEST(WebSocketRfcExamples, MaskedPongToServer) {
  Peer p(Role::server);
  p.feed(bytes({0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}));
  EXPECT_EQ(p.rec.events, std::vector<std::string>{"pong:Hello"});
  EXPECT_TRUE(p.out.empty());
}

TEST(WebSocketRfcExamples, Binary256With16BitLength) {
  const std::string payload = pattern(256);
  Peer p(Role::client);
  p.feed(bytes({0x82, 0x7E, 0x01, 0x00}) + payload);
  EXPECT_EQ(p.rec.events, std::vector<std::string>{"binary:" + payload});
}

TEST(WebSocketRfcExamples, Binary64KiBWith64BitLength) {
  const std::string payload = pattern(65536);
  Peer p(Role::client);
  p.feed(bytes({0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00}) + payload);
  EXPECT_EQ(p.rec.events, std::vector<std::string>{"binary:" + payload});
}

// ---- frame parsing -------------------------------------------------------------

TEST(WebSocketFrames, EachDataAndControlOpcode) {
  for (Role role : kRoles) {
    SCOPED_TRACE(role_name(role));
    Peer p(role);
    p.feed(frame_for(role, FIN | OP_TEXT, "t"));
    p.feed(frame_for(role, FIN | OP_BIN, std::string("\x00\xff", 2)));
    p.feed(frame_for(role, OP_TEXT, "a"));
    p.feed(frame_for(role, OP_CONT, "b"));
    p.feed(frame_for(role, FIN | OP_CONT, "c"));
    p.feed(frame_for(role, FIN | OP_PING, "pi"));
    p.feed(frame_for(role, FIN | OP_PONG, "po"));
    p.feed(frame_for(role, FIN | OP_CLOSE, close_payload(1000, "bye")));
    EXPECT_EQ(p.rec.events, (std::vector<std::string>{"text:t", "binary:" + std::string("\x00\xff", 2), "text:abc",
                                                      "ping:pi", "pong:po", "close:1000:bye"}));
    const auto frames = p.out_frames();
    ASSERT_EQ(frames.size(), 2u);
    EXPECT_EQ(frames[0].op, OP_PONG);
    EXPECT_EQ(frames[0].payload, "pi");
    EXPECT_EQ(frames[1].op, OP_CLOSE);
    EXPECT_EQ(frames[1].payload, close_payload(1000));
    for (const auto& f : frames) EXPECT_EQ(f.masked, role == Role::client);
  }
}

TEST(WebSocketFrames, LengthBoundaries) {
  for (Role role : kRoles) {
    for (std::size_t n : {0u, 1u, 124u, 125u, 126u, 127u, 65534u, 65535u, 65536u, 65537u, 200000u}) {
      SCOPED_TRACE(std::string(role_name(role)) + " n=" + std::to_string(n));
      const std::string payload = pattern(n, static_cast<unsigned>(n));
      const std::string f = frame_for(role, FIN | OP_BIN, payload);
      const std::size_t expected_header = (n < 126 ? 2 : n <= 0xFFFF ? 4 : 10) + (role == Role::server ? 4 : 0);
      EXPECT_EQ(f.size(), expected_header + n);
      Peer p(role);
      p.feed(f);
      ASSERT_EQ(p.rec.events.size(), 1u);
      EXPECT_TRUE(p.rec.events[0] == "binary:" + payload);
      // Split header/payload.
      Peer q(role);
      q.feed_split(f, expected_header - 1);
      ASSERT_EQ(q.rec.events.size(), 1u);
      EXPECT_TRUE(q.rec.events[0] == "binary:" + payload);
    }
  }
}

TEST(WebSocketFrames, NonMinimal16BitLengthIsProtocolError) {
  for (std::size_t n : {0u, 1u, 125u}) {
    SCOPED_TRACE(n);
    expect_fails_both_roles(FIN | OP_BIN, pattern(n), close_code::protocol_error, Len::force16);
  }
  // The minimal 16-bit lengths are fine.
  for (Role role : kRoles) {
    Peer p(role);
    p.feed(frame_for(role, FIN | OP_BIN, pattern(126), Len::force16));
    EXPECT_EQ(p.rec.events.size(), 1u);
    EXPECT_FALSE(p.ws.failed());
  }
}

TEST(WebSocketFrames, NonMinimal64BitLengthIsProtocolError) {
  for (std::size_t n : {0u, 5u, 125u, 126u, 65535u}) {
    SCOPED_TRACE(n);
    expect_fails_both_roles(FIN | OP_BIN, pattern(n), close_code::protocol_error, Len::force64);
  }
  for (Role role : kRoles) {
    Peer p(role);
    p.feed(frame_for(role, FIN | OP_BIN, pattern(65536), Len::force64));
    EXPECT_EQ(p.rec.events.size(), 1u);
    EXPECT_FALSE(p.ws.failed());
  }
}

TEST(WebSocketFrames, NonMinimalLengthRejectedFromHeaderAlone) {
  for (Role role : kRoles) {
    Peer p(role);
    MaskKey k = kKey;
    p.feed(header(FIN | OP_BIN, 10, role == Role::server ? &k : nullptr, Len::force64));  // no payload yet
    expect_failed(p, close_code::protocol_error);
  }
}

TEST(WebSocketFrames, SixtyFourBitLengthWithMsbSetIsProtocolError) {
  Limits huge;
  huge.max_frame_size = SIZE_MAX;
  huge.max_message_size = SIZE_MAX;
  for (Role role : kRoles) {
    for (std::uint64_t len : {0x8000000000000000ull, 0xFFFFFFFFFFFFFFFFull, 0x8000000000010000ull}) {
      Peer p(role, huge);
      MaskKey k = kKey;
      p.feed(header(FIN | OP_BIN, len, role == Role::server ? &k : nullptr, Len::force64) + "abc");
      expect_failed(p, close_code::protocol_error);
    }
  }
}

TEST(WebSocketFrames, UnknownOpcodesAreProtocolErrors) {
  for (std::uint8_t op : {0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
    SCOPED_TRACE(int(op));
    expect_fails_both_roles(FIN | op, "x", close_code::protocol_error);
    expect_fails_both_roles(FIN | op, "", close_code::protocol_error);
  }
}

TEST(WebSocketFrames, ReservedBitsWithoutExtensionAreProtocolErrors) {
  for (std::uint8_t rsv : {RSV1, RSV2, RSV3, std::uint8_t(RSV1 | RSV2 | RSV3)}) {
    for (std::uint8_t op : {OP_TEXT, OP_BIN, OP_PING, OP_PONG, OP_CLOSE}) {
      SCOPED_TRACE(std::to_string(rsv) + "/" + std::to_string(op));
      expect_fails_both_roles(FIN | rsv | op, op == OP_CLOSE ? close_payload(1000) : "x", close_code::protocol_error);
    }
  }
}

TEST(WebSocketFrames, ReservedBitsOnContinuationWithoutExtension) {
  for (Role role : kRoles) {
    Peer p(role);
    p.feed(frame_for(role, OP_TEXT, "a"));
    p.feed(frame_for(role, FIN | RSV1 | OP_CONT, "b"));
    expect_failed(p, close_code::protocol_error);
  }
}

TEST(WebSocketFrames, Rsv1AllowedOnlyOnFirstDataFrameWithDeflate) {
  DeflateParams params;
  for (Role role : kRoles) {
    SCOPED_TRACE(role_name(role));
    PerMessageDeflate deflate(params, role == Role::server);
    const std::string hello_deflated = bytes({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00});
    {
      Peer p(role);
      p.ws.set_deflate(&deflate);
      p.feed(frame_for(role, FIN | RSV1 | OP_TEXT, hello_deflated));
      EXPECT_EQ(p.rec.events, std::vector<std::string>{"text:Hello"});
      EXPECT_FALSE(p.ws.failed());
    }
    for (std::uint8_t op : {OP_PING, OP_PONG, OP_CLOSE}) {
      PerMessageDeflate d(params, role == Role::server);
      Peer p(role);
      p.ws.set_deflate(&d);
      p.feed(frame_for(role, FIN | RSV1 | op, op == OP_CLOSE ? close_payload(1000) : ""));
      expect_failed(p, close_code::protocol_error);
    }
    {
      PerMessageDeflate d(params, role == Role::server);
      Peer p(role);
      p.ws.set_deflate(&d);
      p.feed(frame_for(role, RSV1 | OP_TEXT, bytes({0xf2, 0x48, 0xcd})));
      p.feed(frame_for(role, FIN | RSV1 | OP_CONT, bytes({0xc9, 0xc9, 0x07, 0x00})));
      expect_failed(p, close_code::protocol_error);
    }
    for (std::uint8_t rsv : {RSV2, RSV3}) {
      PerMessageDeflate d(params, role == Role::server);
      Peer p(role);
      p.ws.set_deflate(&d);
      p.feed(frame_for(role, FIN | rsv | OP_TEXT, "x"));
      expect_failed(p, close_code::protocol_error);
    }
  }
}

TEST(WebSocketFrames, ServerRejectsUnmaskedFrames) {
  for (std::uint8_t op : {OP_TEXT, OP_BIN, OP_PING, OP_PONG, OP_CLOSE}) {
    Peer p(Role::server);
    p.feed(sframe(FIN | op, op == OP_CLOSE ? close_payload(1000) : "x"));
    expect_failed(p, close_code::protocol_error);
  }
  Peer p(Role::server);
  p.feed(sframe(FIN | OP_TEXT, ""));
  expect_failed(p, close_code::protocol_error);
}

TEST(WebSocketFrames, ClientRejectsMaskedFrames) {
  for (std::uint8_t op : {OP_TEXT, OP_BIN, OP_PING, OP_PONG, OP_CLOSE}) {
    Peer p(Role::client);
    p.feed(cframe(FIN | op, op == OP_CLOSE ? close_payload(1000) : "x"));
    expect_failed(p, close_code::protocol_error);
  }
  Peer p(Role::client);
  p.feed(cframe(FIN | OP_TEXT, ""));
  expect_failed(p, close_code::protocol_error);
}

TEST(WebSocketFrames, ControlFramePayloadLimit) {
  for (std::uint8_t op : {OP_PING, OP_PONG, OP_CLOSE}) {
    SCOPED_TRACE(int(op));
    // 125 is fine.
    for (Role role : kRoles) {
      Peer p(role);
      const std::string payload = op == OP_CLOSE ? close_payload(1000, std::string(123, 'r')) : std::string(125, 'p');
      p.feed(frame_for(role, FIN | op, payload));
      EXPECT_FALSE(p.ws.failed());
      ASSERT_EQ(p.rec.events.size(), 1u);
    }
    // 126 (16-bit length) and 65536 (64-bit length) are not.
    expect_fails_both_roles(FIN | op, std::string(126, 'p'), close_code::protocol_error);
    expect_fails_both_roles(FIN | op, std::string(65536, 'p'), close_code::protocol_error);
  }
}

TEST(WebSocketFrames, FragmentedControlFramesAreProtocolErrors) {
  for (std::uint8_t op : {OP_PING, OP_PONG, OP_CLOSE}) {
    expect_fails_both_roles(op, op == OP_CLOSE ? close_payload(1000) : "x", close_code::protocol_error);
    expect_fails_both_roles(op, "", close_code::protocol_error);
  }
}

TEST(WebSocketFrames, ContinuationWithoutStartIsProtocolError) {
  expect_fails_both_roles(FIN | OP_CONT, "x", close_code::protocol_error);
  expect_fails_both_roles(OP_CONT, "x", close_code::protocol_error);
  expect_fails_both_roles(FIN | OP_CONT, "", close_code::protocol_error);
  // Also after a complete message.
  for (Role role : kRoles) {
    Peer p(role);
    p.feed(frame_for(role, OP_TEXT, "a") + frame_for(role, FIN | OP_CONT, "b") +
           frame_for(role, FIN | OP_CONT, "c"));
    EXPECT_EQ(p.rec.events.front(), "text:ab");
    expect_failed(p, close_code::protocol_error);
  }
}

TEST(WebSocketFrames, NewDataFrameInsideFragmentedMessageIsProtocolError) {
  for (Role role : kRoles) {
    for (std::uint8_t first : {OP_TEXT, OP_BIN}) {
      for (std::uint8_t second : {OP_TEXT, OP_BIN}) {
        for (std::uint8_t fin : {std::uint8_t(0), FIN}) {
          Peer p(role);
          p.feed(frame_for(role, first, "a"));
          p.feed(frame_for(role, fin | second, "b"));
          expect_failed(p, close_code::protocol_error);
          EXPECT_EQ(p.rec.events.size(), 1u);
        }
      }
    }
  }
}

TEST(WebSocketFrames, ControlFramesBetweenFragments) {
  for (Role role : kRoles) {
    SCOPED_TRACE(role_name(role));
    Peer p(role);
    p.feed(frame_for(role, OP_TEXT, "Hel"));
    p.feed(frame_for(role, FIN | OP_PING, "p1"));
    p.feed(frame_for(role, OP_CONT, "l"));
    p.feed(frame_for(role, FIN | OP_PONG, "p2"));
    p.feed(frame_for(role, FIN | OP_PING, ""));
    p.feed(frame_for(role, FIN | OP_CONT, "o"));
    EXPECT_EQ(p.rec.events, (std::vector<std::string>{"ping:p1", "pong:p2", "ping:", "text:Hello"}));
    const auto frames = p.out_frames();
    ASSERT_EQ(frames.size(), 2u);
    EXPECT_EQ(frames[0].op, OP_PONG);
    EXPECT_EQ(frames[0].payload, "p1");
    EXPECT_EQ(frames[1].op, OP_PONG);
    EXPECT_EQ(frames[1].payload, "");
  }
}

TEST(WebSocketFrames, AutoPongCanBeDisabled) {
  Peer p(Role::server);
  p.ws.set_auto_pong(false);
  p.feed(cframe(FIN | OP_PING, "x"));
  EXPECT_EQ(p.rec.events, std::vector<std::string>{"ping:x"});
  EXPECT_TRUE(p.out.empty());
}

TEST(WebSocketFrames, EmptyMessagesAndFragments) {
  for (Role role : kRoles) {
    Peer p(role);
    p.feed(frame_for(role, FIN | OP_TEXT, ""));
    p.feed(frame_for(role, FIN | OP_BIN, ""));
    p.feed(frame_for(role, OP_TEXT, "") + frame_for(role, OP_CONT, "") + frame_for(role, FIN | OP_CONT, ""));
    p.feed(frame_for(role, OP_BIN, "") + frame_for(role, OP_CONT, "x") + frame_for(role, FIN | OP_CONT, ""));
    EXPECT_EQ(p.rec.events, (std::vector<std::string>{"text:", "binary:", "text:", "binary:x"}));
    EXPECT_FALSE(p.ws.failed());
  }
}

TEST(WebSocketFrames, ManyFramesInOneRead) {
  for (Role role : kRoles) {
    std::string stream;
    std::vector<std::string> expected;
    for (int i = 0; i < 200; ++i) {
      const std::string payload = pattern(static_cast<std::size_t>(i * 7 % 300), static_cast<unsigned>(i));
      stream += frame_for(role, FIN | OP_BIN, payload);
      expected.push_back("binary:" + payload);
    }
    Peer p(role);
    p.feed(stream);
    EXPECT_EQ(p.rec.events, expected);
  }
}

// ---- limits --------------------------------------------------------------------

TEST(WebSocketLimits, MaxFrameSize) {
  Limits l;
  l.max_frame_size = 1000;
  l.max_message_size = 100000;
  for (Role role : kRoles) {
    SCOPED_TRACE(role_name(role));
    {
      Peer p(role, l);
      p.feed(frame_for(role, FIN | OP_BIN, pattern(1000)));
      EXPECT_EQ(p.rec.events.size(), 1u);
      EXPECT_FALSE(p.ws.failed());
    }
    {
      // Rejected from the header alone, before any payload arrives.
      Peer p(role, l);
      MaskKey k = kKey;
      p.feed(header(FIN | OP_BIN, 1001, role == Role::server ? &k : nullptr));
      expect_failed(p, close_code::message_too_big);
    }
    {
      // A fragment over the frame limit, in a message under the message limit.
      Peer p(role, l);
      p.feed(frame_for(role, OP_TEXT, std::string(500, 'a')));
      MaskKey k = kKey;
      p.feed(header(OP_CONT, 1001, role == Role::server ? &k : nullptr));
      expect_failed(p, close_code::message_too_big);
    }
    {
      // A huge 64-bit length.
      Peer p(role, l);
      MaskKey k = kKey;
      p.feed(header(FIN | OP_BIN, 0x7FFFFFFFFFFFFFFFull, role == Role::server ? &k : nullptr));
      expect_failed(p, close_code::message_too_big);
    }
  }
}

TEST(WebSocketLimits, MaxFrameSizeDoesNotApplyToControlFrames) {
  Limits l;
  l.max_frame_size = 10;
  l.max_message_size = 10;
  Peer p(Role::server, l);
  p.feed(cframe(FIN | OP_PING, std::string(125, 'p')));
  EXPECT_FALSE(p.ws.failed());
  EXPECT_EQ(p.rec.events.size(), 1u);
}

TEST(WebSocketLimits, MaxMessageSize) {
  Limits l;
  l.max_frame_size = 1000;
  l.max_message_size = 2000;
  for (Role role : kRoles) {
    SCOPED_TRACE(role_name(role));
    {
      // Exactly the limit, in fragments.
      Peer p(role, l);
      p.feed(frame_for(role, OP_BIN, pattern(1000)) + frame_for(role, OP_CONT, pattern(999)) +
             frame_for(role, FIN | OP_CONT, "x"));
      ASSERT_EQ(p.rec.events.size(), 1u);
      EXPECT_EQ(p.rec.events[0].size(), std::string("binary:").size() + 2000);
      EXPECT_FALSE(p.ws.failed());
    }
    {
      // One byte over: refused at the header of the fragment that crosses it.
      Peer p(role, l);
      p.feed(frame_for(role, OP_BIN, pattern(1000)) + frame_for(role, OP_CONT, pattern(1000)));
      EXPECT_TRUE(p.rec.events.empty());
      MaskKey k = kKey;
      p.feed(header(FIN | OP_CONT, 1, role == Role::server ? &k : nullptr));
      expect_failed(p, close_code::message_too_big);
    }
    {
      Limits small;
      small.max_frame_size = 5000;
      small.max_message_size = 100;
      Peer p(role, small);
      MaskKey k = kKey;
      p.feed(header(FIN | OP_TEXT, 101, role == Role::server ? &k : nullptr));
      expect_failed(p, close_code::message_too_big);
    }
  }
}

// ---- UTF-8 ---------------------------------------------------------------------

TEST(WebSocketUtf8, ValidTextDelivered) {
  const std::string text = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF\xEF\xBF\xBF";
  for (Role role : kRoles) {
    Peer p(role);
    p.feed(frame_for(role, FIN | OP_TEXT, text));
    EXPECT_EQ(p.rec.events, std::vector<std::string>{"text:" + text});
  }
}

TEST(WebSocketUtf8, InvalidTextIsInvalidPayload) {
  const std::vector<std::string> bad = {
      "\xFF",             "\x80",             "abc\xC0\x80",       "\xC1\xBF",          "\xE0\x80\x80",
      "\xE0\x9F\xBF",     "\xED\xA0\x80",     "\xED\xBF\xBF",      "\xF0\x80\x80\x80",  "\xF0\x8F\xBF\xBF",
      "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xF8\x88\x80\x80\x80", "\xC3\x28",       "\xE2\x82\x28",
      "ok\xC3",           "\xE2\x82",         "\xF0\x9F\x98",      std::string(40, 'a') + "\xED\xA0\x80" + "b"};
  for (const auto& s : bad) {
    SCOPED_TRACE(testing::PrintToString(s));
    expect_fails_both_roles(FIN | OP_TEXT, s, close_code::invalid_payload);
  }
}

TEST(WebSocketUtf8, InvalidBinaryIsFine) {
  Peer p(Role::server);
  p.feed(cframe(FIN | OP_BIN, "\xFF\xC0\x80"));
  EXPECT_EQ(p.rec.events.size(), 1u);
  EXPECT_FALSE(p.ws.failed());
}

TEST(WebSocketUtf8, FailsFastInsideFragment) {
  for (Role role : kRoles) {
    for (const std::string& bad : std::vector<std::string>{"ab\xFF", "\xC0", "\xED\xA0", "\xF4\x90", std::string(50, 'x') + "\xE0\x80"}) {
      SCOPED_TRACE(testing::PrintToString(bad));
      Peer p(role);
      p.feed(frame_for(role, OP_TEXT, "ok"));
      EXPECT_TRUE(p.rec.events.empty());
      p.feed(frame_for(role, OP_CONT, bad));  // not final: no more data yet
      expect_failed(p, close_code::invalid_payload);
    }
  }
}

TEST(WebSocketUtf8, FailsFastInsideOneFrameSplitAcrossReads) {
  for (Role role : kRoles) {
    Peer p(role);
    const std::string f = frame_for(role, FIN | OP_TEXT, "good\xFF" + std::string(1000, 'x'));
    const std::size_t header_size = role == Role::server ? 8 : 4;
    p.feed(f.substr(0, header_size + 5));  // up to and including the bad byte
    expect_failed(p, close_code::invalid_payload);
  }
}

TEST(WebSocketUtf8, CodePointsSplitAcrossFragments) {
  const std::vector<std::string> chars = {"\xC3\xA9", "\xE2\x82\xAC", "\xED\x9F\xBF", "\xF0\x9F\x98\x80",
                                          "\xF4\x8F\xBF\xBF"};
  for (Role role : kRoles) {
    for (const auto& c : chars) {
      for (std::size_t cut = 1; cut < c.size(); ++cut) {
        Peer p(role);
        p.feed(frame_for(role, OP_TEXT, "x" + c.substr(0, cut)));
        EXPECT_FALSE(p.ws.failed());
        p.feed(frame_for(role, FIN | OP_PING, "between"));
        p.feed(frame_for(role, FIN | OP_CONT, c.substr(cut) + "y"));
        EXPECT_EQ(p.rec.events, (std::vector<std::string>{"ping:between", "text:x" + c + "y"}));
        EXPECT_FALSE(p.ws.failed());
      }
      // One byte per fragment.
      Peer p(role);
      std::string stream = frame_for(role, OP_TEXT, "");
      for (char ch : c) stream += frame_for(role, OP_CONT, std::string(1, ch));
      stream += frame_for(role, FIN | OP_CONT, "");
      p.feed(stream);
      EXPECT_EQ(p.rec.events, std::vector<std::string>{"text:" + c});
    }
  }
}

TEST(WebSocketUtf8, TruncatedCodePointAtMessageEnd) {
  for (Role role : kRoles) {
    for (const std::string tail : {"\xC3", "\xE2\x82", "\xF0\x9F\x98"}) {
      Peer p(role);
      p.feed(frame_for(role, OP_TEXT, "abc"));
      p.feed(frame_for(role, OP_CONT, tail));
      EXPECT_FALSE(p.ws.failed()) << "a prefix of valid UTF-8 is fine mid-message";
      p.feed(frame_for(role, FIN | OP_CONT, ""));
      expect_failed(p, close_code::invalid_payload);
    }
  }
}

TEST(WebSocketUtf8, NewMessageResetsValidator) {
  // A binary message ending mid-sequence must not affect the next text message.
  Peer p(Role::server);
  p.feed(cframe(FIN | OP_BIN, "\xE2\x82"));
  p.feed(cframe(FIN | OP_TEXT, "ok"));
  EXPECT_EQ(p.rec.events.back(), "text:ok");
  EXPECT_FALSE(p.ws.failed());
}

// ---- close frames --------------------------------------------------------------

TEST(WebSocketClose, EmptyCloseGets1005AndEmptyReply) {
  for (Role role : kRoles) {
    Peer p(role);
    p.feed(frame_for(role, FIN | OP_CLOSE, ""));
    EXPECT_EQ(p.rec.events, std::vector<std::string>{"close:1005:"});
    EXPECT_EQ(p.ws.peer_close_code(), close_code::no_status);
    const auto frames = p.out_frames();
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(frames[0].op, OP_CLOSE);
    EXPECT_TRUE(frames[0].payload.empty());
    EXPECT_EQ(frames[0].masked, role == Role::client);
    EXPECT_EQ(p.ws.state(), WebSocket::State::closed);
    EXPECT_FALSE(p.ws.failed());
  }
}

TEST(WebSocketClose, OneBytePayloadIsProtocolError) {
  expect_fails_both_roles(FIN | OP_CLOSE, "\x03", close_code::protocol_error);
}

TEST(WebSocketClose, InvalidCodesAreProtocolErrors) {
  for (std::uint16_t code : {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
    SCOPED_TRACE(code);
    expect_fails_both_roles(FIN | OP_CLOSE, close_payload(code), close_code::protocol_error);
    expect_fails_both_roles(FIN | OP_CLOSE, close_payload(code, "reason"), close_code::protocol_error);
  }
}

TEST(WebSocketClose, ValidCodesEchoed) {
  for (std::uint16_t code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
                             4000, 4999}) {
    for (Role role : kRoles) {
      SCOPED_TRACE(std::to_string(code) + role_name(role));
      Peer p(role);
      p.feed(frame_for(role, FIN | OP_CLOSE, close_payload(code, "why \xC3\xA9")));
      EXPECT_EQ(p.rec.events, std::vector<std::string>{"close:" + std::to_string(code) + ":why \xC3\xA9"});
      EXPECT_EQ(p.ws.peer_close_code(), code);
      const auto frames = p.out_frames();
      ASSERT_EQ(frames.size(), 1u);
      EXPECT_EQ(frames[0].op, OP_CLOSE);
      EXPECT_EQ(frames[0].payload, close_payload(code));
      EXPECT_FALSE(p.ws.failed());
    }
  }
}

TEST(WebSocketClose, InvalidUtf8ReasonIsInvalidPayload) {
  expect_fails_both_roles(FIN | OP_CLOSE, close_payload(1000, "bad \xFF"), close_code::invalid_payload);
  expect_fails_both_roles(FIN | OP_CLOSE, close_payload(1000, "cut \xE2\x82"), close_code::invalid_payload);
  expect_fails_both_roles(FIN | OP_CLOSE, close_payload(1000, "\xED\xA0\x80"), close_code::invalid_payload);
}

TEST(WebSocketClose, CloseFrameSplitAcrossReads) {
  for (Role role : kRoles) {
    const std::string f = frame_for(role, FIN | OP_CLOSE, close_payload(4001, "split reason"));
    for (std::size_t at = 1; at < f.size(); ++at) {
      Peer p(role);
      p.feed_split(f, at);
      EXPECT_EQ(p.rec.events, std::vector<std::string>{"close:4001:split reason"});
    }
  }
}

TEST(WebSocketClose, PeerClosesFirst) {
  for (Role role : kRoles) {
    SCOPED_TRACE(role_name(role));
    Peer p(role);
    p.feed(frame_for(role, FIN | OP_CLOSE, close_payload(1001, "bye")));
    EXPECT_EQ(p.ws.state(), WebSocket::State::closed);
    EXPECT_TRUE(p.ws.close_received());
    EXPECT_TRUE(p.ws.close_sent());
    EXPECT_FALSE(p.ws.failed());
    EXPECT_EQ(p.ws.wants_transport_close(), role == Role::server);
    const std::string out = p.out;
    ASSERT_EQ(p.out_frames().size(), 1u);
    // Sends are refused now.
    EXPECT_FALSE(p.ws.send_text(p.out, "x"));
    EXPECT_FALSE(p.ws.send_binary(p.out, "x"));
    EXPECT_FALSE(p.ws.send_frame(p.out, Opcode::text, "x", true));
    EXPECT_FALSE(p.ws.ping(p.out));
    EXPECT_FALSE(p.ws.pong(p.out));
    EXPECT_FALSE(p.ws.close(p.out, 1000));
    EXPECT_EQ(p.out, out);
    // Anything after the close frame is ignored.
    p.feed(frame_for(role, FIN | OP_TEXT, "late"));
    EXPECT_EQ(p.rec.events.size(), 1u);
    EXPECT_EQ(p.out, out);
  }
}

TEST(WebSocketClose, WeCloseFirst) {
  for (Role role : kRoles) {
    SCOPED_TRACE(role_name(role));
    Peer p(role);
    ASSERT_TRUE(p.ws.close(p.out, 1000, "done"));
    EXPECT_EQ(p.ws.state(), WebSocket::State::closing);
    EXPECT_TRUE(p.ws.close_sent());
    EXPECT_FALSE(p.ws.wants_transport_close());
    auto frames = p.out_frames();
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(frames[0].op, OP_CLOSE);
    EXPECT_EQ(frames[0].payload, close_payload(1000, "done"));
    EXPECT_EQ(frames[0].masked, role == Role::client);
    // No more data may be sent, and a second close is refused.
    EXPECT_FALSE(p.ws.send_text(p.out, "x"));
    EXPECT_FALSE(p.ws.send_frame(p.out, Opcode::binary, "x", true));
    EXPECT_FALSE(p.ws.close(p.out, 1000));
    const std::string out = p.out;
    // Data the peer sent before seeing our close is still delivered.
    p.feed(frame_for(role, FIN | OP_TEXT, "in flight"));
    p.feed(frame_for(role, OP_BIN, "frag") + frame_for(role, FIN | OP_CONT, "mented"));
    p.feed(frame_for(role, FIN | OP_PONG, "pong"));
    EXPECT_EQ(p.ws.state(), WebSocket::State::closing);
    // The peer's close completes the handshake without another reply.
    p.feed(frame_for(role, FIN | OP_CLOSE, close_payload(1000)));
    EXPECT_EQ(p.rec.events,
              (std::vector<std::string>{"text:in flight", "binary:fragmented", "pong:pong", "close:1000:"}));
    EXPECT_EQ(p.ws.state(), WebSocket::State::closed);
    EXPECT_TRUE(p.ws.close_received());
    EXPECT_FALSE(p.ws.failed());
    EXPECT_EQ(p.out, out) << "no second close frame";
    // The server closes TCP; the client waits for the server to do it.
    EXPECT_EQ(p.ws.wants_transport_close(), role == Role::server);
  }
}

TEST(WebSocketClose, ProtocolErrorWhileClosingSendsNoSecondClose) {
  for (Role role : kRoles) {
    Peer p(role);
    ASSERT_TRUE(p.ws.close(p.out, 1000));
    const std::string out = p.out;
    p.feed(frame_for(role, FIN | 0x3, "x"));
    EXPECT_EQ(p.rec.events, std::vector<std::string>{"error:1002"});
    EXPECT_EQ(p.out, out);
    EXPECT_TRUE(p.ws.failed());
    EXPECT_TRUE(p.ws.wants_transport_close());
  }
}

TEST(WebSocketClose, CloseBetweenFragmentsEndsConnection) {
  for (Role role : kRoles) {
    Peer p(role);
    p.feed(frame_for(role, OP_TEXT, "partial") + frame_for(role, FIN | OP_CLOSE, close_payload(1000)) +
           frame_for(role, FIN | OP_CONT, "rest"));
    EXPECT_EQ(p.rec.events, std::vector<std::string>{"close:1000:"});
    EXPECT_EQ(p.ws.state(), WebSocket::State::closed);
    EXPECT_FALSE(p.ws.failed());
  }
}

TEST(WebSocketClose, CloseWithoutReason) {
  // Regression: close() with the default (null) reason passed a null pointer
  // to memcpy, undefined behaviour that UBSan aborts on.
  for (Role role : kRoles) {
    Peer p(role);
    ASSERT_TRUE(p.ws.close(p.out));
    const auto frames = p.out_frames();
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(frames[0].payload, close_payload(1000));
    Peer q(role);
    ASSERT_TRUE(q.ws.close(q.out, 4321, std::string_view()));
    EXPECT_EQ(q.out_frames().at(0).payload, close_payload(4321));
  }
}

TEST(WebSocketClose, SendCloseValidation) {
  for (Role role : kRoles) {
    for (std::uint16_t bad : {0, 999, 1004, 1006, 1015, 1016, 2999, 5000}) {
      Peer p(role);
      EXPECT_FALSE(p.ws.close(p.out, bad)) << bad;
      EXPECT_TRUE(p.out.empty());
      EXPECT_TRUE(p.ws.is_open());
    }
    {
      Peer p(role);
      EXPECT_FALSE(p.ws.close(p.out, 1000, "bad \xFF"));
      EXPECT_TRUE(p.out.empty());
    }
    {
      Peer p(role);
      EXPECT_TRUE(p.ws.close(p.out, close_code::no_status, "ignored"));
      const auto frames = p.out_frames();
      ASSERT_EQ(frames.size(), 1u);
      EXPECT_TRUE(frames[0].payload.empty());
    }
    {
      Peer p(role);
      EXPECT_TRUE(p.ws.close(p.out, 4999, std::string(300, 'r')));
      const auto frames = p.out_frames();
      ASSERT_EQ(frames.size(), 1u);
      EXPECT_EQ(frames[0].payload, close_payload(4999, std::string(123, 'r')));
    }
    {
      // The cut never splits a code point: 121 ASCII + a 3-byte character.
      Peer p(role);
      const std::string reason = std::string(121, 'r') + "\xE2\x82\xAC" + "tail";
      EXPECT_TRUE(p.ws.close(p.out, 1000, reason));
      const auto frames = p.out_frames();
      ASSERT_EQ(frames.size(), 1u);
      EXPECT_EQ(frames[0].payload, close_payload(1000, std::string(121, 'r')));
    }
    {
      // Exactly 123 bytes ending in a complete multi-byte character is kept.
      Peer p(role);
      const std::string reason = std::string(120, 'r') + "\xE2\x82\xAC";
      EXPECT_TRUE(p.ws.close(p.out, 1000, reason));
      EXPECT_EQ(p.out_frames().at(0).payload, close_payload(1000, reason));
    }
  }
}

// ---- failure -------------------------------------------------------------------

TEST(WebSocketFailure, BytesAfterBadFrameInSameReadAreIgnored) {
  for (Role role : kRoles) {
    Peer p(role);
    p.feed(frame_for(role, FIN | OP_TEXT, "before") + frame_for(role, FIN | 0xB, "") +
           frame_for(role, FIN | OP_TEXT, "after") + frame_for(role, FIN | OP_PING, "p"));
    EXPECT_EQ(p.rec.events, (std::vector<std::string>{"text:before", "error:1002"}));
    expect_failed(p, close_code::protocol_error);
    EXPECT_EQ(p.out_frames().size(), 1u) << "no pong after the failure";
  }
}

TEST(WebSocketFailure, FailureMidMessageDropsBufferedData) {
  Peer p(Role::server);
  p.feed(cframe(OP_BIN, pattern(100)));
  EXPECT_EQ(p.ws.buffered_message_bytes(), 100u);
  p.feed(cframe(FIN | OP_TEXT, "x"));
  expect_failed(p, close_code::protocol_error);
  EXPECT_EQ(p.ws.buffered_message_bytes(), 0u);
}

// ---- every split point ---------------------------------------------------------

namespace {

std::string mixed_stream(Role receiver, std::vector<std::string>& expected_events) {
  const std::string bin = pattern(300, 7);
  std::string s;
  s += frame_for(receiver, OP_TEXT, "caf\xC3");                     // é split across fragments
  s += frame_for(receiver, FIN | OP_PING, "mid");                   // control between fragments
  s += frame_for(receiver, OP_CONT, "\xA9 \xE2\x82");               // € split too
  s += frame_for(receiver, FIN | OP_CONT, "\xAC \xF0\x9F\x98\x80!");  // and a 4-byte one whole
  s += frame_for(receiver, FIN | OP_BIN, bin);                      // 16-bit length
  s += frame_for(receiver, FIN | OP_PONG, "");
  s += frame_for(receiver, FIN | OP_TEXT, "Hello");
  s += frame_for(receiver, FIN | OP_CLOSE, close_payload(1000, "bye"));
  expected_events = {"ping:mid", "text:caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80!", "binary:" + bin, "pong:",
                     "text:Hello", "close:1000:bye"};
  return s;
}

}  // namespace

TEST(WebSocketSplits, EveryByteBoundaryBothRoles) {
  for (Role role : kRoles) {
    SCOPED_TRACE(role_name(role));
    std::vector<std::string> expected;
    const std::string stream = mixed_stream(role, expected);
    Peer whole(role);
    whole.feed(stream);
    ASSERT_EQ(whole.rec.events, expected);
    const auto frames = whole.out_frames();
    ASSERT_EQ(frames.size(), 2u);
    EXPECT_EQ(frames[0].op, OP_PONG);
    EXPECT_EQ(frames[0].payload, "mid");
    EXPECT_EQ(frames[1].op, OP_CLOSE);
    EXPECT_EQ(frames[1].payload, close_payload(1000));
    EXPECT_EQ(whole.ws.state(), WebSocket::State::closed);

    for (std::size_t at = 0; at <= stream.size(); ++at) {
      Peer p(role);
      p.feed_split(stream, at);
      ASSERT_EQ(p.rec.events, expected) << "split at " << at;
      ASSERT_EQ(p.out, whole.out) << "split at " << at;
      ASSERT_EQ(p.ws.state(), WebSocket::State::closed);
    }
    Peer bytewise(role);
    bytewise.feed_bytewise(stream);
    EXPECT_EQ(bytewise.rec.events, expected);
    EXPECT_EQ(bytewise.out, whole.out);
  }
}

TEST(WebSocketSplits, EveryPairOfSplitPointsOnSmallStream) {
  for (Role role : kRoles) {
    const std::string stream = frame_for(role, OP_TEXT, "\xE2\x82") + frame_for(role, FIN | OP_PING, "p") +
                               frame_for(role, FIN | OP_CONT, "\xAC") + frame_for(role, FIN | OP_BIN, pattern(130));
    const std::vector<std::string> expected = {"ping:p", "text:\xE2\x82\xAC", "binary:" + pattern(130)};
    for (std::size_t a = 0; a <= stream.size(); ++a) {
      for (std::size_t b = a; b <= stream.size(); ++b) {
        Peer p(role);
        p.feed(std::string_view(stream).substr(0, a));
        p.feed(std::string_view(stream).substr(a, b - a));
        p.feed(std::string_view(stream).substr(b));
        ASSERT_EQ(p.rec.events, expected) << a << "/" << b;
      }
    }
  }
}

TEST(WebSocketSplits, RandomChunksWithLargeFrames) {
  for (Role role : kRoles) {
    std::string stream;
    std::vector<std::string> expected;
    const std::size_t sizes[] = {0, 70000, 3, 65535, 126, 125, 1, 100000};
    unsigned seed = 1;
    for (std::size_t n : sizes) {
      const std::string payload = pattern(n, seed++);
      // Fragment the larger ones in three.
      if (n > 1000) {
        stream += frame_for(role, OP_BIN, payload.substr(0, n / 3));
        stream += frame_for(role, FIN | OP_PING, "x");
        stream += frame_for(role, OP_CONT, payload.substr(n / 3, n / 3));
        stream += frame_for(role, FIN | OP_CONT, payload.substr(2 * (n / 3)));
        expected.push_back("ping:x");
      } else {
        stream += frame_for(role, FIN | OP_BIN, payload);
      }
      expected.push_back("binary:" + payload);
    }
    std::mt19937 rng(99);
    for (int round = 0; round < 20; ++round) {
      Peer p(role);
      std::size_t at = 0;
      while (at < stream.size()) {
        const std::size_t n = std::min<std::size_t>(stream.size() - at, 1 + rng() % (round < 10 ? 20 : 5000));
        p.feed(std::string_view(stream).substr(at, n));
        at += n;
      }
      ASSERT_EQ(p.rec.events.size(), expected.size());
      EXPECT_TRUE(p.rec.events == expected) << "round " << round;
      EXPECT_FALSE(p.ws.failed());
    }
  }
}

// ---- sending -------------------------------------------------------------------

TEST(WebSocketSend, ClientMasksWithVaryingKeysAndServerDecodes) {
  Limits limits;
  WebSocket client(Role::client, &limits, 1234);
  std::string wire;
  std::vector<std::string> expected;
  for (std::size_t n : {0u, 1u, 3u, 4u, 5u, 125u, 126u, 1000u, 65535u, 65536u, 70001u}) {
    const std::string payload = pattern(n, static_cast<unsigned>(n));
    ASSERT_TRUE(client.send_binary(wire, payload));
    expected.push_back("binary:" + payload);
  }
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(client.send_text(wire, "message " + std::to_string(i)));
    expected.push_back("text:message " + std::to_string(i));
  }
  ASSERT_TRUE(client.ping(wire, "pp"));
  expected.push_back("ping:pp");
  const auto frames = parse_out(wire);
  ASSERT_EQ(frames.size(), expected.size());
  std::set<std::uint32_t> keys;
  for (const auto& f : frames) {
    EXPECT_TRUE(f.masked);
    EXPECT_TRUE(f.fin);
    EXPECT_EQ(f.rsv, 0);
    std::uint32_t k;
    std::memcpy(&k, f.key.data(), 4);
    keys.insert(k);
  }
  EXPECT_GE(keys.size(), frames.size() - 1) << "mask keys must vary";
  // The masked bytes on the wire differ from the payload.
  EXPECT_EQ(wire.find("message 1"), std::string::npos);

  Peer server(Role::server);
  server.feed(wire);
  EXPECT_TRUE(server.rec.events == expected);
  EXPECT_FALSE(server.ws.failed());
}

TEST(WebSocketSend, ClientsWithDifferentSeedsUseDifferentKeys) {
  Limits limits;
  WebSocket a(Role::client, &limits, 0), b(Role::client, &limits, 0);  // seeded from random_device
  std::string wa, wb;
  a.send_text(wa, "x");
  b.send_text(wb, "x");
  const auto fa = parse_out(wa), fb = parse_out(wb);
  ASSERT_EQ(fa.size(), 1u);
  ASSERT_EQ(fb.size(), 1u);
  EXPECT_TRUE(fa[0].masked);
  EXPECT_NE(fa[0].key, fb[0].key);
}

TEST(WebSocketSend, ServerSendsUnmaskedAndClientDecodes) {
  Limits limits;
  WebSocket server(Role::server, &limits);
  std::string wire;
  std::vector<std::string> expected;
  for (std::size_t n : {0u, 125u, 126u, 65535u, 65536u}) {
    ASSERT_TRUE(server.send_binary(wire, pattern(n)));
    expected.push_back("binary:" + pattern(n));
  }
  ASSERT_TRUE(server.send_text(wire, "Hello"));
  expected.push_back("text:Hello");
  EXPECT_EQ(wire.substr(wire.size() - 7), bytes({0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}));
  for (const auto& f : parse_out(wire)) EXPECT_FALSE(f.masked);
  Peer client(Role::client);
  client.feed(wire);
  EXPECT_TRUE(client.rec.events == expected);
}

TEST(WebSocketSend, FragmentedSendRules) {
  for (Role role : kRoles) {
    Limits limits;
    WebSocket ws(role, &limits, 7);
    std::string wire;
    EXPECT_FALSE(ws.send_frame(wire, Opcode::continuation, "x", true)) << "nothing to continue";
    EXPECT_TRUE(ws.send_frame(wire, Opcode::text, "He", false));
    EXPECT_FALSE(ws.send_frame(wire, Opcode::binary, "x", true)) << "message in progress";
    EXPECT_FALSE(ws.send_text(wire, "x")) << "message in progress";
    EXPECT_TRUE(ws.ping(wire, "between"));
    EXPECT_TRUE(ws.send_frame(wire, Opcode::pong, "p", true));
    EXPECT_FALSE(ws.send_frame(wire, Opcode::ping, "p", false)) << "fragmented control";
    EXPECT_FALSE(ws.send_frame(wire, Opcode::close, "", true)) << "close goes through close()";
    EXPECT_FALSE(ws.send_frame(wire, Opcode::ping, std::string(126, 'p'), true));
    EXPECT_FALSE(ws.ping(wire, std::string(126, 'p')));
    EXPECT_FALSE(ws.pong(wire, std::string(126, 'p')));
    EXPECT_TRUE(ws.ping(wire, std::string(125, 'p')));
    EXPECT_FALSE(ws.send_frame(wire, Opcode::continuation, "x", true, true)) << "RSV1 on continuation";
    EXPECT_TRUE(ws.send_frame(wire, Opcode::continuation, "ll", false));
    EXPECT_TRUE(ws.send_frame(wire, Opcode::continuation, "o", true));
    EXPECT_FALSE(ws.send_frame(wire, Opcode::continuation, "x", true)) << "message over";
    EXPECT_FALSE(ws.send_frame(wire, Opcode::text, "x", true, true)) << "RSV1 without deflate";
    EXPECT_TRUE(ws.send_text(wire, "next"));

    Peer peer(role == Role::client ? Role::server : Role::client);
    peer.feed(wire);
    EXPECT_EQ(peer.rec.events, (std::vector<std::string>{"ping:between", "pong:p", "ping:" + std::string(125, 'p'),
                                                         "text:Hello", "text:next"}));
    EXPECT_FALSE(peer.ws.failed());
  }
}

TEST(WebSocketSend, HandlerMaySendFromCallbacks) {
  struct Echo : Recorder {
    WebSocket* ws = nullptr;
    std::string* out = nullptr;
    void on_message(Opcode kind, std::string_view payload) override {
      Recorder::on_message(kind, payload);
      if (payload == "close me")
        ws->close(*out, 4000, "asked");
      else
        ws->send(*out, kind, payload);
    }
  };
  Limits limits;
  WebSocket server(Role::server, &limits);
  Echo echo;
  std::string out;
  echo.ws = &server;
  echo.out = &out;
  const std::string in = cframe(FIN | OP_TEXT, "one") + cframe(FIN | OP_BIN, "two") + cframe(FIN | OP_TEXT, "close me") +
                         cframe(FIN | OP_TEXT, "in flight") + cframe(FIN | OP_CLOSE, close_payload(4000));
  receive_piece(server, in, echo, out);
  EXPECT_EQ(echo.events, (std::vector<std::string>{"text:one", "binary:two", "text:close me", "text:in flight",
                                                   "close:4000:"}));
  const auto frames = parse_out(out);
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].payload, "one");
  EXPECT_EQ(frames[1].payload, "two");
  EXPECT_EQ(frames[2].op, OP_CLOSE);
  EXPECT_EQ(frames[2].payload, close_payload(4000, "asked"));
  EXPECT_EQ(server.state(), WebSocket::State::closed);
  EXPECT_TRUE(server.wants_transport_close());
}

TEST(WebSocketSend, FullCloseHandshakeBetweenTwoEndpoints) {
  Limits limits;
  WebSocket client(Role::client, &limits, 5), server(Role::server, &limits);
  Recorder cr, sr;
  std::string c2s, s2c;
  ASSERT_TRUE(client.send_text(c2s, "hi"));
  ASSERT_TRUE(client.close(c2s, 1000, "bye"));
  EXPECT_EQ(client.state(), WebSocket::State::closing);
  receive_piece(server, c2s, sr, s2c);
  EXPECT_EQ(sr.events, (std::vector<std::string>{"text:hi", "close:1000:bye"}));
  EXPECT_EQ(server.state(), WebSocket::State::closed);
  EXPECT_TRUE(server.wants_transport_close());
  receive_piece(client, s2c, cr, c2s);
  EXPECT_EQ(cr.events, std::vector<std::string>{"close:1000:"});
  EXPECT_EQ(client.state(), WebSocket::State::closed);
  EXPECT_FALSE(client.wants_transport_close()) << "the client waits for the server to close TCP";
  EXPECT_FALSE(client.failed());
  EXPECT_FALSE(server.failed());
}

// ---- the small-message fast path against the general path --------------------

// A whole small frame in one read takes receive_small_message; the same bytes
// fed one at a time never can. Random streams of frames near its edges (text
// and binary, valid and invalid UTF-8, 125/126-byte lengths, RSV bits, wrong
// masking, control frames, fragments, messages over the limits) must give
// the same events, the same output and the same end state both ways.
TEST(WebSocketFastPath, SameEventsAndOutputAsBytewise) {
  std::mt19937 rng(20261205);
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  const std::vector<std::string> payloads = {"", "hello", "caf\xC3\xA9", "bad\xC3", "\xFF", "\xED\xA0\x80",
                                             std::string(125, 'a'), std::string(126, 'b'), pattern(100, 3)};
  for (Role role : kRoles) {
    SCOPED_TRACE(role_name(role));
    for (int round = 0; round < 400; ++round) {
      Limits limits;
      if (pick(4) == 0) limits.max_message_size = limits.max_frame_size = 4 + pick(8);
      std::string stream;
      const std::size_t frames = 1 + pick(6);
      for (std::size_t i = 0; i < frames; ++i) {
        const std::string& payload = payloads[pick(payloads.size())];
        std::uint8_t b0;
        switch (pick(10)) {
          case 0: b0 = OP_TEXT; break;                            // a fragment
          case 1: b0 = FIN | OP_CONT; break;
          case 2: b0 = FIN | OP_PING; break;
          case 3: b0 = static_cast<std::uint8_t>(FIN | RSV1 | OP_TEXT); break;
          case 4: b0 = static_cast<std::uint8_t>(FIN | RSV2 | OP_BIN); break;
          case 5: b0 = FIN | OP_BIN; break;
          default: b0 = FIN | OP_TEXT; break;
        }
        if (is_control(static_cast<Opcode>(b0 & 0x0F)) && payload.size() > 125) b0 = FIN | OP_BIN;
        // Now and then the wrong masking for this receiver.
        const Role as = pick(12) == 0 ? (role == Role::server ? Role::client : Role::server) : role;
        stream += frame_for(as, b0, payload);
      }
      Peer whole(role, limits);
      whole.feed(stream);
      Peer bytewise(role, limits);
      bytewise.feed_bytewise(stream);
      ASSERT_EQ(whole.rec.events, bytewise.rec.events) << "round " << round;
      ASSERT_EQ(whole.out, bytewise.out) << "round " << round;
      ASSERT_EQ(whole.ws.state(), bytewise.ws.state()) << "round " << round;
      ASSERT_EQ(whole.ws.failed(), bytewise.ws.failed()) << "round " << round;
    }
  }
}
