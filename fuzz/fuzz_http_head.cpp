// libFuzzer target: the incremental HTTP head parser, request and response.
//
// Input layout: byte 0 picks the kind (bit 0) and a limit profile (bits 1-2),
// byte 1 picks where the rest is split between two feed() calls. The same
// bytes are also parsed in one call and one byte at a time; all three must
// agree exactly (status, bytes consumed, parsed head, error status).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "duplex/protocol/http_head.hpp"

using namespace duplex::protocol;

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_http_head invariant violated: %s\n", what);
    std::abort();
  }
}

bool same_head(const HttpHead& a, const HttpHead& b) {
  if (a.method != b.method || a.target != b.target || a.status != b.status ||
      a.reason != b.reason || a.version_major != b.version_major ||
      a.version_minor != b.version_minor || a.headers.size() != b.headers.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.headers.size(); ++i) {
    if (a.headers[i].name != b.headers[i].name || a.headers[i].value != b.headers[i].value) {
      return false;
    }
  }
  return true;
}

struct Run {
  HttpParseStatus status;
  std::size_t consumed;
};

bool is_ctl_or_ws(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x21 || u == 0x7f;
}

void check_head(const HttpHead& h, const HttpLimits& limits, HttpHeadParser::Kind kind) {
  check(h.headers.size() <= limits.max_header_count, "header count within limit");
  for (const auto& f : h.headers) {
    check(!f.name.empty(), "non-empty header name");
    for (char c : f.name) check(!is_ctl_or_ws(c) && c != ':', "header name is a token");
    for (char c : f.value) check(c != '\r' && c != '\n' && c != '\0', "no CR/LF/NUL in value");
    if (!f.value.empty()) {
      check(f.value.front() != ' ' && f.value.front() != '\t', "value left-trimmed");
      check(f.value.back() != ' ' && f.value.back() != '\t', "value right-trimmed");
    }
  }
  check(h.version_major == 1 && h.version_minor >= 0 && h.version_minor <= 9, "version 1.x");
  if (kind == HttpHeadParser::Kind::request) {
    check(!h.method.empty() && !h.target.empty(), "method and target set");
    for (char c : h.target) check(!is_ctl_or_ws(c), "target has no whitespace/CTL");
  } else {
    check(h.status >= 100 && h.status <= 999, "3-digit status");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const auto kind = (data[0] & 1) ? HttpHeadParser::Kind::response : HttpHeadParser::Kind::request;
  HttpLimits limits;
  switch ((data[0] >> 1) & 3) {
    case 0: break;  // defaults
    case 1: limits = HttpLimits{32, 4, 128}; break;
    case 2: limits = HttpLimits{16, 64, 1 << 20}; break;
    default: limits = HttpLimits{1 << 20, 2, 64}; break;
  }
  const std::string_view in(reinterpret_cast<const char*>(data + 2), size - 2);
  const std::size_t split = in.empty() ? 0 : (static_cast<std::size_t>(data[1]) * in.size()) / 255;

  // 1. One call.
  HttpHeadParser whole(kind, limits);
  Run a{};
  a.status = whole.feed(in, a.consumed);
  check(a.consumed <= in.size(), "consumed <= size");
  check(a.status == whole.status(), "status() matches");
  if (a.status == HttpParseStatus::incomplete) check(a.consumed == in.size(), "incomplete eats all");
  if (a.status == HttpParseStatus::complete) {
    check(a.consumed >= 2 && in[a.consumed - 1] == '\n', "complete ends at LF");
    check(a.consumed <= limits.max_head_bytes, "head within byte limit");
    check_head(whole.head(), limits, kind);
  }
  if (a.status == HttpParseStatus::error) {
    check(!whole.error().empty(), "error message");
    const int s = whole.error_status();
    check(s == 400 || s == 414 || s == 431 || s == 505, "known error status");
  }
  // Sticky once finished.
  if (a.status != HttpParseStatus::incomplete) {
    std::size_t more = 1;
    check(whole.feed(in, more) == a.status && more == 0, "sticky status, nothing consumed");
  }

  // 2. Split in two at a data-derived point.
  HttpHeadParser two(kind, limits);
  Run b{};
  std::size_t used1 = 0;
  b.status = two.feed(in.substr(0, split), used1);
  b.consumed = used1;
  if (b.status == HttpParseStatus::incomplete) {
    check(used1 == split, "first half fully consumed");
    std::size_t used2 = 0;
    b.status = two.feed(in.substr(used1), used2);
    b.consumed += used2;
  }
  check(b.status == a.status && b.consumed == a.consumed, "split == whole");

  // 3. One byte at a time (bounded so slow inputs stay fast).
  HttpHeadParser bytes(kind, limits);
  Run c{HttpParseStatus::incomplete, 0};
  for (std::size_t i = 0; i < in.size() && c.status == HttpParseStatus::incomplete; ++i) {
    std::size_t used = 0;
    c.status = bytes.feed(in.substr(i, 1), used);
    check(used == 1, "a byte fed while incomplete is consumed");
    c.consumed += used;
  }
  check(c.status == a.status && c.consumed == a.consumed, "bytewise == whole");

  if (a.status == HttpParseStatus::complete) {
    check(same_head(whole.head(), two.head()) && same_head(whole.head(), bytes.head()),
          "same head in every feeding mode");
  }
  if (a.status == HttpParseStatus::error) {
    check(whole.error_status() == two.error_status() &&
              whole.error_status() == bytes.error_status() && whole.error() == bytes.error(),
          "same error in every feeding mode");
  }

  // 4. reset() gives a fresh parser.
  whole.reset();
  std::size_t again = 0;
  check(whole.feed(in, again) == a.status && again == a.consumed, "reset reparses identically");

  // Helpers must not crash on arbitrary input.
  if (a.status == HttpParseStatus::complete) {
    const auto& h = bytes.head();
    for (const auto& f : h.headers) {
      check(h.has(f.name) && h.count(f.name) >= 1, "has/count find each header");
      (void)h.joined(f.name);
      (void)list_contains_token(f.value, "upgrade");
    }
  }
  return 0;
}
