// Internal: what an HTTP request asking for a hub session carries (its
// token, Origin and Host), read the same way for WebSocket upgrades and the
// fallback endpoints.
#pragma once
#include <string>
#include <string_view>

#include "duplex/hub/admission.hpp"
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

// For hub::Hub::admit; the views point into `head`.
inline hub::SessionRequest session_request(const protocol::HttpHead& head, std::string_view query) {
  return hub::SessionRequest{head.get("Origin"), head.get("Host"), request_token(head, query)};
}

}  // namespace duplex::transport
