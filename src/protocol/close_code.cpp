#include "duplex/protocol/close_code.hpp"

namespace duplex::protocol {

std::string_view close_code_name(std::uint16_t code) {
  switch (code) {
    case 1000: return "normal closure";
    case 1001: return "going away";
    case 1002: return "protocol error";
    case 1003: return "unsupported data";
    case 1005: return "no status code";
    case 1006: return "abnormal closure";
    case 1007: return "invalid payload data";
    case 1008: return "policy violation";
    case 1009: return "message too big";
    case 1010: return "mandatory extension";
    case 1011: return "internal error";
    case 1012: return "service restart";
    case 1013: return "try again later";
    case 1014: return "bad gateway";
    default: break;
  }
  if (code >= 3000 && code <= 3999) return "registered (3000-3999)";
  if (code >= 4000 && code <= 4999) return "application (4000-4999)";
  return "invalid";
}

}  // namespace duplex::protocol
