#include <charconv>

#include "commands.hpp"

namespace duplex::cli {

bool split_host_port(const std::string& text, std::string& host, std::uint16_t& port, std::string& error) {
  std::string_view port_text;
  if (!text.empty() && text[0] == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      error = "expected [ADDRESS]:PORT, got '" + text + "'";
      return false;
    }
    host = text.substr(1, close - 1);
    port_text = std::string_view(text).substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) {
      error = "expected HOST:PORT, got '" + text + "'";
      return false;
    }
    host = text.substr(0, colon);
    port_text = std::string_view(text).substr(colon + 1);
  }
  unsigned p = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), p);
  if (ec != std::errc{} || ptr != port_text.data() + port_text.size() || p > 65535) {
    error = "invalid port in '" + text + "'";
    return false;
  }
  port = static_cast<std::uint16_t>(p);
  if (host.empty()) host = "0.0.0.0";
  return true;
}

}  // namespace duplex::cli
