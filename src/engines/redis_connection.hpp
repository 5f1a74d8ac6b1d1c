// One Redis connection on an Asio io_context: the socket I/O is ours (Asio),
// hiredis only formats commands and parses replies (redisReader).
// Everything runs on the io_context's thread: call every method there.
//
// With options.tls.enabled the bytes go through TLS (asio::ssl on OpenSSL).
//
// connect_timeout covers resolving, TCP connect, the TLS handshake and the
// Redis handshake (AUTH, SELECT and the owner's extra step, e.g. SCRIPT
// LOAD); a command (or a watched SUBSCRIBE confirmation) unanswered for command_timeout drops the
// connection, which fails every pending command. A dropped connection
// reconnects after a backoff that doubles from reconnect_min up to
// reconnect_max, with jitter.
//
// While connecting, commands are queued and sent once the handshake is
// done (or failed with the connect error); while down they fail at once.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

struct redisReply;

namespace asio::ssl {
class context;
}  // namespace asio::ssl

namespace duplex::engines::detail {

// TLS to Redis (engine.redis.tls*): verified against ca_file (or the
// system's store) and the server's name, optionally with a client
// certificate (Redis' tls-auth-clients).
struct RedisTlsOptions {
  bool enabled = false;
  std::string ca_file;      // empty: the system's default verify paths
  std::string cert_file;    // client certificate; with key_file
  std::string key_file;
  std::string server_name;  // SNI and the name verified; empty: the host connected to
  bool verify = true;       // false: neither certificate nor name is checked (tests, self-signed)
};

struct RedisConnectionOptions {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string username;  // empty: AUTH <password> (the default user)
  std::string password;
  std::size_t db = 0;
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds command_timeout{5000};
  std::chrono::milliseconds reconnect_min{100};
  std::chrono::milliseconds reconnect_max{5000};
  // Subscribed connections send PING this often and drop the connection when
  // it goes unanswered for command_timeout: a silent server (paused, or a
  // partition) is noticed although nothing else is sent. 0: never.
  std::chrono::milliseconds ping_interval{0};
  // Sentinel mode: the node must answer ROLE with "master" during the
  // handshake (a demoted master is refused), and a READONLY error reply
  // drops the connection so the next attempt asks the sentinels again.
  bool require_master = false;
  RedisTlsOptions tls;
};

// "host:port" -> options (port 6379 when absent). Throws on a bad port.
RedisConnectionOptions parse_redis_address(const std::string& address);

class RedisConnection {
 public:
  // `reply` is null on failure (then `error` says why); it is only valid
  // during the call. An error reply (reply->type == REDIS_REPLY_ERROR) is a
  // reply, not a failure.
  using Callback = std::function<void(redisReply* reply, const std::string& error)>;
  // The owner's extra handshake step: call `finish` with "" when done or
  // with an error (the connection is then dropped).
  using Handshake = std::function<void(RedisConnection&, std::function<void(std::string)> finish)>;
  // Where to connect, asked before every attempt (Sentinel discovery): call
  // `found` with host and port, or with an error (the attempt fails). The
  // attempt's connect_timeout covers this step too.
  using Found = std::function<void(std::string host, int port, std::string error)>;
  using Locate = std::function<void(Found found)>;

  // Throws std::runtime_error if TLS is on and its files cannot be used.
  RedisConnection(asio::io_context& io, RedisConnectionOptions options);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  void set_handshake(Handshake handshake) { handshake_ = std::move(handshake); }
  // Set before start(); `label` names the target until it is located
  // (e.g. "master \"mymaster\"").
  void set_locate(Locate locate, std::string label) {
    locate_ = std::move(locate);
    label_ = std::move(label);
    address_ = label_;
  }
  void set_on_ready(std::function<void()> on_ready) { on_ready_ = std::move(on_ready); }
  void set_on_down(std::function<void(const std::string& why)> on_down) { on_down_ = std::move(on_down); }
  // Pub/sub replies (subscribe/unsubscribe confirmations and messages).
  void set_on_push(std::function<void(redisReply* reply)> on_push) { on_push_ = std::move(on_push); }
  // Error replies on a pub/sub connection, which answer the pub/sub
  // commands in order; unset, such a reply drops the connection.
  void set_on_pubsub_error(std::function<void(std::string_view error)> on_error) {
    on_pubsub_error_ = std::move(on_error);
  }

