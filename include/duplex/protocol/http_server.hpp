// The server side of HTTP/1.1 on one connection, sans-I/O: request bytes
// in, one request at a time (keep-alive, pipelining), responses out as
// bytes appended to the caller's output. net::Connection drives it; a test
// or a fuzzer can drive it byte by byte.
//
// A request's head and body are read within the limits (HttpLimits: head
// size, header count, Content-Length bound); a head that asks for a
// WebSocket upgrade stops the session, and the bytes after it are the
// first WebSocket bytes. While a request waits for its answer nothing more
// is parsed: the caller keeps the bytes that follow (hold()) and feeds them
// once the answer is written.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/protocol/http_head.hpp"

namespace duplex::protocol {

class HttpServerSession {
 public:
  enum class State : std::uint8_t {
    reading_head,       // between requests, or inside a head
    reading_body,       // the head is complete; Content-Length bytes follow
    awaiting_response,  // request() is complete: the application answers
    streaming,          // a chunked response is open
    upgrade,            // the head asks for a WebSocket (or plain HTTP is not served)
    rejected,           // the input is refused: answer rejection(), then close
    last_response_done  // the answer without keep-alive is written: close after it
  };

  // What one feed() found.
  enum class Event : std::uint8_t {
    need_more,  // every byte was used; the request is not complete yet
    request,    // a whole request: request_head() and body(); answer it
    upgrade,    // a head for the WebSocket handshake: head(); the rest is WebSocket bytes
    rejected,   // rejection_status() and rejection_message(): answer them and close
    busy,       // not reading: a request waits for its answer (or the session ended)
  };

  // `serves_plain_http` false: every head is an upgrade request (the
  // handshake then refuses what is not one, e.g. with 426).
  HttpServerSession(const HttpLimits& limits, bool serves_plain_http);

  // Parses from `data` up to the end of the next event; `used` is how many
  // bytes belong to it (after `upgrade`, the rest is not HTTP).
  Event feed(std::string_view data, std::size_t& used);

  State state() const { return state_; }
  bool reading() const { return state_ == State::reading_head || state_ == State::reading_body; }
  // A request was dispatched and not answered yet (or its stream is open).
  bool response_pending() const { return state_ == State::awaiting_response || state_ == State::streaming; }
  bool streaming() const { return state_ == State::streaming; }

  // The current head: complete after `request` and `upgrade`.
  const HttpHead& head() const { return parser_.head(); }
  // The request target (path and query), kept until the next request starts.
  std::string_view target() const { return target_; }
  std::string_view body() const { return body_; }
  bool keep_alive() const { return keep_alive_; }
  int rejection_status() const { return rejection_status_; }
  std::string_view rejection_message() const { return rejection_message_; }

  // The answer in progress (or the next one) is the last: the connection
  // closes after it (the peer half-closed, or the server is closing it).
  void close_after_answer() { keep_alive_ = false; }

  // The answer to request(), appended to `out`; false (nothing appended)
  // unless a request awaits its answer. After it, state() says whether the
  // connection reads the next request (reading_head) or closes
  // (last_response_done).
  bool respond(std::string& out, int status, std::string_view content_type, std::string_view body,
               const std::vector<HttpHeader>& headers = {});
  // A chunked answer (e.g. Server-Sent Events): its head, chunks, its end.
  bool begin_stream(std::string& out, int status, std::string_view content_type,
                    const std::vector<HttpHeader>& headers = {});
  bool write_chunk(std::string& out, std::string_view data);
  bool end_stream(std::string& out);

  // Pipelined input: bytes that arrived while a request was being answered,
  // kept in order until the session reads again. False (nothing kept) when
  // the bytes held would pass one request's worth (the head and body
  // limits together): the peer sends faster than it reads answers.
  bool hold(std::string_view bytes);
  bool holding() const { return !held_.empty(); }
  std::string take_held();
  // What take_held() returned and the session did not parse: back in front.
  void put_back(std::string_view unparsed);

  // A head that is not an upgrade was read (on this connection, ever): the
  // connection carried plain HTTP.
  bool saw_plain_request() const { return saw_plain_request_; }

 private:
  bool start_request();
  bool refuse(int status, std::string message);
  void answered();

  HttpLimits limits_;
  HttpHeadParser parser_;
  State state_ = State::reading_head;
  bool serves_plain_http_;
  bool keep_alive_ = true;
  bool head_request_ = false;  // HEAD: the answer has no body
  bool saw_plain_request_ = false;
  int rejection_status_ = 0;
  std::size_t body_expected_ = 0;
  std::string target_;
  std::string body_;
  std::string held_;
  std::string rejection_message_;
};

}  // namespace duplex::protocol
