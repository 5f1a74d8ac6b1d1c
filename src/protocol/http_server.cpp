#include "duplex/protocol/http_server.hpp"

#include <algorithm>
#include <utility>

#include "duplex/protocol/http_response.hpp"

namespace duplex::protocol {

HttpServerSession::HttpServerSession(const HttpLimits& limits, bool serves_plain_http)
    : limits_(limits), parser_(HttpHeadParser::Kind::request, limits), serves_plain_http_(serves_plain_http) {}

HttpServerSession::Event HttpServerSession::feed(std::string_view data, std::size_t& used) {
  used = 0;
  if (state_ == State::reading_head) {
    std::size_t consumed = 0;
    const HttpParseStatus status = parser_.feed(data, consumed);
    if (status == HttpParseStatus::incomplete) {
      used = data.size();  // the parser keeps the partial head
      return Event::need_more;
    }
    if (status == HttpParseStatus::error) {
      used = data.size();
      refuse(parser_.error_status(), std::string(parser_.error()));
      return Event::rejected;
    }
    used = consumed;
    const HttpHead& head = parser_.head();
    if (!serves_plain_http_ || list_contains_token(head.joined("Upgrade"), "websocket")) {
      target_ = head.target;
      state_ = State::upgrade;
      return Event::upgrade;
    }
    if (!start_request()) return Event::rejected;
    data.remove_prefix(consumed);
  }
  if (state_ == State::reading_body) {
    const std::size_t take = std::min(data.size(), body_expected_ - body_.size());
    body_.append(data.data(), take);
    used += take;
    if (body_.size() < body_expected_) return Event::need_more;
    state_ = State::awaiting_response;
    return Event::request;
  }
  return Event::busy;  // one request at a time, in order; or the session has ended
}

// A plain request's head is complete: its body's length, within the limits
// (false: refused).
bool HttpServerSession::start_request() {
  const HttpHead& head = parser_.head();
  saw_plain_request_ = true;
  if (head.has("Transfer-Encoding")) return refuse(411, "chunked request bodies are not supported: send Content-Length");
  std::size_t length = 0;
  if (head.has("Content-Length")) {
    if (head.count("Content-Length") != 1) return refuse(400, "more than one Content-Length");
    const std::string_view text = head.get("Content-Length");
    if (text.empty() || text.size() > 12) return refuse(text.empty() ? 400 : 413, "bad Content-Length");
    for (char ch : text) {
      if (ch < '0' || ch > '9') return refuse(400, "bad Content-Length");
      length = length * 10 + static_cast<std::size_t>(ch - '0');
    }
    if (length > limits_.max_body_bytes) return refuse(413, "request body too large");
  }
  target_ = head.target;
  keep_alive_ = wants_keep_alive(head);
  head_request_ = head.method == "HEAD";
  body_.clear();
  body_expected_ = length;
  if (length > 0) body_.reserve(length);
  state_ = State::reading_body;
  return true;
}

bool HttpServerSession::refuse(int status, std::string message) {
  state_ = State::rejected;
  rejection_status_ = status;
  rejection_message_ = std::move(message);
  return false;
}

bool HttpServerSession::respond(std::string& out, int status, std::string_view content_type, std::string_view body,
                                const std::vector<HttpHeader>& headers) {
  if (state_ != State::awaiting_response) return false;
  const HttpResponseHead head{status, content_type, &headers, keep_alive_};
  append_http_response(out, head, body, !head_request_);
  answered();
  return true;
}

bool HttpServerSession::begin_stream(std::string& out, int status, std::string_view content_type,
                                     const std::vector<HttpHeader>& headers) {
  if (state_ != State::awaiting_response) return false;
  const HttpResponseHead head{status, content_type, &headers, keep_alive_};
  append_http_stream_head(out, head);
  state_ = State::streaming;
  return true;
}

bool HttpServerSession::write_chunk(std::string& out, std::string_view data) {
  if (state_ != State::streaming) return false;
  append_http_chunk(out, data);
  return true;
}

bool HttpServerSession::end_stream(std::string& out) {
  if (state_ != State::streaming) return false;
  append_http_last_chunk(out);
  answered();
  return true;
}

void HttpServerSession::answered() {
  if (!keep_alive_) {
    state_ = State::last_response_done;
    return;
  }
  state_ = State::reading_head;
  parser_.reset();
  body_.clear();
  body_.shrink_to_fit();  // a large body is not kept for the life of a keep-alive connection
}

bool HttpServerSession::hold(std::string_view bytes) {
  if (held_.size() + bytes.size() > limits_.max_head_bytes + limits_.max_body_bytes) return false;
  held_.append(bytes);
  return true;
}

std::string HttpServerSession::take_held() { return std::exchange(held_, {}); }

void HttpServerSession::put_back(std::string_view unparsed) { held_.insert(0, unparsed); }

}  // namespace duplex::protocol
