// HTTP/1.1 responses and request-target helpers for the plain HTTP routes a
// WebSocket server also answers (API, static files, SSE, long-polling).
// Sans-I/O: strings in, strings out.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "duplex/protocol/http_head.hpp"

namespace duplex::protocol {

std::string_view reason_phrase(int status);

struct HttpResponseHead {
  int status = 200;
  std::string_view content_type;           // omitted when empty
  const std::vector<HttpHeader>* headers = nullptr;  // extra headers
  bool keep_alive = true;
};

// A complete response with Content-Length. `include_body` false for HEAD.
void append_http_response(std::string& out, const HttpResponseHead& head, std::string_view body,
                          bool include_body = true);
// The head of a streamed response (Transfer-Encoding: chunked).
void append_http_stream_head(std::string& out, const HttpResponseHead& head);
// One chunk (empty data writes nothing: an empty chunk would end the stream).
void append_http_chunk(std::string& out, std::string_view data);
// The last chunk: ends a streamed response.
void append_http_last_chunk(std::string& out);

// The path and query of a request target ("/a/b?x=1" -> "/a/b", "x=1").
std::string_view target_path(std::string_view target);
std::string_view target_query(std::string_view target);
// The first value of `name` in a query string, percent- and '+'-decoded.
// Returns false if absent or badly encoded.
bool query_param(std::string_view query, std::string_view name, std::string& value);
bool percent_decode(std::string_view in, std::string& out, bool plus_is_space);

// Whether the client wants the connection kept after this request
// (HTTP/1.1 default keep-alive unless "Connection: close"; 1.0 the reverse).
bool wants_keep_alive(const HttpHead& head);

}  // namespace duplex::protocol
