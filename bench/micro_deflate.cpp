// permessage-deflate: PerMessageDeflate::compress (server side) and inflate
// (client side) of ~1 KiB JSON-like messages, with context takeover on and
// off. Context takeover on lets a message refer back to the ones before it;
// off compresses each alone (with one shared compressor per thread) and
// releases the inflate state after every message. zlib level 6 is the
// library's default; level 1 shows what a latency-minded setting buys.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "duplex/protocol/permessage_deflate.hpp"

namespace {

using duplex::protocol::DeflateParams;
using duplex::protocol::PerMessageDeflate;

// 64 distinct messages of ~1 KiB, alike in shape, different in values: a
// chat/market-data style stream.
std::vector<std::string> json_messages() {
  std::vector<std::string> messages;
  for (int m = 0; m < 64; ++m) {
    std::string s = "{\"type\":\"update\",\"seq\":" + std::to_string(100000 + m * 7919) +
                    ",\"channel\":\"prices:eu\",\"items\":[";
    for (int i = 0; s.size() < 960; ++i) {
      if (i) s += ',';
      s += "{\"id\":\"SYM" + std::to_string((m * 13 + i * 7) % 997) + "\",\"bid\":" + std::to_string(100 + (m * i) % 97) +
           "." + std::to_string((m + i * 31) % 100) + ",\"ask\":" + std::to_string(101 + (m * i) % 89) + "." +
           std::to_string((m * 3 + i) % 100) + ",\"qty\":" + std::to_string((m + 1) * (i + 3) % 5000) + "}";
    }
    s += "],\"ts\":\"2025-01-01T12:00:" + std::to_string(10 + m % 50) + "Z\"}";
    messages.push_back(std::move(s));
  }
  return messages;
}

DeflateParams params_for(bool takeover) {
  DeflateParams p;
  p.server_no_context_takeover = !takeover;
  p.client_no_context_takeover = !takeover;
  return p;
}

std::size_t total_size(const std::vector<std::string>& v) {
  std::size_t n = 0;
  for (const auto& s : v) n += s.size();
  return n;
}

void BM_Deflate_Compress(benchmark::State& state) {
  const bool takeover = state.range(0) != 0;
  duplex::protocol::DeflateTuning tuning;
  tuning.level = static_cast<int>(state.range(1));
  const auto messages = json_messages();
  PerMessageDeflate server(params_for(takeover), /*is_server=*/true, tuning);
  std::string out;
  std::size_t i = 0, in_bytes = 0, out_bytes = 0;
  for (auto _ : state) {
    out.clear();
    const std::string& m = messages[i++ % messages.size()];
    if (!server.compress(m, out)) {
      state.SkipWithError("compress failed");
      break;
    }
    in_bytes += m.size();
    out_bytes += out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(in_bytes));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.counters["ratio"] = in_bytes ? static_cast<double>(out_bytes) / static_cast<double>(in_bytes) : 0.0;
  state.SetLabel(takeover ? "context takeover" : "no context takeover");
}
BENCHMARK(BM_Deflate_Compress)->ArgNames({"takeover", "level"})->ArgsProduct({{1, 0}, {6, 1}});

void BM_Deflate_Inflate(benchmark::State& state) {
  const bool takeover = state.range(0) != 0;
  duplex::protocol::DeflateTuning tuning;
  tuning.level = static_cast<int>(state.range(1));
  const auto messages = json_messages();
  // The compressed stream, in order: with context takeover, message k refers
  // back only to messages 0..k-1, so inflating the sequence round and round
  // reproduces it exactly.
  std::vector<std::string> compressed;
  {
    PerMessageDeflate server(params_for(takeover), /*is_server=*/true, tuning);
    for (const auto& m : messages) {
      std::string c;
      server.compress(m, c);
      compressed.push_back(std::move(c));
    }
  }
  PerMessageDeflate client(params_for(takeover), /*is_server=*/false);
  std::string out;
  out.reserve(4096);
  const std::size_t limit = 1 << 20;
  std::size_t i = 0, bytes = 0;
  bool ok = true;
  for (auto _ : state) {
    out.clear();
    const std::size_t k = i++ % compressed.size();
    const auto& c = compressed[k];
    ok &= client.inflate(reinterpret_cast<const std::uint8_t*>(c.data()), c.size(), out, limit) ==
          PerMessageDeflate::InflateStatus::ok;
    ok &= client.finish_inflate(out, limit) == PerMessageDeflate::InflateStatus::ok;
    ok &= out.size() == messages[k].size();
    bytes += out.size();
    benchmark::DoNotOptimize(out.data());
  }
  if (!ok) state.SkipWithError("inflate failed or produced the wrong size");
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.counters["ratio"] = static_cast<double>(total_size(compressed)) / static_cast<double>(total_size(messages));
  state.SetLabel(takeover ? "context takeover" : "no context takeover");
}
BENCHMARK(BM_Deflate_Inflate)->ArgNames({"takeover", "level"})->ArgsProduct({{1, 0}, {6, 1}});

}  // namespace
