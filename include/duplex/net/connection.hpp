// One WebSocket connection (either role) on an event loop.
//
// The lifetime rule (the library's contract):
// - A connection belongs to one loop from accept (or connect) to free, and
//   its end happens only there, once, at a defined point of the loop's turn:
//   `Handlers::on_close` (or `on_http_closed`, or a client's `on_error`) runs
//   from the loop itself, never from inside a call the application made,
//   then the connection releases its socket and buffers. After that callback
//   no callback runs for it.
// - send, close, terminate, http_respond and http_stream_write never free
//   anything: they record the request and return a status. A handler may
//   call any of them on its own connection (or any other connection of the
//   same loop) and go on using the Connection& it was given.
// - The protocol core is driven one event at a time; between events the
//   connection looks at its own state, so nothing is delivered after a
//   terminate() or after the connection ended itself (e.g. over the limit).
// - Every byte the connection owes (frames, pongs, close frames, HTTP
//   answers, SSE chunks) passes one queue counted against max_send_buffer.
// - A handler that throws ends its own connection (1011 when open) and the
//   error is logged once; the loop and every other connection go on.
// - The last shared_ptr may be dropped on any thread: the object is then
//   destroyed on its loop.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/net/event_loop.hpp"
#include "duplex/net/handlers.hpp"
#include "duplex/net/options.hpp"
#include "duplex/net/prepared_message.hpp"
#include "duplex/net/timer_wheel.hpp"
#include "duplex/protocol/websocket.hpp"

typedef struct ssl_st SSL;

namespace duplex::protocol {
class HttpServerSession;
}

