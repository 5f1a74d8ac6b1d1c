#include "duplex/net/url.hpp"

#include <charconv>

namespace duplex::net {

std::string WsUrl::host_header() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  if (port != (secure ? 443 : 80)) h += ":" + std::to_string(port);
  return h;
}

std::optional<WsUrl> parse_ws_url(std::string_view url, std::string& error) {
  WsUrl out;
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) {
    error = "URL must start with ws:// or wss://";
    return std::nullopt;
  }
  std::string scheme(url.substr(0, scheme_end));
  for (auto& ch : scheme) ch = static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
  if (scheme == "ws" || scheme == "http") out.secure = false;
  else if (scheme == "wss" || scheme == "https") out.secure = true;
  else {
    error = "unsupported URL scheme '" + scheme + "' (use ws:// or wss://)";
    return std::nullopt;
  }
  std::string_view rest = url.substr(scheme_end + 3);
  if (rest.find('#') != std::string_view::npos) {
    error = "URL must not contain a fragment";
    return std::nullopt;
  }
  const auto path_start = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, path_start);
  out.target = path_start == std::string_view::npos ? "/" : std::string(rest.substr(path_start));
  if (out.target[0] == '?') out.target.insert(out.target.begin(), '/');
  if (authority.find('@') != std::string_view::npos) {
    error = "URL must not contain user information";
    return std::nullopt;
  }
  std::string_view port_text;
  if (!authority.empty() && authority[0] == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      error = "unterminated IPv6 address in URL";
      return std::nullopt;
    }
    out.host = std::string(authority.substr(1, close - 1));
    const auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        error = "garbage after IPv6 address in URL";
        return std::nullopt;
      }
      port_text = after.substr(1);
    }
  } else {
    const auto colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (out.host.empty()) {
    error = "URL has no host";
    return std::nullopt;
  }
  out.port = out.secure ? 443 : 80;
  if (!port_text.empty()) {
    unsigned p = 0;
    auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), p);
    if (ec != std::errc{} || ptr != port_text.data() + port_text.size() || p == 0 || p > 65535) {
      error = "invalid port in URL";
      return std::nullopt;
    }
    out.port = static_cast<std::uint16_t>(p);
  }
  for (char ch : out.target) {
    if (static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7F) {
      error = "URL path contains spaces or control characters";
      return std::nullopt;
    }
  }
  return out;
}

}  // namespace duplex::net
