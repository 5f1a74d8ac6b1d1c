// libFuzzer target: a real server net::Connection on one end of a socketpair,
// its own event loop, driven by a peer that writes fuzzed bytes, and handlers
// whose actions come from the fuzz input too. It checks the lifetime rule:
// no callback after the connection's end callback (on_close, or
// on_http_closed for plain HTTP), each at most once and never inside another
// callback of the same connection, no callback but the end after the handler
// terminated the connection (or a send closed it over its limit, or a throw
// dropped it before it opened), and an opened WebSocket connection gets
// on_close once the peer has gone. Memory errors are ASan's.
//
// Input layout (all of it optional; a short input runs with defaults):
//   byte 0..7  one action per callback: on_upgrade, on_open, on_message,
//              on_ping, on_pong, on_drain, on_close, on_http. Low nibble % 7:
//              0 nothing, 1 send, 2 send large (over the limit), 3 close,
//              4 terminate, 5 throw, 6 ping. Bit 4: on every call (else the
//              first call only). on_upgrade: 3 rejects with 403. on_http: 1
//              answers, 2 answers with a large body, 3 streams a chunk and
//              ends, 6 starts a stream left open.
//   byte 8     options: bit 0 max_send_buffer 1 KiB (else 64 KiB), bit 1 drop
//              policy (else close), bit 2 the peer reads (else it never does),
//              bit 3 permessage-deflate dedicated, bit 4 shared, bit 5 plain
//              HTTP requests get on_http (else 426).
//   then steps, each one op byte (op % 4):
//     0  the peer writes the next N bytes, N = the following 2 bytes (big endian)
//     1  the loop runs until quiet
//     2  the peer reads what is there (if it reads at all: option bit 2)
//     3  the peer shuts down its writing side
// At the end the loop runs until quiet, the peer closes, the loop runs until
// quiet again, and the loop is destroyed (it drops what is left, without
// callbacks).
//
// DUPLEX_FUZZ_NO_THROW=1 in the environment turns the throw action into
// "nothing" (to explore other paths on code where a throw ends the process).
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>

#include "connection_config.hpp"
#include "duplex/net/connection.hpp"
#include "duplex/net/event_loop.hpp"

using namespace duplex;

