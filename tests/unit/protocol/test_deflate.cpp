// permessage-deflate (RFC 7692): the §7.2.3 examples byte for byte, round
// trips at every window size, limits, and every negotiation rule.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/protocol/extensions.hpp"
#include "duplex/protocol/permessage_deflate.hpp"
#include "duplex/protocol/websocket.hpp"

using namespace duplex::protocol;

namespace {

std::string bytes(std::initializer_list<int> list) {
  std::string s;
  for (int b : list) s.push_back(static_cast<char>(b));
  return s;
}

std::string hex(std::string_view s) {
  static const char* digits = "0123456789abcdef";
  std::string h;
  for (unsigned char c : s) {
    if (!h.empty()) h += ' ';
    h += digits[c >> 4];
    h += digits[c & 15];
  }
  return h;
}

const std::uint8_t* u8(std::string_view s) { return reinterpret_cast<const std::uint8_t*>(s.data()); }

const std::string kHelloDeflated = bytes({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00});

using Status = PerMessageDeflate::InflateStatus;

// Inflates one whole message (the payload as it came off the wire).
Status inflate_message(PerMessageDeflate& d, std::string_view payload, std::string& out,
                       std::size_t limit = 1u << 20) {
  std::vector<std::uint8_t> buf(payload.begin(), payload.end());
  Status s = d.inflate(buf.data(), buf.size(), out, limit);
  if (s != Status::ok) return s;
  return d.finish_inflate(out, limit);
}

std::string inflate_ok(PerMessageDeflate& d, std::string_view payload) {
  std::string out;
  const Status s = inflate_message(d, payload, out);
  EXPECT_EQ(s, Status::ok) << hex(payload);
  return out;
}

std::string compress(PerMessageDeflate& d, std::string_view message) {
  std::string out;
  EXPECT_TRUE(d.compress(message, out));
  return out;
}

// Inflates with zlib directly, as an independent peer. zlib checks match
// distances against its window only for references that reach back before
// the current call's output, so the output goes through a 256-byte buffer:
// every distance over 256 is then checked, and a stream that does not
// respect the window (even 8 bits) is rejected.
std::optional<std::string> zlib_inflate(z_stream& z, std::string payload) {
  payload += bytes({0x00, 0x00, 0xff, 0xff});
  z.next_in = reinterpret_cast<Bytef*>(payload.data());
  z.avail_in = static_cast<uInt>(payload.size());
  std::string out;
  char buf[256];
  while (z.avail_in > 0) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    const int rc = inflate(&z, Z_SYNC_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK && rc != Z_BUF_ERROR) return std::nullopt;
    if (rc == Z_BUF_ERROR && z.avail_out != 0) break;
  }
  return out;
}

std::string text_of(std::size_t n, unsigned seed) {
  static const char* words[] = {"alpha ", "beta ", "gamma ", "delta ", "websocket ", "deflate ", "\xC3\xA9t\xC3\xA9 ",
                                "\xE2\x82\xAC", "zz", "\n"};
  std::mt19937 rng(seed);
  std::string s;
  while (s.size() < n) s += words[rng() % std::size(words)];
  return s;
}

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// ---- WebSocket plumbing (frames encoded by hand, as in test_websocket) ----

std::string server_frame(std::uint8_t b0, std::string_view payload) {
  std::string f;
  f.push_back(static_cast<char>(b0));
  if (payload.size() < 126) {
    f.push_back(static_cast<char>(payload.size()));
  } else if (payload.size() <= 0xFFFF) {
    f.push_back(126);
    f.push_back(static_cast<char>(payload.size() >> 8));
    f.push_back(static_cast<char>(payload.size()));
  } else {
    f.push_back(127);
    for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>(std::uint64_t{payload.size()} >> (8 * i)));
  }
  return f + std::string(payload);
}

std::string client_frame(std::uint8_t b0, std::string_view payload) {
  const MaskKey key{0x12, 0x34, 0x56, 0x78};
  std::string f = server_frame(b0, payload);
  const std::size_t h = f.size() - payload.size();
  f[1] = static_cast<char>(f[1] | 0x80);
  std::string masked(payload);
  for (std::size_t i = 0; i < masked.size(); ++i) masked[i] = static_cast<char>(masked[i] ^ key[i % 4]);
  return f.substr(0, h) + std::string(reinterpret_cast<const char*>(key.data()), 4) + masked;
}

std::string frame_for(Role receiver, std::uint8_t b0, std::string_view payload) {
  return receiver == Role::server ? client_frame(b0, payload) : server_frame(b0, payload);
}

struct Recorder : EventHandler {
  std::vector<std::string> events;
  void on_message(Opcode kind, std::string_view payload) override {
    events.push_back((kind == Opcode::text ? "text:" : "binary:") + std::string(payload));
  }
  void on_ping(std::string_view p) override { events.push_back("ping:" + std::string(p)); }
  void on_close(std::uint16_t code, std::string_view) override { events.push_back("close:" + std::to_string(code)); }
  void on_protocol_error(std::uint16_t code, std::string_view) override {
    events.push_back("error:" + std::to_string(code));
  }
};

struct Endpoint {
  Limits limits;
  PerMessageDeflate deflate;
  WebSocket ws;
  Recorder rec;
  std::string out;
  Endpoint(Role role, DeflateParams params = {}, Limits l = {})
      : limits(l), deflate(params, role == Role::server), ws(role, &limits, 3) {
    ws.set_deflate(&deflate);
  }
  void feed(std::string_view data) {
    std::vector<std::uint8_t> buf(data.begin(), data.end());
    ws.receive(buf.data(), buf.size(), rec, out);
  }
};

