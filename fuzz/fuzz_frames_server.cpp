// libFuzzer target: the WebSocket protocol state machine in the server role
// (input: what a client sends, masked frames).
//
// Input layout:
//   byte 0  configuration: bits 0-1 limit profile (one with no message limit); bit 2 permessage-deflate;
//           bit 3 server_no_context_takeover; bit 4 client_no_context_takeover;
//           bits 5-7 window bits (8 + value) for what we compress.
//   byte 1  handler behaviour: bit 0 echo messages (compressed or not, in one
//           frame or two); bit 1 answer pings with a ping; bit 2 close() at
//           the third event; bit 3 auto-pong off; bits 4-7 chunking profile.
//   rest    the byte stream, fed whole to one WebSocket and in chunks cut at
//           data-derived points to another.
// Invariants: both runs produce identical events and identical output; a
// failure is final and its close frame is in the output; the output is valid
// protocol for a peer endpoint (which must never report an error on it).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/protocol/websocket.hpp"

using namespace duplex::protocol;

namespace {

constexpr Role kRole = Role::server;
constexpr Role kPeerRole = Role::client;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_frames invariant violated: %s\n", what);
    std::abort();
  }
}

struct Config {
  Limits limits;
  bool deflate = false;
  DeflateParams params;
  std::uint8_t behaviour = 0;
};

Config decode_config(std::uint8_t b0, std::uint8_t b1) {
  Config c;
  static constexpr std::size_t frame_limits[4] = {16, 125, 1000, 1u << 20};
  static constexpr std::size_t message_limits[4] = {32, 1000, SIZE_MAX, 1u << 20};  // SIZE_MAX: "no limit"
  c.limits.max_frame_size = frame_limits[b0 & 3];
  c.limits.max_message_size = message_limits[b0 & 3];
  c.deflate = (b0 & 4) != 0;
  c.params.server_no_context_takeover = (b0 & 8) != 0;
  c.params.client_no_context_takeover = (b0 & 16) != 0;
  // The window bits apply to what we compress. What we inflate keeps 15:
  // zlib checks a match distance against a smaller window only when the
  // match reaches back before the current inflate() call, so a peer that
  // overshoots a small window may be accepted or refused depending on where
  // reads end (harmlessly: the bytes are right either way). That would break
  // the chunking oracle below; with 15 bits (the largest distance DEFLATE
  // can express) zlib's check is exact.
  const auto bits = static_cast<std::uint8_t>(8 + (b0 >> 5));
  c.params.server_max_window_bits = kRole == Role::server ? bits : std::uint8_t{15};
  c.params.client_max_window_bits = kRole == Role::client ? bits : std::uint8_t{15};
  c.behaviour = b1;
  return c;
}

struct Handler : EventHandler {
  WebSocket* ws = nullptr;
  std::string* out = nullptr;
  std::uint8_t behaviour = 0;
  std::vector<std::string> events;
  std::size_t messages = 0;

