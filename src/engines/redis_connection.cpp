#include "redis_connection.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <hiredis/hiredis.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <climits>
#include <optional>
#include <random>
#include <stdexcept>
#include <string_view>

#include <asio/connect.hpp>
#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/ssl.hpp>
#include <asio/write.hpp>

#include "duplex/net/tls.hpp"

namespace duplex::engines::detail {

namespace {

void set_keepalive(int fd) {
  int on = 1;
  int idle = 15;
  int interval = 5;
  int count = 3;
  (void)::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

// A reply still incomplete after this many bytes drops the connection: a
// server that never ends one cannot grow our memory without bound (Redis'
// own proto-max-bulk-len default).
constexpr std::size_t kMaxReplyBytes = 512u << 20;

std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// OpenSSL's reason alone ("certificate verify failed"), without the library
// name Asio appends.
std::string tls_reason(const asio::error_code& ec) {
  const char* reason = ERR_reason_error_string(static_cast<unsigned long>(ec.value()));
  return reason ? reason : lowercase(ec.message());
}

std::string describe(const asio::error_code& ec) {
  // A TLS peer that closes without close_notify truncates the stream.
  if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) return "server closed the connection";
  if (ec.category() == asio::error::get_ssl_category()) return "TLS: " + tls_reason(ec);
  return lowercase(ec.message());
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// The answer to PING on a subscribed connection (RESP2: ["pong", ""]), or
// +PONG once the last unsubscribe left subscribed mode.
bool is_pong(const redisReply* reply) {
  if (reply->type == REDIS_REPLY_STATUS) return iequals(std::string_view(reply->str, reply->len), "pong");
  return reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 && reply->element[0]->type == REDIS_REPLY_STRING &&
         iequals(std::string_view(reply->element[0]->str, reply->element[0]->len), "pong");
}

// A pub/sub message or (un)subscribe confirmation, which answers no command
// of its own (RESP2: an array whose first element names its kind).
bool is_push(const redisReply* reply) {
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 || reply->element[0]->type != REDIS_REPLY_STRING)
    return false;
  const std::string_view kind(reply->element[0]->str, reply->element[0]->len);
  for (const char* name : {"message", "pmessage", "smessage", "subscribe", "unsubscribe", "psubscribe", "punsubscribe",
                           "ssubscribe", "sunsubscribe"})
    if (iequals(kind, name)) return true;
  return false;
}

// The engine never waits on a terminal for a pass phrase: an encrypted key fails to load.
int no_pass_phrase(char*, int, int, void*) { return 0; }

// The client context every attempt of one connection shares. The files are
// checked when the config loads; here a problem still names the key.
std::unique_ptr<asio::ssl::context> make_tls_context(const RedisTlsOptions& tls) {
  auto context = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
  SSL_CTX* ctx = context->native_handle();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  // An idle pub/sub connection keeps no 16 KiB record buffers.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_default_passwd_cb(ctx, no_pass_phrase);
  if (tls.verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (!tls.ca_file.empty()) {
      if (auto problem = net::check_ca_file(tls.ca_file))
        throw std::runtime_error("engine.redis.tls_ca = \"" + tls.ca_file + "\": " + *problem);
      if (SSL_CTX_load_verify_locations(ctx, tls.ca_file.c_str(), nullptr) != 1)
        throw std::runtime_error("engine.redis.tls_ca = \"" + tls.ca_file + "\": " + net::last_tls_error());
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      throw std::runtime_error("engine.redis.tls: cannot load the system CA store: " + net::last_tls_error());
    }
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!tls.cert_file.empty() || !tls.key_file.empty()) {
    net::TlsOptions files;
    files.cert_file = tls.cert_file;
    files.key_file = tls.key_file;
    if (auto problem = net::check_server_tls_files(files)) {
      const bool cert = problem->file == net::TlsFileProblem::File::cert;
      throw std::runtime_error(std::string(cert ? "engine.redis.tls_cert = \"" : "engine.redis.tls_key = \"") +
                               (cert ? tls.cert_file : tls.key_file) + "\": " + problem->what);
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, tls.cert_file.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
      throw std::runtime_error("engine.redis.tls_cert/tls_key: " + net::last_tls_error());
  }
  return context;
}

// Why a TLS handshake failed: OpenSSL's reason, and for a refused
// certificate the verifier's ("certificate verify failed (self-signed
// certificate)", "... (hostname mismatch)").
std::string tls_failure(const asio::error_code& ec, SSL* ssl) {
  std::string why = ec.category() == asio::error::get_ssl_category() ? tls_reason(ec) : describe(ec);
  const long verdict = SSL_get_verify_result(ssl);
  if (verdict != X509_V_OK) why += std::string(" (") + X509_verify_cert_error_string(verdict) + ")";
  return why;
}

}  // namespace

RedisConnectionOptions parse_redis_address(const std::string& address) {
  RedisConnectionOptions options;
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) {
    options.host = address;
    return options;
  }
  options.host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  int value = 0;
  try {
    value = std::stoi(port);
  } catch (const std::exception&) {
    value = 0;
  }
  if (value <= 0 || value > 65535) throw std::runtime_error("bad Redis address '" + address + "' (expected host:port)");
  options.port = value;
  return options;
}

struct RedisConnection::Pending {
  Callback callback;
  std::uint64_t watch_id;
};

// One connection attempt's socket, reader and commands awaiting replies.
// Handlers hold it; once closed they return without touching the owner
// (which may be gone).
struct RedisConnection::Link {
  explicit Link(asio::io_context& io) : resolver(io), socket(io), reader(redisReaderCreate()) {}
  ~Link() {
    if (reader) redisReaderFree(reader);
  }
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  void close() {
    closed = true;
    resolver.cancel();
    asio::error_code ignored;
    socket.close(ignored);
  }

