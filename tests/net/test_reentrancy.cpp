// The re-entrancy matrix (issue 13): every callback × every action a handler
// may take inside it × what else arrives in the same read, on the server side
// (our Server, a raw TCP client as the peer) and on the client side
// (net::connect, a raw TCP listener as the peer). The raw peer decides exactly
// which bytes arrive together: the trigger and its trailer go out in one
// send() on loopback with TCP_NODELAY, so the connection reads them at once.
//
// Every cell checks the lifetime rule (README, "Who owns a connection"):
// - no callback after the connection's end callback (on_close, client on_error);
// - the end callback exactly once per connection that opened (a client that
//   never opened: on_error exactly once), and never inside another callback of
//   that connection (an end happens at a defined point of the loop's turn);
// - after terminate(), a send that closed the connection over its limit, or
//   a throw while the connection was not open (it is dropped), nothing but
//   the end callback runs (frames later in the same read are not delivered);
// - send() after terminate() returns SendStatus::closed;
// - a handler that throws on an open connection closes it with 1011, the
//   process survives and the server goes on serving;
// - the connection opened next on the same loop gets only its own bytes (its
//   first bytes are its own 101, or its own upgrade request on the client side)
//   and is served;
// - the callback under test did run (no cell passes by testing nothing).
// Memory errors (use-after-free, double free) are caught by the ASan+UBSan
// build, which runs these too. Cells whose handler throws run in a child
// process (a death test), so code that lets the exception kill the process
// fails that cell instead of ending the suite.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <ostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "duplex/duplex.hpp"
#include "duplex/protocol/frame.hpp"
#include "duplex/protocol/handshake.hpp"
#include "duplex/protocol/mask.hpp"
#include "support.hpp"

using namespace duplex;
using namespace std::chrono_literals;
using Millis = std::chrono::milliseconds;

