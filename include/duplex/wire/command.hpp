// Decoded client commands and the hub's error and disconnect codes
// (docs/PROTOCOL.md). Codecs turn frames into Commands; channel logic never
// sees the encoding.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace duplex::hub {

enum class CommandType : std::uint8_t {
  authenticate, subscribe, unsubscribe, publish, presence, history, refresh, ping, unknown
};

// How a frame decoded as a command.
enum class DecodeStatus : std::uint8_t {
  ok,
  malformed,    // not a command at all: the connection is closed with 4500
  bad_request,  // a command with an id but a bad or missing field: error 107
};

struct Command {
  CommandType type = CommandType::unknown;
  std::uint64_t id = 0;
  std::string channel;
  std::string token;
  std::string data;             // raw JSON (publish)
  std::string idempotency_key;  // publish
  // subscribe
  bool recover = false;
  std::string epoch;
  std::uint64_t offset = 0;
  // history
  bool has_since = false;
  std::string since_epoch;
  std::uint64_t since_offset = 0;
  bool has_limit = false;
  std::uint64_t limit = 0;
  bool reverse = false;
};

namespace error_code {
inline constexpr int internal = 100;
inline constexpr int unauthorized = 101;
inline constexpr int unknown_channel = 102;
inline constexpr int permission_denied = 103;
inline constexpr int unknown_command = 104;
inline constexpr int already_subscribed = 105;
inline constexpr int limit_exceeded = 106;
inline constexpr int bad_request = 107;
inline constexpr int not_available = 108;
inline constexpr int token_expired = 109;
inline constexpr int too_many_requests = 110;
inline constexpr int not_subscribed = 111;
inline constexpr int epoch_mismatch = 112;
inline constexpr int unavailable = 113;
}  // namespace error_code

namespace disconnect_code {
inline constexpr std::uint16_t shutdown = 1001;
inline constexpr std::uint16_t slow = 1008;
inline constexpr std::uint16_t too_large = 1009;
inline constexpr std::uint16_t internal = 4000;
inline constexpr std::uint16_t auth_timeout = 4001;
inline constexpr std::uint16_t stale = 4002;
inline constexpr std::uint16_t rate_limited = 4004;
inline constexpr std::uint16_t force_reconnect = 4005;
inline constexpr std::uint16_t bad_request = 4500;
inline constexpr std::uint16_t invalid_token = 4501;
inline constexpr std::uint16_t token_expired = 4502;
inline constexpr std::uint16_t disconnected = 4503;
}  // namespace disconnect_code

namespace unsubscribe_code {
inline constexpr int server = 2000;       // unsubscribed by the server (HTTP API): stay unsubscribed
inline constexpr int resubscribe = 2500;  // the node lost continuity: resubscribe at once with recovery
// 2000-2499 are final; 2500-2999 ask the client to resubscribe.
constexpr bool should_resubscribe(int code) { return code >= 2500 && code < 3000; }
}  // namespace unsubscribe_code

// Whether a client should reconnect after `code` (docs/PROTOCOL.md table).
constexpr bool should_reconnect(std::uint16_t code) {
  return !(code == 1009 || code == 4500 || code == 4501 || code == 4503);
}

}  // namespace duplex::hub
