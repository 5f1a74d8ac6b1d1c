// RFC 6455 §4 opening handshake, both roles.
//
// Header injection: everything we emit goes through `emit_header`, which
// drops (never sanitises or splits) a header whose name is not a token or
// whose value contains a CTL other than HTAB (CR, LF, NUL, ...). A dropped
// mandatory header (e.g. a Host containing CRLF) makes the peer reject the
// handshake, which is the correct outcome for garbage input.

#include "duplex/protocol/handshake.hpp"
#include "duplex/protocol/http_response.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>

namespace duplex::protocol {

namespace {

constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
constexpr std::string_view kBase64Alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

bool is_safe_value(std::string_view v) {
  for (char c : v) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\t') || u == 0x7f) return false;
  }
  return true;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Appends "name: value\r\n" unless that could corrupt the message framing.
void emit_header(std::string& out, std::string_view name, std::string_view value) {
  if (!is_token(name) || !is_safe_value(value)) return;
  value = trim_ows(value);
  out += name;
  out += ": ";
  out += value;
  out += "\r\n";
}

// Extra headers may not override the ones the handshake builders own: a
// second Upgrade/Connection/Sec-WebSocket-* line would make the message
// ambiguous (and a duplicate Key/Accept makes the peer fail), so such extra
// headers are dropped. Use the dedicated option fields instead.
bool is_managed_header(std::string_view name) {
  static constexpr std::string_view kManaged[] = {
      "Host",
      "Upgrade",
      "Connection",
      "Origin",
      "Content-Length",
      "Transfer-Encoding",
      "Sec-WebSocket-Key",
      "Sec-WebSocket-Accept",
      "Sec-WebSocket-Version",
      "Sec-WebSocket-Protocol",
      "Sec-WebSocket-Extensions",
  };
  for (auto m : kManaged) {
    if (iequals(name, m)) return true;
  }
  return false;
}

void emit_extra_headers(std::string& out, const std::vector<HttpHeader>& headers) {
  for (const auto& h : headers) {
    if (!is_managed_header(h.name)) emit_header(out, h.name, h.value);
  }
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}


bool reject(HandshakeRejection& rejection, int status, std::string message) {
  rejection.status = status;
  rejection.message = std::move(message);
  return false;
}

}  // namespace

// ---- base64 / accept key ------------------------------------------------

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  const auto byte = [&](std::size_t k) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[k]));
  };
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t n = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    out += kBase64Alphabet[(n >> 18) & 63];
    out += kBase64Alphabet[(n >> 12) & 63];
    out += kBase64Alphabet[(n >> 6) & 63];
    out += kBase64Alphabet[n & 63];
  }
  const auto rest = bytes.size() - i;
  if (rest == 1) {
    const std::uint32_t n = byte(i) << 16;
    out += kBase64Alphabet[(n >> 18) & 63];
    out += kBase64Alphabet[(n >> 12) & 63];
    out += "==";
  } else if (rest == 2) {
    const std::uint32_t n = (byte(i) << 16) | (byte(i + 1) << 8);
    out += kBase64Alphabet[(n >> 18) & 63];
    out += kBase64Alphabet[(n >> 12) & 63];
    out += kBase64Alphabet[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

// Strict RFC 4648 §4: length a multiple of 4, padding only at the very end
// (at most two '='), no whitespace, and the unused bits before the padding
// must be zero (canonical encoding, §3.5), so every byte string has exactly
// one accepted encoding.
bool base64_decode(std::string_view text, std::string& out) {
  out.clear();
  if (text.size() % 4 != 0) return false;
  std::string result;
  result.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = text[i + static_cast<std::size_t>(k)];
      if (c == '=') {
        // '=' only in the last quantum, only at positions 2 and 3, and once
        // padding starts everything after it must be padding too.
        if (!last || k < 2) return false;
        ++pad;
        v[k] = 0;
        continue;
      }
      if (pad != 0) return false;
      v[k] = base64_value(c);
      if (v[k] < 0) return false;
    }
    const std::uint32_t n = (static_cast<std::uint32_t>(v[0]) << 18) |
                            (static_cast<std::uint32_t>(v[1]) << 12) |
                            (static_cast<std::uint32_t>(v[2]) << 6) |
                            static_cast<std::uint32_t>(v[3]);
    result += static_cast<char>((n >> 16) & 0xff);
    if (pad == 2) {
      if ((n & 0xffff) != 0) return false;  // non-zero pad bits
      break;
    }
    result += static_cast<char>((n >> 8) & 0xff);
    if (pad == 1) {
      if ((n & 0xff) != 0) return false;
      break;
    }
    result += static_cast<char>(n & 0xff);
  }
  out = std::move(result);
  return true;
}