  // Reads and writes through TLS when it is on, else on the socket.
  template <typename Operation>
  void with_stream(Operation&& operation) {
    if (tls) {
      operation(*tls);
    } else {
      operation(socket);
    }
  }

  asio::ip::tcp::resolver resolver;
  asio::ip::tcp::socket socket;
  std::optional<asio::ssl::stream<asio::ip::tcp::socket&>> tls;
  redisReader* reader;
  std::deque<Pending> pending;  // in the order sent: replies come in that order
  std::string output;           // formatted commands not yet handed to a write
  std::string writing;          // the write in flight
  bool write_in_flight = false;
  bool closed = false;
  // A pub/sub command was sent: from now on messages and (un)subscribe
  // confirmations go to on_push, other replies still answer commands.
  bool subscribed = false;
  std::uint64_t ping_watch = 0;  // the watch of the PING awaiting its answer; 0: none
  std::size_t unparsed = 0;  // bytes of the reply being received
  std::array<char, 16 * 1024> input;
};

RedisConnection::RedisConnection(asio::io_context& io, RedisConnectionOptions options)
    : io_(io),
      options_(std::move(options)),
      address_(options_.host + ":" + std::to_string(options_.port)),
      connect_timer_(io),
      reconnect_timer_(io),
      watchdog_(io),
      ping_timer_(io) {
  if (options_.tls.enabled) tls_ = make_tls_context(options_.tls);
}

RedisConnection::~RedisConnection() { stop(); }

std::string RedisConnection::unavailable() const { return "redis " + address_ + " unavailable: " + last_error_; }

void RedisConnection::start() {
  if (state_ != State::idle) return;
  connect();
}

void RedisConnection::stop() {
  if (state_ == State::stopped) return;
  stopping_ = true;
  reconnect_timer_.cancel();
  connect_timer_.cancel();
  watchdog_.cancel();
  ping_timer_.cancel();
  if (link_) {
    lost("engine stopped");
  } else {
    last_error_ = "engine stopped";
  }
  auto queued = std::move(queued_);
  queued_.clear();
  for (auto& [args, callback] : queued) {
    if (callback) callback(nullptr, unavailable());
  }
  state_ = State::stopped;
  up_ = false;
}

void RedisConnection::connect() {
  ++generation_;
  state_ = State::connecting;
  const std::uint64_t generation = generation_;
  connect_timer_.expires_after(options_.connect_timeout);
  connect_timer_.async_wait([this, generation](const asio::error_code& ec) {
    if (ec || generation != generation_ || !connecting()) return;
    const std::string why = "connect timeout after " + std::to_string(options_.connect_timeout.count()) + "ms";
    if (link_) return lost(why);
    fail_attempt(why);
  });
  if (!locate_) return open();
  address_ = label_;
  locate_([this, generation](std::string host, int port, std::string error) {
    if (generation != generation_ || state_ != State::connecting || link_) return;
    if (!error.empty()) return fail_attempt(error);
    options_.host = std::move(host);
    options_.port = port;
    address_ = options_.host + ":" + std::to_string(options_.port);
    open();
  });
}

void RedisConnection::fail_attempt(const std::string& why) {
  ++generation_;
  state_ = State::down;
  up_ = false;
  last_error_ = why;
  connect_timer_.cancel();
  auto queued = std::move(queued_);
  queued_.clear();
  for (auto& [args, callback] : queued) {
    if (callback) asio::post(io_, [callback = std::move(callback), message = unavailable()] { callback(nullptr, message); });
  }
  if (on_down_) on_down_(why);
  schedule_reconnect();
}

void RedisConnection::open() {
  auto link = std::make_shared<Link>(io_);
  if (!link->reader) return fail_attempt("cannot allocate a reply reader");
  link_ = link;
  // "[::1]" names an IPv6 address; the resolver wants it bare.
  std::string host = options_.host;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  link->resolver.async_resolve(
      host, std::to_string(options_.port),
      [this, link](const asio::error_code& ec, const asio::ip::tcp::resolver::results_type& endpoints) {
        if (link->closed) return;
        if (ec) return lost("cannot resolve " + options_.host + ": " + describe(ec));
        asio::async_connect(link->socket, endpoints, [this, link](const asio::error_code& error, const auto&) {
          if (link->closed) return;
          if (error) return lost(describe(error));
          on_connected(link);
        });
      });
}

void RedisConnection::follow_master(const std::string& host, int port) {
  if (stopping_ || state_ == State::stopped || !locate_) return;
  if (state_ == State::ready && options_.host == host && options_.port == port) return;
  attempts_ = 0;  // the new master is expected to answer: no long backoff
  if (link_) return lost("the master moved to " + host + ":" + std::to_string(port) + " (+switch-master)");
  if (state_ == State::down) {
    reconnect_timer_.cancel();
    ++generation_;  // the cancelled wait ignores itself
    schedule_reconnect();
  }
  // Locating now: that attempt asks the sentinels, which know the new master.
}

void RedisConnection::on_connected(const std::shared_ptr<Link>& link) {
  asio::error_code ignored;
  link->socket.set_option(asio::ip::tcp::no_delay(true), ignored);
  // A silent peer (half-open TCP after a network partition) is found by
  // keepalive on idle pub/sub connections; commands have their timeout.
  set_keepalive(link->socket.native_handle());
  if (tls_) return start_tls(link);
  on_session(link);
}

void RedisConnection::start_tls(const std::shared_ptr<Link>& link) {
  link->tls.emplace(link->socket, *tls_);
  SSL* ssl = link->tls->native_handle();
  const std::string& name = options_.tls.server_name.empty() ? options_.host : options_.tls.server_name;
  std::string bare = name;
  if (bare.size() > 2 && bare.front() == '[' && bare.back() == ']') bare = bare.substr(1, bare.size() - 2);
  asio::error_code not_an_address;
  (void)asio::ip::make_address(bare, not_an_address);
  if (!not_an_address) {
    // An IP address is checked against the certificate's IP entries and is
    // never sent as SNI (RFC 6066 allows host names only).
    if (options_.tls.verify) X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), bare.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, bare.c_str());
    if (options_.tls.verify) SSL_set1_host(ssl, bare.c_str());
  }
  link->tls->async_handshake(asio::ssl::stream_base::client, [this, link](const asio::error_code& ec) {
    if (link->closed) return;
    if (ec) return lost("TLS handshake failed: " + tls_failure(ec, link->tls->native_handle()));
    on_session(link);
  });
}

