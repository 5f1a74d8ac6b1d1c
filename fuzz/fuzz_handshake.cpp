// libFuzzer target: the RFC 6455 opening handshake, both roles.
//
// Byte 0 selects a mode, the rest is the payload:
//   0: payload is a request head  -> validate_upgrade_request; on success the
//      accept response we build must parse and pass validate_upgrade_response
//      (server/client agreement); on failure the rejection response must parse
//      and carry the same status.
//   1: payload is a response head -> validate_upgrade_response with a fixed
//      key and offer list; what it accepts must be consistent.
//   2: payload fields (split on '\n') feed build_upgrade_request; the result
//      must parse as one request with no injected headers.
//   3: payload is a Sec-WebSocket-Extensions value; parse/format round trip.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/protocol/handshake.hpp"

using namespace duplex::protocol;

namespace {

constexpr std::string_view kKey = "dGhlIHNhbXBsZSBub25jZQ==";

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_handshake invariant violated: %s\n", what);
    std::abort();
  }
}

bool parse_full(HttpHeadParser::Kind kind, std::string_view text, HttpHead& out,
                std::size_t& consumed, HttpLimits limits = {}) {
  HttpHeadParser p(kind, limits);
  if (p.feed(text, consumed) != HttpParseStatus::complete) return false;
  out = p.head();
  return true;
}

bool same_extensions(const std::vector<ExtensionOffer>& a, const std::vector<ExtensionOffer>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].params.size() != b[i].params.size()) return false;
    for (std::size_t j = 0; j < a[i].params.size(); ++j) {
      if (a[i].params[j].name != b[i].params[j].name ||
          a[i].params[j].value != b[i].params[j].value) {
        return false;
      }
    }
  }
  return true;
}

void server_side(std::string_view in) {
  HttpHead head;
  std::size_t used = 0;
  if (!parse_full(HttpHeadParser::Kind::request, in, head, used)) return;
  UpgradeRequest req;
  HandshakeRejection rej;
  if (!validate_upgrade_request(head, req, rej)) {
    check(rej.status == 400 || rej.status == 426, "rejection status 400/426");
    check(!rej.message.empty(), "rejection message");
    const auto resp = build_rejection_response(rej);
    HttpHead rh;
    std::size_t rused = 0;
    check(parse_full(HttpHeadParser::Kind::response, resp, rh, rused), "rejection parses");
    check(rh.status == rej.status, "rejection status round trip");
    check(std::to_string(resp.size() - rused) == rh.get("Content-Length"), "content length");
    check((rej.status == 426) == (rh.get("Sec-WebSocket-Version") == "13"), "426 version header");
    return;
  }
  std::string decoded;
  check(base64_decode(req.key, decoded) && decoded.size() == 16, "accepted key is 16 bytes");
  check(!req.host.empty(), "host present");

  // Server answers, our client must agree with our server.
  static const std::vector<std::string> supported = {"chat", "superchat", "mqtt"};
  AcceptOptions opts;
  opts.subprotocol = select_subprotocol(req.subprotocols, supported);
  if (opts.subprotocol.empty() && !req.subprotocols.empty()) {
    opts.subprotocol = req.subprotocols.back();  // also exercise arbitrary offered tokens
  }
  const std::string ext = format_extensions(req.extensions);
  opts.extensions = ext;
  opts.extra_headers.push_back({"X-Echo-Target", std::string(req.target)});
  opts.extra_headers.push_back({"X-Echo-Origin", std::string(req.origin)});
  const auto resp = build_accept_response(req.key, opts);

  HttpHead rh;
  std::size_t rused = 0;
  HttpLimits big{1 << 20, 1 << 10, 1 << 22};
  check(parse_full(HttpHeadParser::Kind::response, resp, rh, rused, big), "accept response parses");
  check(rused == resp.size(), "accept response has no trailing bytes");
  UpgradeResponse out;
  std::string error;
  check(validate_upgrade_response(rh, req.key, req.subprotocols, out, error),
        "client accepts our server's response");
  check(out.subprotocol == opts.subprotocol, "subprotocol agreed");
  check(same_extensions(out.extensions, req.extensions), "extensions echoed intact");
  // A client with a different key must refuse it.
  check(!validate_upgrade_response(rh, "AAAAAAAAAAAAAAAAAAAAAA==", req.subprotocols, out, error) ||
            req.key == "AAAAAAAAAAAAAAAAAAAAAA==",
        "other key refused");
}