namespace {

enum class Side { server, client };
enum class Callback { upgrade, open, message, ping, pong, drain, close, error };
enum class Action { send, send_over_limit, close, terminate, send_after_terminate, throw_exception };
enum class Trailer { ping, frames, close, nothing };

struct Cell {
  Side side;
  Callback callback;
  Action action;
  Trailer trailer;
};

constexpr Callback all_callbacks[] = {Callback::upgrade, Callback::open,  Callback::message, Callback::ping,
                                      Callback::pong,    Callback::drain, Callback::close,   Callback::error};
constexpr Action all_actions[] = {Action::send,      Action::send_over_limit,      Action::close,
                                  Action::terminate, Action::send_after_terminate, Action::throw_exception};
constexpr Trailer all_trailers[] = {Trailer::ping, Trailer::frames, Trailer::close, Trailer::nothing};

const char* name_of(Callback c) {
  switch (c) {
    case Callback::upgrade: return "on_upgrade";
    case Callback::open: return "on_open";
    case Callback::message: return "on_message";
    case Callback::ping: return "on_ping";
    case Callback::pong: return "on_pong";
    case Callback::drain: return "on_drain";
    case Callback::close: return "on_close";
    case Callback::error: return "on_error";
  }
  return "?";
}

const char* name_of(Action a) {
  switch (a) {
    case Action::send: return "send";
    case Action::send_over_limit: return "send_over_limit";
    case Action::close: return "close";
    case Action::terminate: return "terminate";
    case Action::send_after_terminate: return "send_after_terminate";
    case Action::throw_exception: return "throw";
  }
  return "?";
}

const char* name_of(Trailer t) {
  switch (t) {
    case Trailer::ping: return "ping";
    case Trailer::frames: return "frames";
    case Trailer::close: return "close";
    case Trailer::nothing: return "nothing";
  }
  return "?";
}

const char* name_of(net::SendStatus s) {
  switch (s) {
    case net::SendStatus::ok: return "ok";
    case net::SendStatus::backpressure: return "backpressure";
    case net::SendStatus::dropped: return "dropped";
    case net::SendStatus::closed: return "closed";
  }
  return "?";
}

// The limit every cell runs with, and a send far over it: more than the
// kernel's socket buffers on loopback take when the peer does not read.
constexpr std::size_t send_limit = 64u << 10;
// on_drain cells: a limit small enough that the backlog left over it fits in
// the kernel's send buffer once the peer has read, so one writable event
// empties it (and on_drain runs) — see trigger().
constexpr std::size_t drain_limit = 4u << 10;
constexpr std::size_t over_limit_size = 8u << 20;
// The raw peer's receive buffer: small, so a peer that does not read stops
// the connection's writes early.
constexpr int peer_receive_buffer = 4096;

// ---- bytes on the wire ------------------------------------------------------------

// A complete frame: `first_byte` is FIN|opcode; masked as a client sends.
std::string frame(std::uint8_t first_byte, std::string_view payload, bool masked) {
  std::uint8_t header[protocol::max_frame_header_size];
  const protocol::MaskKey key{0x11, 0x22, 0x33, 0x44};
  const std::size_t n = protocol::encode_frame_header(header, static_cast<protocol::Opcode>(first_byte & 0x0F),
                                                      payload.size(), {}, masked ? &key : nullptr);
  header[0] = first_byte;
  std::string out(reinterpret_cast<char*>(header), n);
  std::string body(payload);
  if (masked) protocol::apply_mask(reinterpret_cast<std::uint8_t*>(body.data()), body.size(), key);
  return out + body;
}

std::string close_payload(std::uint16_t code, std::string_view reason) {
  std::string p;
  p.push_back(static_cast<char>(code >> 8));
  p.push_back(static_cast<char>(code & 0xFF));
  p += reason;
  return p;
}

// What arrives in the same read right after the frame that runs the callback.
std::string trailer_bytes(Trailer t, bool masked) {
  switch (t) {
    case Trailer::ping: return frame(0x89, "trailer ping", masked);
    case Trailer::frames: return frame(0x81, "trailer one", masked) + frame(0x82, "trailer two", masked);
    case Trailer::close: return frame(0x88, close_payload(1000, "trailer close"), masked);
    case Trailer::nothing: return {};
  }
  return {};
}

// The frame that makes the callback under test run (open connection).
std::string trigger_frame(Callback c, bool masked) {
  switch (c) {
    case Callback::message: return frame(0x81, "trigger", masked);
    case Callback::ping: return frame(0x89, "trigger", masked);
    case Callback::pong: return frame(0x8A, "trigger", masked);
    case Callback::close: return frame(0x88, close_payload(1000, "trigger"), masked);
    default: return {};
  }
}

std::string upgrade_request(std::string_view target) {
  return "GET " + std::string(target) +
         " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
}

std::string accept_response(std::string_view key) {
  return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
         protocol::compute_accept_key(key) + "\r\n\r\n";
}

std::string header_value(const std::string& head, std::string_view name) {
  const std::string marker = "\r\n" + std::string(name) + ": ";
  const auto at = head.find(marker);
  if (at == std::string::npos) return {};
  const auto start = at + marker.size();
  return head.substr(start, head.find("\r\n", start) - start);
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// The first bytes of `s`, readable in a failure message.
std::string printable(std::string_view s, std::size_t max = 48) {
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < max; ++i) {
    const auto ch = static_cast<unsigned char>(s[i]);
    if (ch >= 0x20 && ch < 0x7F) {
      out.push_back(static_cast<char>(ch));
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", ch);
      out += hex;
    }
  }
  if (s.size() > max) out += "...";
  return out.empty() ? "(nothing)" : out;
}

struct Frame {
  std::uint8_t opcode = 0;
  std::uint64_t size = 0;
  std::string payload;  // kept (unmasked) up to 1 KiB: the checks look at control frames and short messages
};

// ---- the raw peer -------------------------------------------------------------------

// One end of a TCP connection driven byte by byte: it sends what it is told in
// one send() and reads, keeping everything it received and the complete
// frames after the HTTP head.
class Peer {
 public:
  explicit Peer(int fd = -1) : fd_(fd) {}
  ~Peer() { close(); }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  bool valid() const { return fd_ >= 0; }
  bool send(std::string_view bytes) {
    std::size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Reads until `done()` holds, the stream ends, nothing arrives for `quiet`,
  // or `limit` passes.
  void read(const std::function<bool()>& done, Millis quiet, Millis limit) {
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + limit;
    auto last_byte = Clock::now();
    std::vector<char> buf(1 << 16);
    while (!eof_ && fd_ >= 0 && !(done && done())) {
      const auto now = Clock::now();
      if (now >= deadline || now - last_byte >= quiet) return;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 10) <= 0) continue;
      const ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
      if (n <= 0) {
        eof_ = true;  // FIN or reset
        return;
      }
      bytes_.append(buf.data(), static_cast<std::size_t>(n));
      last_byte = Clock::now();
    }
  }
  bool read_head(Millis limit) {
    read([this] { return bytes_.find("\r\n\r\n") != std::string::npos; }, limit, limit);
    return bytes_.find("\r\n\r\n") != std::string::npos;
  }

