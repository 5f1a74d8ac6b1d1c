// libFuzzer target: the sans-I/O HTTP/1.1 server session (keep-alive,
// pipelining, bodies, upgrade, rejections, chunked answers, holding input).
//
// Input layout: byte 0 picks a limit profile (bits 0-1) and whether plain
// HTTP is served (bit 2); byte 1 picks a split point and byte 2 a chunk size
// for the deferred-answer run. The rest is what a client sends.
//
// The same bytes are driven four ways: in one feed, split in two, one byte at
// a time (answering each request as it completes), and in chunks with each
// answer deferred to the next chunk (input held meanwhile, as
// net::Connection does). The first three must produce the same trace of
// events and answers; the deferred run's trace must equal it, or be a prefix
// of it ending in "hold refused" when the held input passed its limit.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "duplex/protocol/http_server.hpp"

using namespace duplex::protocol;
using Event = HttpServerSession::Event;
using State = HttpServerSession::State;

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_http_server invariant violated: %s\n", what);
    std::abort();
  }
}

bool starts_with(std::string_view text, std::string_view prefix) { return text.substr(0, prefix.size()) == prefix; }

// Answers the request the session holds, in the way its body's length picks:
// a plain response or a chunked stream. Appends what it did to `trace`.
void answer(HttpServerSession& session, std::string& trace) {
  check(session.state() == State::awaiting_response, "answering only an awaiting request");
  std::string out;
  const std::string body(session.body());
  // Read before answering: the answer resets the head for the next request.
  const bool head_request = session.head().method == "HEAD";
  if (body.size() % 2 == 0) {
    check(session.respond(out, 200, "text/plain", body), "respond in awaiting_response");
    check(starts_with(out, "HTTP/1.1 200 OK\r\n"), "a response starts with its status line");
    if (!head_request) check(out.size() >= body.size() && out.ends_with(body), "body last");
  } else {
    check(session.begin_stream(out, 200, "text/event-stream"), "begin_stream in awaiting_response");
    check(session.streaming(), "streaming after begin_stream");
    check(!session.respond(out, 200, "", ""), "no plain response while streaming");
    check(session.write_chunk(out, body), "write_chunk while streaming");
    check(session.end_stream(out), "end_stream while streaming");
    check(out.ends_with("0\r\n\r\n"), "a stream ends with the last chunk");
  }
  check(!session.respond(out, 200, "", ""), "one answer per request");
  check(session.state() == State::reading_head || session.state() == State::last_response_done,
        "after the answer: the next request or the end");
  trace += out;
}

// Records one event; false when the session has ended (upgrade, rejection).
bool record(HttpServerSession& session, Event event, std::string& trace) {
  switch (event) {
    case Event::need_more:
      check(session.reading(), "need_more only while reading");
      return true;
    case Event::request: {
      check(session.state() == State::awaiting_response, "request: awaiting its answer");
      check(session.saw_plain_request(), "a request is plain HTTP");
      std::size_t length = 0;
      for (char digit : session.head().get("Content-Length")) length = length * 10 + static_cast<std::size_t>(digit - '0');
      check(session.body().size() == length, "the body is Content-Length bytes");
      trace += "R ";
      trace += session.target();
      trace += session.keep_alive() ? " keep\n" : " close\n";
      return true;
    }
    case Event::upgrade:
      check(session.state() == State::upgrade, "upgrade state");
      trace += "U ";
      trace += session.target();
      trace += '\n';
      return false;
    case Event::rejected: {
      check(session.state() == State::rejected, "rejected state");
      const int status = session.rejection_status();
      check(status == 400 || status == 411 || status == 413 || status == 414 || status == 431 || status == 505,
            "a known rejection status");
      check(!session.rejection_message().empty(), "a rejection says why");
      trace += "X " + std::to_string(status) + '\n';
      return false;
    }
    case Event::busy:
      check(false, "busy only while an answer is pending or after the end");
  }
  return false;
}