namespace duplex::net {

class TlsContext;
struct ConnectionConfig;
struct HandshakeState;
namespace detail {
template <typename T>
struct ConnectionAllocator;
}

enum class SendStatus : std::uint8_t {
  ok,            // queued or written
  backpressure,  // queued, but the send buffer is over the limit (policy drop: see dropped)
  dropped,       // not sent: over the limit with BackpressurePolicy::drop
  closed,        // not sent: the connection is closing or closed (or this send put it
                 // over the limit with BackpressurePolicy::close: it is now ending, 1008)
};

// What close() or terminate() did. Neither ends anything synchronously: the
// end (on_close) always follows on this loop's turn.
enum class CloseStatus : std::uint8_t {
  started,   // this call began the end: the close handshake, the last HTTP answer, or (terminate) the teardown
  closing,   // a close was already under way: nothing changed
  closed,    // the connection had already ended: nothing changed
  not_open,  // close() before the WebSocket is open (connecting, TLS or HTTP handshake of a
             // client): nothing to close yet; terminate() ends it
};

class Connection : public std::enable_shared_from_this<Connection>,
                   private protocol::EventHandler,
                   private TimerNode {
 private:
  // First of the members: it fills the tail padding of TimerNode (see the
  // size check in connection.cpp).
  std::uint32_t phase_deadline_ = 0;  // handshake or closing deadline, in loop ticks

 public:
  enum class Phase : std::uint8_t { connecting, tls_handshake, http_handshake, open, closing, closed };

  ~Connection() override;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // ---- sending (loop thread only; see post_send for other threads) ----
  // None of these frees or ends anything synchronously (see the lifetime rule
  // above); any of them may be called from any handler of this loop.
  SendStatus send(std::string_view payload, protocol::Opcode kind = protocol::Opcode::text,
                  protocol::Compress compress = protocol::Compress::automatic);
  SendStatus send_text(std::string_view payload) { return send(payload, protocol::Opcode::text); }
  SendStatus send_binary(std::string_view payload) { return send(payload, protocol::Opcode::binary); }
  // A frame encoded once for many connections (server role).
  SendStatus send_prepared(const PreparedMessage& message);
  // One frame of a fragmented message (see protocol::WebSocket::send_frame).
  SendStatus send_fragment(std::string_view payload, protocol::Opcode opcode, bool fin);
  bool ping(std::string_view payload = {});
  // Starts the close handshake; the connection closes once it completes or
  // the close timeout passes. On a plain HTTP connection (server): the
  // answer in progress is the last one (a stream ends after the chunks
  // already queued); the connection closes once what it owes is written.
  CloseStatus close(std::uint16_t code = protocol::close_code::normal, std::string_view reason = {});
  // Ends the connection without a close handshake: nothing more is read,
  // sent or delivered; the socket is closed now and on_close follows on this
  // loop's turn (after the handler that called terminate has returned).
  CloseStatus terminate();

  // ---- plain HTTP (server, inside or after Handlers::on_http) ----
  // One complete response. With keep-alive the connection then reads the next request.
  void http_respond(int status, std::string_view content_type, std::string_view body,
                    const std::vector<protocol::HttpHeader>& headers = {});
  // A streamed (chunked) response, e.g. Server-Sent Events.
  void http_begin_stream(int status, std::string_view content_type,
                         const std::vector<protocol::HttpHeader>& headers = {});
  // One chunk; closes the connection when the send buffer limit is exceeded.
  SendStatus http_stream_write(std::string_view data);
  void http_end_stream();
  // A request was dispatched and not answered yet (or its stream is open).
  bool http_response_pending() const;
  bool http_streaming() const;

  // Thread-safe: runs send() on the connection's loop if it is still alive.
  static void post_send(const std::weak_ptr<Connection>& connection, std::string payload,
                        protocol::Opcode kind = protocol::Opcode::text);
  // Thread-safe: runs close() on the connection's loop if it is still alive.
  static void post_close(const std::weak_ptr<Connection>& connection, std::uint16_t code, std::string reason);

  // ---- state ----
  Phase phase() const { return phase_; }
  bool is_open() const { return phase_ == Phase::open && ws_.is_open(); }
  protocol::Role role() const { return ws_.role(); }
  // Bytes queued that the kernel has not accepted yet.
  std::size_t buffered_amount() const;
  // The connection has ended (or is ending): on_close has run or is about to.
  bool ended() const { return finished_; }
  // The negotiated subprotocol, or empty.
  std::string_view subprotocol() const;
  // The request target (path and query). Server: available in on_upgrade and
  // on_open only (an open connection keeps no HTTP state: copy what you need
  // into user_data). Client: always.
  std::string_view target() const;
  std::string remote_address() const;
  bool compression_enabled() const { return extras_ && extras_->deflate; }
  EventLoop& loop() const { return *loop_; }
  // The backend carrying this connection's bytes now: io_uring once an open
  // connection (plain or TLS) moved onto its loop's ring, else epoll
  // (readiness: the epoll backend, and every handshake).
  IoBackend io() const { return ring_io_ ? IoBackend::io_uring : IoBackend::epoll; }

  // Application data; the library never touches it.
  void* user_data = nullptr;

  // ---- creation (used by Server and connect()) ----
  // Takes ownership of a connected, non-blocking socket `fd`.
  static std::shared_ptr<Connection> accept(EventLoop& loop, int fd, std::shared_ptr<const ConnectionConfig> config);
  static std::shared_ptr<Connection> connect(EventLoop& loop, std::string_view url, const ClientOptions& options,
                                             Handlers handlers);

  // User-space bytes this connection holds right now (object + buffers).
  std::size_t memory_footprint() const;

  // Connections constructed and not yet destroyed in this process, closed
  // ones that something still references included: zero once every server,
  // client and loop is gone (the net and hub tests check it after every test).
  static std::size_t alive();

  // Entry points used by EventLoop.
  void on_events(std::uint32_t epoll_events);
  void on_timer();
  void flush();
  // The loop is being destroyed: close the socket and drop the self
  // reference, without callbacks (the application may be tearing down too).
  void abandon();
  // The end of a finished connection, run by the loop at top level: the
  // closing callback, then the loop's resources. Loop thread only.
  void reap();
  // Moves this connection's frames out of the loop's cork buffer: written
  // directly if the socket takes them, the rest kept in the backlog (on an
  // io_uring loop: handed to the ring as one send, submitted with the turn).
  void uncork();
  // io_uring completions for this connection (EventLoop only). Each returns
  // the connection's last reference when that request was the last thing
  // keeping an ended connection alive: the loop drops it after the call.
  std::shared_ptr<Connection> on_ring_recv(int result, std::uint32_t cqe_flags);
  std::shared_ptr<Connection> on_ring_send(int result);

  struct Private;  // tag for the constructor (use accept/connect)
  Connection(Private, EventLoop& loop, int fd, std::shared_ptr<const ConnectionConfig> config, protocol::Role role);

 private:
  friend class EventLoop;
  template <typename T>
  friend struct detail::ConnectionAllocator;
  // protocol::EventHandler
  void on_message(protocol::Opcode kind, std::string_view payload) override;
  void on_ping(std::string_view payload) override;
  void on_pong(std::string_view payload) override;
  void on_close(std::uint16_t code, std::string_view reason) override;
  void on_protocol_error(std::uint16_t code, std::string_view what) override;

  void start_server();
  void resolve();
  void connect_next_address();
  void on_connect_events(std::uint32_t events);
  void start_client_socket();
  void start_client_tls(const std::string& sni_host);
  void start_client_handshake();
  void on_readable();
  void on_writable();
  void on_bytes(std::uint8_t* data, std::size_t size);
  void on_eof();
  void do_tls_handshake();
  void handle_server_head(std::uint8_t* rest, std::size_t rest_size);
  void handle_client_head(std::uint8_t* rest, std::size_t rest_size);
  void reject_and_close(int status, std::string_view message);
  void dispatch_http();
  void http_response_done();
  void drain_pending_http();
  void opened();
  void after_protocol_input();
  void end_after_last_write();
  void discard_until_eof();
  // io_uring loop, plain socket, WebSocket open: receives and sends go
  // through the ring from now on (the socket leaves the epoll set).
  void start_ring_io();
  void arm_ring_recv();
  void ring_uncork();
  void submit_ring_send();
  // Takes back the send this turn prepared if the kernel has not seen it
  // (its bytes rejoin the backlog's front); false if it is submitted.
  bool retract_ring_send();
  // Writes what waits synchronously (the epoll way); false if the socket failed.
  bool write_backlog_now();
  // Writes the backlog until it is empty or the socket takes no more (then
  // `want_read`: TLS must read first); the bytes written, or -1 if the
  // socket failed. Both backends' synchronous writes go through it.
  long write_backlog(bool& want_read);
  // TLS on the ring: the connection's SSL reads ciphertext from the ring's
  // receive buffers and writes it to the ring's send path, through the
  // loop's shared BIO (LoopTlsBio, memory mode).
  bool tls_ready_for_ring() const;
  std::string& ring_tls_output();
  void ring_tls_ship(std::string& out);
  // Encrypts `plain` onto `out`; false if OpenSSL failed.
  bool tls_encrypt(std::string_view plain, std::string& out);
  void ring_tls_send(std::string_view plain);
  void ring_tls_receive(const std::uint8_t* data, std::size_t size);
  // An ended connection's last reference once no ring request needs it.
  std::shared_ptr<Connection> release_if_unarmed();
  // The last reference of an ended connection whose ring requests ended with
  // the ring itself (no completion will come).
  std::shared_ptr<Connection> release_after_ring_closed();
  // Ends the connection: marks it closed, closes the socket, and asks the
  // loop to reap it (callback and memory) later. Frees nothing.
  void finish(std::uint16_t code, std::string_view reason);
  // finish() with the close code and reason already recorded (set_close).
  void finish_as_recorded();
  void send_close_notify();
  void release_loop_resources();
  CloseStatus close_http();
  // Feeds WebSocket bytes to the protocol core one event at a time.
  void receive_frames(std::uint8_t* data, std::size_t size);
  void answer_ping(std::string_view payload);
  // HTTP keep-alive: parse the requests in `data`, in order, as far as the
  // one-at-a-time rule and the output budget allow; keeps the rest.
  void http_feed(std::uint8_t* data, std::size_t size);
  // Parses and dispatches requests from `data`; returns the bytes it used.
  std::size_t http_parse(std::uint8_t* data, std::size_t size);
  bool http_output_over_budget() const;
  // The HTTP/1.1 session of a server connection still speaking HTTP, else null.
  protocol::HttpServerSession* http_session();
  void schedule_http_drain();
  // Runs an application callback; an exception ends this connection (1011).
  template <typename Fn>
  void guarded(const char* what, Fn&& fn);
  void handler_threw(const char* what, const char* error);
  void fail_connect(std::string_view error);
  void set_close(std::uint16_t code, std::string_view reason);
  void reschedule_timer();
  SendStatus check_backpressure();
  void note_queued();
  // send()'s path for a large plain message with nothing owed before it:
  // false where it does not apply (send queues the frame instead).
  bool write_directly(std::string_view payload, protocol::Opcode kind, protocol::Compress compress);
  long transport_read(std::uint8_t* buf, std::size_t cap, bool& want_write);
  long transport_write(const char* data, std::size_t size, bool& want_read);
  std::uint32_t now() const;
  // Where the next frames go: the backlog if bytes are already waiting
  // (order), else the loop's cork buffer.
  std::string& output();

  // Rarely needed state, allocated only when used (keeps idle connections small).
  struct Extras {
    std::string subprotocol;
    std::string close_reason;
    std::string target;                                  // client
    std::shared_ptr<const ConnectionConfig> own_config;  // client: its config lives as long as it does
    // Here, not in Connection: most connections negotiate no compression, and
    // every byte of Connection is paid by every idle one.
    std::unique_ptr<protocol::PerMessageDeflate> deflate;
  };
  Extras& extras();

  EventLoop* loop_;
  const ConnectionConfig* config_;  // the server's (outlives its connections) or Extras::own_config
  std::shared_ptr<Connection> self_;  // keeps the connection alive until finish()
  SSL* ssl_ = nullptr;
  std::unique_ptr<HandshakeState> handshake_;
  std::unique_ptr<Extras> extras_;
  protocol::WebSocket ws_;
  // Bytes the kernel refused and what waits behind them; allocated only
  // while some wait, so an idle connection pays one pointer for it.
  struct Backlog {
    std::string bytes;
    std::size_t sent = 0;  // prefix of `bytes` already written (64-bit: a backlog may pass 4 GiB)
    // The latest ping's payload while a pong is owed and the peer is not
    // reading: sent once the backlog drains. One pong answers a flood of
    // pings (RFC 6455 §5.5.3).
    std::optional<std::string> owed_pong;
    // io_uring: the bytes of the one send in flight (the kernel reads them
    // until its completion); `bytes` is what waits behind it.
    std::string in_flight;
    // Where that send waits in the ring's submission queue until the turn
    // submits it (the ring's Ticket: entry and submission number), so an
    // over-budget sender can take it back and write it at once.
    void* send_entry = nullptr;
    std::uint64_t send_submission = 0;
  };
  bool backlogged() const { return backlog_ && backlog_->bytes.size() > backlog_->sent; }
  // A backlog from this thread's spares (or a new one), and one given back.
  static std::unique_ptr<Backlog> take_backlog();
  static void give_back(std::unique_ptr<Backlog> backlog);
  struct SpareBacklogs;
  static SpareBacklogs* spare_backlogs();  // null once the thread is ending
  std::unique_ptr<Backlog> backlog_;
  int fd_ = -1;
  const std::uint32_t loop_id_;  // EventLoop::id() of loop_: found by a reference dropped on another thread
  // Coarse times in loop ticks.
  std::uint32_t last_rx_tick_ = 0;
  std::uint32_t last_message_tick_ = 0;
  std::uint32_t ping_sent_tick_ = 0;  // 0: no ping outstanding
  std::uint16_t close_code_ = protocol::close_code::abnormal;
  Phase phase_;
  // Flags as bits: with thousands of idle connections every byte counts.
  bool writable_ : 1 = true;            // false after EAGAIN until EPOLLOUT
  bool flush_scheduled_ : 1 = false;
  bool in_read_handler_ : 1 = false;
  bool over_limit_ : 1 = false;
  bool opened_ : 1 = false;
  bool finished_ : 1 = false;
  bool read_wants_write_ : 1 = false;
  bool write_wants_read_ : 1 = false;
  bool close_after_flush_ : 1 = false;
  bool peer_shutdown_ : 1 = false;      // EPOLLRDHUP seen: read until EOF
  bool write_failed_ : 1 = false;       // a direct write from the cork failed
  bool served_http_ : 1 = false;        // carried plain HTTP requests (on_http_closed at finish)
  bool counted_ : 1 = true;             // in the loop's connection count until released
  bool handler_failed_ : 1 = false;     // a handler threw (logged once)
  bool http_drain_posted_ : 1 = false;  // a drain of pipelined requests is posted
  bool read_paused_ : 1 = false;        // HTTP answers over the budget: the socket is not read
  bool refused_input_ : 1 = false;      // a request was refused: its client may still be sending
  bool lingering_ : 1 = false;          // half-closed after the last write: reading to the peer's FIN
  bool ring_io_ : 1 = false;            // reads and writes go through the loop's io_uring
  bool ring_file_ : 1 = false;          // fd_ is in the ring's registered-file table (slot fd_)
  bool recv_armed_ : 1 = false;         // a multishot receive is in the ring
  bool send_in_flight_ : 1 = false;     // a send is in the ring (Backlog::in_flight)
};

}  // namespace duplex::net