// The status code of the last frame in `out`, which must be a close frame.
std::uint16_t close_code_in(std::string_view out) {
  std::size_t at = 0;
  std::string last;
  std::uint8_t last_op = 0;
  while (at + 2 <= out.size()) {
    const auto b0 = static_cast<std::uint8_t>(out[at]), b1 = static_cast<std::uint8_t>(out[at + 1]);
    std::size_t len = b1 & 0x7F;
    at += 2;
    if (len >= 126) {
      ADD_FAILURE() << "unexpectedly long frame in output";
      return 0;
    }
    MaskKey key{};
    if (b1 & 0x80) {
      std::memcpy(key.data(), out.data() + at, 4);
      at += 4;
    }
    if (at + len > out.size()) break;
    last.assign(out.data() + at, len);
    for (std::size_t i = 0; i < len && (b1 & 0x80); ++i) last[i] = static_cast<char>(last[i] ^ key[i % 4]);
    last_op = b0 & 0x0F;
    at += len;
  }
  EXPECT_EQ(at, out.size()) << "trailing bytes in output";
  EXPECT_EQ(last_op, 0x8);
  if (last.size() < 2) {
    ADD_FAILURE() << "no close code";
    return 0;
  }
  return static_cast<std::uint16_t>((static_cast<std::uint8_t>(last[0]) << 8) | static_cast<std::uint8_t>(last[1]));
}

constexpr Role kRoles[] = {Role::server, Role::client};

}  // namespace

// ---- RFC 7692 §7.2.3 examples --------------------------------------------------

TEST(DeflateRfcExamples, HelloDecodes) {
  for (bool is_server : {true, false}) {
    PerMessageDeflate d({}, is_server);
    EXPECT_EQ(inflate_ok(d, kHelloDeflated), "Hello");
  }
}

TEST(DeflateRfcExamples, ContextTakeoverSecondMessage) {
  // §7.2.3.2: with the sliding window kept, the second "Hello" is a back-reference.
  PerMessageDeflate d({}, true);
  EXPECT_EQ(inflate_ok(d, kHelloDeflated), "Hello");
  EXPECT_TRUE(d.has_inflate_state());
  EXPECT_EQ(inflate_ok(d, bytes({0xf2, 0x00, 0x11, 0x00, 0x00})), "Hello");
  EXPECT_EQ(inflate_ok(d, bytes({0xf2, 0x00, 0x11, 0x00, 0x00})), "Hello");
}

TEST(DeflateRfcExamples, SameBytesTwiceWithoutContextTakeover) {
  // Without context takeover each message stands alone: the same payload
  // decodes the same way twice, and a back-reference into the previous
  // message is corrupt.
  DeflateParams p;
  p.client_no_context_takeover = true;  // what the server receives
  PerMessageDeflate d(p, true);
  EXPECT_EQ(inflate_ok(d, kHelloDeflated), "Hello");
  EXPECT_FALSE(d.has_inflate_state()) << "state released between messages";
  EXPECT_EQ(inflate_ok(d, kHelloDeflated), "Hello");
  std::string out;
  EXPECT_EQ(inflate_message(d, bytes({0xf2, 0x00, 0x11, 0x00, 0x00}), out), Status::corrupt);
}

TEST(DeflateRfcExamples, FragmentedThroughWebSocket) {
  // §7.2.3.1: "Hello" compressed, in two frames; RSV1 on the first only.
  for (Role role : kRoles) {
    Endpoint e(role);
    e.feed(frame_for(role, 0x41, bytes({0xf2, 0x48, 0xcd})));
    EXPECT_TRUE(e.rec.events.empty());
    e.feed(frame_for(role, 0x80, bytes({0xc9, 0xc9, 0x07, 0x00})));
    EXPECT_EQ(e.rec.events, std::vector<std::string>{"text:Hello"});
    EXPECT_FALSE(e.ws.failed());
    // The unfragmented form, then the §7.2.3.2 back-reference, as frames.
    e.feed(frame_for(role, 0xC1, kHelloDeflated));
    e.feed(frame_for(role, 0xC1, bytes({0xf2, 0x00, 0x11, 0x00, 0x00})));
    EXPECT_EQ(e.rec.events, (std::vector<std::string>{"text:Hello", "text:Hello", "text:Hello"}));
    // An uncompressed message in between needs no RSV1.
    e.feed(frame_for(role, 0x81, "plain"));
    EXPECT_EQ(e.rec.events.back(), "text:plain");
    EXPECT_TRUE(e.out.empty());
  }
}

TEST(DeflateRfcExamples, BfinalBlock) {
  // §7.2.3.3: a block with BFINAL set, followed by the octet 0x00 (an empty
  // stored block's header bits) so the tail completes it.
  const std::string rfc = bytes({0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00});
  for (bool is_server : {true, false}) {
    PerMessageDeflate d({}, is_server);
    EXPECT_EQ(inflate_ok(d, rfc), "Hello");
    // The stream goes on: the next message decodes, and so does one that
    // refers back into "Hello" with context takeover.
    EXPECT_EQ(inflate_ok(d, kHelloDeflated), "Hello");
    EXPECT_EQ(inflate_ok(d, rfc), "Hello");
    EXPECT_EQ(inflate_ok(d, bytes({0xf2, 0x00, 0x11, 0x00, 0x00})), "Hello");
  }
  // Through a WebSocket, fragmented at every byte.
  for (Role role : kRoles) {
    for (std::size_t cut = 0; cut <= rfc.size(); ++cut) {
      Endpoint e(role);
      e.feed(frame_for(role, 0x41, rfc.substr(0, cut)) + frame_for(role, 0x80, rfc.substr(cut)));
      e.feed(frame_for(role, 0xC1, kHelloDeflated));
      EXPECT_EQ(e.rec.events, (std::vector<std::string>{"text:Hello", "text:Hello"})) << cut;
    }
  }
}

