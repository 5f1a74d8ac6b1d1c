// Sec-WebSocket-Extensions header grammar (RFC 6455 §9.1).
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace duplex::protocol {

struct ExtensionParam {
  std::string name;
  std::optional<std::string> value;  // unquoted; nullopt when given without '='
};

struct ExtensionOffer {
  std::string name;
  std::vector<ExtensionParam> params;
};

// Parses `extension-list = 1#extension` (tokens, `;` params, values as token
// or quoted-string whose unquoted content must itself be a token). Returns
// nullopt on any grammar error. Empty input gives an empty list.
std::optional<std::vector<ExtensionOffer>> parse_extensions(std::string_view header);

// Serialises back to header syntax: "name; a; b=1, other".
std::string format_extensions(const std::vector<ExtensionOffer>& list);

}  // namespace duplex::protocol