  const std::string& bytes() const { return bytes_; }
  std::string head() const { return bytes_.substr(0, bytes_.find("\r\n\r\n") + 4); }
  bool eof() const { return eof_; }

  // Complete frames after the HTTP head, parsed incrementally.
  const std::vector<Frame>& frames() {
    if (parsed_ == std::string::npos) {
      const auto end = bytes_.find("\r\n\r\n");
      if (end == std::string::npos) return frames_;
      parsed_ = end + 4;
    }
    auto byte = [this](std::size_t i) { return static_cast<std::uint8_t>(bytes_[i]); };
    for (;;) {
      const std::size_t i = parsed_;
      const std::size_t size = bytes_.size();
      if (i + 2 > size) break;
      std::uint64_t length = byte(i + 1) & 0x7F;
      std::size_t header = 2;
      if (length == 126) {
        if (i + 4 > size) break;
        length = (std::uint64_t{byte(i + 2)} << 8) | byte(i + 3);
        header = 4;
      } else if (length == 127) {
        if (i + 10 > size) break;
        length = 0;
        for (std::size_t k = 0; k < 8; ++k) length = (length << 8) | byte(i + 2 + k);
        header = 10;
      }
      const bool masked = (byte(i + 1) & 0x80) != 0;
      protocol::MaskKey key{};
      if (masked) {
        if (i + header + 4 > size) break;
        for (std::size_t k = 0; k < 4; ++k) key[k] = byte(i + header + k);
        header += 4;
      }
      if (length > size - i - header) break;
      Frame f;
      f.opcode = byte(i) & 0x0F;
      f.size = length;
      if (length <= 1024) {
        f.payload = bytes_.substr(i + header, length);
        if (masked) protocol::apply_mask(reinterpret_cast<std::uint8_t*>(f.payload.data()), f.payload.size(), key);
      }
      frames_.push_back(std::move(f));
      parsed_ = i + header + length;
    }
    return frames_;
  }
  // The code in the first close frame received, if any (1005 when it has none).
  std::optional<int> close_code() {
    for (const Frame& f : frames())
      if (f.opcode == 0x8)
        return f.payload.size() >= 2
                   ? (static_cast<std::uint8_t>(f.payload[0]) << 8) | static_cast<std::uint8_t>(f.payload[1])
                   : 1005;
    return std::nullopt;
  }
  bool has_text(std::string_view payload) {
    for (const Frame& f : frames())
      if (f.opcode == 0x1 && f.payload == payload) return true;
    return false;
  }
  // A data frame after a close frame: RFC 6455 §5.5.1 forbids it.
  bool data_after_close() {
    bool closed = false;
    for (const Frame& f : frames()) {
      if (f.opcode == 0x8) closed = true;
      if (closed && f.opcode < 0x8) return true;
    }
    return false;
  }

 private:
  int fd_ = -1;
  std::string bytes_;
  std::size_t parsed_ = std::string::npos;
  std::vector<Frame> frames_;
  bool eof_ = false;
};

// A raw TCP listener on 127.0.0.1: the server side of client cells.
class Listener {
 public:
  explicit Listener(int receive_buffer) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    // Set before listen() so accepted sockets start with the small window.
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(fd_, 8);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~Listener() { ::close(fd_); }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  std::uint16_t port() const { return port_; }
  // The next connection, or -1 after `limit`.
  int accept(Millis limit) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) <= 0) return -1;
    const int fd = ::accept(fd_, nullptr, nullptr);
    const int one = 1;
    if (fd >= 0) ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
  }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

// Lets `loop` finish what it is doing: three rounds of posting a task and
// waiting for it, so handlers and end-of-turn flushes queued meanwhile ran.
bool settle(net::EventLoop& loop) {
  for (int i = 0; i < 3; ++i) {
    auto done = std::make_shared<std::promise<void>>();
    auto ran = done->get_future();
    loop.post([done] { done->set_value(); });
    if (ran.wait_for(2s) != std::future_status::ready) return false;
  }
  return true;
}

// ---- what the handlers saw -----------------------------------------------------------