void RedisConnection::on_session(const std::shared_ptr<Link>& link) {
  state_ = State::handshaking;
  start_read(link);
  run_handshake(-1);
}

void RedisConnection::run_handshake(int step) {
  const std::uint64_t generation = generation_;
  // The reply to one step: an error reply fails the handshake (`refused`
  // says what was refused), anything else moves on to `following`.
  auto then = [this, generation](int following, std::string refused) {
    return [this, generation, following, refused = std::move(refused)](redisReply* reply, const std::string&) {
      if (!reply || generation != generation_ || state_ != State::handshaking) return;
      if (reply->type == REDIS_REPLY_ERROR) return lost("handshake failed: " + refused + std::string(reply->str, reply->len));
      run_handshake(following);
    };
  };
  switch (step) {
    case -1:
      // Over TLS 1.3 the server judges our certificate after our side of the
      // handshake is done: a first command (AUTH, else this PING) makes its
      // verdict part of connecting.
      if (tls_ && options_.password.empty()) return send({"PING"}, then(0, ""));
      [[fallthrough]];
    case 0:
      if (!options_.password.empty()) {
        // Says which user was refused (never the password: Redis' WRONGPASS
        // reply does not contain it).
        const std::string user = options_.username.empty() ? std::string("default") : options_.username;
        const std::string refused = "AUTH as user \"" + user + "\" refused: ";
        if (!options_.username.empty())
          return send({"AUTH", options_.username, options_.password}, then(1, refused));
        return send({"AUTH", options_.password}, then(1, refused));
      }
      [[fallthrough]];
    case 1:
      if (options_.db != 0) return send({"SELECT", std::to_string(options_.db)}, then(2, ""));
      [[fallthrough]];
    case 2:
      if (options_.require_master) {
        return send({"ROLE"}, [this, generation](redisReply* reply, const std::string&) {
          if (!reply || generation != generation_ || state_ != State::handshaking) return;
          std::string_view role;
          if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 && reply->element[0]->type == REDIS_REPLY_STRING)
            role = std::string_view(reply->element[0]->str, std::min<std::size_t>(reply->element[0]->len, 32));
          if (role != "master") {
            return lost("handshake failed: " + address_ + " is not a master (ROLE: " +
                        (role.empty() ? std::string("no answer") : std::string(role)) + ")");
          }
          run_handshake(3);
        });
      }
      [[fallthrough]];
    case 3:
      if (handshake_) {
        return handshake_(*this, [this, generation](std::string error) {
          if (generation != generation_ || state_ != State::handshaking) return;
          if (!error.empty()) return lost("handshake failed: " + error);
          handshake_done();
        });
      }
      [[fallthrough]];
    default:
      handshake_done();
  }
}

