// UTF-8 validation: Utf8Validator (SIMD bulk + DFA at the edges), whole and
// in 1 KiB chunks, against a naive byte-at-a-time DFA.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "duplex/protocol/utf8.hpp"

namespace {

// RFC 3629 §4 as a byte-at-a-time state machine: `need` continuation bytes
// still owed, the next one within [lo, hi].
[[gnu::noinline]] bool naive_utf8(const std::uint8_t* p, std::size_t n) {
  unsigned need = 0;
  std::uint8_t lo = 0x80, hi = 0xBF;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t b = p[i];
    if (need == 0) {
      if (b < 0x80) continue;
      lo = 0x80;
      hi = 0xBF;
      if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
      } else if (b == 0xE0) {
        need = 2;
        lo = 0xA0;
      } else if (b == 0xED) {
        need = 2;
        hi = 0x9F;
      } else if (b >= 0xE1 && b <= 0xEF) {
        need = 2;
      } else if (b == 0xF0) {
        need = 3;
        lo = 0x90;
      } else if (b >= 0xF1 && b <= 0xF3) {
        need = 3;
      } else if (b == 0xF4) {
        need = 3;
        hi = 0x8F;
      } else {
        return false;
      }
    } else {
      if (b < lo || b > hi) return false;
      lo = 0x80;
      hi = 0xBF;
      --need;
    }
  }
  return need == 0;
}

enum Text : int { ascii = 0, mixed = 1 };

// ASCII: JSON-ish English. Mixed: Latin-1 supplement, Greek, CJK and emoji
// (2-, 3- and 4-byte sequences) interleaved with ASCII.
std::string text_of(Text kind, std::size_t size) {
  const std::string piece = kind == ascii ? std::string("{\"user\":\"alice\",\"text\":\"hello, world\",\"n\":42} ")
                                          : std::string("caf\xC3\xA9 \xCE\xB1\xCE\xB2\xCE\xB3 \xE4\xBD\xA0\xE5\xA5\xBD "
                                                        "\xF0\x9F\x98\x80 na\xC3\xAFve \xE2\x82\xAC 12 ");
  std::string s;
  while (s.size() + piece.size() <= size) s += piece;
  s.append(size - s.size(), ' ');
  return s;
}

const char* name_of(Text kind) { return kind == ascii ? "ascii" : "mixed"; }

void BM_Utf8_Validator_OneChunk(benchmark::State& state) {
  const auto kind = static_cast<Text>(state.range(0));
  const std::string s = text_of(kind, static_cast<std::size_t>(state.range(1)));
  const auto* p = reinterpret_cast<const std::uint8_t*>(s.data());
  for (auto _ : state) {
    duplex::protocol::Utf8Validator v;
    bool ok = v.feed(p, s.size()) && v.complete();
    benchmark::DoNotOptimize(ok);
  }
  {
    duplex::protocol::Utf8Validator v;
    if (!(v.feed(p, s.size()) && v.complete())) state.SkipWithError("rejected valid UTF-8");
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * s.size()));
  state.SetLabel(name_of(kind));
}

// Fed in 1 KiB pieces, as a fragmented message or a payload spread over
// reads arrives; the pieces cut through multibyte sequences.
void BM_Utf8_Validator_1KiBChunks(benchmark::State& state) {
  const auto kind = static_cast<Text>(state.range(0));
  const std::string s = text_of(kind, static_cast<std::size_t>(state.range(1)));
  const auto* p = reinterpret_cast<const std::uint8_t*>(s.data());
  auto run = [&] {
    duplex::protocol::Utf8Validator v;
    for (std::size_t at = 0; at < s.size(); at += 1024)
      if (!v.feed(p + at, std::min<std::size_t>(1024, s.size() - at))) return false;
    return v.complete();
  };
  for (auto _ : state) {
    bool ok = run();
    benchmark::DoNotOptimize(ok);
  }
  if (!run()) state.SkipWithError("rejected valid UTF-8");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * s.size()));
  state.SetLabel(name_of(kind));
}

void BM_Utf8_NaiveDfa(benchmark::State& state) {
  const auto kind = static_cast<Text>(state.range(0));
  const std::string s = text_of(kind, static_cast<std::size_t>(state.range(1)));
  const auto* p = reinterpret_cast<const std::uint8_t*>(s.data());
  for (auto _ : state) {
    bool ok = naive_utf8(p, s.size());
    benchmark::DoNotOptimize(ok);
  }
  if (!naive_utf8(p, s.size())) state.SkipWithError("rejected valid UTF-8");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * s.size()));
  state.SetLabel(name_of(kind));
}

void utf8_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"text", "size"});
  for (int kind : {ascii, mixed})
    for (int size : {64, 1 << 10, 64 << 10, 1 << 20}) b->Args({kind, size});
}
BENCHMARK(BM_Utf8_Validator_OneChunk)->Apply(utf8_args);
BENCHMARK(BM_Utf8_Validator_1KiBChunks)->ArgNames({"text", "size"})->Args({ascii, 64 << 10})->Args({mixed, 64 << 10});
BENCHMARK(BM_Utf8_NaiveDfa)->Apply(utf8_args);

}  // namespace
