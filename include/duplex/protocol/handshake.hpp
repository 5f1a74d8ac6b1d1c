// The RFC 6455 §4 opening handshake, both roles (sans-I/O: heads in, bytes out).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/protocol/extensions.hpp"
#include "duplex/protocol/http_head.hpp"

namespace duplex::protocol {

// base64(SHA-1(key + GUID)).
std::string compute_accept_key(std::string_view client_key);
std::string base64_encode(std::string_view bytes);
// Strict RFC 4648 decoding with padding; false on any invalid input.
bool base64_decode(std::string_view text, std::string& out);

// ---- server side ----------------------------------------------------------

// What a valid upgrade request asks for; views into the parsed HttpHead.
struct UpgradeRequest {
  std::string_view target;       // request-target, e.g. "/chat?token=x"
  std::string_view host;
  std::string_view key;          // Sec-WebSocket-Key as sent
  std::string_view origin;       // empty if absent
  std::vector<std::string> subprotocols;     // in client preference order
  std::vector<ExtensionOffer> extensions;    // parsed offers, in order
};

struct HandshakeRejection {
  int status = 400;              // 400, 403, 426, ...
  std::string message;           // short reason, also the response body
};

// Validates a parsed request head against RFC 6455 §4.2.1. On success fills
// `out` and returns true; otherwise fills `rejection` (426 + version header
// for a wrong Sec-WebSocket-Version, 400 for everything else).
bool validate_upgrade_request(const HttpHead& head, UpgradeRequest& out,
                              HandshakeRejection& rejection);

struct AcceptOptions {
  std::string_view subprotocol;        // chosen one, or empty for none
  std::string_view extensions;         // Sec-WebSocket-Extensions answer, or empty
  std::vector<HttpHeader> extra_headers;
};

// The 101 Switching Protocols response.
std::string build_accept_response(std::string_view client_key, const AcceptOptions& options);

// A complete error response with `Connection: close`, a text/plain body and,
// for 426, `Sec-WebSocket-Version: 13`.
std::string build_rejection_response(const HandshakeRejection& rejection);

// Picks the first client-offered subprotocol that the server supports
// (server list order is irrelevant; client preference wins). Empty if none.
std::string_view select_subprotocol(const std::vector<std::string>& offered,
                                    const std::vector<std::string>& supported);

// ---- client side ----------------------------------------------------------

struct ClientRequestOptions {
  std::string host;                    // Host header value (with :port when non-default)
  std::string target = "/";            // path and query
  std::string origin;                  // optional
  std::vector<std::string> subprotocols;
  std::string extensions;              // Sec-WebSocket-Extensions offer, optional
  std::vector<HttpHeader> extra_headers;
};

// A new Sec-WebSocket-Key from 16 random bytes (the caller supplies them).
std::string make_client_key(const std::array<std::uint8_t, 16>& random_bytes);

std::string build_upgrade_request(const ClientRequestOptions& options, std::string_view key);

struct UpgradeResponse {
  std::string subprotocol;             // empty if the server chose none
  std::vector<ExtensionOffer> extensions;  // what the server accepted
};

// Validates a parsed response head against RFC 6455 §4.1 (status 101,
// Upgrade/Connection tokens, Sec-WebSocket-Accept, a subprotocol we offered,
// extensions well formed). On failure returns false with `error` set.
bool validate_upgrade_response(const HttpHead& head, std::string_view key,
                               const std::vector<std::string>& offered_subprotocols,
                               UpgradeResponse& out, std::string& error);

}  // namespace duplex::protocol
