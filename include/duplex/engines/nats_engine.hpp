// The NATS engine ([engine] type = "nats"): fan-out over core NATS
// subjects; offsets, history, idempotency keys, presence and the node
// registry in Redis ([engine.redis], the Redis engine's storage) or, with
// engine.nats.storage = "jetstream", in the JetStream of the same NATS
// servers (no Redis at all). See docs/ENGINES.md.
//
// A publish stores the publication (offset, history, idempotency key: the
// Redis publish script without PUBLISH, or a JetStream publish), then
// sends the same encoded message to the
// channel's NATS subject. NATS is at-most-once and two nodes' publishes to
// one channel race, so every node passes what it receives through a reorder
// stage: publications are delivered strictly in offset order, a missing
// offset is waited for up to `reorder_window`, then read from the stored history;
// when it cannot be read (expired, no history, another epoch) or NATS
// dropped messages (disconnect, slow consumer), the channel's subscribers
// are told to resubscribe (ChannelEvent::Kind::resubscribe) and recover.
//
// Threading: one io thread runs the Redis connections, the reorder stage
// and every callback (done, ready, deliver, node messages); nats.c's own
// threads and the JetStream workers only post to it. Every method may be
// called from any thread.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "duplex/engines/engine.hpp"
#include "duplex/engines/config.hpp"

namespace duplex::engines {

struct NatsEngineOptions {
  NatsConfig nats;
  RedisConfig redis;
  // Publications held per channel while waiting for a missing offset; more
  // means the channel is too far behind: its subscribers resubscribe.
  std::size_t max_held = 10'000;
  // Operations in flight at most (EngineConfig::max_in_flight).
  std::size_t max_in_flight = EngineConfig{}.max_in_flight;
  // Unix milliseconds; empty: the system clock (tests step over TTLs).
  std::function<std::int64_t()> clock;
};

class NatsEngine final : public Engine {
 public:
  // Throws std::runtime_error for a malformed configuration (e.g. an empty
  // URL); a server that is down is not an error (the engine reconnects).
  explicit NatsEngine(NatsEngineOptions options);
  ~NatsEngine() override;
  NatsEngine(const NatsEngine&) = delete;
  NatsEngine& operator=(const NatsEngine&) = delete;

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
  std::string name() const override { return "nats"; }
  // Fails what is pending (unavailable), closes the NATS and Redis
  // connections, joins the io thread: no callback runs after it returns.
  // Called from one of the engine's callbacks, it returns at once and what
  // is pending fails once that callback returned. Every operation accepted
  // before stop() completes exactly once; later ones fail at once.
  void stop() override;

  // What the reorder stage did (for tests and metrics).
  struct OrderingStats {
    std::uint64_t delivered = 0;
    std::uint64_t duplicates = 0;
    std::uint64_t reordered = 0;
    std::uint64_t fills = 0;
    std::uint64_t filled = 0;
    std::uint64_t resubscribes = 0;
  };
  OrderingStats ordering_stats() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;  // shared with the io thread, which may outlive this object by a callback
};

}  // namespace duplex::engines
