#include "duplex/hub/admission.hpp"

#include "duplex/protocol/http_head.hpp"

namespace duplex::hub {

bool origin_allowed(const std::vector<std::string>& allowed, std::string_view origin, std::string_view host) {
  if (origin.empty()) return true;  // not a browser: nothing to hijack
  for (const auto& a : allowed)
    if (a == "*" || a == origin) return true;
  if (!allowed.empty()) return false;
  const auto scheme_end = origin.find("://");
  if (scheme_end == std::string_view::npos) return false;
  return protocol::iequals(origin.substr(scheme_end + 3), host);
}

}  // namespace duplex::hub
