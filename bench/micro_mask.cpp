// XOR unmasking: the library's apply_mask (SSE2 + word loop) against a naive
// byte-at-a-time loop.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "duplex/protocol/mask.hpp"

namespace {

using duplex::protocol::MaskKey;

// Kept out of line so the compiler can't fold it into the benchmark loop and
// vectorise it with knowledge of the size.
[[gnu::noinline]] void naive_mask(std::uint8_t* data, std::size_t size, MaskKey key) {
  for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<std::uint8_t>(data[i] ^ key[i % 4]);
}

std::vector<std::uint8_t> buffer_of(std::size_t size) {
  std::vector<std::uint8_t> v(size);
  for (std::size_t i = 0; i < size; ++i) v[i] = static_cast<std::uint8_t>(i * 31 + 7);
  return v;
}

const MaskKey kKey{0x37, 0xfa, 0x21, 0x3d};

void BM_Mask_ApplyMask(benchmark::State& state) {
  auto buf = buffer_of(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    duplex::protocol::apply_mask(buf.data(), buf.size(), kKey);
    benchmark::DoNotOptimize(buf.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * buf.size()));
}
BENCHMARK(BM_Mask_ApplyMask)->ArgName("size")->RangeMultiplier(8)->Range(16, 1 << 20);

// An odd offset and length: the rotated-key and tail paths.
void BM_Mask_ApplyMaskUnaligned(benchmark::State& state) {
  auto buf = buffer_of(static_cast<std::size_t>(state.range(0)) + 8);
  for (auto _ : state) {
    duplex::protocol::apply_mask(buf.data() + 3, buf.size() - 8, kKey, 1);
    benchmark::DoNotOptimize(buf.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * (buf.size() - 8)));
}
BENCHMARK(BM_Mask_ApplyMaskUnaligned)->ArgName("size")->Arg(1 << 10)->Arg(64 << 10);

void BM_Mask_NaiveByteLoop(benchmark::State& state) {
  auto buf = buffer_of(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    naive_mask(buf.data(), buf.size(), kKey);
    benchmark::DoNotOptimize(buf.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * buf.size()));
}
BENCHMARK(BM_Mask_NaiveByteLoop)->ArgName("size")->RangeMultiplier(8)->Range(16, 1 << 20);

// copy_masked: the client send path (mask while copying into the output).
void BM_Mask_CopyMasked(benchmark::State& state) {
  const auto src = buffer_of(static_cast<std::size_t>(state.range(0)));
  std::vector<std::uint8_t> dst(src.size());
  for (auto _ : state) {
    duplex::protocol::copy_masked(dst.data(), src.data(), src.size(), kKey);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * src.size()));
}
BENCHMARK(BM_Mask_CopyMasked)->ArgName("size")->Arg(1 << 10)->Arg(64 << 10);

}  // namespace