std::string compute_accept_key(std::string_view client_key) {
  std::string input;
  input.reserve(client_key.size() + kGuid.size());
  input += client_key;
  input += kGuid;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(input.data(), input.size(), digest, &digest_len, EVP_sha1(), nullptr) != 1 ||
      digest_len != 20) {
    return {};  // cannot happen with a working libcrypto; never matches a real key
  }
  return base64_encode(std::string_view(reinterpret_cast<const char*>(digest), digest_len));
}

// ---- server side --------------------------------------------------------

// Long on purpose: RFC 6455 section 4.2.1's checks in the RFC's order, each
// with its own status and reason.
bool validate_upgrade_request(const HttpHead& head, UpgradeRequest& out,
                              HandshakeRejection& rejection) {
  out = UpgradeRequest{};

  if (head.method != "GET") return reject(rejection, 400, "method must be GET");
  if (head.version_major < 1 || (head.version_major == 1 && head.version_minor < 1)) {
    return reject(rejection, 400, "HTTP/1.1 or later required");
  }

  const auto hosts = head.count("Host");
  if (hosts == 0) return reject(rejection, 400, "missing Host header");
  if (hosts > 1) return reject(rejection, 400, "duplicate Host header");
  if (head.get("Host").empty()) return reject(rejection, 400, "empty Host header");

  if (!list_contains_token(head.joined("Upgrade"), "websocket")) {
    return reject(rejection, 400, "Upgrade header must contain websocket");
  }
  if (!list_contains_token(head.joined("Connection"), "upgrade")) {
    return reject(rejection, 400, "Connection header must contain Upgrade");
  }

  // Sec-WebSocket-Version: missing or not 13 -> 426 (the rejection response
  // advertises 13); conflicting duplicates are malformed -> 400.
  const auto versions = head.count("Sec-WebSocket-Version");
  if (versions == 0) return reject(rejection, 426, "missing Sec-WebSocket-Version");
  const auto version = head.get("Sec-WebSocket-Version");
  for (const auto& h : head.headers) {
    if (iequals(h.name, "Sec-WebSocket-Version") && h.value != version) {
      return reject(rejection, 400, "conflicting Sec-WebSocket-Version headers");
    }
  }
  if (version != "13") return reject(rejection, 426, "unsupported Sec-WebSocket-Version");

  const auto keys = head.count("Sec-WebSocket-Key");
  if (keys == 0) return reject(rejection, 400, "missing Sec-WebSocket-Key");
  if (keys > 1) return reject(rejection, 400, "duplicate Sec-WebSocket-Key");
  const auto key = head.get("Sec-WebSocket-Key");
  std::string decoded;
  if (key.size() != 24 || !base64_decode(key, decoded) || decoded.size() != 16) {
    return reject(rejection, 400, "invalid Sec-WebSocket-Key");
  }

  // An upgrade request carries no body; anything announced as one would be
  // misread as WebSocket frames (request smuggling), so refuse it.
  if (head.has("Transfer-Encoding")) {
    return reject(rejection, 400, "upgrade request must not have a body");
  }
  if (head.has("Content-Length")) {
    for (const auto& h : head.headers) {
      if (iequals(h.name, "Content-Length") && h.value != "0") {
        return reject(rejection, 400, "upgrade request must not have a body");
      }
    }
  }

  // Origin is the application's decision, but it must be unambiguous.
  if (head.count("Origin") > 1) return reject(rejection, 400, "duplicate Origin header");

  std::vector<std::string> subprotocols;
  for (const auto& h : head.headers) {
    if (!iequals(h.name, "Sec-WebSocket-Protocol")) continue;
    std::string_view list = h.value;
    std::size_t in_this_header = 0;
    while (true) {
      const auto comma = list.find(',');
      const auto item = trim_ows(list.substr(0, comma));
      if (!item.empty()) {  // empty list elements are tolerated (RFC 9110 §5.6.1)
        if (!is_token(item)) return reject(rejection, 400, "invalid Sec-WebSocket-Protocol");
        subprotocols.emplace_back(item);
        ++in_this_header;
      }
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
    if (in_this_header == 0) return reject(rejection, 400, "empty Sec-WebSocket-Protocol");
  }
  {
    // RFC 6455 §4.1: offered values must be unique. Sorted copy: O(n log n)
    // even for thousands of tiny tokens.
    std::vector<std::string_view> sorted(subprotocols.begin(), subprotocols.end());
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
      return reject(rejection, 400, "duplicate subprotocol");
    }
  }

  std::vector<ExtensionOffer> extensions;
  if (head.has("Sec-WebSocket-Extensions")) {
    auto parsed = parse_extensions(head.joined("Sec-WebSocket-Extensions"));
    if (!parsed) return reject(rejection, 400, "malformed Sec-WebSocket-Extensions");
    extensions = std::move(*parsed);
  }

  out.target = head.target;
  out.host = head.get("Host");
  out.key = key;
  out.origin = head.get("Origin");
  out.subprotocols = std::move(subprotocols);
  out.extensions = std::move(extensions);
  return true;
}