// One connection as its callbacks saw it. Written on the loop thread and read
// by the test thread, always under Harness::mutex_.
struct Record {
  std::string label;  // "subject" (the cell's connection) or "probe" (the one opened next)
  bool subject = false;
  net::Connection* connection = nullptr;  // client side: for on_error, which has no Connection&
  std::vector<std::string> events;
  std::vector<std::string> stack;  // callbacks of this connection running now
  bool opened = false;
  int closes = 0;
  int errors = 0;
  bool ended = false;    // its end callback ran
  bool stopped = false;  // the handler terminated it, or a send closed it over the limit
  bool acted = false;    // the callback under test ran and took the cell's action
  bool threw_while_open = false;
  bool filled = false;         // the backlog under the limit is in place
  bool backpressured = false;  // on_open got over the limit (drop policy, for on_drain)
};

class Harness {
 public:
  explicit Harness(Cell cell) : cell_(cell) {}

  Record& add(std::string label) {
    std::lock_guard lock(mutex_);
    auto r = std::make_unique<Record>();
    r->subject = label == "subject";
    r->label = std::move(label);
    records_.push_back(std::move(r));
    changed_.notify_all();
    return *records_.back();
  }
  // The record labelled `label`, waiting up to `limit` for its first callback.
  Record* find(std::string_view label, Millis limit = 3s) {
    std::unique_lock lock(mutex_);
    Record* found = nullptr;
    changed_.wait_for(lock, limit, [&] {
      for (auto& r : records_)
        if (r->label == label) found = r.get();
      return found != nullptr;
    });
    return found;
  }
  void violation(const std::string& what) {
    std::lock_guard lock(mutex_);
    violations_.push_back(what);
  }
  // Waits until `pred` (evaluated under the lock) holds.
  bool wait(const std::function<bool()>& pred, Millis limit) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, limit, pred);
  }
  bool check(const std::function<bool()>& pred) {
    std::lock_guard lock(mutex_);
    return pred();
  }

  // Every callback, recorded and checked; the subject's callback under test
  // takes the cell's action the first time it runs. `fixed` is the client
  // connection these handlers belong to; server connections are found through
  // user_data (set in on_upgrade, their first callback).
  net::Handlers handlers(Record* fixed) {
    net::Handlers h;
    h.on_upgrade = [this](net::Connection& c, const protocol::UpgradeRequest& request, const protocol::HttpHead&,
                          net::UpgradeDecision&) {
      Record& r = add(request.target == "/subject" ? "subject" : "probe");
      c.user_data = &r;
      Scope scope(*this, r, Callback::upgrade);
      maybe_act(c, r, Callback::upgrade);
    };
    h.on_open = [this, fixed](net::Connection& c) {
      Record& r = record_of(c, fixed);
      Scope scope(*this, r, Callback::open);
      maybe_act(c, r, Callback::open);
      if (r.subject && cell_.callback == Callback::drain) fill_until_backpressure(c, r);
    };
    h.on_message = [this, fixed](net::Connection& c, protocol::Opcode kind, std::string_view payload) {
      Record& r = record_of(c, fixed);
      Scope scope(*this, r, Callback::message);
      if (!r.subject) {
        c.send(payload, kind);  // the probe is echoed: it is served
        return;
      }
      if (payload == "fill") {
        fill_backlog(c.weak_from_this(), r, 1024);
        return;
      }
      maybe_act(c, r, Callback::message);
    };
    h.on_ping = [this, fixed](net::Connection& c, std::string_view) {
      Record& r = record_of(c, fixed);
      Scope scope(*this, r, Callback::ping);
      maybe_act(c, r, Callback::ping);
    };
    h.on_pong = [this, fixed](net::Connection& c, std::string_view) {
      Record& r = record_of(c, fixed);
      Scope scope(*this, r, Callback::pong);
      maybe_act(c, r, Callback::pong);
    };
    h.on_drain = [this, fixed](net::Connection& c) {
      Record& r = record_of(c, fixed);
      Scope scope(*this, r, Callback::drain);
      maybe_act(c, r, Callback::drain);
    };
    h.on_close = [this, fixed](net::Connection& c, std::uint16_t, std::string_view) {
      Record& r = record_of(c, fixed);
      Scope scope(*this, r, Callback::close);
      maybe_act(c, r, Callback::close);
    };
    if (fixed) {
      h.on_error = [this, fixed](std::string_view) {
        Scope scope(*this, *fixed, Callback::error);
        if (fixed->connection) maybe_act(*fixed->connection, *fixed, Callback::error);
      };
    }
    return h;
  }

  // After the cell: every connection ended the way the rule says.
  void check_ends(Side side) {
    std::lock_guard lock(mutex_);
    for (auto& r : records_) {
      if (r->opened && r->closes != 1)
        violations_.push_back(r->label + ": on_close ran " + std::to_string(r->closes) +
                              " times for a connection that opened (expected exactly once)");
      if (side == Side::client && !r->opened && r->errors != 1)
        violations_.push_back(r->label + ": on_error ran " + std::to_string(r->errors) +
                              " times for a client that never opened (expected exactly once)");
      if (r->subject && !r->acted)
        violations_.push_back(std::string("the callback under test (") + name_of(cell_.callback) + ") never ran");
    }
  }

  std::vector<std::string> report() {
    std::lock_guard lock(mutex_);
    std::vector<std::string> out = violations_;
    if (!out.empty()) {
      for (auto& r : records_) {
        std::string seq = r->label + " saw:";
        for (auto& e : r->events) seq += " " + e;
        out.push_back(seq);
      }
    }
    return out;
  }

 private:
  // Marks a callback of `r` as running for its duration (also while it throws).
  class Scope {
   public:
    Scope(Harness& h, Record& r, Callback cb) : h_(h), r_(r) { h_.enter(r_, cb); }
    ~Scope() { h_.leave(r_); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Harness& h_;
    Record& r_;
  };

  Record& record_of(net::Connection& c, Record* fixed) {
    if (fixed) return *fixed;
    if (c.user_data) return *static_cast<Record*>(c.user_data);
    violation("a callback ran for a server connection whose on_upgrade never ran");
    return stray_;
  }

  void enter(Record& r, Callback cb) {
    std::lock_guard lock(mutex_);
    const std::string what = name_of(cb);
    const bool is_end = cb == Callback::close || cb == Callback::error;
    r.events.push_back(what);
    if (r.ended)
      violations_.push_back(r.label + ": " + what + " ran after the connection's end callback");
    else if (r.stopped && !is_end)
      violations_.push_back(r.label + ": " + what +
                            " ran after the handler ended the connection (terminate, or a send over the limit)");
    if (is_end && !r.stack.empty())
      violations_.push_back(r.label + ": " + what + " ran inside " + r.stack.back() +
                            " of the same connection (the end must come at a later point of the loop's turn)");
    if (cb == Callback::open) r.opened = true;
    if (cb == Callback::close) {
      ++r.closes;
      if (!r.opened) violations_.push_back(r.label + ": on_close for a connection that never opened");
    }
    if (cb == Callback::error) {
      ++r.errors;
      if (r.opened) violations_.push_back(r.label + ": on_error after on_open");
    }
    if (is_end) r.ended = true;
    r.stack.push_back(what);
  }
  void leave(Record& r) {
    std::lock_guard lock(mutex_);
    r.stack.pop_back();
    changed_.notify_all();
  }

  void maybe_act(net::Connection& c, Record& r, Callback cb) {
    {
      std::lock_guard lock(mutex_);
      if (!r.subject || cb != cell_.callback || r.acted) return;
      r.acted = true;
    }
    act(c, r);  // unlocked: the action may run further callbacks
  }

  void mark_stopped(Record& r) {
    std::lock_guard lock(mutex_);
    r.stopped = true;
  }

  void act(net::Connection& c, Record& r) {
    switch (cell_.action) {
      case Action::send:
        c.send_text("reply");
        return;
      case Action::send_over_limit: {
        const bool was_open = c.is_open();
        const auto status = c.send_binary(std::string(over_limit_size, 'o'));
        if (was_open && status == net::SendStatus::closed) mark_stopped(r);
        return;
      }
      case Action::close:
        c.close(4000, "handler closed");
        return;
      case Action::terminate:
        mark_stopped(r);
        c.terminate();
        return;
      case Action::send_after_terminate: {
        mark_stopped(r);
        c.terminate();
        const auto status = c.send_text("after terminate");
        if (status != net::SendStatus::closed)
          violation(r.label + ": send() after terminate() returned " + name_of(status) + ", not closed");
        return;
      }
      case Action::throw_exception: {
        {
          // Open: it closes with 1011. Not open: it is dropped, so nothing
          // but its end callback may follow.
          std::lock_guard lock(mutex_);
          r.threw_while_open = c.is_open();
          if (!r.threw_while_open) r.stopped = true;
        }
        throw std::runtime_error("a handler threw (re-entrancy matrix)");
      }
    }
  }

  // One chunk per loop turn: the end-of-turn flush hands each to the kernel,
  // so the first turn that finds bytes still buffered has a backlog smaller
  // than a chunk, under the limit. The over-limit send then lands on a
  // connection whose backlog may be the protocol core's output right now.
  void fill_backlog(std::weak_ptr<net::Connection> weak, Record& r, int turns_left) {
    auto c = weak.lock();
    if (!c) return;
    c->loop().post([this, weak, &r, turns_left] {
      auto conn = weak.lock();
      if (!conn) return;
      const bool done = conn->buffered_amount() > 0 || turns_left == 0 ||
                        conn->send_binary(std::string(16u << 10, 'f')) != net::SendStatus::ok;
      if (!done) {
        fill_backlog(weak, r, turns_left - 1);
        return;
      }
      std::lock_guard lock(mutex_);
      r.filled = true;
      changed_.notify_all();
    });
  }

  // Drop policy: sends until the connection is over its limit, so on_drain
  // runs once the peer reads.
  void fill_until_backpressure(net::Connection& c, Record& r) {
    const std::string chunk(drain_limit / 4, 'd');
    for (int i = 0; i < 4096; ++i) {
      const auto status = c.send_binary(chunk);
      if (status == net::SendStatus::ok) continue;
      std::lock_guard lock(mutex_);
      r.backpressured = status == net::SendStatus::backpressure || status == net::SendStatus::dropped;
      changed_.notify_all();
      return;
    }
  }

  const Cell cell_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::unique_ptr<Record>> records_;
  std::vector<std::string> violations_;
  Record stray_;
};

