// duplex bench's lean client engine: the sans-I/O protocol core driven by
// raw non-blocking sockets and one level-triggered epoll per thread. No
// timers, no allocation per message, one read buffer per engine, one write
// per connection per wake-up. It can bind a source address before connect
// (idle mode), which net::connect cannot. Plain ws:// only.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <string_view>
#include <vector>

#include "duplex/net/url.hpp"
#include "duplex/protocol/http_head.hpp"
#include "duplex/protocol/permessage_deflate.hpp"
#include "duplex/protocol/websocket.hpp"

namespace duplex::cli::bench {

// A resolved ws:// endpoint and the request target to ask for.
struct RawTarget {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string host_header;
  std::string path = "/";
};

// Resolves `url` (numeric or by name) once. False with `error` on failure.
bool resolve_target(const net::WsUrl& url, RawTarget& out, std::string& error);

// What every mode starts from: the parsed URL, the engine ("raw" or "net")
// and, for the raw engine, the resolved target.
struct BenchTarget {
  net::WsUrl url;
  std::string engine;
  RawTarget raw;
};

// Parses `url_text`, settles the engine ("auto": raw for ws://, net for
// wss://; raw refuses wss://) and resolves the raw target. On failure prints
// "duplex bench MODE: why" and returns nullopt.
std::optional<BenchTarget> open_bench_target(std::string_view mode, const std::string& url_text,
                                             const std::string& engine_option);

struct RawOptions {
  bool deflate = false;  // offer permessage-deflate
  protocol::Limits limits;
  std::uint64_t handshake_timeout_ns = 10'000'000'000ull;  // connect() to open (see RawEngine::expire)
  std::uint64_t close_timeout_ns = 5'000'000'000ull;       // close() to the server closing TCP
};

class RawEngine;

class RawConnection final : private protocol::EventHandler {
 public:
  enum class State : std::uint8_t { connecting, handshake, open, closing, closed };

  State state() const { return state_; }
  bool is_open() const { return state_ == State::open; }
  // Queues a message; it leaves at the end of the current read handler or
  // the engine's next poll() (or flush()). False if not open.
  bool send(protocol::Opcode kind, std::string_view payload);
  // Writes queued bytes now.
  void flush();
  // Starts the close handshake (the server then closes TCP).
  void close(std::uint16_t code = protocol::close_code::normal);
  // Drops the TCP connection (on_closed reports `why`).
  void abort(std::string_view why = "aborted");
  bool compression_enabled() const { return deflate_ != nullptr; }
  // The server's close code (1006 if it sent no close frame).
  std::uint16_t peer_close_code() const { return ws_.peer_close_code(); }
  std::size_t buffered_amount() const { return out_.size() - out_offset_; }

  std::uint64_t started_ns = 0;  // when connect() was called
  std::uint64_t deadline_ns = 0;  // handshake or close deadline (0: none)
  std::uint64_t user = 0;        // the mode's own index or data
  std::uint32_t tag = 0;         // the mode's own small datum (e.g. channel)

  RawConnection(RawEngine& engine, int fd, const RawOptions& options, std::uint64_t seed);
  ~RawConnection() override;
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

 private:
  friend class RawEngine;
  struct Handshake;

  void on_message(protocol::Opcode kind, std::string_view payload) override;
  void on_close(std::uint16_t code, std::string_view reason) override;
  void on_protocol_error(std::uint16_t code, std::string_view what) override;

  void on_connected();
  void on_readable();
  void on_writable();
  void handshake_bytes(std::uint8_t* data, std::size_t size);
  void want_write(bool on);
  void fail(std::string why);
  void finish(bool clean, std::string_view why);

  RawEngine& engine_;
  int fd_;
  protocol::WebSocket ws_;
  std::unique_ptr<protocol::PerMessageDeflate> deflate_;
  std::unique_ptr<Handshake> handshake_;
  std::string out_;
  std::size_t out_offset_ = 0;
  std::string error_;  // why the protocol failed
  State state_ = State::connecting;
  bool epollout_ = false;
  bool dirty_ = false;
  bool opened_ = false;
};

// The mode's callbacks; all run on the engine's thread, inside poll().
class RawHandler {
 public:
  virtual ~RawHandler() = default;
  virtual void on_open(RawConnection&) {}
  virtual void on_message(RawConnection&, protocol::Opcode, std::string_view) {}
  // Exactly once for every connection connect() returned: `clean` after a
  // completed close handshake, otherwise `error` says why (`opened` tells
  // whether it failed before or after the handshake).
  virtual void on_closed(RawConnection&, bool /*opened*/, bool /*clean*/, std::string_view /*error*/) {}
};

class RawEngine {
 public:
  RawEngine(RawHandler& handler, RawOptions options, std::size_t read_buffer_size = 256u << 10);
  ~RawEngine();
  RawEngine(const RawEngine&) = delete;
  RawEngine& operator=(const RawEngine&) = delete;

  // Starts a connection (TCP, then the upgrade to `target.path`). `source`,
  // if given, is bound first (port chosen at connect time). Returns null
  // with `err` (an errno value: EMFILE, EADDRNOTAVAIL, ...) if the socket
  // could not even be started; otherwise on_open or on_closed follows.
  RawConnection* connect(const RawTarget& target, const sockaddr_in* source, int& err);

  // Flushes queued output, waits up to `timeout_ns` for events (0: don't
  // wait) and handles them.
  void poll(std::uint64_t timeout_ns);
  // Writes every connection's queued output.
  void flush_all();
  // Frees closed connections (call between polls; pointers to them dangle).
  void reap();
  // Aborts connections whose handshake or close handshake is overdue.
  void expire(std::uint64_t now);
  // Starts the close handshake on every open connection and polls until all
  // are closed or `deadline` (now_ns clock) passes; the rest are dropped.
  void close_all(std::uint64_t deadline);

  // The clock reading taken right after the last batch of reads: the
  // receive time of every message delivered in that batch.
  std::uint64_t read_time() const { return read_time_; }
  std::size_t pending_count() const { return pending_; }  // connecting or in the handshake
  std::size_t open_count() const { return open_; }
  std::size_t live_count() const { return live_; }        // not yet closed

 private:
  friend class RawConnection;
  void mark_dirty(RawConnection* c);
  void flush_dirty();

  RawHandler& handler_;
  RawOptions options_;
  int epfd_;
  std::unique_ptr<std::uint8_t[]> buf_;
  std::size_t buf_size_;
  std::vector<std::unique_ptr<RawConnection>> conns_;
  std::vector<RawConnection*> dirty_;
  std::uint64_t read_time_ = 0;
  std::uint64_t seed_;
  std::size_t pending_ = 0;
  std::size_t open_ = 0;
  std::size_t live_ = 0;
  bool use_pwait2_ = true;
};

}  // namespace duplex::cli::bench