TEST(DeflateRfcExamples, BfinalBlockWithoutTrailingOctet) {
  // What zlib's Z_FINISH produces: the stream ends with the message, the tail
  // has nothing to complete. Accepted, and the next message still decodes.
  const std::string finished = bytes({0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00});
  PerMessageDeflate d({}, true);
  EXPECT_EQ(inflate_ok(d, finished), "Hello");
  EXPECT_EQ(inflate_ok(d, kHelloDeflated), "Hello");
  EXPECT_EQ(inflate_ok(d, bytes({0xf2, 0x00, 0x11, 0x00, 0x00})), "Hello");
}

TEST(DeflateRfcExamples, DataAfterBfinalBlockInSameMessage) {
  // A finished stream, then a new one, in one message: "Hello" + " world".
  z_stream z{};
  ASSERT_EQ(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string more(64, '\0');
  const std::string world = " world";
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(world.data()));
  z.avail_in = static_cast<uInt>(world.size());
  z.next_out = reinterpret_cast<Bytef*>(more.data());
  z.avail_out = static_cast<uInt>(more.size());
  ASSERT_EQ(deflate(&z, Z_SYNC_FLUSH), Z_OK);
  more.resize(more.size() - z.avail_out);
  deflateEnd(&z);
  ASSERT_EQ(more.substr(more.size() - 4), bytes({0x00, 0x00, 0xff, 0xff}));
  more.resize(more.size() - 4);
  PerMessageDeflate d({}, false);
  EXPECT_EQ(inflate_ok(d, bytes({0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}) + more), "Hello world");
  EXPECT_EQ(inflate_ok(d, kHelloDeflated), "Hello");
}

TEST(DeflateRfcExamples, TwoBlocksInOneMessage) {
  // §7.2.3.4
  const std::string two = bytes({0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00});
  PerMessageDeflate d({}, true);
  EXPECT_EQ(inflate_ok(d, two), "Hello");
  for (Role role : kRoles) {
    for (std::size_t cut = 0; cut <= two.size(); ++cut) {
      Endpoint e(role);
      e.feed(frame_for(role, 0x41, two.substr(0, cut)) + frame_for(role, 0x80, two.substr(cut)));
      EXPECT_EQ(e.rec.events, std::vector<std::string>{"text:Hello"}) << cut;
    }
  }
}

TEST(DeflateRfcExamples, NoCompressionBlock) {
  // §7.2.3.5
  const std::string stored = bytes({0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00});
  PerMessageDeflate d({}, true);
  EXPECT_EQ(inflate_ok(d, stored), "Hello");
  EXPECT_EQ(inflate_ok(d, stored), "Hello");
  Endpoint e(Role::client);
  e.feed(server_frame(0xC1, stored));
  EXPECT_EQ(e.rec.events, std::vector<std::string>{"text:Hello"});
}

TEST(DeflateRfcExamples, EmptyMessage) {
  // §7.2.3.6: an empty message compresses to the single octet 0x00.
  for (bool takeover : {true, false}) {
    DeflateParams p;
    p.server_no_context_takeover = !takeover;
    p.client_no_context_takeover = !takeover;
    PerMessageDeflate d(p, true);
    EXPECT_EQ(compress(d, ""), bytes({0x00}));
    EXPECT_EQ(compress(d, "abc").empty(), false);
    EXPECT_EQ(compress(d, ""), bytes({0x00})) << "also after a message, with context kept";
    PerMessageDeflate r(p, false);
    EXPECT_EQ(inflate_ok(r, bytes({0x00})), "");
    EXPECT_EQ(inflate_ok(r, kHelloDeflated), "Hello");
    EXPECT_EQ(inflate_ok(r, bytes({0x00})), "");
  }
  Endpoint e(Role::server);
  e.feed(client_frame(0xC1, bytes({0x00})));
  e.feed(client_frame(0xC2, bytes({0x00})));
  EXPECT_EQ(e.rec.events, (std::vector<std::string>{"text:", "binary:"}));
}

TEST(DeflateRfcExamples, EmptyPayloadWithRsv1KeepsStreamInSync) {
  // Some senders (zlib Z_SYNC_FLUSH with nothing new to flush, context kept)
  // put no octets at all in an empty compressed message. It must be an empty
  // message, and must not disturb the stream for the messages that follow.
  PerMessageDeflate d({}, true);
  EXPECT_EQ(inflate_ok(d, kHelloDeflated), "Hello");
  EXPECT_EQ(inflate_ok(d, ""), "");
  // A stored block starting with 0x00 would be misread if the previous
  // message had left the inflater expecting LEN/NLEN.
  EXPECT_EQ(inflate_ok(d, bytes({0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00})), "Hello");
  EXPECT_EQ(inflate_ok(d, bytes({0xf2, 0x00, 0x11, 0x00, 0x00})), "Hello");

  Endpoint e(Role::client);
  e.feed(server_frame(0xC1, ""));
  e.feed(server_frame(0xC1, kHelloDeflated));
  EXPECT_EQ(e.rec.events, (std::vector<std::string>{"text:", "text:Hello"}));
}

// ---- our compressor --------------------------------------------------------------

TEST(DeflateCompress, HelloMatchesRfcBytes) {
  DeflateParams p;
  p.server_no_context_takeover = true;
  p.client_no_context_takeover = true;
  for (bool is_server : {true, false}) {
    PerMessageDeflate d(p, is_server);
    EXPECT_EQ(hex(compress(d, "Hello")), hex(kHelloDeflated));
    EXPECT_EQ(hex(compress(d, "Hello")), hex(kHelloDeflated)) << "no context: the same bytes again";
    EXPECT_FALSE(d.has_deflate_state()) << "the shared compressor holds the state";
  }
}