void RedisConnection::handshake_done() {
  state_ = State::ready;
  up_ = true;
  connect_timer_.cancel();
  attempts_ = 0;
  if (ever_ready_) reconnects_.fetch_add(1, std::memory_order_relaxed);
  ever_ready_ = true;
  auto queued = std::move(queued_);
  queued_.clear();
  for (auto& [args, callback] : queued) send(std::move(args), std::move(callback));
  arm_ping();
  if (on_ready_) on_ready_();
}

void RedisConnection::lost(const std::string& why) {
  if (!link_) return;
  const std::shared_ptr<Link> link = std::move(link_);
  link_.reset();
  link->close();
  ++generation_;
  state_ = State::down;
  up_ = false;
  last_error_ = why;
  connect_timer_.cancel();
  watchdog_.cancel();
  watchdog_armed_ = false;
  ping_timer_.cancel();
  deadlines_.clear();
  open_.clear();
  // Every pending command's callback runs now with a null reply.
  auto pending = std::move(link->pending);
  link->pending.clear();
  for (auto& sent : pending) {
    if (sent.callback) sent.callback(nullptr, unavailable());
  }
  auto queued = std::move(queued_);
  queued_.clear();
  for (auto& [args, callback] : queued) {
    if (callback) callback(nullptr, unavailable());
  }
  if (on_down_) on_down_(why);
  if (!stopping_) schedule_reconnect();
}

