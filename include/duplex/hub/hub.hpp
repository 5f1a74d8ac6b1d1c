// The hub: sessions, channels, subscriptions with recovery, publishing,
// presence, token expiry, and the backend API's operations. It knows messages
// and channels, never sockets: a session speaks through a hub::Transport
// (WebSocket, SSE, long-polling are adapters over the same Session).
//
// Threading: one shard per event loop. A session lives on one loop and all
// its state is touched only there; the engine's deliveries are posted to
// every loop in offset order, so each loop's subscribers see a channel in
// order without locks on the fan-out path.
#pragma once
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "duplex/engines/engine.hpp"
#include "duplex/hub/admission.hpp"
#include "duplex/hub/codec.hpp"
#include "duplex/hub/config.hpp"
#include "duplex/hub/token.hpp"
#include "duplex/hub/transport.hpp"
#include "duplex/net/event_loop.hpp"
#include "duplex/net/prepared_message.hpp"

namespace duplex::hub {

class Session;
struct Shard;

// Time from the engine handing a publication to the hub until it was written
// to every local subscriber, in fixed buckets (a Prometheus histogram).
struct FanoutLatency {
  static constexpr std::array<double, 12> bounds_ms{0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500};
  std::array<std::atomic<std::uint64_t>, bounds_ms.size() + 1> buckets{};  // last: +Inf
  std::atomic<std::uint64_t> count{0};
  std::atomic<std::uint64_t> sum_us{0};
  void record(std::uint64_t micros) {
    std::size_t i = 0;
    while (i < bounds_ms.size() && static_cast<double>(micros) > bounds_ms[i] * 1000.0) ++i;
    buckets[i].fetch_add(1, std::memory_order_relaxed);
    count.fetch_add(1, std::memory_order_relaxed);
    sum_us.fetch_add(micros, std::memory_order_relaxed);
  }
};

// Per-namespace counters. Labels stay bounded: one entry per namespace in
// the config, plus "" for every channel that uses the defaults.
struct NamespaceCounters {
  std::string name;
  std::atomic<std::uint64_t> publications{0};
  std::atomic<std::uint64_t> pushes{0};
  std::atomic<std::uint64_t> subscriptions{0};  // now
};

// Process-wide counters (read by the stats channel and /metrics).
struct HubCounters {
  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> connections_total{0};
  std::atomic<std::uint64_t> commands{0};
  std::atomic<std::uint64_t> pushes{0};        // messages delivered to subscribers
  std::atomic<std::uint64_t> publications{0};  // accepted publishes (clients and API)
  std::atomic<std::uint64_t> errors{0};        // error replies
  std::atomic<std::uint64_t> subscriptions{0};
  std::atomic<std::uint64_t> resubscribes{0};  // subscribers told to resubscribe (engine lost continuity)
  // Engine events not queued for a loop: limits.max_pending_deliveries were waiting.
  std::atomic<std::uint64_t> deliveries_overflowed{0};
  // WebSocket messages and their payload bytes, counted by the transport
  // (every frame: commands in; replies and pushes out).
  std::atomic<std::uint64_t> messages_in{0};
  std::atomic<std::uint64_t> messages_out{0};
  std::atomic<std::uint64_t> bytes_in{0};
  std::atomic<std::uint64_t> bytes_out{0};
  // "" first, then the configured namespaces by name; fixed after the Hub is built.
  std::vector<std::unique_ptr<NamespaceCounters>> namespaces;
  FanoutLatency fanout_latency;
  // Sessions closed, by close code (WebSocket codes are < 5000).
  std::array<std::atomic<std::uint64_t>, 5000> closes{};
  void count_close(std::uint16_t code) {
    if (code < closes.size()) closes[code].fetch_add(1, std::memory_order_relaxed);
  }
};

struct ApiError {
  int code = 0;  // 0: success
  std::string message;
};

class Hub {
 public:
  Hub(HubConfig config, std::unique_ptr<engines::Engine> engine, TokenVerifier verifier,
      std::vector<net::EventLoop*> loops);
  ~Hub();
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  // Starts the per-loop timers (token expiry, auth timeout, stats). Call once
  // the loops exist; safe before they run.
  void start();

  // ---- transport side ----
  // Whether a client may open a session: Origin, then the request's token
  // (any thread; every transport asks this, and only this).
  Admission admit(const SessionRequest& request) const;
  // The Origin check alone, for the later requests of a session (a command
  // POST, a poll, an SSE resume): admit() applies it when a session opens.
  bool allows_origin(std::string_view origin, std::string_view host) const;
  // A new session for an admitted request (on `loop`'s thread). With claims
  // it is authenticated at once (the `connected` push goes out); without,
  // its first command must be `authenticate`. `transport` must outlive the
  // session's Hub::closed.
  std::shared_ptr<Session> open(net::EventLoop& loop, Transport& transport, const Admission& admission);
  // One command from the session's client (on its loop). The session stays
  // valid for the caller after this returns, whatever the command did.
  void command(Session& session, std::string_view frame);
  // The transport ends the session for a fault at its own level (duplex.v1
  // over a binary WebSocket frame): the disconnect push, then request_close,
  // and from now on the session's commands are dropped, as for every other
  // disconnect (on the session's loop).
  void disconnect(Session& session, std::uint16_t code, std::string_view reason);
  // The transport is gone (on the session's loop): no more calls into it.
  // The only way a session ends; a transport calls it once, from its own
  // loop turn, never from inside one of its Transport methods.
  void closed(Session& session);
  // Verifies a token now (any thread).
  TokenError verify_token(std::string_view token, TokenClaims& claims) const;