// ---- one cell -------------------------------------------------------------------------

// The subject is open: run the callback under test with the trailer in the same read.
void trigger(Harness& h, Record& subject, Peer& peer, net::EventLoop& loop, const Cell& cell, bool masked) {
  const std::string trailer = trailer_bytes(cell.trailer, masked);
  const bool reads = cell.callback == Callback::message || cell.callback == Callback::ping ||
                     cell.callback == Callback::pong;
  if (cell.action == Action::send_over_limit && reads) {
    peer.send(frame(0x81, "fill", masked));
    if (!h.wait([&] { return subject.filled; }, 5s)) h.violation("the backlog under the limit never formed");
  }
  if (cell.callback == Callback::drain) {
    if (!h.wait([&] { return subject.backpressured; }, 5s)) h.violation("on_open never got over the limit");
    // Hold the loop while the peer empties the socket and sends the trailer:
    // the loop's next wake-up then finds the connection writable (its small
    // backlog drains at once and on_drain runs) and readable (the trailer) in
    // one event.
    auto release = std::make_shared<std::promise<void>>();
    auto held = std::make_shared<std::promise<void>>();
    loop.post([gate = release->get_future().share(), held] {
      held->set_value();
      gate.wait_for(3s);
    });
    if (held->get_future().wait_for(3s) != std::future_status::ready) h.violation("the loop did not run a task");
    peer.read(nullptr, 100ms, 3s);  // all the kernel holds
    peer.send(trailer);
    std::this_thread::sleep_for(20ms);  // lands in the connection's receive queue
    release->set_value();
    peer.read([&] { return h.check([&] { return subject.acted || subject.ended; }); }, 3s, 10s);
    return;
  }
  peer.send(trigger_frame(cell.callback, masked) + trailer);
  // The peer ends its side right after its close frame, so the connection's
  // end comes in the same read.
  if (cell.callback == Callback::close) peer.shutdown_write();
}

