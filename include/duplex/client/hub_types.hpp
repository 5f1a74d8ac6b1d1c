// Values and callbacks of the C++ hub client (HubSession, HubClient): errors,
// received messages, command results and the application's handlers.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "duplex/wire/command.hpp"
#include "duplex/wire/types.hpp"

namespace duplex::client {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Millis = std::chrono::milliseconds;

// The error codes of docs/PROTOCOL.md, plus the client's own (900 and up,
// never sent by a server).
namespace error_code {
using namespace hub::error_code;  // the protocol's codes, 100-113 (include/duplex/wire/command.hpp)
// Client side:
inline constexpr int timeout = 901;           // no reply within the command timeout
inline constexpr int queue_overflow = 902;    // dropped: too many commands waiting for a connection
inline constexpr int closed = 903;            // the client closed (or the server refused to let it reconnect)
inline constexpr int invalid_argument = 904;  // rejected before sending: bad channel, data or key
inline constexpr int token_unavailable = 905; // the token provider failed
inline constexpr int bad_frame = 906;         // the server sent a frame the client cannot read
}  // namespace error_code

struct Error {
  int code = 0;
  std::string message;
};

// A command's result, or why it failed.
template <class T>
struct Outcome {
  std::optional<Error> error;
  T value{};
  bool ok() const { return !error.has_value(); }
};

// A publication pushed to a subscription (live or recovered).
struct Message {
  std::string channel;
  std::string epoch;
  std::uint64_t offset = 0;
  std::string data;  // raw JSON value, as the server sent it
  std::string info;  // raw JSON publisher object {"user","client","info"}, or empty (HTTP API)
};

struct SubscribedEvent {
  std::string channel;
  hub::StreamPosition position;  // where the stream stood when the subscription took effect
  bool recoverable = false;      // the namespace keeps history for recovery
  bool recovering = false;       // this subscribe asked to recover from a previous position
  bool recovered = false;        // every missed message was delivered (only when recovering)
};

// Messages were lost and cannot be recovered (recovered:false, or the epoch
// changed): the application must reload its state from its backend.
struct GapEvent {
  std::string channel;
  hub::StreamPosition last_seen;  // the last position delivered before the gap
  hub::StreamPosition resumed_at; // the stream continues after this position
};

struct UnsubscribedEvent {
  std::string channel;
  int code = 0;  // the server's unsubscribe code, or an error code of a failed subscribe
  std::string reason;
};

// Callbacks of one subscription; any may be empty.
struct SubscriptionHandlers {
  std::function<void(const Message&)> on_message;
  std::function<void(const SubscribedEvent&)> on_subscribed;
  std::function<void(const GapEvent&)> on_gap;
  // A subscribe attempt failed; `will_retry` if the client tries again by itself.
  std::function<void(const std::string& channel, const Error&, bool will_retry)> on_error;
  // The subscription ended without the application asking (server-side
  // unsubscribe, or a permanent subscribe error).
  std::function<void(const UnsubscribedEvent&)> on_unsubscribed;
  std::function<void(const std::string& channel, const hub::ClientInfo&)> on_join;
  std::function<void(const std::string& channel, const hub::ClientInfo&)> on_leave;
};

struct SubscribeOptions {
  std::string token;  // subscribe token for channels the connection token does not grant
  // Resume from a position kept by the application (e.g. across restarts):
  // the first subscribe already asks for recovery.
  std::optional<hub::StreamPosition> since;
};

struct PublishOptions {
  std::string idempotency_key;  // empty: a random 16-hex-digit key is generated
};

struct PublishResult {
  std::string epoch;
  std::uint64_t offset = 0;
  bool duplicate = false;  // the server had already applied this idempotency key
  std::string idempotency_key;
};

struct PresenceResult {
  std::vector<hub::ClientInfo> clients;
};

struct HistoryOptions {
  std::optional<std::size_t> limit;
  std::optional<hub::StreamPosition> since;
  bool reverse = false;
};

struct HistoryResult {
  hub::StreamPosition position;                // the channel's current position
  std::vector<hub::Publication> publications;  // publisher = raw JSON info, time_ms unused
};

using PublishCallback = std::function<void(const Outcome<PublishResult>&)>;
using PresenceCallback = std::function<void(const Outcome<PresenceResult>&)>;
using HistoryCallback = std::function<void(const Outcome<HistoryResult>&)>;

// Tokens fetched on demand (every connect, and when the server asks for a
// refresh). The provider answers by calling `done`, now or later, from any
// thread; a non-empty `error` means no token could be had (the client backs
// off and tries again).
struct TokenResult {
  std::string token;
  std::string error;
};
using TokenProvider = std::function<void(std::function<void(TokenResult)> done)>;

enum class ConnectionState : std::uint8_t {
  disconnected,  // not connected; a reconnect may be scheduled
  connecting,    // transport opening or authenticating
  connected,
  closed,        // stopped: closed by the application or refused by the server; connect() again to resume
};

struct ConnectedEvent {
  std::string client;  // this connection's id
  std::string user;
  std::string node;
  std::optional<std::int64_t> expires;  // token expiry, Unix seconds
  std::uint64_t ping_seconds = 0;       // heartbeat period announced by the server
};

struct DisconnectedEvent {
  std::uint16_t code = 0;
  std::string reason;
  bool will_reconnect = false;
  Millis reconnect_delay{0};
};

struct StateHandlers {
  std::function<void()> on_connecting;
  std::function<void(const ConnectedEvent&)> on_connected;
  std::function<void(const DisconnectedEvent&)> on_disconnected;
  // The server accepted a refreshed token; `expires` is its expiry (Unix
  // seconds), as `ConnectedEvent::expires` was the first token's.
  std::function<void(std::int64_t expires)> on_token_refreshed;
  // Problems that belong to no command: authentication refused, token
  // provider failures, malformed server frames.
  std::function<void(const Error&)> on_error;
};

}  // namespace duplex::client
