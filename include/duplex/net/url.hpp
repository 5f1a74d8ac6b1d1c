// ws:// and wss:// URLs.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace duplex::net {

struct WsUrl {
  bool secure = false;
  std::string host;      // without brackets for IPv6
  std::uint16_t port = 0;
  std::string target;    // path + query, at least "/"
  // Host header value: host, bracketed if IPv6, with :port if not the default.
  std::string host_header() const;
};

// Parses ws://host[:port][/path][?query] (also wss, http, https). Userinfo
// and fragments are rejected. Returns nullopt with `error` set on failure.
std::optional<WsUrl> parse_ws_url(std::string_view url, std::string& error);

}  // namespace duplex::net