void RedisConnection::schedule_reconnect() {
  if (stopping_) return;
  const auto min = std::max<std::int64_t>(options_.reconnect_min.count(), 1);
  const auto max = std::max<std::int64_t>(options_.reconnect_max.count(), min);
  std::int64_t base = min;
  for (unsigned i = 0; i < attempts_ && base < max; ++i) base *= 2;
  base = std::min(base, max);
  if (attempts_ < 64) ++attempts_;
  thread_local std::minstd_rand random{std::random_device{}()};
  const std::int64_t half = base / 2;
  const std::int64_t delay =
      half + std::uniform_int_distribution<std::int64_t>(0, std::max<std::int64_t>(base - half, 0))(random);
  const std::uint64_t generation = generation_;
  reconnect_timer_.expires_after(std::chrono::milliseconds(delay));
  reconnect_timer_.async_wait([this, generation](const asio::error_code& ec) {
    if (ec || stopping_ || generation != generation_ || state_ != State::down) return;
    connect();
  });
}

void RedisConnection::command(std::vector<std::string> args, Callback callback) {
  switch (state_) {
    case State::ready:
      return send(std::move(args), std::move(callback));
    case State::idle:
    case State::connecting:
    case State::handshaking:
      queued_.emplace_back(std::move(args), std::move(callback));
      return;
    case State::down:
    case State::stopped:
      if (callback) asio::post(io_, [callback = std::move(callback), message = unavailable()] { callback(nullptr, message); });
      return;
  }
}

void RedisConnection::send(std::vector<std::string> args, Callback callback) {
  if (!link_ || !write_command(args)) {
    if (callback) asio::post(io_, [callback = std::move(callback), message = unavailable()] { callback(nullptr, message); });
    return;
  }
  link_->pending.push_back(Pending{std::move(callback), watch_begin()});
}

bool RedisConnection::pubsub_command(const std::vector<std::string>& args) {
  if (state_ != State::ready || !link_) return false;
  link_->subscribed = true;
  return write_command(args);
}

bool RedisConnection::write_command(const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  argv.reserve(args.size());
  lengths.reserve(args.size());
  std::size_t total = 0;
  for (const auto& arg : args) {
    argv.push_back(arg.data());
    lengths.push_back(arg.size());
    total += arg.size() + 32;
  }
  if (args.empty() || total > INT_MAX) return false;  // hiredis formats into an int-sized buffer
  char* formatted = nullptr;
  const int length = redisFormatCommandArgv(&formatted, static_cast<int>(argv.size()), argv.data(), lengths.data());
  if (length < 0 || !formatted) return false;
  link_->output.append(formatted, static_cast<std::size_t>(length));
  redisFreeCommand(formatted);
  start_write(link_);
  return true;
}

void RedisConnection::start_write(const std::shared_ptr<Link>& link) {
  if (link->write_in_flight || link->output.empty()) return;
  link->write_in_flight = true;
  link->writing.clear();
  // A big command's buffer is not kept for the small ones after it.
  if (link->writing.capacity() > (1u << 20)) std::string().swap(link->writing);
  link->writing.swap(link->output);  // commands sent meanwhile queue in output: the next write takes them all
  link->with_stream([&](auto& stream) {
    asio::async_write(stream, asio::buffer(link->writing), [this, link](const asio::error_code& ec, std::size_t) {
      if (link->closed) return;
      link->write_in_flight = false;
      if (ec) return lost(describe(ec));
      start_write(link);
    });
  });
}

void RedisConnection::start_read(const std::shared_ptr<Link>& link) {
  link->with_stream([&](auto& stream) {
    stream.async_read_some(asio::buffer(link->input), [this, link](const asio::error_code& ec, std::size_t size) {
      if (link->closed) return;
      if (ec) return lost(describe(ec));
      on_bytes(link, size);
      if (!link->closed) start_read(link);
    });
  });
}

void RedisConnection::on_bytes(const std::shared_ptr<Link>& link, std::size_t size) {
  redisReader* reader = link->reader;
  if (redisReaderFeed(reader, link->input.data(), size) != REDIS_OK)
    return lost(std::string("protocol error: ") + reader->errstr);
  link->unparsed += size;
  while (!link->closed) {
    void* parsed = nullptr;
    if (redisReaderGetReply(reader, &parsed) != REDIS_OK) return lost(std::string("protocol error: ") + reader->errstr);
    if (!parsed) break;
    link->unparsed = reader->len - reader->pos;  // what is left belongs to the next reply
    const std::unique_ptr<redisReply, void (*)(void*)> reply(static_cast<redisReply*>(parsed), &freeReplyObject);
    dispatch(link, reply.get());
  }
  if (!link->closed && link->unparsed > kMaxReplyBytes)
    lost("a reply from the server exceeds " + std::to_string(kMaxReplyBytes >> 20) + " MiB");
}

