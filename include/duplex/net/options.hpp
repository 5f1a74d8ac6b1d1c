// Every tunable of the WebSocket server and client, with its default, in one place.
#pragma once
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/protocol/http_head.hpp"
#include "duplex/protocol/permessage_deflate.hpp"
#include "duplex/protocol/websocket.hpp"

namespace duplex::net {

using Millis = std::chrono::milliseconds;

// Upper bound of every byte-size option (max_send_buffer, websocket
// max_frame_size / max_message_size, http max_body_bytes): Server and
// connect() refuse larger values with std::invalid_argument naming the
// option, so no count can approach an overflow and no peer can be given
// more than this much of our memory per connection.
inline constexpr std::size_t max_size_option = std::size_t{1} << 30;  // 1 GiB

// How an event loop talks to the kernel.
enum class IoBackend : std::uint8_t {
  automatic,  // the environment variable DUPLEX_IO decides: epoll, io_uring, or auto (io_uring
              // where this kernel and its policy allow it, else epoll); unset: as auto
  epoll,      // readiness: one epoll_wait per turn, then a recv and a send per socket
  io_uring,   // completions: multishot receive into a provided-buffer ring and every
              // send of a turn submitted together, one io_uring_enter per turn
              // (TLS connections and handshakes keep readiness, through the same ring)
};
const char* to_string(IoBackend io);
// "auto", "epoll" or "io_uring"; nullopt for anything else.
std::optional<IoBackend> parse_io_backend(std::string_view name);

// io_uring: the loop's provided receive buffers. Each completion fills at
// most one, so a message larger than a buffer costs a completion (and a
// copy into the message) per buffer; 32 KiB holds a whole 16 KiB frame,
// delivered in place. Fewer buffers bound the receives one turn takes in
// (128 measured level with 256 at 1,000 connections). Pages are touched
// only as buffers are first used; count × size is the most a loop holds
// (4 MiB by default).
struct RingBuffers {
  static constexpr unsigned min_count = 16;
  static constexpr unsigned max_count = 32768;       // a buffer id is 16 bits
  static constexpr std::size_t min_size = 1u << 10;
  static constexpr std::size_t max_size = 1u << 20;  // the kernel's length field is 32 bits; this is a sane cap
  unsigned count = 128;                              // a power of two, min_count..max_count
  std::size_t size = 32u << 10;                      // bytes each, min_size..max_size
  bool count_valid() const { return count >= min_count && count <= max_count && std::has_single_bit(count); }
  // What a valid count is, for messages: "a power of two from 16 to 32768".
  static std::string count_rule();
  bool size_valid() const { return size >= min_size && size <= max_size; }
};

struct TlsOptions {
  std::string cert_file;          // server: PEM chain; client: optional client cert
  std::string key_file;
  std::string ca_file;            // client: CA bundle for verification (default: system store)
  bool verify_peer = true;        // client: verify the server certificate and host name
  std::string min_version = "1.2";  // "1.2" or "1.3"
  std::string ciphers;            // TLS 1.2 cipher list (OpenSSL syntax); empty = OpenSSL default
  bool enabled() const { return !cert_file.empty(); }
};

struct Timeouts {
  Millis handshake{10'000};       // TCP accept (or connect) to 101, including TLS
  Millis ping_interval{30'000};   // ping a connection silent this long (0 = never)
  Millis pong_timeout{10'000};    // drop it if nothing arrives this long after the ping
  Millis idle{0};                 // close after this long without a message (0 = never)
  Millis close{5'000};            // wait this long for the close handshake / TCP close; also the
                                  // most a failed connection lingers, reading to the peer's FIN
};

enum class BackpressurePolicy : std::uint8_t {
  close,  // a connection over max_send_buffer is closed (1008): slow consumers go
  drop,   // sends over the limit are dropped and reported as SendStatus::dropped
};

enum class DeflateMode : std::uint8_t {
  off,        // never negotiate permessage-deflate
  shared,     // no context takeover either way: one compression per message, shared by all
              // subscribers, and no zlib state kept per connection between messages
  dedicated,  // a compressor per connection with context takeover (best ratio, most memory)
};

struct DeflateOptions {
  DeflateMode mode = DeflateMode::off;
  std::uint8_t server_max_window_bits = 15;  // our compressor (dedicated mode)
  std::uint8_t client_max_window_bits = 15;  // requested bound on clients' compressors
  bool client_no_context_takeover = false;   // ask clients not to keep context (saves our memory)
  protocol::DeflateTuning tuning;            // memLevel, level, min message size (64 B)
};

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;              // 0 picks a free port (see Server::port())
  unsigned threads = 0;                   // event loops; 0 = one per core
  int backlog = 1024;
  // false: an address another socket holds is an error (Server::listen throws,
  // naming it), and this server's loops share one listening socket.
  // true: each loop has its own SO_REUSEPORT socket and other processes of the
  // same user may listen on the same address too; the kernel spreads new
  // connections over all of them (several processes on one port, for load runs).
  bool reuse_port = false;
  std::size_t max_connections = 100'000;  // across all loops; further accepts are closed at once
  std::size_t max_connections_per_ip = 0;  // per client address, across all loops (0 = no limit)
  std::size_t max_send_buffer = 1u << 20; // per connection, every byte owed and not taken by the kernel
                                          // yet (frames, pongs, HTTP answers); at most max_size_option
  BackpressurePolicy backpressure = BackpressurePolicy::close;
  std::size_t read_buffer_size = 512u << 10;  // one per loop, shared by all its connections
  IoBackend io = IoBackend::automatic;        // every loop of the server
  RingBuffers ring_buffers;                   // per loop, on io_uring
  std::vector<std::string> subprotocols;  // supported, in no particular order
  protocol::HttpLimits http;
  protocol::Limits websocket;
  Timeouts timeouts;
  TlsOptions tls;
  DeflateOptions deflate;
};

struct ClientOptions {
  std::vector<protocol::HttpHeader> headers;  // extra request headers (e.g. Authorization)
  std::vector<std::string> subprotocols;
  std::string origin;
  std::size_t max_send_buffer = 16u << 20;  // at most max_size_option
  BackpressurePolicy backpressure = BackpressurePolicy::close;
  protocol::HttpLimits http;
  protocol::Limits websocket;
  Timeouts timeouts;
  TlsOptions tls;                          // ca_file / verify_peer used for wss://
  bool deflate = false;                    // offer permessage-deflate
  protocol::DeflateClientOffer deflate_offer;
  protocol::DeflateTuning deflate_tuning;
};

// Throws std::invalid_argument naming the first size option over its bound.
void check_size_options(std::size_t max_send_buffer, const protocol::Limits& websocket,
                        const protocol::HttpLimits& http);

}  // namespace duplex::net