// After the trigger: what the peer received, then the peer goes away and the
// subject must end.
void conclude(Harness& h, Record& subject, Peer& peer, net::EventLoop& loop, Side side) {
  if (!settle(loop)) h.violation("the loop stopped answering");
  const bool expect_1011 = h.check([&] { return subject.threw_while_open; });
  peer.read([&] { return peer.close_code().has_value(); }, expect_1011 ? 2000ms : 50ms, 10s);
  if (expect_1011) {
    const auto code = peer.close_code();
    if (code != 1011)
      h.violation("a handler threw on an open connection: the peer got " +
                  (code ? "close code " + std::to_string(*code) : std::string("no close frame")) +
                  ", not 1011");
  }
  if (peer.data_after_close()) h.violation("the peer got a data frame after the close frame");
  peer.close();
  const bool ended = h.wait(
      [&] { return subject.ended || (side == Side::server && !subject.opened); }, 3s);
  if (!ended) h.violation("the subject never got its end callback after the peer went away");
  settle(loop);
}

// A server connection opened after the cell gets its own 101 first and is served.
void probe_server(Harness& h, std::uint16_t port, net::EventLoop& loop) {
  bool connected = false;
  Peer probe(test_support::connect_loopback(port, connected));
  if (!connected) {
    h.violation("the server no longer accepts connections");
    return;
  }
  probe.send(upgrade_request("/probe") + frame(0x81, "probe", true));
  probe.read([&] { return probe.has_text("probe"); }, 3s, 3s);
  if (!starts_with(probe.bytes(), "HTTP/1.1 101 "))
    h.violation("the next connection's first bytes are not its own 101: " + printable(probe.bytes()));
  else if (!probe.has_text("probe"))
    h.violation("the next connection was not served (no echo): " + printable(probe.bytes(), 200));
  probe.send(frame(0x88, close_payload(1000, ""), true));
  probe.read([&] { return probe.close_code().has_value(); }, 2s, 2s);
  probe.close();
  Record* r = h.find("probe");
  if (!r) {
    h.violation("the next connection never reached on_upgrade");
    return;
  }
  if (!h.wait([&] { return r->ended; }, 3s)) h.violation("probe: on_close never ran");
  settle(loop);
}

