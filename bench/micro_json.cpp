// Parsing a typical hub command with simdjson: the parser the hub will use.
// Measures the command-decode cost per message.
//
// Note: On-Demand is compiled inline for simdjson's *builtin* implementation,
// which the compile flags pick (plain x86-64 -> "fallback", scalar). The DOM
// API's kernels live in libsimdjson and are chosen at run time (haswell,
// icelake...). The labels show which implementation each benchmark ran.
#include <benchmark/benchmark.h>
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

const std::string kCommand = R"({"type":"publish","id":17,"channel":"chat:general","data":{"text":"hello"}})";

struct Command {
  std::string_view type;
  std::uint64_t id = 0;
  std::string_view channel;
  std::string_view data;  // raw JSON, forwarded as is
};

// Fields in any order (a client may send them so): find_field_unordered.
simdjson::error_code parse_command(simdjson::ondemand::parser& parser, simdjson::padded_string_view json,
                                   Command& c) {
  simdjson::ondemand::document doc;
  if (auto e = parser.iterate(json).get(doc)) return e;
  simdjson::ondemand::object obj;
  if (auto e = doc.get_object().get(obj)) return e;
  if (auto e = obj.find_field_unordered("type").get_string().get(c.type)) return e;
  if (auto e = obj.find_field_unordered("id").get_uint64().get(c.id)) return e;
  if (auto e = obj.find_field_unordered("channel").get_string().get(c.channel)) return e;
  simdjson::ondemand::object data;
  if (auto e = obj.find_field_unordered("data").get_object().get(data)) return e;
  return data.raw_json().get(c.data);
}

bool command_ok(simdjson::error_code e, const Command& c) {
  return !e && c.type == "publish" && c.id == 17 && c.channel == "chat:general" && c.data == R"({"text":"hello"})";
}

// The implementation this translation unit's On-Demand code was compiled for.
#define DUPLEX_BENCH_STR2(x) #x
#define DUPLEX_BENCH_STR(x) DUPLEX_BENCH_STR2(x)
std::string ondemand_label() { return "ondemand/" DUPLEX_BENCH_STR(SIMDJSON_BUILTIN_IMPLEMENTATION); }

// The payload already sits in a buffer with SIMDJSON_PADDING spare bytes
// (a receive buffer can be sized for it): no copy.
void BM_Json_Command_OnDemand_InPlace(benchmark::State& state) {
  simdjson::ondemand::parser parser;
  std::string buffer = kCommand;
  buffer.reserve(kCommand.size() + simdjson::SIMDJSON_PADDING);
  const simdjson::padded_string_view json(buffer.data(), buffer.size(), buffer.capacity());
  Command c;
  simdjson::error_code e{};
  for (auto _ : state) {
    e = parse_command(parser, json, c);
    benchmark::DoNotOptimize(c);
  }
  if (!command_ok(e, c)) state.SkipWithError("command parsed wrongly");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kCommand.size()));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.SetLabel(ondemand_label());
}
BENCHMARK(BM_Json_Command_OnDemand_InPlace);

// The payload is a view into a buffer without padding: copy into a
// padded_string first (the worst case).
void BM_Json_Command_OnDemand_CopyToPadded(benchmark::State& state) {
  simdjson::ondemand::parser parser;
  const std::string_view payload = kCommand;
  Command c;
  simdjson::error_code e{};
  for (auto _ : state) {
    simdjson::padded_string copy(payload);
    e = parse_command(parser, copy, c);
    benchmark::DoNotOptimize(c);
  }
  // The views in `c` point into the copy: check against one that is alive.
  simdjson::padded_string copy(payload);
  e = parse_command(parser, copy, c);
  if (!command_ok(e, c)) state.SkipWithError("command parsed wrongly");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kCommand.size()));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.SetLabel(ondemand_label());
}
BENCHMARK(BM_Json_Command_OnDemand_CopyToPadded);

// The DOM API (runtime-dispatched kernels) for comparison. It has no raw
// JSON of a sub-object, so "data" is only located, as the hub would need to
// re-serialise it.
void BM_Json_Command_Dom(benchmark::State& state) {
  simdjson::dom::parser parser;
  std::string buffer = kCommand;
  buffer.reserve(kCommand.size() + simdjson::SIMDJSON_PADDING);
  bool ok = true;
  for (auto _ : state) {
    simdjson::dom::element doc;
    ok &= !parser.parse(buffer.data(), buffer.size(), /*realloc_if_needed=*/false).get(doc);
    std::string_view type, channel, text;
    std::uint64_t id = 0;
    ok &= !doc["type"].get(type);
    ok &= !doc["id"].get(id);
    ok &= !doc["channel"].get(channel);
    ok &= !doc["data"]["text"].get(text);
    benchmark::DoNotOptimize(type);
    benchmark::DoNotOptimize(id);
    benchmark::DoNotOptimize(channel);
    benchmark::DoNotOptimize(text);
  }
  if (!ok) state.SkipWithError("command parsed wrongly");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kCommand.size()));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.SetLabel(std::string("dom/") + std::string(simdjson::get_active_implementation()->name()));
}
BENCHMARK(BM_Json_Command_Dom);

}  // namespace