namespace {

enum Slot { upgrade, open, message, ping, pong, drain, close, http, slots };
const char* const slot_names[slots] = {"on_upgrade", "on_open",  "on_message", "on_ping",
                                       "on_pong",    "on_drain", "on_close",   "on_http"};
enum Action { nothing, send, send_large, close_it, terminate, throw_it, ping_it };

// Bounds that keep one input fast.
constexpr int max_actions = 32;          // actions taken per input
constexpr int max_quiet_rounds = 64;     // io_context::poll rounds per "until quiet"
constexpr std::size_t large_size = 256u << 10;
constexpr std::size_t read_buffer_size = 64u << 10;

[[noreturn]] void violated(const char* what, const char* callback) {
  std::fprintf(stderr, "fuzz_connection: lifetime rule broken: %s (%s)\n", what, callback);
  std::abort();
}

// What the handlers saw of the one connection of this input.
struct State {
  std::uint8_t actions[slots] = {};
  bool acted[slots] = {};
  int actions_left = max_actions;
  bool no_throw = false;
  bool opened = false;
  bool ended = false;    // on_close or on_http_closed ran
  bool stopped = false;  // terminated by the handler, or closed by a send over the limit
  int depth = 0;         // callbacks of the connection running now
};

State* state = nullptr;

// Marks one callback as running; checks what may run now.
class Scope {
 public:
  Scope(Slot slot, bool is_end = false) : name_(is_end && slot == http ? "on_http_closed" : slot_names[slot]) {
    if (state->ended) violated("a callback after the end callback", name_);
    if (is_end && state->depth > 0) violated("the end callback inside another callback", name_);
    if (state->stopped && !is_end)
      violated("a callback after terminate() or a send that closed the connection", name_);
    ++state->depth;
  }
  ~Scope() { --state->depth; }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  const char* name_;
};

// The action this input chose for `slot`, or nothing once it is used up.
Action next_action(Slot slot) {
  const std::uint8_t b = state->actions[slot];
  if (state->acted[slot] && !(b & 0x10)) return nothing;
  if (state->actions_left <= 0) return nothing;
  state->acted[slot] = true;
  --state->actions_left;
  const auto a = static_cast<Action>((b & 0x0F) % 7);
  return a == throw_it && state->no_throw ? nothing : a;
}

void act(net::Connection& c, Action a) {
  switch (a) {
    case nothing:
      return;
    case send:
      c.send_text("fuzz reply");
      return;
    case send_large: {
      const bool was_open = c.is_open();
      if (c.send_binary(std::string(large_size, 'L')) == net::SendStatus::closed && was_open) state->stopped = true;
      return;
    }
    case close_it:
      c.close(4000, "fuzz");
      return;
    case terminate:
      state->stopped = true;
      c.terminate();
      if (c.send_text("after terminate") != net::SendStatus::closed) violated("send after terminate() not closed", "");
      return;
    case throw_it:
      if (!c.is_open()) state->stopped = true;  // dropped: only its end may follow
      throw std::runtime_error("fuzz handler threw");
    case ping_it:
      c.ping("fuzz");
      return;
  }
}

void act_http(net::Connection& c, Action a) {
  switch (a) {
    case nothing:
      return;
    case send:
      c.http_respond(200, "text/plain", "ok");
      return;
    case send_large:
      c.http_respond(200, "application/octet-stream", std::string(large_size, 'H'));
      return;
    case close_it:
      c.http_begin_stream(200, "text/event-stream");
      c.http_stream_write("data: x\n\n");
      c.http_end_stream();
      return;
    case terminate:
      state->stopped = true;
      c.terminate();
      return;
    case throw_it:
      state->stopped = true;  // an HTTP connection is never open: it is dropped
      throw std::runtime_error("fuzz handler threw");
    case ping_it:
      c.http_begin_stream(200, "text/event-stream");
      return;
  }
}

net::Handlers make_handlers() {
  net::Handlers h;
  h.on_upgrade = [](net::Connection& c, const protocol::UpgradeRequest&, const protocol::HttpHead&,
                    net::UpgradeDecision& decision) {
    Scope scope(upgrade);
    const Action a = next_action(upgrade);
    if (a == close_it) {
      decision.reject(403, "fuzz");
      state->stopped = true;  // refused: on_open must not follow
    } else {
      act(c, a);
    }
  };
  h.on_open = [](net::Connection& c) {
    Scope scope(open);
    state->opened = true;
    act(c, next_action(open));
  };
  h.on_message = [](net::Connection& c, protocol::Opcode, std::string_view) {
    Scope scope(message);
    act(c, next_action(message));
  };
  h.on_ping = [](net::Connection& c, std::string_view) {
    Scope scope(ping);
    act(c, next_action(ping));
  };
  h.on_pong = [](net::Connection& c, std::string_view) {
    Scope scope(pong);
    act(c, next_action(pong));
  };
  h.on_drain = [](net::Connection& c) {
    Scope scope(drain);
    act(c, next_action(drain));
  };
  h.on_close = [](net::Connection& c, std::uint16_t, std::string_view) {
    Scope scope(close, true);
    if (!state->opened) violated("on_close for a connection that never opened", "on_close");
    state->ended = true;
    act(c, next_action(close));
  };
  h.on_http = [](net::Connection& c, const net::HttpRequest&) {
    Scope scope(http);
    act_http(c, next_action(http));
  };
  h.on_http_closed = [](net::Connection&) {
    Scope scope(http, true);
    state->ended = true;
  };
  return h;
}

// Runs ready handlers until none is left (bounded).
void run_until_quiet(net::EventLoop& loop) {
  for (int i = 0; i < max_quiet_rounds; ++i) {
    if (loop.poll() == 0) return;
  }
}

void set_buffer(int fd, int option, int bytes) { ::setsockopt(fd, SOL_SOCKET, option, &bytes, sizeof bytes); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  State st;
  state = &st;
  static const bool no_throw = std::getenv("DUPLEX_FUZZ_NO_THROW") != nullptr;
  st.no_throw = no_throw;
  std::size_t pos = 0;
  for (int i = 0; i < slots && pos < size; ++i) st.actions[i] = data[pos++];
  const std::uint8_t options = pos < size ? data[pos++] : 0;
  const bool peer_reads = options & 0x04;

  auto config = std::make_shared<net::ConnectionConfig>();
  config->handlers = make_handlers();
  if (!(options & 0x20)) config->handlers.on_http = nullptr;
  config->limits.max_message_size = 64u << 10;
  config->limits.max_frame_size = 64u << 10;
  config->http.max_head_bytes = 4096;
  config->http.max_body_bytes = 4096;
  config->max_send_buffer = options & 0x01 ? 1024 : 64u << 10;
  config->backpressure = options & 0x02 ? net::BackpressurePolicy::drop : net::BackpressurePolicy::close;
  config->subprotocols = {"chat"};
  if (options & 0x08) config->deflate.mode = net::DeflateMode::dedicated;
  if (options & 0x10) config->deflate.mode = net::DeflateMode::shared;

  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) return 0;
  // Small kernel buffers: backpressure after a few KiB, as with a slow client.
  set_buffer(fds[0], SO_SNDBUF, 4096);
  set_buffer(fds[1], SO_RCVBUF, 4096);
  int peer = fds[1];
  {
    net::EventLoop loop(read_buffer_size);
    {
      auto connection = net::Connection::accept(loop, fds[0], config);
      (void)connection;  // it keeps itself alive until its end
    }
    run_until_quiet(loop);
    char sink[16384];
    while (pos < size) {
      const std::uint8_t op = data[pos++] % 4;
      if (op == 0) {
        if (pos + 2 > size) break;
        std::size_t n = (std::size_t{data[pos]} << 8) | data[pos + 1];
        pos += 2;
        if (n > size - pos) n = size - pos;
        if (n > 0) (void)::send(peer, data + pos, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        pos += n;
      } else if (op == 1) {
        run_until_quiet(loop);
      } else if (op == 2) {
        if (peer_reads)
          for (int i = 0; i < 64 && ::recv(peer, sink, sizeof sink, MSG_DONTWAIT) > 0; ++i) {
          }
      } else {
        ::shutdown(peer, SHUT_WR);
      }
    }
    run_until_quiet(loop);
    ::close(peer);
    peer = -1;
    run_until_quiet(loop);
    // A WebSocket connection ends once its peer has gone (EOF ends it in any phase).
    if (st.opened && !st.ended) violated("an opened connection did not end after its peer closed", "on_close");
  }
  state = nullptr;
  return 0;
}
