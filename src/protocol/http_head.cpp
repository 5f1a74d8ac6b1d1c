// HTTP/1.1 request/response head parser (RFC 9112 §2-§5), sans-I/O.
//
// Strictness notes (these inputs come straight off the network):
//  * Lines end in CRLF; a bare LF is accepted as a line end, a CR anywhere
//    else (bare CR, CR CR) is an error (400).
//  * Limits are enforced byte by byte, so an endless line without a line end
//    fails as soon as it crosses the limit instead of being buffered.
//      - start line longer than max_line_bytes: 414 URI Too Long for a
//        request (an over-long request line is in practice an over-long
//        request-target, RFC 9112 §3); 400 for a response status line.
//      - header line longer than max_line_bytes: 431.
//      - more than max_header_count header lines: 431.
//      - more than max_head_bytes in total (terminators and the final blank
//        line included): 431.
//    Line lengths exclude the CRLF / LF terminator.
//  * No leading empty lines before the start line (RFC 9112 §2.2 only says
//    a server SHOULD ignore them; we refuse, like Boost.Beast).
//  * Obsolete line folding is rejected (400), as is whitespace between a
//    field name and the colon (RFC 9112 §5.1).
//  * Versions must be exactly "HTTP/" DIGIT "." DIGIT; a major version other
//    than 1 is answered with 505.

#include "duplex/protocol/http_head.hpp"

#include <utility>

namespace duplex::protocol {

namespace {

constexpr bool is_ows(char c) { return c == ' ' || c == '\t'; }

// CTLs other than HTAB (field-value and reason-phrase forbid them).
constexpr bool is_bad_ctl(unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; }

constexpr char to_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

constexpr bool is_digit(char c) { return c >= '0' && c <= '9'; }

// "HTTP/" DIGIT "." DIGIT
bool parse_version(std::string_view s, int& major, int& minor) {
  if (s.size() != 8 || s.substr(0, 5) != "HTTP/" || !is_digit(s[5]) || s[6] != '.' ||
      !is_digit(s[7])) {
    return false;
  }
  major = s[5] - '0';
  minor = s[7] - '0';
  return true;
}

}  // namespace

// ---- free helpers -------------------------------------------------------

bool is_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if (c >= 'a' && c <= 'z') return true;
  if (c >= 'A' && c <= 'Z') return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
    case '+': case '-': case '.': case '^': case '_': case '`': case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!is_tchar(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (to_lower(a[i]) != to_lower(b[i])) return false;
  }
  return true;
}