std::vector<std::string> run_server_cell(const Cell& cell) {
  Harness h(cell);
  net::ServerOptions options;
  options.threads = 1;  // the probe shares the subject's loop (and its cork)
  options.max_send_buffer = send_limit;
  if (cell.callback == Callback::drain) {
    options.max_send_buffer = drain_limit;
    options.backpressure = net::BackpressurePolicy::drop;
  }
  test_support::TestServer server(options, h.handlers(nullptr));
  net::EventLoop& loop = *server.server().loops().front();

  bool connected = false;
  Peer peer(test_support::connect_loopback(server.port(), connected, peer_receive_buffer));
  if (!connected) return {"cannot connect to the server"};
  if (cell.callback == Callback::upgrade || cell.callback == Callback::open) {
    peer.send(upgrade_request("/subject") + trailer_bytes(cell.trailer, true));
  } else {
    peer.send(upgrade_request("/subject"));
    if (!peer.read_head(3s) || !starts_with(peer.bytes(), "HTTP/1.1 101 ")) {
      h.violation("the subject got no 101: " + printable(peer.bytes()));
      return h.report();
    }
    Record* subject = h.find("subject");
    if (!subject || !h.wait([&] { return subject->opened; }, 3s)) {
      h.violation("the subject never opened");
      return h.report();
    }
    trigger(h, *subject, peer, loop, cell, true);
  }
  Record* subject = h.find("subject");
  if (!subject) {
    h.violation("the subject never reached on_upgrade");
    return h.report();
  }
  conclude(h, *subject, peer, loop, Side::server);
  probe_server(h, server.port(), loop);
  h.check_ends(Side::server);
  return h.report();
}

// A client connection opened after the cell, on the same loop, sends its own
// upgrade request first and is served.
void probe_client(Harness& h, Listener& listener, net::EventLoop& loop, std::shared_ptr<net::Connection>& conn) {
  Record& probe = h.add("probe");
  auto handlers = h.handlers(&probe);
  const std::string url = "ws://127.0.0.1:" + std::to_string(listener.port()) + "/probe";
  loop.post([&loop, &conn, &probe, handlers, url] {
    conn = net::connect(loop, url, {}, handlers);
    probe.connection = conn.get();
  });
  Peer peer(listener.accept(3s));
  if (!peer.valid() || !peer.read_head(3s)) {
    h.violation("the next client connection sent no upgrade request");
    return;
  }
  if (!starts_with(peer.bytes(), "GET /probe HTTP/1.1\r\n"))
    h.violation("the next client connection's first bytes are not its own upgrade request: " +
                printable(peer.bytes()));
  peer.send(accept_response(header_value(peer.head(), "Sec-WebSocket-Key")) + frame(0x81, "probe", false));
  peer.read([&] { return peer.has_text("probe"); }, 3s, 3s);
  if (!peer.has_text("probe")) h.violation("the next client connection was not served (no echo)");
  peer.send(frame(0x88, close_payload(1000, ""), false));
  peer.read([&] { return peer.close_code().has_value(); }, 2s, 2s);
  peer.close();
  if (!h.wait([&] { return probe.ended; }, 3s)) h.violation("probe: its end callback never ran");
  settle(loop);
}