TEST(DeflateCompress, ContextTakeoverMatchesRfcBytes) {
  PerMessageDeflate d({}, true);
  EXPECT_EQ(hex(compress(d, "Hello")), hex(kHelloDeflated));
  EXPECT_TRUE(d.has_deflate_state());
  // zlib's choice for the repeat: RFC 7692 §7.2.3.2 shows f2 00 11 00 00.
  const std::string second = compress(d, "Hello");
  EXPECT_EQ(hex(second), hex(bytes({0xf2, 0x00, 0x11, 0x00, 0x00})));
  PerMessageDeflate r({}, false);
  EXPECT_EQ(inflate_ok(r, kHelloDeflated), "Hello");
  EXPECT_EQ(inflate_ok(r, second), "Hello");
}

TEST(DeflateCompress, RoundTripEveryWindowAndContextMode) {
  for (int bits = 8; bits <= 15; ++bits) {
    for (bool no_context : {false, true}) {
      for (bool sender_is_server : {true, false}) {
        SCOPED_TRACE("bits " + std::to_string(bits) + (no_context ? " no-context" : " context") +
                     (sender_is_server ? " server->client" : " client->server"));
        DeflateParams p;
        p.server_max_window_bits = static_cast<std::uint8_t>(bits);
        p.client_max_window_bits = static_cast<std::uint8_t>(bits);
        p.server_no_context_takeover = no_context;
        p.client_no_context_takeover = no_context;
        PerMessageDeflate sender(p, sender_is_server), receiver(p, !sender_is_server);
        // An independent zlib inflater with exactly the negotiated window
        // (8 included) proves the stream respects the bound.
        z_stream z{};
        ASSERT_EQ(inflateInit2(&z, -bits), Z_OK);
        std::size_t total_in = 0, total_out = 0;
        for (unsigned i = 0; i < 40; ++i) {
          std::string msg;
          switch (i % 4) {
            case 0: msg = text_of(1 + i * 97, i); break;
            case 1: msg = random_bytes(i * 13, i); break;
            case 2: msg = std::string(i * 1000, 'a'); break;
            default: msg = text_of(70000, i); break;
          }
          const std::string c = compress(sender, msg);
          ASSERT_FALSE(c.empty());
          total_in += msg.size();
          total_out += c.size();
          ASSERT_EQ(inflate_ok(receiver, c), msg) << i;
          if (no_context) {
            inflateEnd(&z);
            ASSERT_EQ(inflateInit2(&z, -bits), Z_OK);
          }
          const auto peer = zlib_inflate(z, c);
          ASSERT_TRUE(peer.has_value()) << "zlib with window " << bits << " rejected message " << i;
          ASSERT_EQ(*peer, msg) << i;
        }
        inflateEnd(&z);
        EXPECT_LT(total_out, total_in / 2) << "text should compress";
      }
    }
  }
}

TEST(DeflateCompress, WindowEightCheckIsMeaningful) {
  // A 15-bit stream with long-distance matches is rejected by an 8-bit
  // inflater, so the round trip above would catch a compressor that ignored
  // the bound.
  DeflateParams p;  // 15 bits
  PerMessageDeflate d(p, true);
  const std::string block = random_bytes(1000, 1);
  const std::string c = compress(d, block + block);
  z_stream z{};
  ASSERT_EQ(inflateInit2(&z, -8), Z_OK);
  EXPECT_FALSE(zlib_inflate(z, c).has_value());
  inflateEnd(&z);
}

TEST(DeflateCompress, WindowEightWithContextTakeoverThroughZlib) {
  DeflateParams p;
  p.client_max_window_bits = 8;
  PerMessageDeflate client(p, false);
  z_stream z{};
  ASSERT_EQ(inflateInit2(&z, -8), Z_OK);
  for (int i = 0; i < 30; ++i) {
    const std::string msg = text_of(static_cast<std::size_t>(50 + i * 300), static_cast<unsigned>(i % 3));
    const auto peer = zlib_inflate(z, compress(client, msg));
    ASSERT_TRUE(peer.has_value()) << i;
    ASSERT_EQ(*peer, msg);
  }
  inflateEnd(&z);
}

TEST(DeflateCompress, ReceivingFromEightBitZlibPeer) {
  // A zlib peer asked for 8 bits really uses 9 (zlib's quirk): we accept it.
  DeflateParams p;
  p.client_max_window_bits = 8;
  PerMessageDeflate server(p, true);
  z_stream z{};
  ASSERT_EQ(deflateInit2(&z, 9, Z_DEFLATED, -9, 8, Z_DEFAULT_STRATEGY), Z_OK);
  for (int i = 0; i < 10; ++i) {
    const std::string msg = text_of(2000, static_cast<unsigned>(i));
    std::string c(deflateBound(&z, msg.size()) + 16, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(msg.data()));
    z.avail_in = static_cast<uInt>(msg.size());
    z.next_out = reinterpret_cast<Bytef*>(c.data());
    z.avail_out = static_cast<uInt>(c.size());
    ASSERT_EQ(deflate(&z, Z_SYNC_FLUSH), Z_OK);
    c.resize(c.size() - z.avail_out - 4);
    EXPECT_EQ(inflate_ok(server, c), msg);
  }
  deflateEnd(&z);
}

