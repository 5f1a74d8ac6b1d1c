// The Redis engine ([engine] type = "redis"): offsets, history,
// idempotency keys, presence and the node registry in Redis (one Lua
// script per publish, atomic), fan-out over Redis pub/sub, so several hub
// nodes share channels. Channels are sharded over `addresses` by jump
// consistent hash. See docs/ENGINES.md.
//
// Threading: one io thread drives every Redis connection; every method may
// be called from any thread and is posted there. Callbacks (done, ready,
// deliver, node messages) run on that thread.
//
// Guarantees: `done` reports ok only after Redis ran the publish script
// (the publication is in Redis: as durable as Redis' persistence
// settings); any error, timeout or lost connection fails it with
// EngineErrc::unavailable. Deliveries come from the channel's pub/sub
// channel, so this node receives a channel only while node_subscribe()d,
// and a delivery may come before or after its publisher's `done`.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "duplex/engines/engine.hpp"
#include "duplex/engines/config.hpp"

namespace duplex::engines {

struct RedisEngineOptions {
  RedisConfig config;
  // Operations in flight at most (EngineConfig::max_in_flight).
  std::size_t max_in_flight = EngineConfig{}.max_in_flight;
  // Unix milliseconds; empty: the system clock (tests step over TTLs).
  std::function<std::int64_t()> clock;
};

class RedisEngine final : public Engine {
 public:
  explicit RedisEngine(RedisEngineOptions options);
  ~RedisEngine() override;
  RedisEngine(const RedisEngine&) = delete;
  RedisEngine& operator=(const RedisEngine&) = delete;

  void set_deliver(Deliver deliver) override;
  void set_node_name(const std::string& name) override;
  void set_node_message_handler(NodeMessage handler) override;
  void publish(PublishRequest request, std::function<void(PublishResult)> done) override;
  void history(HistoryRequest request, std::function<void(HistoryResult)> done) override;
  void presence_add(const std::string& channel, const ClientInfo& client, bool announce) override;
  void presence_remove(const std::string& channel, const ClientInfo& client, bool announce) override;
  void presence(const std::string& channel, std::function<void(std::vector<ClientInfo>)> done) override;
  void node_subscribe(const std::string& channel, std::function<void(EngineErrc)> ready) override;
  void node_unsubscribe(const std::string& channel) override;
  void node_heartbeat(const NodeInfo& self) override;
  void nodes(std::function<void(std::vector<NodeInfo>)> done) override;
  bool send_to_node(const std::string& node, std::string payload) override;
  bool healthy() const override;
  EngineHealth health() const override;
  std::string name() const override { return "redis"; }
  // Fails what is pending (unavailable), closes the connections, joins the
  // io thread: no callback runs after it returns. Called from one of the
  // engine's callbacks, it returns at once and what is pending fails once
  // that callback returned. Every operation accepted before stop() completes
  // exactly once; later ones fail at once with `unavailable`.
  void stop() override;

  // Which address (index into config.addresses) holds `channel`.
  std::size_t shard_of(const std::string& channel) const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;  // shared with the io thread, which may outlive this object by a callback
};

}  // namespace duplex::engines