bool list_contains_token(std::string_view list, std::string_view token) {
  while (true) {
    const auto comma = list.find(',');
    if (iequals(trim_ows(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) return false;
    list.remove_prefix(comma + 1);
  }
}

// ---- HttpHead -----------------------------------------------------------

std::string_view HttpHead::get(std::string_view name) const {
  for (const auto& h : headers) {
    if (iequals(h.name, name)) return h.value;
  }
  return {};
}

bool HttpHead::has(std::string_view name) const {
  for (const auto& h : headers) {
    if (iequals(h.name, name)) return true;
  }
  return false;
}

std::size_t HttpHead::count(std::string_view name) const {
  std::size_t n = 0;
  for (const auto& h : headers) {
    if (iequals(h.name, name)) ++n;
  }
  return n;
}

std::string HttpHead::joined(std::string_view name) const {
  std::string out;
  bool first = true;
  for (const auto& h : headers) {
    if (!iequals(h.name, name)) continue;
    if (!first) out += ", ";
    out += h.value;
    first = false;
  }
  return out;
}

// ---- HttpHeadParser -----------------------------------------------------

HttpHeadParser::HttpHeadParser(Kind kind, HttpLimits limits) : kind_(kind), limits_(limits) {}

void HttpHeadParser::reset() {
  status_ = HttpParseStatus::incomplete;
  head_ = HttpHead{};
  line_.clear();
  head_bytes_ = 0;
  first_line_done_ = false;
  error_.clear();
  error_status_ = 0;
}

bool HttpHeadParser::fail(int status, std::string message) {
  status_ = HttpParseStatus::error;
  error_status_ = status;
  error_ = std::move(message);
  line_.clear();
  line_.shrink_to_fit();
  return false;
}

HttpParseStatus HttpHeadParser::feed(std::string_view data, std::size_t& consumed) {
  consumed = 0;
  if (status_ != HttpParseStatus::incomplete) return status_;

  for (std::size_t i = 0; i < data.size(); ++i) {
    const char c = data[i];
    consumed = i + 1;

    if (++head_bytes_ > limits_.max_head_bytes) {
      fail(431, "HTTP head too large");
      return status_;
    }

    const bool pending_cr = !line_.empty() && line_.back() == '\r';
    if (c == '\n') {
      if (pending_cr) line_.pop_back();
      // A single line is at most max_line_bytes (+1 for a held CR): fine to copy.
      const std::string line = std::move(line_);
      line_.clear();
      if (!parse_line(line)) return status_;
      if (status_ == HttpParseStatus::complete) return status_;
      continue;
    }
    if (pending_cr) {
      fail(400, "bare CR in header line");
      return status_;
    }
    if (c != '\r') {
      if (line_.size() >= limits_.max_line_bytes) {
        if (!first_line_done_) {
          fail(kind_ == Kind::request ? 414 : 400,
               kind_ == Kind::request ? "request line too long" : "status line too long");
        } else {
          fail(431, "header line too long");
        }
        return status_;
      }
    }
    line_.push_back(c);
  }
  return status_;
}

bool HttpHeadParser::parse_line(std::string_view line) {
  if (!first_line_done_) {
    first_line_done_ = true;
    if (line.empty()) return fail(400, "empty start line");

    if (kind_ == Kind::request) {
      // method SP request-target SP HTTP-version
      const auto sp1 = line.find(' ');
      if (sp1 == std::string_view::npos) return fail(400, "malformed request line");
      const auto sp2 = line.find(' ', sp1 + 1);
      if (sp2 == std::string_view::npos) return fail(400, "malformed request line");
      const auto method = line.substr(0, sp1);
      const auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
      const auto version = line.substr(sp2 + 1);
      if (!is_token(method)) return fail(400, "invalid method");
      if (target.empty()) return fail(400, "empty request target");
      for (char ch : target) {
        const auto u = static_cast<unsigned char>(ch);
        // Visible ASCII only: no whitespace, CTLs or raw non-ASCII bytes.
        if (u <= 0x20 || u >= 0x7f) return fail(400, "invalid character in request target");
      }
      int major = 0;
      int minor = 0;
      if (!parse_version(version, major, minor)) return fail(400, "malformed HTTP version");
      if (major != 1) return fail(505, "unsupported HTTP version");
      head_.method = std::string(method);
      head_.target = std::string(target);
      head_.version_major = major;
      head_.version_minor = minor;
    } else {
      // HTTP-version SP status-code [ SP reason-phrase ]
      const auto version = line.substr(0, 8);
      int major = 0;
      int minor = 0;
      if (!parse_version(version, major, minor)) return fail(400, "malformed HTTP version");
      if (major != 1) return fail(505, "unsupported HTTP version");
      auto rest = line.substr(8);
      if (rest.size() < 4 || rest[0] != ' ' || !is_digit(rest[1]) || !is_digit(rest[2]) ||
          !is_digit(rest[3]) || rest[1] == '0') {
        return fail(400, "malformed status code");
      }
      const int code = (rest[1] - '0') * 100 + (rest[2] - '0') * 10 + (rest[3] - '0');
      rest.remove_prefix(4);
      std::string_view reason;
      if (!rest.empty()) {
        if (rest[0] != ' ') return fail(400, "malformed status line");
        reason = rest.substr(1);
        for (char ch : reason) {
          if (is_bad_ctl(static_cast<unsigned char>(ch))) {
            return fail(400, "invalid character in reason phrase");
          }
        }
      }
      head_.status = code;
      head_.reason = std::string(reason);
      head_.version_major = major;
      head_.version_minor = minor;
    }
    return true;
  }

  if (line.empty()) {
    status_ = HttpParseStatus::complete;
    line_.shrink_to_fit();
    return true;
  }
  if (is_ows(line.front())) return fail(400, "obsolete line folding");

  const auto colon = line.find(':');
  if (colon == std::string_view::npos) return fail(400, "header line without colon");
  const auto name = line.substr(0, colon);
  if (!is_token(name)) return fail(400, "invalid header name");
  const auto value = trim_ows(line.substr(colon + 1));
  for (char ch : value) {
    if (is_bad_ctl(static_cast<unsigned char>(ch))) {
      return fail(400, "invalid character in header value");
    }
  }
  if (head_.headers.size() >= limits_.max_header_count) return fail(431, "too many header fields");
  head_.headers.push_back(HttpHeader{std::string(name), std::string(value)});
  return true;
}

}  // namespace duplex::protocol
