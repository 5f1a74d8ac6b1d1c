#include "duplex/engines/factory.hpp"

#include <stdexcept>

#include "duplex/engines/memory_engine.hpp"
#include "duplex/engines/nats_engine.hpp"
#include "duplex/engines/redis_engine.hpp"
#include "duplex/engines/sqlite_engine.hpp"

namespace duplex::engines {

std::unique_ptr<Engine> make_engine(const EngineConfig& config) {
  if (config.type == "memory") return std::make_unique<MemoryEngine>();
  if (config.type == "sqlite") {
    if (config.max_batch == 0) throw std::runtime_error("engine.max_batch must be at least 1");
    SqliteEngineOptions options;
    options.data_dir = config.data_dir;
    options.fsync = config.fsync;
    options.max_batch = config.max_batch;
    options.max_queue = config.max_in_flight;
    return std::make_unique<SqliteEngine>(std::move(options));
  }
  if (config.type == "redis") {
    RedisEngineOptions options;
    options.config = config.redis;
    options.max_in_flight = config.max_in_flight;
    return std::make_unique<RedisEngine>(std::move(options));
  }
  if (config.type == "nats") {
    NatsEngineOptions options;
    options.nats = config.nats;
    options.max_held = config.nats.max_held;
    options.redis = config.redis;
    options.max_in_flight = config.max_in_flight;
    return std::make_unique<NatsEngine>(std::move(options));
  }
  throw std::runtime_error("unknown engine.type '" + config.type +
                           "' (expected \"sqlite\", \"memory\", \"redis\" or \"nats\")");
}

}  // namespace duplex::engines
