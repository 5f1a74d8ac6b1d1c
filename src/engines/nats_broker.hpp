// The NATS half of the NATS engine: one nats.c connection carrying the
// fan-out (core NATS, at-most-once). nats.c runs its own threads (socket
// reader, reconnects, message delivery); every callback is handed to the
// owner's io_context with asio::post, so the owner sees everything on its
// one thread.
//
// Subjects (P = subject_prefix):
//   P.ch.<escape(channel)>   publications and join/leave of a channel
//   P.node.<escape(name)>    messages addressed to one node
// escape() keeps a channel one subject token: '.', '*', '>', '%' and every
// byte outside printable ASCII become %XX (two upper-case hex digits); the
// empty name is "%". unescape() reverses it.
//
// Subscriptions become effective at the server only after a round trip:
// flush() sends a PING from a worker thread (nats.c's flush blocks) and
// reports once the PONG came back, i.e. once every SUB written before the
// call was processed. Requests queued together share one round trip.
//
// The connection reconnects forever (backoff doubling from reconnect_min to
// reconnect_max, with jitter) and starts even when the server is down.
//
// Threading: call every method except connected(), reconnects(), errors()
// and describe() on the io_context's thread.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>

#include <asio/io_context.hpp>

struct __natsConnection;
struct __natsSubscription;

namespace duplex::engines::detail {

struct NatsBrokerOptions {
  std::string url = "nats://127.0.0.1:4222";  // comma-separated for a cluster
  std::string subject_prefix = "duplex";
  std::string name;  // shown by the server (connz); the node name
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds flush_timeout{5000};
  std::chrono::milliseconds reconnect_min{100};
  std::chrono::milliseconds reconnect_max{2000};
  std::chrono::milliseconds ping_interval{2000};  // a silent server is dropped after 3 unanswered pings
};

class NatsBroker {
 public:
  struct Handlers {
    // A message on a channel subject (raw payload).
    std::function<void(const std::string& channel, std::string payload)> message;
    // A message on this node's subject.
    std::function<void(std::string payload)> node_message;
    // The connection dropped: messages may be lost from now on.
    std::function<void()> disconnected;
    // Connected again (or for the first time after starting while the server
    // was down); subscriptions were re-sent by nats.c.
    std::function<void()> reconnected;
    // The client dropped messages of `channel` (slow consumer).
    std::function<void(const std::string& channel)> dropped;
  };

  NatsBroker(asio::io_context& io, NatsBrokerOptions options, Handlers handlers);
  ~NatsBroker();
  NatsBroker(const NatsBroker&) = delete;
  NatsBroker& operator=(const NatsBroker&) = delete;

  // Creates the connection; blocks at most connect_timeout when a server
  // answers slowly. A server that is down is not an error (the connection
  // retries in the background); a malformed URL is (returned as a message).
  std::string start();
  // Closes the connection and joins the flush worker; no handler runs after.
  void stop();

  // SUB / UNSUB for a channel's subject (counted by the owner: one SUB per
  // channel). False when the connection cannot take it (stopped, invalid).
  bool subscribe(const std::string& channel);
  void unsubscribe(const std::string& channel);
  bool subscribed(const std::string& channel) const { return subs_.count(channel) != 0; }
  // This node's subject; once.
  bool subscribe_node(const std::string& name);

  // `done(ok, why)` on the io thread after a PING/PONG round trip.
  void flush(std::function<void(bool ok, const std::string& why)> done);

  // False (and counted as an error) when nats.c refused the message; while
  // reconnecting nats.c buffers it (reconnect buffer).
  bool publish(const std::string& channel, const std::string& payload);
  bool publish_node(const std::string& name, const std::string& payload);

  // Connected right now (io thread; asks nats.c).
  bool live() const;
  // Any thread (follows the connection callbacks).
  bool connected() const;
  std::uint64_t reconnects() const { return reconnects_.load(std::memory_order_relaxed); }
  std::uint64_t errors() const { return errors_.load(std::memory_order_relaxed); }
  // "nats nats://127.0.0.1:4222 unavailable: not connected (reconnecting)"
  std::string unavailable() const;

  std::string channel_subject(const std::string& channel) const;
  std::string node_subject(const std::string& name) const;

  static std::string escape(std::string_view name);
  static std::optional<std::string> unescape(std::string_view token);

 private:
  struct Bridge;
  struct FlushRequest {
    std::function<void(bool, const std::string&)> done;
  };

  void flush_worker();
  void dispatch(const std::string& subject, std::string payload);
  void finish_flushes(std::deque<FlushRequest> batch, bool ok, const std::string& why);

  asio::io_context& io_;
  NatsBrokerOptions options_;
  Handlers handlers_;
  std::string channel_prefix_;  // "P.ch."
  std::string node_prefix_;     // "P.node."
  std::shared_ptr<Bridge> bridge_;
  __natsConnection* conn_ = nullptr;
  std::unordered_map<std::string, __natsSubscription*> subs_;
  __natsSubscription* node_sub_ = nullptr;
  bool stopped_ = false;
  std::atomic<bool> up_{false};
  std::atomic<std::uint64_t> reconnects_{0};
  std::atomic<std::uint64_t> errors_{0};

  std::mutex flush_mutex_;
  std::condition_variable flush_cv_;
  std::deque<FlushRequest> flush_queue_;
  bool flush_stop_ = false;
  std::thread flush_thread_;

  friend struct BridgeAccess;
};

}  // namespace duplex::engines::detail
