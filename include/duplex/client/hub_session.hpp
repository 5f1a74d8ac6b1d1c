// The hub client's protocol logic (duplex.v1, docs/PROTOCOL.md) as a pure
// state machine: no sockets, no timers, no clock reads. A driver (HubClient,
// or a test) feeds it transport events and the current time, and carries out
// what it asks for: frames to send, a token to fetch, the transport to close,
// a reconnect after a delay.
//
// What it does for the application:
// - authenticates on every connect (a fixed token, or one fetched each time)
//   and answers the server's `refresh` push with a fresh token;
// - keeps subscriptions across reconnects: resubscribes with recover:true
//   from the last (epoch, offset) delivered, delivers recovered publications
//   and then live ones in offset order, none twice, and reports a GapEvent
//   when the server cannot recover (the app must reload its state);
// - queues publishes (and presence/history requests) while disconnected,
//   each publish with an idempotency key it keeps across resends, so a
//   publish is applied once however many times the connection drops;
// - matches replies to commands by id, with timeouts driven by tick(now);
// - decides whether to reconnect from the close code (PROTOCOL.md's table)
//   and how long to wait: exponential backoff with full jitter.
//
// Callbacks run synchronously inside the call that triggered them and may
// call back into the session (subscribe, publish, ...).
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/client/hub_types.hpp"
#include "duplex/wire/command.hpp"

namespace duplex::wire {
class ServerFrameParser;  // the duplex.v1 reader (src/wire/server_frames.hpp)
struct ServerFrame;
}  // namespace duplex::wire