  void start();
  // Fails queued and pending commands, closes the connection, no reconnect.
  void stop();
  // The master moved (+switch-master): unless already connected to
  // host:port, drop the connection and reconnect (locating again) after
  // the shortest backoff.
  void follow_master(const std::string& host, int port);

  void command(std::vector<std::string> args, Callback callback);
  // For the Handshake step only: sends at once (command() would queue).
  void handshake_command(std::vector<std::string> args, Callback callback) { send(std::move(args), std::move(callback)); }
  // SUBSCRIBE / UNSUBSCRIBE on a pub/sub connection; replies go to on_push.
  // Only while ready(); returns false otherwise.
  bool pubsub_command(const std::vector<std::string>& args);

  // A deadline for something the owner waits for (a SUBSCRIBE
  // confirmation): unless watch_end(id) is called within command_timeout,
  // the connection is dropped.
  std::uint64_t watch_begin();
  void watch_end(std::uint64_t id);

  bool ready() const { return state_ == State::ready; }
  bool connecting() const {
    return state_ == State::idle || state_ == State::connecting || state_ == State::handshaking;
  }
  // Readable from any thread.
  bool up() const { return up_.load(std::memory_order_relaxed); }
  std::uint64_t reconnects() const { return reconnects_.load(std::memory_order_relaxed); }
  const std::string& address() const { return address_; }
  // "redis 127.0.0.1:6379 unavailable: connection refused"
  std::string unavailable() const;

 private:
  enum class State : std::uint8_t { idle, connecting, handshaking, ready, down, stopped };
  struct Link;
  struct Pending;

  void connect();
  // Resolves and connects to options_.host:port.
  void open();
  // An attempt failed before a socket existed (locating): down, queued
  // commands fail, reconnect.
  void fail_attempt(const std::string& why);
  void on_connected(const std::shared_ptr<Link>& link);
  void start_tls(const std::shared_ptr<Link>& link);
  // Both start once the connection (and its TLS handshake) is up.
  void on_session(const std::shared_ptr<Link>& link);
  void run_handshake(int step);
  void handshake_done();
  // The connection is gone: pending commands fail (each callback once, now),
  // then queued ones; reconnects unless stopping. No-op without a link.
  void lost(const std::string& why);
  void schedule_reconnect();
  void send(std::vector<std::string> args, Callback callback);
  // Appends a formatted command to the link's output and starts a write.
  bool write_command(const std::vector<std::string>& args);
  void start_write(const std::shared_ptr<Link>& link);
  void start_read(const std::shared_ptr<Link>& link);
  // Feeds received bytes to the reader and dispatches every whole reply.
  void on_bytes(const std::shared_ptr<Link>& link, std::size_t size);
  void dispatch(const std::shared_ptr<Link>& link, redisReply* reply);
  void arm_watchdog();
  void on_watchdog();
  void arm_ping();
  void on_ping_timer();

  asio::io_context& io_;
  RedisConnectionOptions options_;
  std::string address_;
  State state_ = State::idle;
  std::atomic<bool> up_{false};
  // The current socket, reader and pending commands; null while down.
  std::shared_ptr<Link> link_;
  std::unique_ptr<asio::ssl::context> tls_;  // null: plain TCP
  std::string last_error_ = "not connected yet";
  bool ever_ready_ = false;
  bool stopping_ = false;
  unsigned attempts_ = 0;
  std::atomic<std::uint64_t> reconnects_{0};
  std::deque<std::pair<std::vector<std::string>, Callback>> queued_;
  Handshake handshake_;
  Locate locate_;
  std::string label_;
  std::function<void()> on_ready_;
  std::function<void(const std::string&)> on_down_;
  std::function<void(redisReply*)> on_push_;
  std::function<void(std::string_view)> on_pubsub_error_;
  asio::steady_timer connect_timer_;
  asio::steady_timer reconnect_timer_;
  asio::steady_timer watchdog_;
  asio::steady_timer ping_timer_;
  std::deque<std::pair<std::uint64_t, std::chrono::steady_clock::time_point>> deadlines_;
  std::unordered_set<std::uint64_t> open_;
  std::uint64_t next_watch_ = 1;
  bool watchdog_armed_ = false;
  // Bumped for every attempt and loss: stale timer handlers ignore themselves.
  std::uint64_t generation_ = 0;
};

}  // namespace duplex::engines::detail
