// HTTP/1.1 request/response head parser (sans-I/O, incremental, limited).
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace duplex::protocol {

struct HttpLimits {
  std::size_t max_line_bytes = 8192;    // request/status line and each header line
  std::size_t max_header_count = 64;
  std::size_t max_head_bytes = 16384;   // whole head including the blank line
  std::size_t max_body_bytes = 1u << 20;  // plain HTTP requests (API, fallbacks): Content-Length bound
};

struct HttpHeader {
  std::string name;   // as received
  std::string value;  // leading/trailing whitespace trimmed
};

struct HttpHead {
  // Request fields (Kind::request).
  std::string method;
  std::string target;
  // Response fields (Kind::response).
  int status = 0;
  std::string reason;
  // Both.
  int version_major = 1;
  int version_minor = 1;
  std::vector<HttpHeader> headers;

  // First value of a header (case-insensitive name), or empty view if absent.
  std::string_view get(std::string_view name) const;
  bool has(std::string_view name) const;
  // Number of header lines with that name.
  std::size_t count(std::string_view name) const;
  // All values of a list header joined with ", " (RFC 9110 §5.3).
  std::string joined(std::string_view name) const;
};

enum class HttpParseStatus { incomplete, complete, error };

class HttpHeadParser {
 public:
  enum class Kind { request, response };

  explicit HttpHeadParser(Kind kind, HttpLimits limits = {});

  // Feed the next bytes. `consumed` is set to how many of them belong to the
  // head; bytes after the blank line are not consumed (they are the first
  // WebSocket bytes). Once complete or error, further calls return the same
  // status and consume nothing.
  HttpParseStatus feed(std::string_view data, std::size_t& consumed);

  HttpParseStatus status() const { return status_; }
  const HttpHead& head() const { return head_; }
  HttpHead& head() { return head_; }
  // On error: a short human-readable message and the HTTP status to answer
  // with (400 malformed, 431 too large, 505 wrong version, 501 bad method form).
  std::string_view error() const { return error_; }
  int error_status() const { return error_status_; }

  void reset();

 private:
  bool parse_line(std::string_view line);
  bool fail(int status, std::string message);

  Kind kind_;
  HttpLimits limits_;
  HttpParseStatus status_ = HttpParseStatus::incomplete;
  HttpHead head_;
  std::string line_;           // partial line carried between feeds
  std::size_t head_bytes_ = 0;
  bool first_line_done_ = false;
  std::string error_;
  int error_status_ = 0;
};

// RFC 9110 token characters and tokens (method, header name, extension name...).
bool is_tchar(unsigned char c);
bool is_token(std::string_view s);

// Case-insensitive ASCII comparison.
bool iequals(std::string_view a, std::string_view b);
// True if the comma-separated token list `list` contains `token` (case-insensitive).
bool list_contains_token(std::string_view list, std::string_view token);

}  // namespace duplex::protocol
