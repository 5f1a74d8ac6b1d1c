// The seams between a scale-out engine's fan-out and what it keeps: a
// HistoryStore (offsets, epochs, history, idempotency keys) and a
// PresenceStore (presence entries and the node registry). The NATS engine
// fans out over core NATS and keeps both in Redis (RedisStorage) or in
// JetStream (JetStreamStorage), chosen by engine.nats.storage.
//
// Threading: every method is called on the owner's io_context thread and
// every callback runs there, exactly once, also when the store stops
// (then with `unavailable`, or false / empty).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "duplex/engines/engine.hpp"

namespace duplex::engines::detail {

// A publish as stored: the result the hub sees, and what to fan out.
struct Published {
  PublishResult result;
  std::string epoch;
  PublicationPtr publication;  // what was stored; null for duplicates and failures
};

class HistoryStore {
 public:
  virtual ~HistoryStore() = default;
  // Idempotency check, epoch, next offset, history; no fan-out (the owner
  // sends `publication` to the other nodes itself).
  virtual void store(PublishRequest request, std::function<void(Published)> done) = 0;
  // As Engine::history; a channel never seen gets its epoch here.
  virtual void history(HistoryRequest request, std::function<void(HistoryResult)> done) = 0;
};

class PresenceStore {
 public:
  virtual ~PresenceStore() = default;
  // `done(changed)`: the entry was new (add) or existed (remove); false also
  // when the store failed. The owner announces real changes.
  virtual void add_presence(const std::string& channel, const ClientInfo& client, std::function<void(bool)> done) = 0;
  virtual void remove_presence(const std::string& channel, const ClientInfo& client,
                               std::function<void(bool)> done) = 0;
  virtual void presence(const std::string& channel, std::function<void(std::vector<ClientInfo>)> done) = 0;
  virtual void node_heartbeat(const NodeInfo& self) = 0;
  virtual void nodes(std::function<void(std::vector<NodeInfo>)> done) = 0;
};

// Both stores on one set of servers, with their lifetime and health.
class ChannelStores : public HistoryStore, public PresenceStore {
 public:
  virtual void start() = 0;
  // Fails pending operations (unavailable), closes the connections.
  virtual void stop() = 0;
  // Any thread.
  virtual std::size_t shard_count() const = 0;
  virtual std::size_t backends_up() const = 0;
  virtual std::uint64_t reconnects() const = 0;
  virtual std::uint64_t errors() const = 0;
  virtual void count_error() = 0;
};

}  // namespace duplex::engines::detail