// Feeds `data` and answers each request at once; false when the session ended.
bool feed_answering(HttpServerSession& session, std::string_view data, std::string& trace) {
  while (!data.empty()) {
    std::size_t used = 0;
    const Event event = session.feed(data, used);
    check(used <= data.size(), "used <= size");
    if (event == Event::need_more) check(used == data.size(), "need_more uses every byte");
    data.remove_prefix(used);
    if (!record(session, event, trace)) return false;
    if (event == Event::request) {
      answer(session, trace);
      if (session.state() == State::last_response_done) return false;
    }
  }
  return true;
}

HttpLimits limits_for(std::uint8_t profile) {
  switch (profile & 3) {
    case 0: return HttpLimits{};
    case 1: return HttpLimits{64, 4, 256, 64};
    case 2: return HttpLimits{32, 64, 1 << 16, 0};
    default: return HttpLimits{1 << 16, 2, 128, 1 << 12};
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const HttpLimits limits = limits_for(data[0]);
  const bool serves_plain_http = (data[0] & 4) == 0;
  const std::string_view in(reinterpret_cast<const char*>(data + 3), size - 3);
  const std::size_t split = in.empty() ? 0 : (static_cast<std::size_t>(data[1]) * in.size()) / 255;
  const std::size_t chunk = 1 + data[2] % 64;

  // 1. One feed.
  std::string whole;
  {
    HttpServerSession session(limits, serves_plain_http);
    feed_answering(session, in, whole);
  }
  // 2. Split in two.
  std::string two;
  {
    HttpServerSession session(limits, serves_plain_http);
    if (feed_answering(session, in.substr(0, split), two)) feed_answering(session, in.substr(split), two);
  }
  check(two == whole, "split == whole");
  // 3. One byte at a time (bounded so slow inputs stay fast).
  if (in.size() <= 4096) {
    std::string bytes;
    HttpServerSession session(limits, serves_plain_http);
    for (std::size_t i = 0; i < in.size() && feed_answering(session, in.substr(i, 1), bytes); ++i) {
    }
    check(bytes == whole, "bytewise == whole");
  }
  // 4. Chunks, each request answered when the next chunk arrives; what
  // arrives meanwhile is held and fed after the answer.
  {
    std::string deferred;
    HttpServerSession session(limits, serves_plain_http);
    bool open = true;
    bool refused = false;
    for (std::size_t at = 0; open && at < in.size(); at += chunk) {
      if (session.state() == State::awaiting_response) {
        answer(session, deferred);
        if (session.state() == State::last_response_done) break;
        std::string held = session.take_held();
        std::string_view rest(held);
        while (open && !rest.empty() && session.reading()) {
          std::size_t used = 0;
          const Event event = session.feed(rest, used);
          check(used <= rest.size(), "used <= held size");
          rest.remove_prefix(used);
          open = record(session, event, deferred);
        }
        if (!open) break;
        session.put_back(rest);  // a request completed inside the held bytes
      }
      std::string_view piece = in.substr(at, chunk);
      if (session.response_pending() || session.holding()) {
        if (!session.hold(piece)) {
          refused = true;
          break;
        }
        continue;
      }
      while (open && !piece.empty()) {
        std::size_t used = 0;
        const Event event = session.feed(piece, used);
        check(used <= piece.size(), "used <= chunk size");
        piece.remove_prefix(used);
        open = record(session, event, deferred);
        if (event == Event::request) {
          if (!session.hold(piece)) {
            refused = true;
            open = false;
          }
          break;
        }
      }
      if (refused) break;
    }
    // Whatever is still pending or held at the end is answered and drained.
    while (!refused && open && session.state() == State::awaiting_response) {
      answer(session, deferred);
      if (session.state() == State::last_response_done) break;
      std::string held = session.take_held();
      if (!held.empty()) open = feed_answering(session, held, deferred);
    }
    if (refused) {
      check(whole.starts_with(deferred), "a refused hold ends a prefix of the trace");
    } else {
      check(deferred == whole, "deferred answers == whole");
    }
  }
  return 0;
}
