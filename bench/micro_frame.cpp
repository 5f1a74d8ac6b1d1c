// Frame parsing (through the sans-I/O WebSocket state machine) and frame
// serialisation.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/protocol/frame.hpp"
#include "duplex/protocol/websocket.hpp"

namespace {

using duplex::protocol::EventHandler;
using duplex::protocol::Limits;
using duplex::protocol::MaskKey;
using duplex::protocol::Opcode;
using duplex::protocol::Role;
using duplex::protocol::WebSocket;

// Counts messages and touches their first byte, so nothing is optimised away.
class CountingHandler final : public EventHandler {
 public:
  void on_message(Opcode, std::string_view payload) override {
    ++messages;
    bytes += payload.size();
    if (!payload.empty()) checksum += static_cast<unsigned char>(payload.front());
  }
  void on_protocol_error(std::uint16_t, std::string_view) override { ++errors; }
  std::uint64_t messages = 0, bytes = 0, checksum = 0, errors = 0;
};

std::string payload_of(std::size_t size) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>('a' + i % 26);
  return s;
}

// receive() unmasks in place but leaves frame headers alone. A binary frame
// masked with a non-zero key can be parsed again and again (its payload just
// flips between masked and clear, which binary data doesn't care about). A
// text frame must stay valid UTF-8, so it uses the all-zero key: the XOR
// work is identical and the bytes don't change.
struct FrameBuffer {
  std::vector<std::uint8_t> bytes;
  std::size_t frames = 0;
  std::size_t payload_bytes = 0;
};

FrameBuffer client_frames(Opcode kind, std::size_t payload_size, std::size_t count) {
  const MaskKey key = kind == Opcode::text ? MaskKey{0, 0, 0, 0} : MaskKey{0x37, 0xfa, 0x21, 0x3d};
  const std::string payload = payload_of(payload_size);
  std::string wire;
  for (std::size_t i = 0; i < count; ++i) duplex::protocol::append_masked_frame(wire, kind, payload, key);
  FrameBuffer fb;
  fb.bytes.assign(wire.begin(), wire.end());
  fb.frames = count;
  fb.payload_bytes = payload_size * count;
  return fb;
}

// A server-role WebSocket receiving a 64 KiB read full of small client frames.
void BM_Parse_SmallFrames(benchmark::State& state) {
  const auto kind = static_cast<Opcode>(state.range(0));
  const auto payload_size = static_cast<std::size_t>(state.range(1));
  const std::size_t count = (64 * 1024) / (payload_size + 6);
  FrameBuffer fb = client_frames(kind, payload_size, count);
  Limits limits;
  WebSocket ws(Role::server, &limits);
  CountingHandler handler;
  std::string out;
  for (auto _ : state) {
    ws.receive(fb.bytes.data(), fb.bytes.size(), handler, out);
    benchmark::DoNotOptimize(handler.checksum);
  }
  if (handler.errors != 0 || !ws.is_open()) state.SkipWithError("protocol error while parsing");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * fb.bytes.size()));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * fb.frames));
  state.SetLabel(std::string(kind == Opcode::text ? "text" : "binary") + ", " + std::to_string(count) +
                 " frames per 64 KiB read");
}
BENCHMARK(BM_Parse_SmallFrames)
    ->ArgNames({"opcode", "payload"})
    ->Args({static_cast<int>(Opcode::binary), 32})
    ->Args({static_cast<int>(Opcode::text), 32})
    ->Args({static_cast<int>(Opcode::binary), 125})
    ->Args({static_cast<int>(Opcode::text), 125});

// The same stream, but fed one frame per receive() call (one frame per read,
// the typical request/response case).
void BM_Parse_OneFramePerRead(benchmark::State& state) {
  const auto payload_size = static_cast<std::size_t>(state.range(0));
  FrameBuffer fb = client_frames(Opcode::text, payload_size, 1);
  Limits limits;
  WebSocket ws(Role::server, &limits);
  CountingHandler handler;
  std::string out;
  for (auto _ : state) {
    ws.receive(fb.bytes.data(), fb.bytes.size(), handler, out);
    benchmark::DoNotOptimize(handler.checksum);
  }
  if (handler.errors != 0 || !ws.is_open()) state.SkipWithError("protocol error while parsing");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * fb.bytes.size()));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_Parse_OneFramePerRead)->ArgName("payload")->Arg(32)->Arg(1024);

// One large frame in one read: unmasking (and, for text, UTF-8) dominates.
void BM_Parse_LargeFrame(benchmark::State& state) {
  const auto kind = static_cast<Opcode>(state.range(0));
  const auto payload_size = static_cast<std::size_t>(state.range(1));
  FrameBuffer fb = client_frames(kind, payload_size, 1);
  Limits limits;
  WebSocket ws(Role::server, &limits);
  CountingHandler handler;
  std::string out;
  for (auto _ : state) {
    ws.receive(fb.bytes.data(), fb.bytes.size(), handler, out);
    benchmark::DoNotOptimize(handler.checksum);
  }
  if (handler.errors != 0 || !ws.is_open()) state.SkipWithError("protocol error while parsing");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * fb.bytes.size()));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.SetLabel(kind == Opcode::text ? "text" : "binary");
}
BENCHMARK(BM_Parse_LargeFrame)
    ->ArgNames({"opcode", "payload"})
    ->Args({static_cast<int>(Opcode::binary), 64 << 10})
    ->Args({static_cast<int>(Opcode::binary), 1 << 20})
    ->Args({static_cast<int>(Opcode::text), 1 << 20});

// ---- serialising --------------------------------------------------------

void BM_Serialise_Frame(benchmark::State& state) {
  const std::string payload = payload_of(static_cast<std::size_t>(state.range(0)));
  std::string out;
  out.reserve(payload.size() + duplex::protocol::max_frame_header_size);
  for (auto _ : state) {
    out.clear();
    duplex::protocol::append_frame(out, Opcode::binary, payload);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * payload.size()));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_Serialise_Frame)->ArgName("payload")->Arg(32)->Arg(1 << 10)->Arg(16 << 10);

void BM_Serialise_MaskedFrame(benchmark::State& state) {
  const std::string payload = payload_of(static_cast<std::size_t>(state.range(0)));
  const MaskKey key{0x37, 0xfa, 0x21, 0x3d};
  std::string out;
  out.reserve(payload.size() + duplex::protocol::max_frame_header_size);
  for (auto _ : state) {
    out.clear();
    duplex::protocol::append_masked_frame(out, Opcode::binary, payload, key);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * payload.size()));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_Serialise_MaskedFrame)->ArgName("payload")->Arg(32)->Arg(1 << 10)->Arg(16 << 10);

// The full send path of the state machine (server role: unmasked).
void BM_Serialise_WebSocketSend(benchmark::State& state) {
  const std::string payload = payload_of(static_cast<std::size_t>(state.range(0)));
  Limits limits;
  WebSocket ws(Role::server, &limits);
  std::string out;
  out.reserve(payload.size() + duplex::protocol::max_frame_header_size);
  for (auto _ : state) {
    out.clear();
    ws.send_binary(out, payload);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * payload.size()));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_Serialise_WebSocketSend)->ArgName("payload")->Arg(32)->Arg(1 << 10)->Arg(16 << 10);

}  // namespace
