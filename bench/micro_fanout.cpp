// Fan-out encoding: a PreparedMessage builds the frame once (and, with shared
// compression, one compressed frame) for every subscriber.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "duplex/net/prepared_message.hpp"

namespace {

using duplex::net::PreparedMessage;
using duplex::protocol::DeflateTuning;
using duplex::protocol::Opcode;

std::string chat_payload(std::size_t size) {
  const std::string piece = "{\"type\":\"message\",\"channel\":\"chat:general\",\"from\":\"alice\",\"text\":\"hi all\"}";
  std::string s;
  while (s.size() < size) s += piece;
  s.resize(size);
  return s;
}

void BM_Fanout_Prepare(benchmark::State& state) {
  const std::string payload = chat_payload(static_cast<std::size_t>(state.range(0)));
  const bool compressed = state.range(1) != 0;
  const DeflateTuning tuning;  // min_size 64: both sizes get compressed
  std::size_t compressed_size = 0;
  for (auto _ : state) {
    PreparedMessage m(Opcode::text, payload, compressed ? &tuning : nullptr);
    compressed_size = m.compressed_frame().size();
    benchmark::DoNotOptimize(m.frame().data());
    benchmark::DoNotOptimize(compressed_size);
  }
  if (compressed && compressed_size == 0) state.SkipWithError("no compressed frame was prepared");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * payload.size()));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  if (compressed) state.counters["compressed_frame"] = static_cast<double>(compressed_size);
  state.SetLabel(compressed ? "frame + shared-compressed frame" : "frame only");
}
BENCHMARK(BM_Fanout_Prepare)
    ->ArgNames({"payload", "deflate"})
    ->Args({64, 0})
    ->Args({64, 1})
    ->Args({1024, 0})
    ->Args({1024, 1});

}  // namespace