std::string build_accept_response(std::string_view client_key, const AcceptOptions& options) {
  std::string out;
  out.reserve(160);
  out += "HTTP/1.1 101 Switching Protocols\r\n";
  out += "Upgrade: websocket\r\n";
  out += "Connection: Upgrade\r\n";
  emit_header(out, "Sec-WebSocket-Accept", compute_accept_key(client_key));
  // A subprotocol must be a single token (RFC 6455 §4.3); anything else is dropped.
  if (is_token(options.subprotocol)) {
    emit_header(out, "Sec-WebSocket-Protocol", options.subprotocol);
  }
  if (!trim_ows(options.extensions).empty()) {
    emit_header(out, "Sec-WebSocket-Extensions", options.extensions);
  }
  emit_extra_headers(out, options.extra_headers);
  out += "\r\n";
  return out;
}

std::string build_rejection_response(const HandshakeRejection& rejection) {
  const int status = (rejection.status >= 100 && rejection.status <= 999) ? rejection.status : 500;
  const std::string body = rejection.message + "\n";
  char status_digits[8];
  std::snprintf(status_digits, sizeof status_digits, "%d", status);

  std::string out;
  out.reserve(160 + body.size());
  out += "HTTP/1.1 ";
  out += status_digits;
  out += ' ';
  out += reason_phrase(status);
  out += "\r\n";
  out += "Content-Type: text/plain\r\n";
  out += "Content-Length: ";
  out += std::to_string(body.size());
  out += "\r\n";
  out += "Connection: close\r\n";
  if (status == 426) out += "Sec-WebSocket-Version: 13\r\n";
  out += "\r\n";
  out += body;
  return out;
}

std::string_view select_subprotocol(const std::vector<std::string>& offered,
                                    const std::vector<std::string>& supported) {
  for (const auto& o : offered) {
    for (const auto& s : supported) {
      if (o == s) return o;  // subprotocol names are case-sensitive
    }
  }
  return {};
}

// ---- client side --------------------------------------------------------