namespace duplex::client {

struct SessionOptions {
  std::string token;                // sent in `authenticate` when no provider is used; empty = anonymous
  bool use_token_provider = false;  // ask the driver for a token (take_token_request) on every connect
  Millis backoff_base{500};         // reconnect delay = random(0, min(cap, base * 2^attempt))
  Millis backoff_cap{20'000};
  Millis command_timeout{10'000};   // a reply (or a requested token) must arrive within this
  Millis ping_timeout{10'000};      // stale if no frame arrives within the server's ping period + this
  std::size_t max_queued_publishes = 1000;  // waiting for a connection (presence/history requests count too)
  std::size_t max_data_bytes = 64u << 10;  // publish data; match the server's limits.max_data_bytes
  std::size_t max_early_messages = 10'000; // pushes held per channel while its subscribe reply is pending
};

enum class SubscriptionState : std::uint8_t {
  unsubscribed,  // not wanted (never subscribed, unsubscribed, or refused by the server)
  subscribing,   // wanted, not in effect yet: waiting for a connection, a reply or a retry
  subscribed,
};

// The session wants the transport closed (stale connection, refused token,
// application close). The transport's close then comes back through
// on_transport_closed, which applies the decision taken here.
struct CloseRequest {
  std::uint16_t code = 1000;
  std::string reason;
};

struct ReconnectDecision {
  bool reconnect = false;
  Millis delay{0};
};

// Close codes the session uses when it drops a transport itself.
namespace session_close {
inline constexpr std::uint16_t normal = 1000;         // the application closed
inline constexpr std::uint16_t stale = 4002;          // no frame within ping + ping_timeout, or a command timed out
inline constexpr std::uint16_t token_expired = 4502;  // authenticate answered 109
inline constexpr std::uint16_t invalid_token = 4501;  // authenticate refused the token (101)
inline constexpr std::uint16_t auth_failed = 4000;    // authenticate failed otherwise (retry)
}  // namespace session_close

class HubSession {
 public:
  // Uniform 64-bit random numbers: reconnect jitter and idempotency keys.
  using Random = std::function<std::uint64_t()>;

  explicit HubSession(SessionOptions options = {}, Random random = {});
  ~HubSession();
  HubSession(const HubSession&) = delete;
  HubSession& operator=(const HubSession&) = delete;

  void set_state_handlers(StateHandlers handlers);

  // ---- transport events: the driver's inputs ----
  // The driver starts opening a transport (first connect or a reconnect).
  void on_transport_connecting(TimePoint now);
  void on_transport_open(TimePoint now);
  void on_text(std::string_view frame, TimePoint now);
  // The transport closed, or failed to open (use 1006). Says whether and
  // when to reconnect.
  ReconnectDecision on_transport_closed(std::uint16_t code, std::string_view reason, TimePoint now);
  // The answer to take_token_request(); stale requests are ignored.
  void on_token(std::uint64_t request, TokenResult result, TimePoint now);
  // Timeouts, heartbeat and subscribe retries. Call at least every ~100 ms.
  void tick(TimePoint now);

  // ---- outputs ----
  std::vector<std::string> take_outgoing();
  std::optional<std::uint64_t> take_token_request();
  std::optional<CloseRequest> take_close_request();

  // ---- application ----
  // Errors returned here are immediate rejections (invalid argument); the
  // rest arrive through the handlers and callbacks.
  std::optional<Error> subscribe(std::string channel, SubscriptionHandlers handlers, SubscribeOptions options,
                                 TimePoint now);
  void unsubscribe(std::string_view channel, TimePoint now);
  std::optional<Error> publish(std::string channel, std::string data, PublishCallback done, PublishOptions options,
                               TimePoint now);
  std::optional<Error> presence(std::string channel, PresenceCallback done, TimePoint now);
  std::optional<Error> history(std::string channel, HistoryOptions options, HistoryCallback done, TimePoint now);
  // Stops: no reconnect; queued and in-flight commands fail with `closed`.
  // Subscriptions are kept and resume (with recovery) on the next connect.
  void close(TimePoint now);

  // ---- state ----
  ConnectionState state() const;
  SubscriptionState subscription_state(std::string_view channel) const;
  // The last position delivered on `channel`, if any.
  std::optional<hub::StreamPosition> position(std::string_view channel) const;
  std::size_t queued_commands() const { return queue_.size(); }
  std::size_t in_flight_commands() const { return in_flight_.size(); }
  Millis ping_interval() const { return ping_; }
  unsigned reconnect_attempt() const { return attempt_; }
  std::uint64_t malformed_frames() const { return malformed_frames_; }
  std::uint64_t duplicates_dropped() const { return duplicates_dropped_; }

  // ---- rules, exposed for the driver and tests ----
  // Full jitter: uniform in [0, min(cap, base * 2^attempt)], from `random`.
  static Millis full_jitter(Millis base, Millis cap, unsigned attempt, std::uint64_t random);
  // PROTOCOL.md's disconnect table (and WebSocket codes): reconnect or not.
  static bool should_reconnect(std::uint16_t code);
  static std::optional<Error> validate_channel(std::string_view channel);
  static std::optional<Error> validate_publish(std::string_view channel, std::string_view data,
                                               std::string_view idempotency_key, std::size_t max_data_bytes);

 private:
  enum class Phase : std::uint8_t { idle, opening, awaiting_token, authenticating, connected, closed };
  using CommandKind = hub::CommandType;  // the wire's (never `unknown` here)
  struct Command {
    CommandKind kind = CommandKind::ping;
    std::uint64_t seq = 0;  // creation order: resends keep it
    std::uint64_t id = 0;   // wire id of the current send
    TimePoint deadline{};
    std::string channel;
    std::string payload;  // publish: data; authenticate/refresh: token; subscribe: subscribe token
    std::string key;      // publish: idempotency key
    bool recover = false;  // subscribe
    hub::StreamPosition since;
    HistoryOptions history;
    PublishCallback on_publish;
    PresenceCallback on_presence;
    HistoryCallback on_history;
  };
  struct Subscription;
  using SubscriptionPtr = std::shared_ptr<Subscription>;
  struct ForcedClose {
    std::uint16_t code = 0;
    std::string reason;
    bool reconnect = false;
  };

  void set_phase(Phase phase);
  void emit_disconnected(std::uint16_t code, std::string reason, bool will_reconnect, Millis delay);
  void report_error(int code, std::string message);
  void request_close(std::uint16_t code, std::string reason, bool reconnect);

  void send_command(Command command, TimePoint now);
  void enqueue(Command command);
  void flush_queue(TimePoint now);
  void fail_all_commands(const Error& error);
  static void fail_command(Command& command, const Error& error);
  void send_authenticate(const std::string& token, TimePoint now);
  void send_subscribe(const SubscriptionPtr& sub, TimePoint now);
  std::uint64_t request_token();

  void handle_reply(Command command, wire::ServerFrame& frame, TimePoint now);
  void handle_connected(wire::ServerFrame& frame, TimePoint now);
  void handle_auth_error(const Error& error);
  void handle_subscribe_reply(const Command& command, wire::ServerFrame& frame, TimePoint now);
  void handle_message(wire::ServerFrame& frame);
  // Delivers one publication to a subscribed channel unless it is a
  // duplicate; false if the subscription went away during the callback.
  bool deliver(const SubscriptionPtr& sub, Message& message);
  bool still_current(const SubscriptionPtr& sub) const;
  SubscriptionPtr find_subscription(std::string_view channel) const;
  std::string new_idempotency_key();

  SessionOptions options_;
  Random random_;
  StateHandlers state_handlers_;
  std::unique_ptr<wire::ServerFrameParser> parser_;

  Phase phase_ = Phase::idle;
  unsigned attempt_ = 0;  // consecutive reconnects since the last successful connect
  std::optional<ForcedClose> forced_close_;
  std::optional<ForcedClose> disconnect_push_;  // the server's `disconnect` push, if one came
  bool close_requested_ = false;

  std::uint64_t next_id_ = 1;
  std::uint64_t next_seq_ = 1;
  std::deque<Command> queue_;                // waiting for a connection, in creation order
  std::map<std::uint64_t, Command> in_flight_;  // by id

  std::map<std::string, SubscriptionPtr, std::less<>> subscriptions_;

  std::vector<std::string> outgoing_;
  std::optional<CloseRequest> close_request_;
  std::optional<std::uint64_t> token_request_;  // not yet taken by the driver
  std::uint64_t token_request_id_ = 0;          // the one we wait for (0: none)
  bool token_for_refresh_ = false;
  TimePoint token_deadline_{};

  Millis ping_{0};
  TimePoint last_frame_at_{};
  TimePoint next_ping_at_{};

  std::uint64_t malformed_frames_ = 0;
  std::uint64_t duplicates_dropped_ = 0;
};

}  // namespace duplex::client
