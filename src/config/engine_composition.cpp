#include "duplex/config/engine_composition.hpp"

namespace duplex::hub {
namespace {

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

// The side left empty follows from the other: the history a broker is
// offered with first, the broker that serves a history.
std::string_view default_history(std::string_view broker) {
  if (broker == "local") return "sqlite";
  return "redis";  // redis, nats: their history in Redis
}

bool node_local(std::string_view history) { return history == "sqlite" || history == "memory"; }

std::string_view default_broker(std::string_view history) {
  if (node_local(history)) return "local";
  if (history == "jetstream") return "nats";
  return "redis";
}

}  // namespace

CompositionResult compose_engine(std::string_view broker, std::string_view history) {
  if (broker.empty() && history.empty()) return {};
  if (broker.empty()) broker = default_broker(history);
  if (history.empty()) history = default_history(broker);
  const std::string pair = "engine.broker = " + quoted(broker) + " with engine.history = " + quoted(history);
  if (broker == "local") {
    if (node_local(history)) return {EngineComposition{std::string(history), ""}, ""};
    return {std::nullopt, pair + " is not offered: a local broker delivers within this node only, so the other nodes "
                                 "sharing that history would never see its publications; use broker = \"redis\" or "
                                 "\"nats\""};
  }
  if (node_local(history))
    return {std::nullopt, pair + " is not offered: " + quoted(history) +
                              " history lives in one node, so the other nodes could not recover what they missed; use "
                              "history = \"redis\" (or \"jetstream\" with broker = \"nats\")"};
  if (broker == "redis") {
    if (history == "redis") return {EngineComposition{"redis", ""}, ""};
    return {std::nullopt, pair + " is not offered: NATS alone does both; use broker = \"nats\" with history = "
                                 "\"jetstream\""};
  }
  if (broker == "nats" && (history == "redis" || history == "jetstream"))
    return {EngineComposition{"nats", std::string(history)}, ""};
  return {std::nullopt, pair + " is not offered (broker: \"local\", \"redis\" or \"nats\"; history: \"sqlite\", "
                               "\"memory\", \"redis\" or \"jetstream\")"};
}

std::optional<std::string> apply_engine_composition(engines::EngineConfig& engine) {
  auto result = compose_engine(engine.broker, engine.history);
  if (!result.problem.empty()) return result.problem;
  if (!result.composition) return std::nullopt;
  engine.type = result.composition->type;
  if (engine.type == "nats") engine.nats.storage = result.composition->nats_storage;
  return std::nullopt;
}

}  // namespace duplex::hub
