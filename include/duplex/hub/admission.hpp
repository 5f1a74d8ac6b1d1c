// Admission of a new session, the same for every transport: the Origin
// allow-list against cross-site hijacking, then the token that came with the
// request (Authorization header or query), if any. Written once here so that
// WebSocket, SSE and long-polling cannot diverge.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/hub/token.hpp"

namespace duplex::hub {

// What a transport knows about a client asking for a session.
struct SessionRequest {
  std::string_view origin;  // the Origin header; empty: not from a browser
  std::string_view host;    // the Host header (the default Origin policy is "same host")
  std::string token;        // empty: the first command must be `authenticate`
};

struct Admission {
  int status = 0;  // 0: admitted; else the HTTP status to refuse with (403 origin, 401 token)
  std::string reason;
  std::unique_ptr<TokenClaims> claims;  // the token's, if one came
  bool admitted() const { return status == 0; }
};

// An allow-list (`*` allows any), or with an empty list the page's own host.
bool origin_allowed(const std::vector<std::string>& allowed, std::string_view origin, std::string_view host);

}  // namespace duplex::hub