TEST(DeflateCompress, ThroughWebSocketsBothDirections) {
  for (bool no_context : {false, true}) {
    DeflateParams p;
    p.server_no_context_takeover = no_context;
    p.client_no_context_takeover = no_context;
    p.server_max_window_bits = 10;
    p.client_max_window_bits = 9;
    Endpoint server(Role::server, p), client(Role::client, p);
    std::vector<std::string> expected;
    std::string c2s, s2c;
    for (unsigned i = 0; i < 20; ++i) {
      const std::string msg = text_of(i * 500, i);
      ASSERT_TRUE(client.ws.send_text(c2s, msg));
      ASSERT_TRUE(server.ws.send_text(s2c, msg));
      expected.push_back("text:" + msg);
    }
    // Small messages go uncompressed by default, Compress::yes forces it.
    ASSERT_TRUE(client.ws.send(c2s, Opcode::binary, "tiny", Compress::yes));
    ASSERT_TRUE(client.ws.send(c2s, Opcode::binary, std::string(1000, 'x'), Compress::no));
    expected.push_back("binary:tiny");
    expected.push_back("binary:" + std::string(1000, 'x'));
    server.feed(c2s);
    EXPECT_TRUE(server.rec.events == expected);
    client.feed(s2c);
    EXPECT_EQ(client.rec.events.size(), 20u);
    EXPECT_FALSE(server.ws.failed());
    EXPECT_FALSE(client.ws.failed());
    EXPECT_EQ(server.deflate.has_inflate_state(), !no_context);
  }
}

TEST(DeflateCompress, Rsv1OnlyOnCompressedFrames) {
  Limits limits;
  PerMessageDeflate d({}, true);
  WebSocket ws(Role::server, &limits);
  ws.set_deflate(&d);
  std::string out;
  ASSERT_TRUE(ws.send_text(out, std::string(100, 'a')));
  EXPECT_EQ(static_cast<std::uint8_t>(out[0]), 0xC1);
  out.clear();
  ASSERT_TRUE(ws.send_text(out, "short"));  // under min_size
  EXPECT_EQ(static_cast<std::uint8_t>(out[0]), 0x81);
  EXPECT_EQ(out.substr(2), "short");
  out.clear();
  ASSERT_TRUE(ws.send(out, Opcode::binary, std::string(100, 'a'), Compress::no));
  EXPECT_EQ(static_cast<std::uint8_t>(out[0]), 0x82);
  out.clear();
  ASSERT_TRUE(ws.send(out, Opcode::text, "Hello", Compress::yes));
  EXPECT_EQ(out, bytes({0xC1, 0x07}) + kHelloDeflated);
  out.clear();
  ASSERT_TRUE(ws.ping(out, "p"));
  EXPECT_EQ(static_cast<std::uint8_t>(out[0]), 0x89);
}

// ---- limits and corrupt input --------------------------------------------------------

TEST(DeflateLimits, BombThroughWebSocketIs1009) {
  // 10 MB of zeros compress to ~10 KB.
  PerMessageDeflate compressor({}, false);
  const std::string bomb = compress(compressor, std::string(10u << 20, '\0'));
  ASSERT_LT(bomb.size(), 20000u);
  for (Role role : kRoles) {
    Limits l;
    l.max_message_size = 1u << 20;
    Endpoint e(role, {}, l);
    // Fed in pieces, so it fails while the message is still arriving.
    const std::string f = frame_for(role, 0xC2, bomb);
    e.feed(f.substr(0, f.size() / 2));
    EXPECT_EQ(e.rec.events, std::vector<std::string>{"error:1009"});
    EXPECT_TRUE(e.ws.failed());
    EXPECT_EQ(close_code_in(e.out), 1009);
    EXPECT_LE(e.ws.buffered_message_bytes(), l.max_message_size);
  }
}

TEST(DeflateLimits, InflateOutputNeverGrowsFarPastLimit) {
  PerMessageDeflate compressor({}, false);
  const std::string bomb = compress(compressor, std::string(10u << 20, '\0'));
  const std::size_t limit = 1u << 20;
  for (std::size_t piece : {bomb.size(), std::size_t{1000}, std::size_t{7}}) {
    PerMessageDeflate d({}, true);
    std::string out;
    Status s = Status::ok;
    for (std::size_t at = 0; at < bomb.size() && s == Status::ok; at += piece) {
      const std::string p = bomb.substr(at, piece);
      s = d.inflate(u8(p), p.size(), out, limit);
      ASSERT_LE(out.size(), limit + 1);
    }
    EXPECT_EQ(s, Status::too_big);
    // std::string may round its capacity up (libstdc++ doubles), but never
    // allocates for the whole 10 MB.
    EXPECT_LE(out.capacity(), 2 * limit + 4096) << "piece " << piece;
  }
}

TEST(DeflateLimits, MessageOfExactlyTheLimitIsAccepted) {
  for (std::size_t n : {std::size_t{5}, std::size_t{4096}, std::size_t{100000}}) {
    PerMessageDeflate c({}, false);
    const std::string msg = text_of(n, 3).substr(0, n);
    const std::string z = compress(c, msg);
    {
      PerMessageDeflate d({}, true);
      std::string out;
      EXPECT_EQ(inflate_message(d, z, out, n), Status::ok) << n;
      EXPECT_EQ(out, msg);
    }
    {
      PerMessageDeflate d({}, true);
      std::string out;
      EXPECT_EQ(inflate_message(d, z, out, n - 1), Status::too_big) << n;
    }
    // Through a WebSocket whose message limit is exactly n.
    Limits l;
    l.max_message_size = n;
    Endpoint e(Role::server, {}, l);
    e.feed(client_frame(0xC1, z));
    ASSERT_EQ(e.rec.events.size(), 1u) << e.rec.events[0].substr(0, 20);
    EXPECT_TRUE(e.rec.events[0] == "text:" + msg) << n;
  }
}

TEST(DeflateLimits, UnlimitedMessageSizeDoesNotHang) {
  // SIZE_MAX as "no limit" must not overflow the growth arithmetic.
  PerMessageDeflate d({}, true);
  std::string out;
  EXPECT_EQ(inflate_message(d, kHelloDeflated, out, SIZE_MAX), Status::ok);
  EXPECT_EQ(out, "Hello");
  Limits l;
  l.max_message_size = SIZE_MAX;
  l.max_frame_size = SIZE_MAX;
  Endpoint e(Role::server, {}, l);
  e.feed(client_frame(0xC1, kHelloDeflated));
  EXPECT_EQ(e.rec.events, std::vector<std::string>{"text:Hello"});
}