  void event(std::string e) {
    events.push_back(std::move(e));
    if ((behaviour & 4) && events.size() == 3) ws->close(*out, 4000, "third event");
  }
  void on_message(Opcode kind, std::string_view payload) override {
    check(kind == Opcode::text || kind == Opcode::binary, "message kind");
    check(ws->state() != WebSocket::State::closed, "no message after close");
    if (kind == Opcode::text)
      check(is_valid_utf8(reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()), "text is UTF-8");
    ++messages;
    if (behaviour & 1) {
      switch (messages % 4) {
        case 0: ws->send(*out, kind, payload, Compress::automatic); break;
        case 1: ws->send(*out, kind, payload, Compress::yes); break;
        case 2: ws->send(*out, kind, payload, Compress::no); break;
        default: {
          const std::size_t half = payload.size() / 2;
          if (ws->send_frame(*out, kind, payload.substr(0, half), false)) {
            ws->ping(*out, "mid");
            check(ws->send_frame(*out, Opcode::continuation, payload.substr(half), true), "second fragment");
          }
        }
      }
    }
    event((kind == Opcode::text ? "text:" : "binary:") + std::string(payload));
  }
  void on_ping(std::string_view payload) override {
    check(payload.size() <= max_control_payload, "ping payload size");
    if (behaviour & 2) ws->ping(*out, payload);
    event("ping:" + std::string(payload));
  }
  void on_pong(std::string_view payload) override {
    check(payload.size() <= max_control_payload, "pong payload size");
    event("pong:" + std::string(payload));
  }
  void on_close(std::uint16_t code, std::string_view reason) override {
    check(code == close_code::no_status || is_valid_wire_close_code(code), "close code valid");
    check(reason.size() <= max_control_payload - 2, "close reason size");
    check(ws->state() == WebSocket::State::closed, "closed after the peer's close");
    event("close:" + std::to_string(code) + ":" + std::string(reason));
  }
  void on_protocol_error(std::uint16_t code, std::string_view) override {
    check(code == close_code::protocol_error || code == close_code::invalid_payload ||
              code == close_code::message_too_big,
          "error code is 1002, 1007 or 1009");
    check(ws->failed() && ws->state() == WebSocket::State::closed, "failed and closed");
    event("error:" + std::to_string(code));
  }
};

struct Endpoint {
  Config config;
  std::unique_ptr<PerMessageDeflate> deflate;
  WebSocket ws;
  Handler handler;
  std::string out;
  Endpoint(const Config& c, Role role) : config(c), ws(role, &config.limits, 0x5eed) {
    if (config.deflate) {
      deflate = std::make_unique<PerMessageDeflate>(config.params, role == Role::server);
      ws.set_deflate(deflate.get());
    }
    handler.ws = &ws;
    handler.out = &out;
    handler.behaviour = config.behaviour;
    ws.set_auto_pong((config.behaviour & 8) == 0);
  }
  void feed(const std::uint8_t* data, std::size_t size) {
    // An exactly sized copy: the protocol unmasks in place, and the
    // sanitizers see any read past the chunk.
    std::vector<std::uint8_t> buf(data, data + size);
    ws.receive(buf.data(), size, handler, out);
    check(ws.buffered_message_bytes() <= config.limits.max_message_size, "buffered message within limit");
  }
};

// A peer that must accept everything the endpoint wrote.
struct PeerCheck : EventHandler {
  void on_message(Opcode, std::string_view) override {}
  void on_protocol_error(std::uint16_t, std::string_view what) override {
    std::fprintf(stderr, "peer rejected our output: %.*s\n", static_cast<int>(what.size()), what.data());
    check(false, "our output is valid protocol");
  }
};

void check_output_valid(const Config& c, const std::string& out) {
  if (out.empty()) return;
  Limits peer_limits;  // defaults: 16 MiB, above anything we may echo
  std::unique_ptr<PerMessageDeflate> d;
  WebSocket peer(kPeerRole, &peer_limits, 1);
  if (c.deflate) {
    d = std::make_unique<PerMessageDeflate>(c.params, kPeerRole == Role::server);
    peer.set_deflate(d.get());
  }
  peer.set_auto_pong(false);
  PeerCheck h;
  std::string peer_out;
  std::vector<std::uint8_t> buf(out.begin(), out.end());
  peer.receive(buf.data(), buf.size(), h, peer_out);
}

struct Frame {
  std::uint8_t b0 = 0;
  std::string payload;
};

// Splits our output into frames, unmasked.
std::vector<Frame> frames_of(const std::string& out) {
  std::vector<Frame> frames;
  std::size_t at = 0;
  while (at < out.size()) {
    check(out.size() - at >= 2, "output frame header complete");
    Frame f;
    f.b0 = static_cast<std::uint8_t>(out[at]);
    const auto b1 = static_cast<std::uint8_t>(out[at + 1]);
    at += 2;
    std::uint64_t len = b1 & 0x7F;
    const std::size_t extra = len == 126 ? 2 : len == 127 ? 8 : 0;
    check(out.size() - at >= extra + ((b1 & 0x80) ? 4 : 0), "output frame header complete");
    if (extra) {
      len = 0;
      for (std::size_t i = 0; i < extra; ++i) len = (len << 8) | static_cast<std::uint8_t>(out[at + i]);
      at += extra;
    }
    std::uint8_t key[4] = {0, 0, 0, 0};
    if (b1 & 0x80) {
      for (int i = 0; i < 4; ++i) key[i] = static_cast<std::uint8_t>(out[at + i]);
      at += 4;
    }
    check(out.size() - at >= len, "output frame payload complete");
    f.payload.assign(out, at, len);
    for (std::size_t i = 0; i < f.payload.size(); ++i) f.payload[i] = static_cast<char>(f.payload[i] ^ key[i % 4]);
    at += len;
    frames.push_back(std::move(f));
  }
  return frames;
}