std::vector<std::string> run_client_cell(const Cell& cell) {
  Harness h(cell);
  Listener listener(peer_receive_buffer);
  net::EventLoop loop;
  std::shared_ptr<net::Connection> subject_conn;
  std::shared_ptr<net::Connection> probe_conn;
  // Stops the loop however the cell ends; connections are released on the loop first.
  struct Runner {
    net::EventLoop& loop;
    std::shared_ptr<net::Connection>& a;
    std::shared_ptr<net::Connection>& b;
    std::thread thread;
    ~Runner() {
      loop.post([this] {
        a.reset();
        b.reset();
      });
      settle(loop);
      loop.stop();
      thread.join();
    }
  };

  Record& subject = h.add("subject");
  net::ClientOptions options;
  options.max_send_buffer = send_limit;
  if (cell.callback == Callback::drain) {
    options.max_send_buffer = drain_limit;
    options.backpressure = net::BackpressurePolicy::drop;
  }
  subject_conn = net::connect(loop, "ws://127.0.0.1:" + std::to_string(listener.port()) + "/subject", options,
                              h.handlers(&subject));
  subject.connection = subject_conn.get();
  Runner runner{loop, subject_conn, probe_conn, std::thread([&loop] { loop.run(); })};

  {
    Peer peer(listener.accept(3s));
    if (!peer.valid() || !peer.read_head(3s)) {
      h.violation("the client sent no upgrade request");
      return h.report();
    }
    const std::string accept = accept_response(header_value(peer.head(), "Sec-WebSocket-Key"));
    const std::string trailer = trailer_bytes(cell.trailer, false);
    if (cell.callback == Callback::open) {
      peer.send(accept + trailer);
    } else if (cell.callback == Callback::error) {
      peer.send("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n" + trailer);
    } else {
      peer.send(accept);
      if (!h.wait([&] { return subject.opened; }, 3s)) {
        h.violation("the client never opened");
        return h.report();
      }
      trigger(h, subject, peer, loop, cell, false);
    }
    conclude(h, subject, peer, loop, Side::client);
  }
  probe_client(h, listener, loop, probe_conn);
  h.check_ends(Side::client);
  return h.report();
}

std::vector<std::string> run_cell(const Cell& cell) {
  return cell.side == Side::server ? run_server_cell(cell) : run_client_cell(cell);
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += "\n  " + l;
  return out;
}

[[noreturn]] void exit_with(const std::vector<std::string>& violations) {
  if (!violations.empty()) std::fprintf(stderr, "violations:%s\n", joined(violations).c_str());
  std::fflush(stderr);
  std::_Exit(violations.empty() ? 0 : 1);
}

std::vector<Cell> cells(Side side) {
  std::vector<Cell> all;
  for (Callback cb : all_callbacks) {
    if (side == Side::server && cb == Callback::error) continue;   // client only
    if (side == Side::client && cb == Callback::upgrade) continue;  // server only
    for (Action a : all_actions)
      for (Trailer t : all_trailers) all.push_back({side, cb, a, t});
  }
  return all;
}

std::string cell_name(const testing::TestParamInfo<Cell>& info) {
  std::string name = std::string(name_of(info.param.callback) + 3) + "_" + name_of(info.param.action) + "_" +
                     name_of(info.param.trailer);
  return name;
}

// gtest prints the cell in failure messages.
void PrintTo(const Cell& cell, std::ostream* os) {
  *os << (cell.side == Side::server ? "server " : "client ") << name_of(cell.callback) << " / "
      << name_of(cell.action) << " / " << name_of(cell.trailer) << " in the same read";
}

class Reentrancy : public testing::TestWithParam<Cell> {};

}  // namespace

TEST_P(Reentrancy, LifetimeRuleHolds) {
  const Cell& cell = GetParam();
  if (cell.action == Action::throw_exception) {
    // Where nothing catches at the loop boundary the exception ends the
    // process: run the cell in a child so only this cell fails. The child
    // re-runs this test alone ("threadsafe" death tests), so its threads are
    // its own.
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(exit_with(run_cell(cell)), testing::ExitedWithCode(0), "");
  } else {
    const auto violations = run_cell(cell);
    EXPECT_TRUE(violations.empty()) << joined(violations);
  }
}

INSTANTIATE_TEST_SUITE_P(Server, Reentrancy, testing::ValuesIn(cells(Side::server)), cell_name);
INSTANTIATE_TEST_SUITE_P(Client, Reentrancy, testing::ValuesIn(cells(Side::client)), cell_name);