TEST(DeflateLimits, CorruptDataIs1007) {
  const std::vector<std::string> corrupt = {
      bytes({0xff, 0xff, 0xff}),                    // reserved block type 11
      bytes({0x07}),                                // BTYPE 11 again
      bytes({0x00, 0x05, 0x00, 0x00, 0x00}),        // stored LEN/NLEN mismatch
      bytes({0xf2, 0x00, 0x11, 0x00, 0x00}),        // distance beyond the (empty) window
      bytes({0xf2, 0x48}),                          // truncated inside a block
      bytes({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07}),  // block not ended by the tail
  };
  for (const auto& c : corrupt) {
    SCOPED_TRACE(hex(c));
    PerMessageDeflate d({}, true);
    std::string out;
    EXPECT_EQ(inflate_message(d, c, out), Status::corrupt);
    for (Role role : kRoles) {
      Endpoint e(role);
      e.feed(frame_for(role, 0xC2, c));
      EXPECT_EQ(e.rec.events, std::vector<std::string>{"error:1007"});
      EXPECT_EQ(close_code_in(e.out), 1007);
      EXPECT_TRUE(e.ws.wants_transport_close());
    }
  }
}

TEST(DeflateLimits, CompressedTextMustBeValidUtf8) {
  PerMessageDeflate c({}, false);
  const std::string bad = compress(c, "valid then \xFF invalid");
  for (Role role : kRoles) {
    Endpoint e(role);
    e.feed(frame_for(role, 0xC1, bad));
    EXPECT_EQ(e.rec.events, std::vector<std::string>{"error:1007"});
  }
  // A code point truncated at the end of an inflated message.
  PerMessageDeflate c2({}, false);
  const std::string truncated = compress(c2, "euro \xE2\x82");
  Endpoint e(Role::server);
  e.feed(client_frame(0xC1, truncated));
  EXPECT_EQ(e.rec.events, std::vector<std::string>{"error:1007"});
  // The same bytes as binary are fine.
  PerMessageDeflate c3({}, false);
  Endpoint b(Role::server);
  b.feed(client_frame(0xC2, compress(c3, "valid then \xFF invalid")));
  EXPECT_EQ(b.rec.events, std::vector<std::string>{"binary:valid then \xFF invalid"});
}

TEST(DeflateLimits, CompressedTextFailsFastInFirstFragment) {
  z_stream z{};
  ASSERT_EQ(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  const std::string first_part = "ok \xC0\x80 bad";
  std::string c(256, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(first_part.data()));
  z.avail_in = static_cast<uInt>(first_part.size());
  z.next_out = reinterpret_cast<Bytef*>(c.data());
  z.avail_out = static_cast<uInt>(c.size());
  ASSERT_EQ(deflate(&z, Z_SYNC_FLUSH), Z_OK);  // flushed: decodable on its own
  c.resize(c.size() - z.avail_out);
  deflateEnd(&z);
  Endpoint e(Role::server);
  e.feed(client_frame(0x41, c));  // not final
  EXPECT_EQ(e.rec.events, std::vector<std::string>{"error:1007"});
}

// ---- negotiation: server side -----------------------------------------------------------

namespace {

ExtensionOffer offer(std::vector<std::pair<std::string, std::optional<std::string>>> params,
                     std::string name = "permessage-deflate") {
  ExtensionOffer o;
  o.name = std::move(name);
  for (auto& [k, v] : params) o.params.push_back(ExtensionParam{k, v});
  return o;
}

const std::optional<std::string> none = std::nullopt;

}  // namespace

TEST(DeflateNegotiate, PlainOffer) {
  std::string response;
  auto p = negotiate_deflate({offer({})}, DeflateServerPolicy{}, response);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(response, "permessage-deflate");
  EXPECT_FALSE(p->server_no_context_takeover);
  EXPECT_FALSE(p->client_no_context_takeover);
  EXPECT_EQ(p->server_max_window_bits, 15);
  EXPECT_EQ(p->client_max_window_bits, 15);
}

TEST(DeflateNegotiate, NoOfferOrDisabled) {
  std::string response = "stale";
  EXPECT_FALSE(negotiate_deflate({}, DeflateServerPolicy{}, response).has_value());
  EXPECT_TRUE(response.empty());
  EXPECT_FALSE(negotiate_deflate({offer({}, "x-webkit-deflate-frame")}, DeflateServerPolicy{}, response));
  DeflateServerPolicy off;
  off.enabled = false;
  EXPECT_FALSE(negotiate_deflate({offer({})}, off, response).has_value());
  EXPECT_TRUE(response.empty());
}

TEST(DeflateNegotiate, ClientMaxWindowBitsWithoutValue) {
  std::string response;
  // Chrome's offer: we may bound the client, but at 15 there is nothing to say.
  auto p = negotiate_deflate({offer({{"client_max_window_bits", none}})}, DeflateServerPolicy{}, response);
  ASSERT_TRUE(p);
  EXPECT_EQ(response, "permessage-deflate");
  EXPECT_EQ(p->client_max_window_bits, 15);
  // With a policy bound, it is sent.
  DeflateServerPolicy policy;
  policy.client_max_window_bits = 10;
  p = negotiate_deflate({offer({{"client_max_window_bits", none}})}, policy, response);
  ASSERT_TRUE(p);
  EXPECT_EQ(response, "permessage-deflate; client_max_window_bits=10");
  EXPECT_EQ(p->client_max_window_bits, 10);
  // Without the client's permission the policy bound cannot be imposed.
  p = negotiate_deflate({offer({})}, policy, response);
  ASSERT_TRUE(p);
  EXPECT_EQ(response, "permessage-deflate");
  EXPECT_EQ(p->client_max_window_bits, 15);
}

TEST(DeflateNegotiate, ClientMaxWindowBitsWithValue) {
  std::string response;
  auto p = negotiate_deflate({offer({{"client_max_window_bits", "12"}})}, DeflateServerPolicy{}, response);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->client_max_window_bits, 12);
  EXPECT_EQ(response, "permessage-deflate; client_max_window_bits=12");
  DeflateServerPolicy policy;
  policy.client_max_window_bits = 9;
  p = negotiate_deflate({offer({{"client_max_window_bits", "12"}})}, policy, response);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->client_max_window_bits, 9);
  EXPECT_EQ(response, "permessage-deflate; client_max_window_bits=9");
  for (const char* v : {"8", "15"}) {
    p = negotiate_deflate({offer({{"client_max_window_bits", v}})}, DeflateServerPolicy{}, response);
    ASSERT_TRUE(p) << v;
    EXPECT_EQ(p->client_max_window_bits, std::stoi(v));
  }
}

