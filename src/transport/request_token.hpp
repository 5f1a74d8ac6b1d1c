// Internal: the token a request carries, for WebSocket upgrades and the
// fallback endpoints alike.
#pragma once
#include <string>
#include <string_view>

#include "duplex/protocol/http_head.hpp"
#include "duplex/protocol/http_response.hpp"

namespace duplex::transport {

// "Authorization: Bearer <token>", else the `token` query parameter, else empty.
inline std::string request_token(const protocol::HttpHead& head, std::string_view query) {
  const std::string_view auth = head.get("Authorization");
  if (auth.size() > 7 && protocol::iequals(auth.substr(0, 7), "Bearer ")) return std::string(auth.substr(7));
  std::string token;
  if (protocol::query_param(query, "token", token)) return token;
  return {};
}

}  // namespace duplex::transport
