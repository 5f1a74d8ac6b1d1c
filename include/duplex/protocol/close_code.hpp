// Close status codes (RFC 6455 §7.4) and which of them may appear on the wire.
#pragma once
#include <cstdint>
#include <string_view>

namespace duplex::protocol {

namespace close_code {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t going_away = 1001;
inline constexpr std::uint16_t protocol_error = 1002;
inline constexpr std::uint16_t unsupported_data = 1003;
inline constexpr std::uint16_t no_status = 1005;         // never sent: "no code in the frame"
inline constexpr std::uint16_t abnormal = 1006;          // never sent: "TCP closed without close frame"
inline constexpr std::uint16_t invalid_payload = 1007;
inline constexpr std::uint16_t policy_violation = 1008;
inline constexpr std::uint16_t message_too_big = 1009;
inline constexpr std::uint16_t mandatory_extension = 1010;
inline constexpr std::uint16_t internal_error = 1011;
inline constexpr std::uint16_t service_restart = 1012;
inline constexpr std::uint16_t try_again_later = 1013;
inline constexpr std::uint16_t bad_gateway = 1014;
}  // namespace close_code

// True if `code` may be sent in a close frame: 1000-1003, 1007-1014 (IANA
// registry), 3000-4999 (libraries and applications).
constexpr bool is_valid_wire_close_code(std::uint16_t code) {
  if (code >= 3000 && code <= 4999) return true;
  if (code >= 1000 && code <= 1003) return true;
  return code >= 1007 && code <= 1014;
}

std::string_view close_code_name(std::uint16_t code);

}  // namespace duplex::protocol