std::string make_client_key(const std::array<std::uint8_t, 16>& random_bytes) {
  return base64_encode(
      std::string_view(reinterpret_cast<const char*>(random_bytes.data()), random_bytes.size()));
}

std::string build_upgrade_request(const ClientRequestOptions& options, std::string_view key) {
  std::string out;
  out.reserve(256);
  out += "GET ";
  // The request-target must be visible ASCII; percent-encode anything else
  // (space, CTLs, raw UTF-8) so it can never break the request line.
  if (options.target.empty()) {
    out += '/';
  } else {
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (char c : options.target) {
      const auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u >= 0x7f) {
        out += '%';
        out += kHex[u >> 4];
        out += kHex[u & 15];
      } else {
        out += c;
      }
    }
  }
  out += " HTTP/1.1\r\n";
  emit_header(out, "Host", options.host);
  out += "Upgrade: websocket\r\n";
  out += "Connection: Upgrade\r\n";
  emit_header(out, "Sec-WebSocket-Key", key);
  out += "Sec-WebSocket-Version: 13\r\n";
  if (!options.origin.empty()) emit_header(out, "Origin", options.origin);
  std::string protocols;
  for (const auto& p : options.subprotocols) {
    if (!is_token(p)) continue;  // not representable; dropped
    if (!protocols.empty()) protocols += ", ";
    protocols += p;
  }
  if (!protocols.empty()) emit_header(out, "Sec-WebSocket-Protocol", protocols);
  if (!trim_ows(options.extensions).empty()) {
    emit_header(out, "Sec-WebSocket-Extensions", options.extensions);
  }
  emit_extra_headers(out, options.extra_headers);
  out += "\r\n";
  return out;
}

bool validate_upgrade_response(const HttpHead& head, std::string_view key,
                               const std::vector<std::string>& offered_subprotocols,
                               UpgradeResponse& out, std::string& error) {
  out = UpgradeResponse{};
  error.clear();

  if (head.status != 101) {
    error = "server answered " + std::to_string(head.status);
    if (!head.reason.empty()) {
      error += ' ';
      error += head.reason;
    }
    error += ", not 101";
    return false;
  }
  if (!list_contains_token(head.joined("Upgrade"), "websocket")) {
    error = "Upgrade header must contain websocket";
    return false;
  }
  if (!list_contains_token(head.joined("Connection"), "upgrade")) {
    error = "Connection header must contain Upgrade";
    return false;
  }

  const auto accepts = head.count("Sec-WebSocket-Accept");
  if (accepts == 0) {
    error = "missing Sec-WebSocket-Accept";
    return false;
  }
  if (accepts > 1) {
    error = "duplicate Sec-WebSocket-Accept";
    return false;
  }
  const auto expected = compute_accept_key(key);
  if (expected.empty() || head.get("Sec-WebSocket-Accept") != expected) {
    error = "Sec-WebSocket-Accept mismatch";
    return false;
  }

  const auto protocols = head.count("Sec-WebSocket-Protocol");
  if (protocols > 1) {
    error = "duplicate Sec-WebSocket-Protocol";
    return false;
  }
  if (protocols == 1) {
    const auto chosen = head.get("Sec-WebSocket-Protocol");
    if (!is_token(chosen)) {
      error = "invalid Sec-WebSocket-Protocol";
      return false;
    }
    bool offered = false;
    for (const auto& p : offered_subprotocols) {
      if (p == chosen) {
        offered = true;
        break;
      }
    }
    if (!offered) {
      error = "server chose subprotocol \"" + std::string(chosen) + "\" that was not offered";
      return false;
    }
    out.subprotocol = std::string(chosen);
  }

  if (head.has("Sec-WebSocket-Extensions")) {
    auto parsed = parse_extensions(head.joined("Sec-WebSocket-Extensions"));
    if (!parsed) {
      error = "malformed Sec-WebSocket-Extensions";
      return false;
    }
    out.extensions = std::move(*parsed);
  }
  return true;
}

}  // namespace duplex::protocol
