// The only door to storage and to other nodes. An engine assigns offsets,
// keeps history and idempotency keys, fans publications out (to this node's
// hub, and to other nodes in scale-out engines), and keeps presence.
//
// Threading: every method may be called from any thread. Completion
// callbacks and the deliver callback may run on any thread (an engine's own
// worker thread, or the caller's); the hub posts back to its loops itself.
// Deliveries for one channel are made in offset order, one at a time.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "duplex/wire/types.hpp"

namespace duplex::engines {

using hub::ClientInfo;
using hub::Publication;
using hub::PublicationPtr;
using hub::StreamPosition;

// Per-namespace history settings, passed with every call that needs them.
struct HistoryOptions {
  std::size_t size = 0;                 // messages kept per channel (0 = no history)
  std::chrono::seconds ttl{0};          // drop messages older than this (0 = forever)
  std::chrono::seconds idempotency_window{300};
};

enum class EngineErrc : std::uint8_t {
  ok,
  unavailable,  // storage or the broker is down: nothing was applied
  internal,
};

struct PublishRequest {
  std::string channel;
  std::string data;             // raw JSON
  std::string publisher;        // raw JSON object or empty
  std::string idempotency_key;  // empty: none
  HistoryOptions history;
};

struct PublishResult {
  EngineErrc error = EngineErrc::ok;
  std::string message;       // when error != ok
  StreamPosition position;   // epoch and the publication's offset
  bool duplicate = false;    // the idempotency key was seen: position is the first publish's
};

struct HistoryRequest {
  std::string channel;
  std::optional<StreamPosition> since;  // only publications after since.offset
  std::size_t limit = 0;                // 0: no publications, just the position
  bool reverse = false;                 // newest first (ignored when `since` is set)
  HistoryOptions history;
};

struct HistoryResult {
  EngineErrc error = EngineErrc::ok;
  std::string message;
  StreamPosition top;  // the channel's current epoch and last offset (0 if none yet)
  std::vector<PublicationPtr> publications;  // in offset order (unless reverse)
  // With `since`: true when the epoch matches and `publications` holds every
  // publication after since.offset (none expired or trimmed, limit not hit).
  bool complete = false;
};

// One node as the registry knows it (GET /api/nodes).
struct NodeInfo {
  std::string name;
  std::int64_t started_ms = 0;   // Unix milliseconds
  std::int64_t updated_ms = 0;   // last heartbeat
  std::uint64_t connections = 0;
  std::uint64_t subscriptions = 0;
  std::uint64_t channels = 0;
  std::uint64_t publications_in = 0;   // accepted by this node (clients and API)
  std::uint64_t pushes_out = 0;        // publications sent to this node's clients
};

// What /metrics shows of the engine.
struct EngineHealth {
  bool healthy = true;
  std::size_t backends_up = 1;      // connected storage/broker servers
  std::size_t backends_total = 1;
  std::uint64_t reconnects = 0;     // successful reconnects since start
  std::uint64_t errors = 0;         // failed operations (publish, history, presence) since start
  std::size_t in_flight = 0;        // operations accepted and not yet completed (EngineConfig::max_in_flight)
  std::uint64_t refused = 0;        // operations refused since start because max_in_flight were in flight
};

// What the engine delivers to the hub of this node.
struct ChannelEvent {
  // resubscribe: this node may have missed publications of `channel` (its
  // connection to the broker dropped, or a gap could not be filled from
  // history): the hub tells the channel's subscribers to resubscribe with
  // recovery (unsubscribe push, code 2500).
  enum class Kind : std::uint8_t { publication, join, leave, resubscribe };
  Kind kind = Kind::publication;
  std::string channel;
  std::string epoch;             // publication
  PublicationPtr publication;    // publication
  ClientInfo client;             // join / leave
};

class Engine {
 public:
  using Deliver = std::function<void(const ChannelEvent&)>;

  virtual ~Engine() = default;

  // Called once before any other method.
  virtual void set_deliver(Deliver deliver) = 0;
  // This node's name (unique among the nodes sharing the engine's servers);
  // called once, right after set_deliver.
  virtual void set_node_name(const std::string& name) { (void)name; }

  // Messages addressed to this node by another node (send_to_node): the
  // fallback transports forward requests that landed on the wrong node.
  using NodeMessage = std::function<void(std::string payload)>;
  virtual void set_node_message_handler(NodeMessage handler) { (void)handler; }

  // Assigns the next offset, stores it in history, records the idempotency
  // key, and delivers it; `done` runs once it is durable (or failed).
  virtual void publish(PublishRequest request, std::function<void(PublishResult)> done) = 0;
  virtual void history(HistoryRequest request, std::function<void(HistoryResult)> done) = 0;

  // Presence: entries are keyed by (channel, client.client). add/remove also
  // deliver join/leave events when `announce` is set.
  virtual void presence_add(const std::string& channel, const ClientInfo& client, bool announce) = 0;
  virtual void presence_remove(const std::string& channel, const ClientInfo& client, bool announce) = 0;
  virtual void presence(const std::string& channel, std::function<void(std::vector<ClientInfo>)> done) = 0;

  // A local subscriber to `channel` arrived (or left). Called once per
  // subscriber; scale-out engines count them and subscribe the node to the
  // channel's fan-out while the count is above zero. `ready` runs once every
  // publication accepted from then on will be delivered to this node (ok), or
  // when that cannot be arranged (unavailable): the hub reads history only
  // after `ready`, so nothing falls between the read and the live stream.
  virtual void node_subscribe(const std::string& channel, std::function<void(EngineErrc)> ready) {
    (void)channel;
    ready(EngineErrc::ok);
  }
  virtual void node_unsubscribe(const std::string& channel) { (void)channel; }

  // Node registry: the hub reports this node every few seconds; nodes() lists
  // the nodes seen alive (in single-node engines, just this one).
  virtual void node_heartbeat(const NodeInfo& self) {
    std::lock_guard lock(self_mutex_);
    self_ = self;
  }
  virtual void nodes(std::function<void(std::vector<NodeInfo>)> done) {
    std::vector<NodeInfo> list;
    {
      std::lock_guard lock(self_mutex_);
      if (!self_.name.empty()) list.push_back(self_);
    }
    done(std::move(list));
  }
  // Delivers `payload` to `node`'s node-message handler; false when the node
  // cannot be reached (single-node engines, broker down).
  virtual bool send_to_node(const std::string& node, std::string payload) {
    (void)node;
    (void)payload;
    return false;
  }

  virtual bool healthy() const { return true; }
  virtual EngineHealth health() const {
    EngineHealth h;
    h.healthy = healthy();
    h.backends_up = h.healthy ? 1 : 0;
    return h;
  }
  virtual std::string name() const = 0;
  // Finishes pending writes (acknowledging them) and stops worker threads.
  virtual void stop() {}

 private:
  std::mutex self_mutex_;
  NodeInfo self_;
};

}  // namespace duplex::engines