void RedisConnection::dispatch(const std::shared_ptr<Link>& link, redisReply* reply) {
  if (link->subscribed && is_push(reply)) {
    if (on_push_) on_push_(reply);
    return;
  }
  if (link->ping_watch != 0 && is_pong(reply)) {
    // A PING goes out only with no command pending, so whatever was sent
    // after it is answered after this.
    watch_end(link->ping_watch);
    link->ping_watch = 0;
    return;
  }
  if (link->pending.empty() && link->subscribed && reply->type == REDIS_REPLY_ERROR && on_pubsub_error_) {
    // The answer to a pub/sub command (SSUBSCRIBE to a node that does not
    // own the slot: MOVED); the owner knows which one it was.
    on_pubsub_error_(std::string_view(reply->str, std::min<std::size_t>(reply->len, 512)));
    return;
  }
  if (link->pending.empty()) {
    // Unasked: Redis says why it is about to close (e.g. max clients).
    const std::string text = reply->type == REDIS_REPLY_ERROR || reply->type == REDIS_REPLY_STATUS
                                 ? std::string(reply->str, std::min<std::size_t>(reply->len, 256))
                                 : std::string("a reply no command asked for");
    return lost("server: " + text);
  }
  Pending pending = std::move(link->pending.front());
  link->pending.pop_front();
  watch_end(pending.watch_id);
  const bool demoted = options_.require_master && reply->type == REDIS_REPLY_ERROR && reply->len >= 8 &&
                       std::string_view(reply->str, 8) == "READONLY";
  if (pending.callback) pending.callback(reply, {});
  if (demoted && !link->closed) {
    // The master became a replica under us: find the new one, once the
    // replies already received have been handed out.
    asio::post(io_, [this, link] {
      if (!link->closed) lost(address_ + " is a replica now (READONLY)");
    });
  }
}

std::uint64_t RedisConnection::watch_begin() {
  const std::uint64_t id = next_watch_++;
  deadlines_.emplace_back(id, std::chrono::steady_clock::now() + options_.command_timeout);
  open_.insert(id);
  arm_watchdog();
  return id;
}

void RedisConnection::watch_end(std::uint64_t id) {
  open_.erase(id);
  while (!deadlines_.empty() && !open_.count(deadlines_.front().first)) deadlines_.pop_front();
}

void RedisConnection::arm_watchdog() {
  if (watchdog_armed_ || deadlines_.empty() || !link_) return;
  watchdog_armed_ = true;
  const std::uint64_t generation = generation_;
  watchdog_.expires_at(deadlines_.front().second);
  watchdog_.async_wait([this, generation](const asio::error_code& ec) {
    if (generation != generation_) return;
    watchdog_armed_ = false;
    if (ec) return;
    on_watchdog();
  });
}

void RedisConnection::on_watchdog() {
  while (!deadlines_.empty() && !open_.count(deadlines_.front().first)) deadlines_.pop_front();
  if (deadlines_.empty()) return;
  if (deadlines_.front().second <= std::chrono::steady_clock::now()) {
    lost("no reply within " + std::to_string(options_.command_timeout.count()) + "ms (command timeout)");
    return;
  }
  arm_watchdog();
}

void RedisConnection::arm_ping() {
  if (options_.ping_interval.count() <= 0 || !link_) return;
  const std::uint64_t generation = generation_;
  ping_timer_.expires_after(options_.ping_interval);
  ping_timer_.async_wait([this, generation](const asio::error_code& ec) {
    if (ec || generation != generation_) return;
    on_ping_timer();
  });
}

void RedisConnection::on_ping_timer() {
  if (state_ != State::ready || !link_) return;
  // Only a subscribed connection is otherwise silent; one with commands in
  // flight has their deadlines already.
  if (link_->subscribed && link_->pending.empty() && link_->ping_watch == 0 && write_command({"PING"}))
    link_->ping_watch = watch_begin();
  arm_ping();
}

}  // namespace duplex::engines::detail