  // ---- backend API (any thread; `done` runs on an arbitrary thread) ----
  void api_publish(std::string channel, std::string data, std::string idempotency_key,
                   std::function<void(ApiError, StreamPosition, bool duplicate)> done);
  void api_history(std::string channel, std::size_t limit, std::optional<StreamPosition> since, bool reverse,
                   std::function<void(ApiError, engines::HistoryResult)> done);
  void api_presence(std::string channel, std::function<void(ApiError, std::vector<ClientInfo>)> done);
  // Unsubscribes every session of `user` on this node from `channel` (they
  // get the server-side unsubscribe push); returns at once.
  void api_unsubscribe(std::string user, std::string channel);
  // Disconnects every session of `user` on this node; returns at once.
  void api_disconnect(std::string user, std::uint16_t code, std::string reason);
  // Channels with subscribers on this node, with their subscriber counts.
  std::vector<std::pair<std::string, std::size_t>> api_channels() const;
  // How many channels have subscribers on this node (no copy of the list).
  std::size_t channel_count() const;
  // Engine events waiting for the loops, summed over the loops (any thread).
  std::size_t pending_deliveries() const;

  // Graceful shutdown, the same for every transport: each session gets the
  // disconnect push (`code`, reconnect) and its transport's request_close,
  // which puts the push on the wire before the connection ends. Returns once
  // every loop has done so, or after `wait` (a loop that is not running).
  // From then on admit() refuses new sessions (503).
  void drain(std::uint16_t code, std::string reason, std::chrono::milliseconds wait);
  // Stops timers and the engine (pending publishes are finished first).
  void stop();

  const HubConfig& config() const { return config_; }
  const HubCounters& counters() const { return counters_; }
  HubCounters& counters() { return counters_; }
  void count_close(std::uint16_t code) { counters_.count_close(code); }
  // SIGHUP (any thread): token keys and the per-operation limits
  // (publish_rate, publish_burst, rate_violations_before_disconnect,
  // max_subscriptions) take effect for the next command. Everything else in
  // config() stays as it was at start.
  // auth.allowed_origins applies to the next session opened.
  void reload(TokenVerifier verifier, const HubLimits& limits, std::vector<std::string> allowed_origins);
  // The limits now in force (reloadable ones may differ from config().limits).
  std::shared_ptr<const HubLimits> limits() const { return live_limits_.load(std::memory_order_acquire); }
  // This node as the registry shows it (counters now).
  engines::NodeInfo node_info() const;
  std::int64_t started_ms() const { return started_ms_; }
  engines::Engine& engine() { return *engine_; }
  const std::string& node_name() const { return config_.node_name; }
  const Codec& codec() const { return codec_; }

  // Channel name checks shared with the API: empty string if valid, else why not.
  std::string check_channel(std::string_view channel, const NamespaceOptions** options) const;

 private:
  friend class Session;
  friend struct Shard;
  Shard& shard_of(net::EventLoop& loop);
  void on_engine_event(const engines::ChannelEvent& event);
  void subscribe(Session& client, Command command);
  bool fits_in_one_reply(const std::vector<PublicationPtr>& publications) const;
  bool unsubscribe(Session& client, std::string_view channel);
  // Server-side unsubscribe of `channel` for each live client subscribed to
  // it, with the unsubscribe push; returns how many were told.
  std::size_t unsubscribe_and_tell(const std::vector<std::shared_ptr<Session>>& clients, const std::string& channel,
                                   int code, std::string_view reason);
  void publish(Session& client, Command command);
  void channel_added(const std::string& channel);
  void channel_removed(const std::string& channel);
  engines::HistoryOptions history_options(const NamespaceOptions& ns) const;
  void publish_stats();
  void heartbeat();  // this node's NodeInfo to the engine's registry
  NamespaceCounters& namespace_counters(const NamespaceOptions* options);

  HubConfig config_;
  std::unique_ptr<engines::Engine> engine_;
  std::atomic<std::shared_ptr<const TokenVerifier>> verifier_;
  std::atomic<std::shared_ptr<const HubLimits>> live_limits_;
  std::atomic<std::shared_ptr<const std::vector<std::string>>> allowed_origins_;
  const Codec& codec_;
  std::vector<std::unique_ptr<Shard>> shards_;
  HubCounters counters_;
  mutable std::mutex channels_mutex_;
  std::unordered_map<std::string, std::size_t> channel_counts_;  // subscribers on this node
  std::atomic<std::uint64_t> next_client_{1};
  std::string client_prefix_;
  std::atomic<bool> stopped_{false};
  std::atomic<bool> draining_{false};
  std::unordered_map<const NamespaceOptions*, NamespaceCounters*> namespace_counters_;  // fixed after construction
  std::int64_t started_ms_ = 0;
  std::chrono::steady_clock::time_point last_heartbeat_{};  // the first shard's loop only
};

}  // namespace duplex::hub
