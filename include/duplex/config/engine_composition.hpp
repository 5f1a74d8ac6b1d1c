// [engine] broker and history: the engine named by its parts, the fan-out to
// other nodes and the store of offsets, history and idempotency keys
// (presence and the node registry live with the history). Each offered pair
// is one of the engine types; docs/ENGINES.md, "Compositions", says why the
// other pairs are not offered.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "duplex/engines/config.hpp"

namespace duplex::hub {

struct EngineComposition {
  std::string type;          // engine.type: "sqlite", "memory", "redis" or "nats"
  std::string nats_storage;  // engine.nats.storage with type "nats"; else empty
};

// The composition `broker` and `history` name (either may be empty: it then
// follows from the other), or why that pair is not offered, one sentence
// naming both keys and what to set instead.
struct CompositionResult {
  std::optional<EngineComposition> composition;
  std::string problem;
};
CompositionResult compose_engine(std::string_view broker, std::string_view history);

// When engine.broker or engine.history is set, sets engine.type (and
// engine.nats.storage) to the composition they name; returns the problem when
// the pair is not offered. Nothing set: changes nothing.
std::optional<std::string> apply_engine_composition(engines::EngineConfig& engine);

}  // namespace duplex::hub
