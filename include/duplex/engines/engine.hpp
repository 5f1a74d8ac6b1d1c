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
#include <optional>
#include <string>
#include <vector>

#include "duplex/hub/types.hpp"

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

// What the engine delivers to the hub of this node.
struct ChannelEvent {
  enum class Kind : std::uint8_t { publication, join, leave };
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

  // Assigns the next offset, stores it in history, records the idempotency
  // key, and delivers it; `done` runs once it is durable (or failed).
  virtual void publish(PublishRequest request, std::function<void(PublishResult)> done) = 0;
  virtual void history(HistoryRequest request, std::function<void(HistoryResult)> done) = 0;

  // Presence: entries are keyed by (channel, client.client). add/remove also
  // deliver join/leave events when `announce` is set.
  virtual void presence_add(const std::string& channel, const ClientInfo& client, bool announce) = 0;
  virtual void presence_remove(const std::string& channel, const ClientInfo& client, bool announce) = 0;
  virtual void presence(const std::string& channel, std::function<void(std::vector<ClientInfo>)> done) = 0;

  // This node has (or no longer has) local subscribers to `channel`:
  // scale-out engines subscribe the node to the channel's fan-out.
  virtual void node_subscribe(const std::string& channel) { (void)channel; }
  virtual void node_unsubscribe(const std::string& channel) { (void)channel; }

  virtual bool healthy() const { return true; }
  virtual std::string name() const = 0;
  // Finishes pending writes (acknowledging them) and stops worker threads.
  virtual void stop() {}
};

}  // namespace duplex::engines