TEST(DeflateNegotiate, ServerMaxWindowBitsEchoed) {
  std::string response;
  auto p = negotiate_deflate({offer({{"server_max_window_bits", "10"}})}, DeflateServerPolicy{}, response);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->server_max_window_bits, 10);
  EXPECT_EQ(response, "permessage-deflate; server_max_window_bits=10");
  DeflateServerPolicy policy;
  policy.server_max_window_bits = 9;
  p = negotiate_deflate({offer({{"server_max_window_bits", "12"}})}, policy, response);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->server_max_window_bits, 9);
  EXPECT_EQ(response, "permessage-deflate; server_max_window_bits=9");
  // An unrequested policy bound just limits our compressor.
  p = negotiate_deflate({offer({})}, policy, response);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->server_max_window_bits, 9);
  p = negotiate_deflate({offer({{"server_max_window_bits", "8"}})}, DeflateServerPolicy{}, response);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->server_max_window_bits, 8);
}

TEST(DeflateNegotiate, NoContextTakeover) {
  std::string response;
  auto p = negotiate_deflate({offer({{"server_no_context_takeover", none}, {"client_no_context_takeover", none}})},
                             DeflateServerPolicy{}, response);
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->server_no_context_takeover);
  EXPECT_TRUE(p->client_no_context_takeover);
  EXPECT_EQ(response, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
  // The policy can impose both.
  DeflateServerPolicy policy;
  policy.server_no_context_takeover = true;
  policy.client_no_context_takeover = true;
  p = negotiate_deflate({offer({})}, policy, response);
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->server_no_context_takeover);
  EXPECT_TRUE(p->client_no_context_takeover);
  EXPECT_EQ(response, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
}

TEST(DeflateNegotiate, InvalidOffersDeclinedAndNextConsidered) {
  const std::vector<std::vector<std::pair<std::string, std::optional<std::string>>>> bad = {
      {{"unknown_param", none}},
      {{"server_max_window_bits", "7"}},
      {{"server_max_window_bits", "16"}},
      {{"server_max_window_bits", "08"}},
      {{"server_max_window_bits", "abc"}},
      {{"server_max_window_bits", "+9"}},
      {{"server_max_window_bits", ""}},
      {{"server_max_window_bits", "100"}},
      {{"server_max_window_bits", none}},  // missing value
      {{"client_max_window_bits", "7"}},
      {{"client_max_window_bits", "16"}},
      {{"client_max_window_bits", "09"}},
      {{"client_max_window_bits", "x"}},
      {{"server_no_context_takeover", "1"}},
      {{"client_no_context_takeover", "true"}},
      {{"server_no_context_takeover", none}, {"server_no_context_takeover", none}},
      {{"client_no_context_takeover", none}, {"client_no_context_takeover", none}},
      {{"server_max_window_bits", "10"}, {"server_max_window_bits", "10"}},
      {{"client_max_window_bits", none}, {"client_max_window_bits", "10"}},
  };
  for (const auto& params : bad) {
    SCOPED_TRACE(params.front().first + "=" + params.front().second.value_or("<none>"));
    std::string response = "stale";
    EXPECT_FALSE(negotiate_deflate({offer(params)}, DeflateServerPolicy{}, response).has_value());
    EXPECT_TRUE(response.empty());
    // The next offer is considered.
    auto p = negotiate_deflate({offer(params), offer({{"client_max_window_bits", "11"}})}, DeflateServerPolicy{},
                               response);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->client_max_window_bits, 11);
    EXPECT_EQ(response, "permessage-deflate; client_max_window_bits=11");
  }
}

TEST(DeflateNegotiate, FirstAcceptableOfferWins) {
  std::string response;
  auto p = negotiate_deflate({offer({}, "x-webkit-deflate-frame"), offer({{"server_max_window_bits", "10"}}),
                              offer({{"server_no_context_takeover", none}})},
                             DeflateServerPolicy{}, response);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->server_max_window_bits, 10);
  EXPECT_FALSE(p->server_no_context_takeover);
  EXPECT_EQ(response, "permessage-deflate; server_max_window_bits=10");
}

