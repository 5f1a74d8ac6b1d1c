// Builds the engine `[engine]` asks for.
#pragma once
#include <memory>

#include "duplex/engines/engine.hpp"
#include "duplex/engines/config.hpp"

namespace duplex::engines {

// "memory" or "sqlite". Throws std::runtime_error with a message fit for an
// operator: unknown type, max_batch of 0, a data dir that cannot be created,
// is not a directory, is not writable or is used by another engine.
std::unique_ptr<Engine> make_engine(const EngineConfig& config);

}  // namespace duplex::engines
