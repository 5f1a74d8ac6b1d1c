#include "duplex/protocol/http_response.hpp"

#include <cstdio>

namespace duplex::protocol {

std::string_view reason_phrase(int status) {
  switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: break;
  }
  if (status >= 400 && status < 500) return "Client Error";
  if (status >= 500 && status < 600) return "Server Error";
  return "Unknown";
}

namespace {
void append_head(std::string& out, const HttpResponseHead& head) {
  const int status = (head.status >= 100 && head.status <= 999) ? head.status : 500;
  char digits[8];
  std::snprintf(digits, sizeof digits, "%d", status);
  out += "HTTP/1.1 ";
  out += digits;
  out += ' ';
  out += reason_phrase(status);
  out += "\r\n";
  if (!head.content_type.empty()) {
    out += "Content-Type: ";
    out += head.content_type;
    out += "\r\n";
  }
  if (head.headers) {
    for (const auto& h : *head.headers) {
      out += h.name;
      out += ": ";
      out += h.value;
      out += "\r\n";
    }
  }
  out += head.keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
}
}  // namespace

void append_http_response(std::string& out, const HttpResponseHead& head, std::string_view body, bool include_body) {
  out.reserve(out.size() + 200 + body.size());
  append_head(out, head);
  out += "Content-Length: ";
  out += std::to_string(body.size());
  out += "\r\n\r\n";
  if (include_body) out += body;
}

void append_http_stream_head(std::string& out, const HttpResponseHead& head) {
  append_head(out, head);
  out += "Transfer-Encoding: chunked\r\n\r\n";
}

void append_http_chunk(std::string& out, std::string_view data) {
  if (data.empty()) return;
  char size_hex[24];
  std::snprintf(size_hex, sizeof size_hex, "%zx\r\n", data.size());
  out += size_hex;
  out += data;
  out += "\r\n";
}

void append_http_last_chunk(std::string& out) { out += "0\r\n\r\n"; }

std::string_view target_path(std::string_view target) {
  const auto q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

std::string_view target_query(std::string_view target) {
  const auto q = target.find('?');
  return q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
}

namespace {
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

bool percent_decode(std::string_view in, std::string& out, bool plus_is_space) {
  out.clear();
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = hex_value(in[i + 1]);
      const int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return true;
}

bool query_param(std::string_view query, std::string_view name, std::string& value) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const auto eq = pair.find('=');
    const std::string_view key = pair.substr(0, eq);
    if (key != name) continue;
    const std::string_view raw = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    return percent_decode(raw, value, true);
  }
  return false;
}

bool wants_keep_alive(const HttpHead& head) {
  const std::string connection = head.joined("Connection");
  if (list_contains_token(connection, "close")) return false;
  if (head.version_major == 1 && head.version_minor == 0) return list_contains_token(connection, "keep-alive");
  return true;
}

}  // namespace duplex::protocol