TEST(DeflateNegotiate, ParsedFromHeaderAndAcceptedByClient) {
  // End to end through the header grammar: what a client offers, the server
  // answers, and the client accepts, with both sides agreeing.
  const DeflateClientOffer offers[] = {
      DeflateClientOffer{},
      DeflateClientOffer{true, true, std::uint8_t{10}, true, std::uint8_t{12}},
      DeflateClientOffer{false, false, std::uint8_t{8}, false, std::nullopt},
      DeflateClientOffer{false, true, std::nullopt, true, std::nullopt},
  };
  DeflateServerPolicy policies[3];
  policies[1].client_max_window_bits = 9;
  policies[1].server_max_window_bits = 11;
  policies[2].server_no_context_takeover = true;
  policies[2].client_no_context_takeover = true;
  for (const auto& o : offers) {
    for (const auto& policy : policies) {
      const std::string header = format_deflate_offer(o);
      auto parsed = parse_extensions(header);
      ASSERT_TRUE(parsed) << header;
      std::string response;
      auto server_params = negotiate_deflate(*parsed, policy, response);
      ASSERT_TRUE(server_params) << header;
      auto accepted = parse_extensions(response);
      ASSERT_TRUE(accepted) << response;
      std::string error;
      auto client_params = accept_deflate_response(*accepted, o, error);
      ASSERT_TRUE(client_params) << header << " -> " << response << ": " << error;
      EXPECT_EQ(client_params->server_no_context_takeover, server_params->server_no_context_takeover) << response;
      EXPECT_EQ(client_params->client_no_context_takeover, server_params->client_no_context_takeover) << response;
      EXPECT_GE(client_params->server_max_window_bits, server_params->server_max_window_bits) << response;
      EXPECT_EQ(client_params->client_max_window_bits, server_params->client_max_window_bits) << response;
      if (o.server_max_window_bits) {
        EXPECT_LE(server_params->server_max_window_bits, *o.server_max_window_bits);
      }
    }
  }
}

// ---- negotiation: client side -----------------------------------------------------------

TEST(DeflateClientOffer, Format) {
  EXPECT_EQ(format_deflate_offer(DeflateClientOffer{}), "permessage-deflate; client_max_window_bits");
  DeflateClientOffer o;
  o.server_no_context_takeover = true;
  o.client_no_context_takeover = true;
  o.server_max_window_bits = 10;
  o.client_max_window_bits_value = 12;
  EXPECT_EQ(format_deflate_offer(o),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; "
            "client_max_window_bits=12");
  DeflateClientOffer bare;
  bare.client_max_window_bits = false;
  EXPECT_EQ(format_deflate_offer(bare), "permessage-deflate");
}

TEST(DeflateClientAccept, NothingAccepted) {
  std::string error = "stale";
  EXPECT_FALSE(accept_deflate_response({}, DeflateClientOffer{}, error).has_value());
  EXPECT_TRUE(error.empty());
}

TEST(DeflateClientAccept, PlainAndWithParameters) {
  std::string error;
  auto p = accept_deflate_response({offer({})}, DeflateClientOffer{}, error);
  ASSERT_TRUE(p);
  EXPECT_TRUE(error.empty());
  EXPECT_EQ(p->server_max_window_bits, 15);
  EXPECT_EQ(p->client_max_window_bits, 15);

  p = accept_deflate_response({offer({{"client_max_window_bits", "10"}, {"client_no_context_takeover", none},
                                      {"server_max_window_bits", "12"}})},
                              DeflateClientOffer{}, error);
  ASSERT_TRUE(p) << error;
  EXPECT_EQ(p->client_max_window_bits, 10);
  EXPECT_TRUE(p->client_no_context_takeover) << "the server may ask this unprompted";
  EXPECT_EQ(p->server_max_window_bits, 12) << "the server may announce a smaller window unprompted";

  DeflateClientOffer o;
  o.server_no_context_takeover = true;
  o.server_max_window_bits = 10;
  p = accept_deflate_response({offer({{"server_no_context_takeover", none}, {"server_max_window_bits", "9"}})}, o,
                              error);
  ASSERT_TRUE(p) << error;
  EXPECT_TRUE(p->server_no_context_takeover);
  EXPECT_EQ(p->server_max_window_bits, 9);
}

TEST(DeflateClientAccept, Errors) {
  struct Case {
    std::vector<ExtensionOffer> accepted;
    DeflateClientOffer offered;
    const char* what;
  };
  DeflateClientOffer plain;
  DeflateClientOffer no_cmwb;
  no_cmwb.client_max_window_bits = false;
  DeflateClientOffer smwb10;
  smwb10.server_max_window_bits = 10;
  DeflateClientOffer cmwb10;
  cmwb10.client_max_window_bits_value = 10;
  DeflateClientOffer snct;
  snct.server_no_context_takeover = true;
  const std::vector<Case> cases = {
      {{offer({}, "x-webkit-deflate-frame")}, plain, "unoffered extension"},
      {{offer({}), offer({}, "foo")}, plain, "unoffered extension after ours"},
      {{offer({}), offer({})}, plain, "duplicate"},
      {{offer({{"server_max_window_bits", "11"}})}, smwb10, "server window larger than requested"},
      {{offer({})}, smwb10, "requested server window not confirmed"},
      {{offer({{"client_max_window_bits", "10"}})}, no_cmwb, "client_max_window_bits not offered"},
      {{offer({{"client_max_window_bits", none}})}, plain, "client_max_window_bits without value"},
      {{offer({{"client_max_window_bits", "11"}})}, cmwb10, "client window above our offer"},
      {{offer({})}, snct, "server_no_context_takeover ignored"},
      {{offer({{"mystery", none}})}, plain, "unknown parameter"},
      {{offer({{"server_max_window_bits", "7"}})}, plain, "invalid bits"},
      {{offer({{"server_max_window_bits", "16"}})}, plain, "invalid bits"},
      {{offer({{"server_max_window_bits", "08"}})}, plain, "invalid bits"},
      {{offer({{"server_max_window_bits", none}})}, plain, "missing value"},
      {{offer({{"server_no_context_takeover", none}, {"server_no_context_takeover", none}})}, plain, "dup param"},
      {{offer({{"client_no_context_takeover", "x"}})}, plain, "value on a flag"},
  };
  for (const auto& c : cases) {
    std::string error;
    EXPECT_FALSE(accept_deflate_response(c.accepted, c.offered, error).has_value()) << c.what;
    EXPECT_FALSE(error.empty()) << c.what;
  }
}