void client_side(std::string_view in) {
  HttpHead head;
  std::size_t used = 0;
  if (!parse_full(HttpHeadParser::Kind::response, in, head, used)) return;
  static const std::vector<std::string> offered = {"chat", "superchat"};
  UpgradeResponse out;
  std::string error;
  if (validate_upgrade_response(head, kKey, offered, out, error)) {
    check(error.empty(), "no error on success");
    check(head.status == 101, "101 on success");
    check(head.get("Sec-WebSocket-Accept") == compute_accept_key(kKey), "accept matches");
    check(out.subprotocol.empty() || out.subprotocol == "chat" || out.subprotocol == "superchat",
          "only offered subprotocols");
  } else {
    check(!error.empty(), "error message on failure");
  }
  // No offers at all: any chosen subprotocol must fail.
  if (validate_upgrade_response(head, kKey, {}, out, error)) {
    check(out.subprotocol.empty(), "nothing chosen when nothing offered");
  }
}

void build_request(std::string_view in) {
  // Fields separated by '\n': host, target, origin, protocols (','-sep),
  // extensions, extra header name, extra header value, key bytes.
  std::vector<std::string> f;
  std::size_t start = 0;
  while (f.size() < 7) {
    const auto nl = in.find('\n', start);
    if (nl == std::string_view::npos) break;
    f.emplace_back(in.substr(start, nl - start));
    start = nl + 1;
  }
  const std::string_view rest = in.substr(std::min(start, in.size()));
  f.resize(7);
  ClientRequestOptions o;
  o.host = f[0];
  o.target = f[1];
  o.origin = f[2];
  std::size_t p = 0;
  while (p <= f[3].size() && !f[3].empty()) {
    const auto c = f[3].find(',', p);
    o.subprotocols.push_back(f[3].substr(p, c == std::string::npos ? std::string::npos : c - p));
    if (c == std::string::npos) break;
    p = c + 1;
  }
  o.extensions = f[4];
  if (!f[5].empty()) o.extra_headers.push_back({f[5], f[6]});
  std::array<std::uint8_t, 16> key_bytes{};
  for (std::size_t i = 0; i < key_bytes.size() && i < rest.size(); ++i) {
    key_bytes[i] = static_cast<std::uint8_t>(rest[i]);
  }
  const auto key = make_client_key(key_bytes);
  check(key.size() == 24, "client key length");

  const auto text = build_upgrade_request(o, key);
  HttpHead head;
  std::size_t used = 0;
  HttpLimits big{1 << 20, 1 << 10, 1 << 22};
  check(parse_full(HttpHeadParser::Kind::request, text, head, used, big), "built request parses");
  check(used == text.size(), "built request is exactly one head");
  check(head.headers.size() <= 10, "no injected header lines");
  check(head.method == "GET", "GET");
  check(head.get("Sec-WebSocket-Version") == "13", "version 13");
  check(head.count("Upgrade") + head.count("Connection") >= 2, "upgrade headers");

  UpgradeRequest req;
  HandshakeRejection rej;
  if (validate_upgrade_request(head, req, rej)) {
    // Our own server accepts it; the key it sees is ours unless the extra
    // header duplicated it (then validation must have failed).
    check(req.key == key, "server sees our key");
  }
}

void extensions_round_trip(std::string_view in) {
  const auto first = parse_extensions(in);
  if (!first) return;
  const auto text = format_extensions(*first);
  const auto second = parse_extensions(text);
  check(second.has_value(), "formatted extensions re-parse");
  check(same_extensions(*first, *second), "extensions round trip");
  check(format_extensions(*second) == text, "format is a fixed point");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] & 3) {
    case 0: server_side(in); break;
    case 1: client_side(in); break;
    case 2: build_request(in); break;
    default: extensions_round_trip(in); break;
  }
  // Strict base64 must round-trip whatever it accepts.
  if (in.size() <= 64) {
    std::string decoded;
    if (base64_decode(in, decoded)) check(base64_encode(decoded) == in, "canonical base64");
  }
  return 0;
}