// Chunking must not change what happens, with one exception: a compressed
// text message is UTF-8-checked as each read is inflated, so whether an
// invalid sequence (1007) or the size limit / corrupt data further on is
// noticed first depends on where the reads end. Both runs then fail on the
// same message; the code (1007 or 1009) and the close reason may differ.
void compare_runs(const Endpoint& a, const Endpoint& b) {
  const auto& ea = a.handler.events;
  const auto& eb = b.handler.events;
  const bool both_failed = a.ws.failed() && b.ws.failed();
  if (ea == eb && a.out == b.out) return;
  check(both_failed, "chunking does not change events or output");
  check(ea.size() == eb.size(), "chunking does not change the number of events");
  check(std::equal(ea.begin(), ea.end() - 1, eb.begin()), "chunking does not change events before a failure");
  if (ea.back() != eb.back()) {
    check(a.config.deflate, "error codes differ only for compressed data");
    for (const auto* e : {&ea.back(), &eb.back()})
      check(*e == "error:1007" || *e == "error:1009", "error codes differ only between 1007 and 1009");
  }
  const auto fa = frames_of(a.out), fb = frames_of(b.out);
  check(fa.size() == fb.size(), "chunking does not change the number of frames sent");
  for (std::size_t i = 0; i + 1 < fa.size(); ++i)
    check(fa[i].b0 == fb[i].b0 && fa[i].payload == fb[i].payload, "chunking does not change frames sent");
  check(fa.back().b0 == 0x88 && fb.back().b0 == 0x88, "the failure's close frame is last");
  if (ea.back() == eb.back())
    check(fa.back().payload.substr(0, 2) == fb.back().payload.substr(0, 2), "same close code");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const Config config = decode_config(data[0], data[1]);
  const std::uint8_t* stream = data + 2;
  const std::size_t n = size - 2;

  Endpoint whole(config, kRole);
  whole.feed(stream, n);

  Endpoint chunked(config, kRole);
  const unsigned profile = config.behaviour >> 4;
  std::size_t at = 0;
  while (at < n) {
    std::size_t len;
    if (profile == 0) {
      len = 1;
    } else {
      // Cut points from the data itself, up to 2^profile bytes apart.
      const std::size_t max_len = std::size_t{1} << (profile > 12 ? 12 : profile);
      len = 1 + (static_cast<std::size_t>(stream[at]) * 131 + at * 7) % max_len;
    }
    if (len > n - at) len = n - at;
    chunked.feed(stream + at, len);
    at += len;
  }

  compare_runs(whole, chunked);
  check(whole.ws.state() == chunked.ws.state(), "chunking does not change state");
  check(whole.ws.failed() == chunked.ws.failed(), "chunking does not change failure");

  const WebSocket& ws = whole.ws;
  if (ws.failed()) {
    check(ws.state() == WebSocket::State::closed && ws.close_sent() && ws.wants_transport_close(),
          "a failure closes");
    check(!whole.handler.events.empty() && whole.handler.events.back().rfind("error:", 0) == 0,
          "the last event is the error");
  }
  if (ws.state() == WebSocket::State::closed && !ws.failed()) {
    check(ws.close_received() && ws.close_sent(), "clean close saw both close frames");
    check(ws.wants_transport_close() == (kRole == Role::server), "who closes TCP");
  }
  check_output_valid(config, whole.out);
  return 0;
}
