#include "duplex/net/connection.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>

#include "connection_config.hpp"
#include "duplex/net/error_log.hpp"
#include "io_ring.hpp"
#include "loop_tls_bio.hpp"
#include "per_ip_limiter.hpp"
#include "slab_allocator.hpp"
#include "duplex/protocol/handshake.hpp"
#include "duplex/protocol/http_response.hpp"

namespace duplex::net {

namespace {
// The loop's cork buffer keeps up to this much capacity between turns: one
// per loop, and freeing it every batch cost a page-fault storm under load.
constexpr std::size_t keep_cork_capacity = 4u << 20;
// Spare backlogs a loop thread keeps, and the buffer capacity each keeps:
// a small message's frame always; up to a large message's (64 KiB) while
// the thread's spares hold less than 2 MiB of such buffers, so a loop
// echoing 16 KiB messages on io_uring does not malloc and free one per
// send; beyond that, larger buffers go back to the allocator.
constexpr std::size_t spare_backlog_count = 1024;
// From this payload size on, a plain message is written from the caller's
// bytes when nothing is queued before it (Connection::write_directly).
constexpr std::size_t direct_write_min_payload = 16u << 10;
constexpr std::size_t spare_buffer_capacity = 2048;
constexpr std::size_t spare_large_buffer_capacity = 64u << 10;
constexpr std::size_t spare_large_buffer_budget = 2u << 20;
// A TLS record's plaintext at most, and what a record adds to it at most
// (TLS 1.3: 5-byte header, content type, 16-byte tag; TLS 1.2 with CBC and
// an explicit IV adds more, which a reserve only has to cover roughly).
constexpr std::size_t tls_record_plaintext = 16384;
constexpr std::size_t tls_record_overhead = 64;
// Reads per readiness event before yielding to other connections.
constexpr int read_budget = 16;

std::uint64_t random_seed() {
  std::uint64_t seed = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&seed), sizeof seed) != 1) seed = 0x2545F4914F6CDD1Dull;
  return seed;
}

// One client TLS context per distinct configuration: building one loads the
// CA store (tens of milliseconds for the system store), so it is shared.
std::shared_ptr<TlsContext> shared_client_tls(const TlsOptions& o) {
  static std::mutex mutex;
  static std::map<std::string, std::weak_ptr<TlsContext>> cache;
  const std::string key = o.ca_file + '\n' + (o.verify_peer ? "1" : "0") + '\n' + o.cert_file + '\n' + o.key_file +
                          '\n' + o.min_version + '\n' + o.ciphers;
  std::lock_guard lock(mutex);
  if (auto existing = cache[key].lock()) return existing;
  auto made = TlsContext::client(o);
  cache[key] = made;
  return made;
}

std::uint64_t ticks(Millis d) {
  const auto t = (d.count() + EventLoop::tick.count() - 1) / EventLoop::tick.count();
  return static_cast<std::uint64_t>(t < 1 ? 1 : t);
}
}  // namespace

struct Connection::Private {};

namespace {
std::atomic<std::size_t> alive_connections{0};  // per connection, never per message
}  // namespace

std::size_t Connection::alive() { return alive_connections.load(std::memory_order_relaxed); }

namespace detail {

// Whichever thread drops the last reference, a connection is destroyed on
// its own loop (posted there), or in place on that loop's thread or once the
// loop is being destroyed. Done by the allocator of allocate_shared, which
// destroys the object through allocator_traits::destroy: the connection and
// its control block stay one 16-byte-overhead slab block, as an idle
// connection should. The storage is freed when the last weak reference goes.
// A deferred destructor runs after the shared count's own weak reference is
// gone, so the object's (enable_shared_from_this) would be the last: released
// by its base destructor, it would free the block while ~Connection is still
// running. The posted task holds one more weak reference, dropped after the
// destructor has returned.
template <typename T>
struct ConnectionAllocator : detail::SlabAllocator<T> {
  ConnectionAllocator() = default;
  template <typename U>
  ConnectionAllocator(const ConnectionAllocator<U>&) {}
  template <typename U>
  struct rebind {
    using other = ConnectionAllocator<U>;
  };
  void destroy(Connection* c) {
    struct Doomed {
      Connection* c;
      std::weak_ptr<Connection> storage;  // keeps the block until ~Connection has returned
      explicit Doomed(Connection* p) : c(p), storage(p->weak_from_this()) {}
      Doomed(Doomed&& o) noexcept : c(std::exchange(o.c, nullptr)), storage(std::move(o.storage)) {}
      Doomed(const Doomed&) = delete;
      ~Doomed() {
        if (c) c->~Connection();  // also when a loop that never runs again drops the handler
        // storage is released after this body, once the object is gone
      }
      void operator()() {}
    };
    {
      std::lock_guard lock(EventLoop::live_mutex());
      if (EventLoop* loop = EventLoop::live(c->loop_id_); loop && !loop->running_in_this_thread()) {
        loop->post(Doomed(c));
        return;
      }
    }
    c->~Connection();
  }
};

}  // namespace detail

namespace {

template <typename... Args>
std::shared_ptr<Connection> make_connection(Args&&... args) {
  return std::allocate_shared<Connection>(detail::ConnectionAllocator<Connection>(), std::forward<Args>(args)...);
}
}  // namespace

// Every idle connection is this object (plus its 16-byte control block in the
// same slab block): growing it is a measurable idle-memory regression
// (docs/BENCHMARKS.md, "Idle connections").
static_assert(sizeof(Connection) <= 232, "net::Connection grew: see docs/BENCHMARKS.md before raising this");

Connection::Connection(Private, EventLoop& loop, int fd, std::shared_ptr<const ConnectionConfig> config,
                       protocol::Role role)
    : loop_(&loop),
      config_(config.get()),
      ws_(role, &config_->limits, role == protocol::Role::client ? random_seed() : 0),
      fd_(fd),
      loop_id_(loop.id()),
      phase_(Phase::connecting) {
  ws_.set_auto_pong(false);  // answer_ping: one budget, and coalescing while the peer does not read
  ++loop_->connection_count_;
  alive_connections.fetch_add(1, std::memory_order_relaxed);
}

// Memory only: everything the loop shares (socket, timers, cork, counts) was
// released on the loop by reap() or abandon() before the last reference went.
Connection::~Connection() {
  if (ssl_) SSL_free(ssl_);
  if (fd_ >= 0) ::close(fd_);
  alive_connections.fetch_sub(1, std::memory_order_relaxed);
}

namespace {
// Set once this thread's spares are destroyed (thread exit): a connection
// finished later on the thread (a static loop, say) frees its backlog.
thread_local bool spares_gone = false;

std::size_t large_capacity(const std::string& buffer) {
  return buffer.capacity() > spare_buffer_capacity ? buffer.capacity() : 0;
}
}  // namespace

// A loop thread keeps the backlogs its connections gave back, buffers and
// all: on io_uring every send of a turn takes one (its bytes stay put until
// the completion), and allocating it each time cost a malloc and a free per
// message. Bounded in count and in the buffer capacity kept; the loop's
// thread only (a loop runs on one thread).
struct Connection::SpareBacklogs {
  std::vector<std::unique_ptr<Backlog>> list;
  std::size_t large_bytes = 0;  // capacity of the kept buffers above spare_buffer_capacity
  ~SpareBacklogs() { spares_gone = true; }
};

Connection::SpareBacklogs* Connection::spare_backlogs() {
  if (spares_gone) return nullptr;
  thread_local SpareBacklogs spares;
  return &spares;
}

std::unique_ptr<Connection::Backlog> Connection::take_backlog() {
  auto* spares = spare_backlogs();
  if (!spares || spares->list.empty()) return std::make_unique<Backlog>();
  auto backlog = std::move(spares->list.back());
  spares->list.pop_back();
  spares->large_bytes -= large_capacity(backlog->bytes) + large_capacity(backlog->in_flight);
  return backlog;
}

void Connection::give_back(std::unique_ptr<Backlog> backlog) {
  if (!backlog) return;
  auto* spares = spare_backlogs();
  if (!spares || spares->list.size() >= spare_backlog_count) return;
  for (std::string* buffer : {&backlog->bytes, &backlog->in_flight}) {
    buffer->clear();
    const std::size_t large = large_capacity(*buffer);
    if (large == 0) continue;
    if (large <= spare_large_buffer_capacity && spares->large_bytes + large <= spare_large_buffer_budget)
      spares->large_bytes += large;
    else
      std::string().swap(*buffer);
  }
  backlog->sent = 0;
  backlog->owed_pong.reset();
  backlog->send_entry = nullptr;
  spares->list.push_back(std::move(backlog));
}

std::size_t Connection::buffered_amount() const {
  std::size_t n = backlog_ ? backlog_->bytes.size() - backlog_->sent + backlog_->in_flight.size() : 0;
  if (loop_->corked_ == this) n += loop_->cork_.size();
  return n;
}

std::string& Connection::output() {
  if (finished_) return loop_->discard_buffer();  // an ended connection owes nothing more
  // On the ring a TLS backlog is ciphertext: plaintext goes to the cork,
  // encrypted behind it when uncorked.
  if (backlogged() && !(ring_io_ && ssl_)) {
    if (loop_->corked_ == this) uncork();
    return backlog_->bytes;
  }
  return loop_->cork_for(this);
}

void Connection::uncork() {
  if (ring_io_) {
    ring_uncork();
    return;
  }
  std::string& cork = loop_->cork_;
  loop_->corked_ = nullptr;
  std::size_t off = 0;
  const bool can_write = phase_ != Phase::closed && phase_ != Phase::connecting && phase_ != Phase::tls_handshake;
  if (can_write && writable_ && !write_wants_read_ && !write_failed_ && !backlogged()) {
    while (off < cork.size()) {
      bool want_read = false;
      const long n = transport_write(cork.data() + off, cork.size() - off, want_read);
      if (n > 0) {
        off += static_cast<std::size_t>(n);
        continue;
      }
      if (n == -1) {
        if (want_read)
          write_wants_read_ = true;
        else
          writable_ = false;
      } else {
        write_failed_ = true;  // reported by flush(), outside whoever uncorked us
      }
      break;
    }
  }
  if (off < cork.size() && phase_ != Phase::closed) {
    if (!backlog_) backlog_ = take_backlog();
    backlog_->bytes.append(cork, off, std::string::npos);
  }
  cork.clear();
  if (cork.capacity() > keep_cork_capacity) std::string().swap(cork);
  if ((write_failed_ || (backlog_ && writable_)) && !flush_scheduled_ && !in_read_handler_) {
    flush_scheduled_ = true;
    loop_->schedule_flush(this);
  }
}

std::uint32_t Connection::now() const { return static_cast<std::uint32_t>(loop_->timers().now()); }

Connection::Extras& Connection::extras() {
  if (!extras_) extras_ = std::make_unique<Extras>();
  return *extras_;
}

std::string_view Connection::subprotocol() const { return extras_ ? std::string_view(extras_->subprotocol) : ""; }

std::string_view Connection::target() const {
  if (handshake_ && handshake_->http && !handshake_->http->target().empty()) return handshake_->http->target();
  return extras_ ? std::string_view(extras_->target) : "";
}

std::size_t Connection::memory_footprint() const {
  return sizeof(Connection) +
         (backlog_ ? sizeof(Backlog) + backlog_->bytes.capacity() + backlog_->in_flight.capacity() +
                         (backlog_->owed_pong ? backlog_->owed_pong->capacity() : 0)
                   : 0) +
         (handshake_ ? sizeof(HandshakeState) : 0) +
         (extras_ ? sizeof(Extras) : 0) + ws_.buffered_message_bytes();
}

std::string Connection::remote_address() const {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (fd_ < 0 || ::getpeername(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return {};
  char host[64] = {};
  unsigned port = 0;
  if (addr.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  if (addr.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
    return "[" + std::string(host) + "]:" + std::to_string(port);
  }
  return {};
}

void Connection::set_close(std::uint16_t code, std::string_view reason) {
  close_code_ = code;
  if (!reason.empty() || extras_) extras().close_reason = std::string(reason);
}

// ---- creation -----------------------------------------------------------------

std::shared_ptr<Connection> Connection::accept(EventLoop& loop, int fd, std::shared_ptr<const ConnectionConfig> config) {
  auto c = make_connection(Private{}, loop, fd, std::move(config), protocol::Role::server);
  c->self_ = c;
  c->start_server();
  return c;
}

void Connection::start_server() {
  const int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  handshake_ = std::make_unique<HandshakeState>();
  handshake_->http.emplace(config_->http, static_cast<bool>(config_->handlers.on_http));
  phase_deadline_ = static_cast<std::uint32_t>(loop_->deadline_after(config_->timeouts.handshake));
  reschedule_timer();
  if (config_->tls) {
    ssl_ = SSL_new(config_->tls->native());
    if (!ssl_) {
      finish(protocol::close_code::abnormal, "TLS setup failed");
      return;
    }
    loop_->tls_bio().attach(ssl_);
    SSL_set_accept_state(ssl_);
    phase_ = Phase::tls_handshake;
  } else {
    phase_ = Phase::http_handshake;
  }
  // Registration reports data that is already there (epoll checks readiness on ADD).
  if (!loop_->watch(fd_, this)) finish(protocol::close_code::abnormal, "epoll registration failed");
}

std::shared_ptr<Connection> Connection::connect(EventLoop& loop, std::string_view url, const ClientOptions& options,
                                                Handlers handlers) {
  check_size_options(options.max_send_buffer, options.websocket, options.http);
  auto config = std::make_shared<ConnectionConfig>();
  config->handlers = std::move(handlers);
  config->limits = options.websocket;
  config->http = options.http;
  config->timeouts = options.timeouts;
  config->max_send_buffer = options.max_send_buffer;
  config->backpressure = options.backpressure;
  config->client = options;
  std::string error;
  auto parsed = parse_ws_url(url, error);
  if (parsed) {
    config->url = *parsed;
    if (parsed->secure) {
      try {
        config->tls = shared_client_tls(options.tls);
      } catch (const std::exception& e) {
        error = e.what();
        parsed.reset();
      }
    }
  }
  auto c = make_connection(Private{}, loop, -1, config, protocol::Role::client);
  c->self_ = c;
  c->extras().own_config = config;
  if (!parsed) {
    loop.post([c, error] { c->fail_connect(error); });
    return c;
  }
  c->extras().target = config->url.target;
  c->handshake_ = std::make_unique<HandshakeState>();
  c->handshake_->response.emplace(protocol::HttpHeadParser::Kind::response, config->http);
  c->phase_deadline_ = static_cast<std::uint32_t>(loop.deadline_after(options.timeouts.handshake));
  c->reschedule_timer();
  // An IP literal needs no resolver thread.
  if (auto literal = Dialer::ip_literal(config->url.host, config->url.port)) {
    c->handshake_->dialer.set_addresses({*literal});
    loop.post([c] { c->connect_next_address(); });  // never inside connect()
    return c;
  }
  c->resolve();
  return c;
}

// The answer comes back to the loop as a task (dropped if the loop or the
// connection is gone).
void Connection::resolve() {
  Dialer::resolve(loop_id_, config_->url.host, config_->url.port,
                  [w = weak_from_this(), host = config_->url.host](std::vector<Dialer::Address> addresses,
                                                                    std::string error) {
                    auto c = w.lock();
                    if (!c || c->phase_ != Phase::connecting || !c->handshake_) return;
                    if (!error.empty()) {
                      c->fail_connect("cannot resolve " + host + ": " + error);
                      return;
                    }
                    c->handshake_->dialer.set_addresses(std::move(addresses));
                    c->connect_next_address();
                  });
}

// A non-blocking connect to the next address; EPOLLOUT (on_connect_events)
// says how it went. Out of addresses: the connection fails, naming the last error.
void Connection::connect_next_address() {
  if (phase_ != Phase::connecting || !handshake_) return;
  Dialer& dialer = handshake_->dialer;
  for (int fd = dialer.connect_next(); fd >= 0; fd = dialer.connect_next()) {
    if (loop_->watch(fd, this)) {
      fd_ = fd;
      return;
    }
    dialer.abandon(fd, errno);
  }
  fail_connect(dialer.failure(config_->url.host, config_->url.port));
}

void Connection::on_connect_events(std::uint32_t events) {
  if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
  if (const int error = Dialer::connect_error(fd_); error != 0) {
    loop_->unwatch(fd_);
    handshake_->dialer.abandon(fd_, error);
    fd_ = -1;
    connect_next_address();
    return;
  }
  start_client_socket();
}

void Connection::start_client_socket() {
  const int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (config_->tls)
    start_client_tls(config_->url.host);
  else
    start_client_handshake();
}

void Connection::start_client_tls(const std::string& sni_host) {
  ssl_ = SSL_new(config_->tls->native());
  if (!ssl_) {
    fail_connect("TLS setup failed: " + last_tls_error());
    return;
  }
  loop_->tls_bio().attach(ssl_);
  const bool is_ip = Dialer::ip_literal(sni_host, 0).has_value();
  if (!is_ip) SSL_set_tlsext_host_name(ssl_, sni_host.c_str());
  if (config_->tls->verify_peer()) {
    if (is_ip)
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), sni_host.c_str());
    else
      SSL_set1_host(ssl_, sni_host.c_str());
  }
  SSL_set_connect_state(ssl_);
  phase_ = Phase::tls_handshake;
  do_tls_handshake();
}

void Connection::start_client_handshake() {
  std::array<std::uint8_t, 16> nonce{};
  RAND_bytes(nonce.data(), static_cast<int>(nonce.size()));
  handshake_->key = protocol::make_client_key(nonce);
  const ClientOptions& o = config_->client;
  protocol::ClientRequestOptions req;
  req.host = config_->url.host_header();
  req.target = config_->url.target;
  req.origin = o.origin;
  req.subprotocols = o.subprotocols;
  req.extra_headers = o.headers;
  if (o.deflate) req.extensions = protocol::format_deflate_offer(o.deflate_offer);
  output() += protocol::build_upgrade_request(req, handshake_->key);
  phase_ = Phase::http_handshake;
  flush();
}

void Connection::do_tls_handshake() {
  ERR_clear_error();
  loop_->tls_bio().use_socket(fd_);
  const int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    if (ws_.role() == protocol::Role::client) {
      start_client_handshake();
    } else {
      phase_ = Phase::http_handshake;
      on_readable();  // the client's request may already sit in OpenSSL's buffer
    }
    return;
  }
  const int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return;  // the next epoll edge resumes
  if (ws_.role() == protocol::Role::client) {
    std::string why = last_tls_error();
    const long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK)
      why = std::string("certificate verification failed: ") + X509_verify_cert_error_string(verify);
    fail_connect("TLS handshake failed: " + why);
  } else {
    ERR_clear_error();
    finish(protocol::close_code::abnormal, "TLS handshake failed");
  }
}

// ---- I/O ----------------------------------------------------------------------

long Connection::transport_read(std::uint8_t* buf, std::size_t cap, bool& want_write) {
  if (ssl_) {
    ERR_clear_error();
    loop_->tls_bio().use_socket(fd_);
    const int n = SSL_read(ssl_, buf, static_cast<int>(std::min<std::size_t>(cap, 1u << 30)));
    if (n > 0) return n;
    const int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_READ) return -1;
    if (err == SSL_ERROR_WANT_WRITE) {
      want_write = true;
      return -1;
    }
    if (err == SSL_ERROR_ZERO_RETURN) return 0;
    ERR_clear_error();
    return -2;
  }
  for (;;) {
    const ssize_t n = ::recv(fd_, buf, cap, 0);
    if (n >= 0) return static_cast<long>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return -1;
    return -2;
  }
}

long Connection::transport_write(const char* data, std::size_t size, bool& want_read) {
  if (ssl_ && !ring_io_) {  // on the ring a TLS backlog is ciphertext already
    ERR_clear_error();
    loop_->tls_bio().use_socket(fd_);
    const int n = SSL_write(ssl_, data, static_cast<int>(std::min<std::size_t>(size, 1u << 30)));
    if (n > 0) return n;
    const int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_WRITE) return -1;
    if (err == SSL_ERROR_WANT_READ) {
      want_read = true;
      return -1;
    }
    ERR_clear_error();
    return -2;
  }
  for (;;) {
    const ssize_t n = ::send(fd_, data, size, MSG_NOSIGNAL);
    if (n >= 0) return static_cast<long>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return -1;
    return -2;
  }
}

void Connection::on_events(std::uint32_t events) {
  if (phase_ == Phase::closed) return;
  if (phase_ == Phase::connecting) {
    on_connect_events(events);
    return;
  }
  if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
    writable_ = true;
    on_writable();
    if (phase_ == Phase::closed) return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
    // The peer's FIN may have come in the same edge as its last bytes: read
    // on to the end of stream, since no further edge will say so.
    if (events & (EPOLLRDHUP | EPOLLERR | EPOLLHUP)) peer_shutdown_ = true;
    on_readable();
  }
}

void Connection::on_writable() {
  if (phase_ == Phase::tls_handshake) {
    do_tls_handshake();
    return;
  }
  if (read_wants_write_) {
    read_wants_write_ = false;
    on_readable();
    return;
  }
  if (backlog_ || loop_->corked_ == this) flush();
}

void Connection::on_readable() {
  if (phase_ == Phase::tls_handshake) {
    do_tls_handshake();
    return;
  }
  if (phase_ == Phase::closed || phase_ == Phase::connecting) return;
  if (ring_io_) return;  // the ring's receive reads it now: reading here too would reorder bytes
  if (lingering_) {
    discard_until_eof();
    return;
  }
  if (write_wants_read_) {
    write_wants_read_ = false;
    flush();
    if (phase_ == Phase::closed) return;
  }
  std::uint8_t* buf = loop_->read_buffer();
  const std::size_t cap = loop_->read_buffer_size();
  in_read_handler_ = true;
  bool more = false;
  for (int i = 0; i < read_budget; ++i) {
    if (http_output_over_budget()) {
      // Answers owed past the budget: leave further requests in the kernel
      // (the client feels it as TCP backpressure) until they drain.
      read_paused_ = true;
      break;
    }
    bool want_write = false;
    const long n = transport_read(buf, cap, want_write);
    if (n > 0) {
      last_rx_tick_ = now();
      ping_sent_tick_ = 0;  // any byte proves the peer alive
      on_bytes(buf, static_cast<std::size_t>(n));
      if (phase_ == Phase::closed) {
        in_read_handler_ = false;
        return;
      }
      more = (i + 1 == read_budget);
      if (ring_io_) {  // opened inside: what follows in the socket is the ring's to read
        more = false;
        break;
      }
      if (!ssl_ && !peer_shutdown_ && static_cast<std::size_t>(n) < cap) break;  // drained (edge-triggered)
      continue;
    }
    in_read_handler_ = false;
    if (n == 0) {
      on_eof();
      return;
    }
    if (n == -2) {
      finish(protocol::close_code::abnormal, "connection reset");
      return;
    }
    if (want_write) read_wants_write_ = true;
    break;
  }
  in_read_handler_ = false;
  flush();
  if (more && phase_ != Phase::closed && !read_paused_) {
    // Edge-triggered: nothing will wake us for bytes we left unread.
    loop_->post([self = shared_from_this()] { self->on_readable(); });
  }
}

void Connection::flush() {
  flush_scheduled_ = false;
  if (phase_ == Phase::closed || phase_ == Phase::connecting || phase_ == Phase::tls_handshake) return;
  if (loop_->corked_ == this) uncork();
  if (write_failed_) {
    finish(protocol::close_code::abnormal, "connection reset");
    return;
  }
  if (ring_io_) {
    if (send_in_flight_) return;  // its completion flushes again
    if (backlogged()) {
      submit_ring_send();
      return;
    }
  }
  long written = 0;
  if (!ring_io_ && backlogged() && writable_ && !write_wants_read_) {
    bool want_read = false;
    written = write_backlog(want_read);
    if (written < 0) {
      finish(protocol::close_code::abnormal, "connection reset");
      return;
    }
    if (backlogged()) {
      if (want_read)
        write_wants_read_ = true;
      else
        writable_ = false;
    }
  }
  if (written > 0 && phase_ == Phase::http_handshake && handshake_ && handshake_->http &&
      (handshake_->http->state() == protocol::HttpServerSession::State::reading_head ||
       handshake_->http->state() == protocol::HttpServerSession::State::last_response_done)) {
    // A keep-alive client that reads is given time for its answers; one
    // that stops reading is dropped once the handshake timeout passes.
    phase_deadline_ = static_cast<std::uint32_t>(loop_->deadline_after(config_->timeouts.handshake));
    reschedule_timer();
  }
  if (backlogged()) {
    // Keep only what the kernel refused; EPOLLOUT (or readable, for TLS) resumes.
    if (backlog_->sent > 0) {
      backlog_->bytes.erase(0, backlog_->sent);
      backlog_->sent = 0;
    }
    return;
  }
  std::optional<std::string> payload;
  if (backlog_) {
    payload = std::move(backlog_->owed_pong);
    give_back(std::move(backlog_));  // everything sent: an idle connection keeps no send buffer
  }
  if (payload) {
    // The peer reads again: the one pong owed for its latest ping.
    if (is_open()) {
      ws_.pong(loop_->cork_for(this), *payload);
      uncork();
      if (backlog_) return;  // not all taken (on io_uring: in flight): the next flush goes on
    }
  }
  if (over_limit_) {
    over_limit_ = false;
    if (config_->handlers.on_drain && phase_ == Phase::open)
      guarded("on_drain", [&] { config_->handlers.on_drain(*this); });
    if (finished_) return;
  }
  if (phase_ == Phase::http_handshake && handshake_ && handshake_->http && !close_after_flush_ &&
      handshake_->http->state() == protocol::HttpServerSession::State::reading_head &&
      (read_paused_ || handshake_->http->holding()))
    schedule_http_drain();
  if (close_after_flush_ || (phase_ == Phase::closing && ws_.wants_transport_close())) end_after_last_write();
}

// Everything owed is written and this side closes first. A peer that may
// still be sending (the body of a refused request, the rest of a frame over
// the size limit) would answer our close() with a reset for its unread
// bytes, and its kernel then drops the answer or close frame we just sent:
// half-close instead, and read and discard to its FIN, for at most the close
// timeout (nginx's lingering close).
void Connection::end_after_last_write() {
  if (lingering_) return;
  const bool peer_may_send = phase_ == Phase::closing ? !ws_.close_received() : refused_input_;
  if (!peer_may_send || peer_shutdown_ || fd_ < 0) {
    finish_as_recorded();
    return;
  }
  lingering_ = true;
  if (ssl_) send_close_notify();  // before the FIN; nothing more is read through TLS
  ::shutdown(fd_, SHUT_WR);
  phase_deadline_ = static_cast<std::uint32_t>(loop_->deadline_after(config_->timeouts.close));
  reschedule_timer();
  if (!in_read_handler_) discard_until_eof();
}

// Lingering: what the peer still sends is read raw and dropped; its FIN, an
// error or the deadline (on_timer) ends the connection.
void Connection::discard_until_eof() {
  if (ring_io_) return;  // the ring's receive completions bring it (on_ring_recv drops it)
  std::uint8_t* buf = loop_->read_buffer();
  const std::size_t cap = loop_->read_buffer_size();
  for (int i = 0; i < read_budget; ++i) {
    const ssize_t n = ::recv(fd_, buf, cap, 0);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    finish_as_recorded();
    return;
  }
  // More than a budget's worth in one turn: go on next turn, after the others.
  loop_->post([self = shared_from_this()] {
    if (self->phase_ != Phase::closed) self->discard_until_eof();
  });
}

void Connection::on_eof() {
  if (phase_ == Phase::http_handshake && ws_.role() == protocol::Role::client) {
    fail_connect("server closed the connection during the handshake");
    return;
  }
  if (phase_ == Phase::http_handshake && handshake_ && handshake_->http &&
      handshake_->http->state() == protocol::HttpServerSession::State::awaiting_response) {
    // The client half-closed after its request: answer, then close.
    handshake_->http->close_after_answer();
    return;
  }
  if (ws_.close_received()) {
    finish_as_recorded();
  } else {
    finish(protocol::close_code::abnormal, "connection closed without a close frame");
  }
}

// ---- handshake ----------------------------------------------------------------

void Connection::on_bytes(std::uint8_t* data, std::size_t size) {
  if (phase_ == Phase::http_handshake) {
    if (close_after_flush_) return;  // ignore anything after a rejected request or the last answer
    if (ws_.role() == protocol::Role::server) {
      http_feed(data, size);
      return;
    }
    std::size_t consumed = 0;
    const auto status =
        handshake_->response->feed(std::string_view(reinterpret_cast<const char*>(data), size), consumed);
    if (status == protocol::HttpParseStatus::incomplete) return;
    if (status == protocol::HttpParseStatus::error) {
      fail_connect("invalid HTTP response: " + std::string(handshake_->response->error()));
      return;
    }
    handle_client_head(data + consumed, size - consumed);
    return;
  }
  if (phase_ == Phase::open || phase_ == Phase::closing) receive_frames(data, size);
}

void Connection::receive_frames(std::uint8_t* data, std::size_t size) {
  using State = protocol::WebSocket::State;
  // One event at a time. Between events a handler may have ended this
  // connection, started its close, or moved its output (cork or backlog):
  // look again before the next one.
  while (size > 0 && (phase_ == Phase::open || phase_ == Phase::closing) && ws_.state() != State::closed) {
    const std::size_t used = ws_.receive_event(data, size, *this, output());
    data += used;
    size -= used;
  }
  if (phase_ != Phase::closed) after_protocol_input();
}

void Connection::reject_and_close(int status, std::string_view message) {
  protocol::HandshakeRejection rejection;
  rejection.status = status;
  rejection.message = std::string(message);
  output() += protocol::build_rejection_response(rejection);
  close_after_flush_ = true;
  refused_input_ = true;
  close_code_ = protocol::close_code::abnormal;
  if (!in_read_handler_) flush();
}

void Connection::handle_server_head(std::uint8_t* rest, std::size_t rest_size) {
  const protocol::HttpHead& head = handshake_->http->head();
  protocol::UpgradeRequest request;
  protocol::HandshakeRejection rejection;
  if (!protocol::validate_upgrade_request(head, request, rejection)) {
    reject_and_close(rejection.status, rejection.message);
    return;
  }
  UpgradeDecision decision;
  decision.subprotocol = std::string(protocol::select_subprotocol(request.subprotocols, config_->subprotocols));
  if (config_->handlers.on_upgrade) {
    guarded("on_upgrade", [&] { config_->handlers.on_upgrade(*this, request, head, decision); });
    if (finished_ || close_after_flush_) return;  // it threw (answered 500) or ended the connection
  }
  if (!decision.accept) {
    reject_and_close(decision.status, decision.message);
    return;
  }
  std::string extensions;
  if (config_->deflate.mode != DeflateMode::off) {
    protocol::DeflateServerPolicy policy;
    policy.server_no_context_takeover = config_->deflate.mode == DeflateMode::shared;
    // Shared mode keeps no zlib state per connection in either direction.
    policy.client_no_context_takeover =
        config_->deflate.client_no_context_takeover || config_->deflate.mode == DeflateMode::shared;
    policy.server_max_window_bits = config_->deflate.server_max_window_bits;
    policy.client_max_window_bits = config_->deflate.client_max_window_bits;
    if (auto params = protocol::negotiate_deflate(request.extensions, policy, extensions)) {
      extras().deflate = std::make_unique<protocol::PerMessageDeflate>(*params, true, config_->deflate.tuning);
      ws_.set_deflate(extras_->deflate.get());
    }
  }
  protocol::AcceptOptions accept;
  accept.subprotocol = decision.subprotocol;
  accept.extensions = extensions;
  accept.extra_headers = std::move(decision.headers);
  output() += protocol::build_accept_response(request.key, accept);
  if (!decision.subprotocol.empty()) extras().subprotocol = decision.subprotocol;
  opened();
  handshake_.reset();  // frees the parser and the target: an open connection keeps no HTTP state
  if (rest_size > 0) receive_frames(rest, rest_size);
}

// ---- plain HTTP requests (server) ------------------------------------------------

bool Connection::http_output_over_budget() const {
  return phase_ == Phase::http_handshake && ws_.role() == protocol::Role::server &&
         buffered_amount() > config_->max_send_buffer;
}

void Connection::http_feed(std::uint8_t* data, std::size_t size) {
  protocol::HttpServerSession& http = *handshake_->http;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  if (http.holding()) {
    // Older requests wait (for an answer, or for the budget): these go after them.
    if (!http.hold(bytes)) {
      finish(protocol::close_code::abnormal, "too much pipelined HTTP input");
      return;
    }
    if (http.state() == protocol::HttpServerSession::State::reading_head && !http_output_over_budget())
      schedule_http_drain();
    return;
  }
  const std::size_t used = http_parse(data, size);
  if (used == size || finished_ || close_after_flush_ || phase_ != Phase::http_handshake || !handshake_) return;
  if (!handshake_->http->hold(bytes.substr(used))) finish(protocol::close_code::abnormal, "too much pipelined HTTP input");
}

std::size_t Connection::http_parse(std::uint8_t* data, std::size_t size) {
  using Event = protocol::HttpServerSession::Event;
  std::size_t pos = 0;
  while (pos < size && phase_ == Phase::http_handshake && handshake_ && !close_after_flush_) {
    protocol::HttpServerSession& http = *handshake_->http;
    // Answers owed past the budget: read no further until they drain.
    if (http.state() == protocol::HttpServerSession::State::reading_head && http_output_over_budget()) break;
    std::size_t used = 0;
    const Event event = http.feed(std::string_view(reinterpret_cast<const char*>(data + pos), size - pos), used);
    pos += used;
    if (http.saw_plain_request()) served_http_ = true;
    switch (event) {
      case Event::need_more:
        return size;
      case Event::rejected:
        reject_and_close(http.rejection_status(), http.rejection_message());
        return size;
      case Event::upgrade:
        handle_server_head(data + pos, size - pos);  // the rest is WebSocket bytes
        return size;
      case Event::request:
        dispatch_http();
        continue;
      case Event::busy:
        return pos;  // awaiting_response or streaming: one request at a time, in order
    }
  }
  return pos;
}

void Connection::dispatch_http() {
  const protocol::HttpServerSession& http = *handshake_->http;
  phase_deadline_ = ~std::uint32_t{0};  // the application answers when it will (long-poll, SSE)
  reschedule_timer();
  const protocol::HttpHead& head = http.head();
  const std::string_view target = http.target();
  HttpRequest request{head, head.method, target, protocol::target_path(target), protocol::target_query(target),
                      http.body()};
  guarded("on_http", [&] { config_->handlers.on_http(*this, request); });
}

protocol::HttpServerSession* Connection::http_session() {
  return phase_ == Phase::http_handshake && handshake_ && handshake_->http ? &*handshake_->http : nullptr;
}

bool Connection::http_response_pending() const {
  return handshake_ && handshake_->http && handshake_->http->response_pending();
}

bool Connection::http_streaming() const { return handshake_ && handshake_->http && handshake_->http->streaming(); }

void Connection::http_respond(int status, std::string_view content_type, std::string_view body,
                              const std::vector<protocol::HttpHeader>& headers) {
  protocol::HttpServerSession* http = http_session();
  if (http && http->respond(output(), status, content_type, body, headers)) http_response_done();
}

void Connection::http_begin_stream(int status, std::string_view content_type,
                                   const std::vector<protocol::HttpHeader>& headers) {
  protocol::HttpServerSession* http = http_session();
  if (http && http->begin_stream(output(), status, content_type, headers)) note_queued();
}

SendStatus Connection::http_stream_write(std::string_view data) {
  protocol::HttpServerSession* http = http_session();
  if (!http || !http->streaming() || close_after_flush_) return SendStatus::closed;
  http->write_chunk(output(), data);
  note_queued();
  if (buffered_amount() <= config_->max_send_buffer) return SendStatus::ok;
  flush();
  if (phase_ == Phase::closed) return SendStatus::closed;
  if (buffered_amount() <= config_->max_send_buffer) return SendStatus::ok;
  finish(protocol::close_code::policy_violation, "send buffer limit exceeded");
  return SendStatus::closed;
}

void Connection::http_end_stream() {
  protocol::HttpServerSession* http = http_session();
  if (http && http->end_stream(output())) http_response_done();
}

void Connection::http_response_done() {
  const protocol::HttpServerSession& http = *handshake_->http;
  if (http.state() == protocol::HttpServerSession::State::last_response_done) {
    close_after_flush_ = true;
    if (!in_read_handler_) flush();
    return;
  }
  // Keep-alive: the next request must start within the handshake timeout
  // (progress writing the answers extends it: see flush).
  phase_deadline_ = static_cast<std::uint32_t>(loop_->deadline_after(config_->timeouts.handshake));
  reschedule_timer();
  note_queued();
  if (http.holding()) schedule_http_drain();
}

void Connection::schedule_http_drain() {
  if (http_drain_posted_ || finished_) return;
  http_drain_posted_ = true;
  // Parsed on a later turn: we may be inside the application's handler.
  loop_->post([w = weak_from_this()] {
    if (auto c = w.lock()) c->drain_pending_http();
  });
}

void Connection::drain_pending_http() {
  http_drain_posted_ = false;
  protocol::HttpServerSession* http = http_session();
  if (!http || http->state() != protocol::HttpServerSession::State::reading_head || http_output_over_budget()) return;
  if (http->holding()) {
    std::string input = http->take_held();
    in_read_handler_ = true;
    const std::size_t used = http_parse(reinterpret_cast<std::uint8_t*>(input.data()), input.size());
    in_read_handler_ = false;
    if (used < input.size() && (http = http_session()) != nullptr)
      http->put_back(std::string_view(input).substr(used));
  }
  if (read_paused_ && !http_output_over_budget()) {
    read_paused_ = false;
    on_readable();  // bytes left in the kernel while paused (edge-triggered: no new edge)
    return;
  }
  if (phase_ != Phase::closed) flush();
}

void Connection::handle_client_head(std::uint8_t* rest, std::size_t rest_size) {
  const protocol::HttpHead& head = handshake_->response->head();
  protocol::UpgradeResponse response;
  std::string error;
  if (!protocol::validate_upgrade_response(head, handshake_->key, config_->client.subprotocols, response, error)) {
    fail_connect(error);
    return;
  }
  std::optional<protocol::DeflateParams> params;
  if (!response.extensions.empty()) {
    if (!config_->client.deflate) {
      fail_connect("server accepted an extension we did not offer");
      return;
    }
    params = protocol::accept_deflate_response(response.extensions, config_->client.deflate_offer, error);
    if (!error.empty()) {
      fail_connect(error);
      return;
    }
  }
  if (params) {
    extras().deflate = std::make_unique<protocol::PerMessageDeflate>(*params, false, config_->client.deflate_tuning);
    ws_.set_deflate(extras_->deflate.get());
  }
  if (!response.subprotocol.empty()) extras().subprotocol = response.subprotocol;
  handshake_.reset();
  opened();
  if (rest_size > 0) receive_frames(rest, rest_size);
}

void Connection::opened() {
  phase_ = Phase::open;
  opened_ = true;
  if (loop_->ring_ && fd_ >= 0 && (!ssl_ || tls_ready_for_ring())) start_ring_io();
  last_rx_tick_ = last_message_tick_ = now();
  reschedule_timer();
  if (config_->handlers.on_open) guarded("on_open", [&] { config_->handlers.on_open(*this); });
  if (!in_read_handler_ && !finished_) flush();
}

void Connection::fail_connect(std::string_view error) { finish(protocol::close_code::abnormal, error); }

// ---- protocol events ----------------------------------------------------------

template <typename Fn>
void Connection::guarded(const char* what, Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    handler_threw(what, e.what());
  } catch (...) {
    handler_threw(what, "a non-standard exception");
  }
}

void Connection::handler_threw(const char* what, const char* error) {
  if (!handler_failed_) {  // once per connection: a handler that throws on every message must not flood the log
    handler_failed_ = true;
    log_error(std::string(what) + " threw: " + error + " (" + (remote_address().empty() ? "connection" : remote_address()) +
              "); the connection is closed");
  }
  if (finished_) return;
  if (phase_ == Phase::open) {
    close(protocol::close_code::internal_error, "internal error");
    return;
  }
  if (protocol::HttpServerSession* http = http_session()) {
    if (http->state() == protocol::HttpServerSession::State::awaiting_response) {
      http->close_after_answer();
      http_respond(500, "text/plain", "internal server error\n");
      return;
    }
    if (http->state() == protocol::HttpServerSession::State::upgrade) {  // on_upgrade
      reject_and_close(500, "internal server error");
      return;
    }
  }
  finish(protocol::close_code::internal_error, "a handler threw");
}

void Connection::on_message(protocol::Opcode kind, std::string_view payload) {
  last_message_tick_ = now();
  if (config_->handlers.on_message) guarded("on_message", [&] { config_->handlers.on_message(*this, kind, payload); });
}

void Connection::on_ping(std::string_view payload) {
  answer_ping(payload);
  if (finished_ || !config_->handlers.on_ping) return;
  guarded("on_ping", [&] { config_->handlers.on_ping(*this, payload); });
}

void Connection::answer_ping(std::string_view payload) {
  if (!is_open()) return;  // closing: the close handshake is the answer
  if (backlogged()) {
    // The peer is not reading: owe one pong, for the latest ping (flush sends it).
    auto& owed = backlog_->owed_pong;
    if (!owed) owed.emplace();
    owed->assign(payload);
    return;
  }
  ws_.pong(output(), payload);
  note_queued();
  check_backpressure();
}

void Connection::on_pong(std::string_view payload) {
  if (config_->handlers.on_pong) guarded("on_pong", [&] { config_->handlers.on_pong(*this, payload); });
}

void Connection::on_close(std::uint16_t code, std::string_view reason) {
  if (close_code_ == protocol::close_code::abnormal) set_close(code, reason);
}

void Connection::on_protocol_error(std::uint16_t code, std::string_view what) {
  set_close(code, what);
}

void Connection::after_protocol_input() {
  using State = protocol::WebSocket::State;
  if (ws_.state() == State::open) return;
  if (phase_ != Phase::closing) {
    phase_ = Phase::closing;
    phase_deadline_ = static_cast<std::uint32_t>(loop_->deadline_after(config_->timeouts.close));
    reschedule_timer();
  }
  if (ws_.wants_transport_close()) {
    // Server after the close handshake, or either side after a failure:
    // flush the close frame, then close TCP (flush() finishes).
    if (!in_read_handler_) flush();
  }
  // A client whose handshake completed waits for the server to close TCP.
}

// ---- application API ----------------------------------------------------------

void Connection::note_queued() {
  if (finished_ || in_read_handler_ || flush_scheduled_) return;
  flush_scheduled_ = true;
  loop_->schedule_flush(this);
}

SendStatus Connection::check_backpressure() {
  if (buffered_amount() <= config_->max_send_buffer) return SendStatus::ok;
  if (ring_io_) {
    // Over the budget: the socket is asked now, as on epoll (a ring send is
    // counted as written only at its completion, a turn later). A send this
    // turn prepared is not the kernel's yet: it is taken back and written
    // with the rest, so a loop that delivers many messages in one turn
    // does not count as a slow peer.
    if (send_in_flight_) retract_ring_send();
    if (!send_in_flight_ && !write_backlog_now()) {
      finish(protocol::close_code::abnormal, "connection reset");
      return SendStatus::closed;
    }
  }
  flush();  // the kernel may take it now
  if (phase_ == Phase::closed) return SendStatus::closed;
  if (buffered_amount() <= config_->max_send_buffer) return SendStatus::ok;
  over_limit_ = true;
  if (config_->backpressure == BackpressurePolicy::close) {
    finish(protocol::close_code::policy_violation, "send buffer limit exceeded");
    return SendStatus::closed;
  }
  return SendStatus::backpressure;
}

SendStatus Connection::send(std::string_view payload, protocol::Opcode kind, protocol::Compress compress) {
  if (!is_open()) return SendStatus::closed;
  if (config_->backpressure == BackpressurePolicy::drop && buffered_amount() > config_->max_send_buffer)
    return SendStatus::dropped;
  if (payload.size() >= direct_write_min_payload && write_directly(payload, kind, compress)) {
    if (!backlogged()) return SendStatus::ok;  // the kernel took it all
    note_queued();
    return check_backpressure();
  }
  if (!ws_.send(output(), kind, payload, compress)) return SendStatus::closed;
  note_queued();
  return check_backpressure();
}

// A large message that goes out as it is (a server's frame, uncompressed,
// plain TCP) with nothing owed before it but what this connection corked
// this turn: one sendmsg of the cork, the header and the caller's bytes,
// instead of copying the payload into the cork first (uWebSockets does the
// same from 16 KiB). Synchronous on io_uring too: a ring send would need the
// bytes to stay put until its completion, which the caller's do not. What
// the kernel does not take is queued, in order, as send() would have.
bool Connection::write_directly(std::string_view payload, protocol::Opcode kind, protocol::Compress compress) {
  if (ssl_ || phase_ != Phase::open || write_failed_ || write_wants_read_) return false;
  if (backlog_ && (backlogged() || !backlog_->in_flight.empty() || backlog_->owed_pong)) return false;
  if (ring_io_ ? send_in_flight_ : !writable_) return false;
  std::uint8_t header[protocol::max_frame_header_size];
  const std::size_t header_size = ws_.plain_message_header(header, kind, payload.size(), compress);
  if (header_size == 0) return false;
  std::string* cork = loop_->corked_ == this ? &loop_->cork_ : nullptr;
  iovec parts[3];
  int count = 0;
  if (cork && !cork->empty()) parts[count++] = {cork->data(), cork->size()};
  parts[count++] = {header, header_size};
  parts[count++] = {const_cast<char*>(payload.data()), payload.size()};
  msghdr message{};
  message.msg_iov = parts;
  message.msg_iovlen = static_cast<std::size_t>(count);
  ssize_t n;
  do n = ::sendmsg(fd_, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  std::size_t written = 0;
  if (n >= 0) {
    written = static_cast<std::size_t>(n);
  } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
    write_failed_ = true;  // reported by flush(), as a failed uncork is
  }
  if (cork) loop_->corked_ = nullptr;  // its bytes are written or moved to the backlog below
  std::size_t total = 0;
  for (int i = 0; i < count; ++i) total += parts[i].iov_len;
  if (written < total && !write_failed_) {
    if (!backlog_) backlog_ = take_backlog();
    for (int i = 0; i < count; ++i) {
      const std::size_t skip = std::min(written, parts[i].iov_len);
      written -= skip;
      backlog_->bytes.append(static_cast<const char*>(parts[i].iov_base) + skip, parts[i].iov_len - skip);
    }
    if (!ring_io_) writable_ = false;  // the kernel's buffer is full: EPOLLOUT resumes
  }
  if (cork) {
    cork->clear();
    if (cork->capacity() > keep_cork_capacity) std::string().swap(*cork);
  }
  if (write_failed_) note_queued();
  return true;
}

SendStatus Connection::send_fragment(std::string_view payload, protocol::Opcode opcode, bool fin) {
  if (!is_open()) return SendStatus::closed;
  if (!ws_.send_frame(output(), opcode, payload, fin)) return SendStatus::closed;
  note_queued();
  return check_backpressure();
}

SendStatus Connection::send_prepared(const PreparedMessage& message) {
  if (!is_open()) return SendStatus::closed;
  if (config_->backpressure == BackpressurePolicy::drop && buffered_amount() > config_->max_send_buffer)
    return SendStatus::dropped;
  if (ws_.role() == protocol::Role::client) {
    if (!ws_.send(output(), message.kind(), message.payload())) return SendStatus::closed;
  } else if (compression_enabled()) {
    const auto& p = extras_->deflate->params();
    if (p.server_no_context_takeover && !message.compressed_frame().empty() &&
        p.server_max_window_bits >= message.window_bits()) {
      output() += message.compressed_frame();
    } else if (!ws_.send(output(), message.kind(), message.payload())) {
      return SendStatus::closed;
    }
  } else {
    output() += message.frame();
  }
  note_queued();
  return check_backpressure();
}

bool Connection::ping(std::string_view payload) {
  if (!is_open() || !ws_.ping(output(), payload)) return false;
  note_queued();
  return true;
}

CloseStatus Connection::close(std::uint16_t code, std::string_view reason) {
  if (phase_ == Phase::closed) return CloseStatus::closed;
  if (http_session()) return close_http();
  if (phase_ == Phase::closing) return CloseStatus::closing;
  if (phase_ != Phase::open) return CloseStatus::not_open;
  if (!ws_.close(output(), code, reason)) return CloseStatus::closing;
  phase_ = Phase::closing;
  phase_deadline_ = static_cast<std::uint32_t>(loop_->deadline_after(config_->timeouts.close));
  reschedule_timer();
  note_queued();
  return CloseStatus::started;
}

CloseStatus Connection::close_http() {
  protocol::HttpServerSession& http = *handshake_->http;
  http.close_after_answer();  // the answer in progress is the last one
  switch (http.state()) {
    case protocol::HttpServerSession::State::streaming:
      http_end_stream();  // after every chunk already queued
      break;
    case protocol::HttpServerSession::State::awaiting_response:
      break;  // closes once the application answers (or the shutdown deadline passes)
    default:
      // Idle keep-alive (or inside on_upgrade): nothing more is read; closes
      // once what is owed is written.
      close_after_flush_ = true;
      if (!in_read_handler_) flush();
      break;
  }
  return CloseStatus::started;
}

CloseStatus Connection::terminate() {
  if (phase_ == Phase::closed) return CloseStatus::closed;
  finish(protocol::close_code::abnormal, "terminated");
  return CloseStatus::started;
}

void Connection::post_send(const std::weak_ptr<Connection>& connection, std::string payload, protocol::Opcode kind) {
  auto c = connection.lock();
  if (!c) return;
  EventLoop& loop = c->loop();
  loop.post([w = connection, payload = std::move(payload), kind] {
    if (auto conn = w.lock()) conn->send(payload, kind);
  });
}

void Connection::post_close(const std::weak_ptr<Connection>& connection, std::uint16_t code, std::string reason) {
  auto c = connection.lock();
  if (!c) return;
  c->loop().post([w = connection, code, reason = std::move(reason)] {
    if (auto conn = w.lock()) conn->close(code, reason);
  });
}

// ---- timers and teardown ------------------------------------------------------

void Connection::reschedule_timer() {
  if (phase_ == Phase::closed) return;
  std::uint64_t due = ~std::uint64_t{0};
  if (phase_ == Phase::open) {
    const Timeouts& t = config_->timeouts;
    if (t.ping_interval.count() > 0)
      due = ping_sent_tick_ ? ping_sent_tick_ + ticks(t.pong_timeout) : last_rx_tick_ + ticks(t.ping_interval);
    if (t.idle.count() > 0) due = std::min(due, last_message_tick_ + ticks(t.idle));
  } else {
    due = phase_deadline_;
  }
  // No deadline (~0) still keeps the connection in the wheel, at the farthest
  // deadline it keeps: the wheel is also the loop's registry of live
  // connections (for shutdown).
  loop_->timers().schedule(this, due);
}

void Connection::on_timer() {
  const std::uint64_t tick = now();
  if (lingering_) {
    if (tick >= phase_deadline_) {
      finish_as_recorded();
      return;
    }
    reschedule_timer();
    return;
  }
  switch (phase_) {
    case Phase::connecting:
    case Phase::tls_handshake:
    case Phase::http_handshake:
      if (tick >= phase_deadline_) {
        if (ws_.role() == protocol::Role::client)
          fail_connect("handshake timed out");
        else
          finish(protocol::close_code::abnormal, "handshake timed out");
        return;
      }
      break;
    case Phase::open: {
      const Timeouts& t = config_->timeouts;
      if (t.idle.count() > 0 && tick >= last_message_tick_ + ticks(t.idle)) {
        close(protocol::close_code::going_away, "idle timeout");
        break;
      }
      if (t.ping_interval.count() > 0) {
        if (ping_sent_tick_ && tick >= ping_sent_tick_ + ticks(t.pong_timeout)) {
          finish(protocol::close_code::abnormal, "no pong within the pong timeout");
          return;
        }
        if (!ping_sent_tick_ && tick >= last_rx_tick_ + ticks(t.ping_interval)) {
          if (ping()) ping_sent_tick_ = static_cast<std::uint32_t>(tick);
        }
      }
      break;
    }
    case Phase::closing:
      if (tick >= phase_deadline_) {
        const std::string reason = extras_ && !extras_->close_reason.empty() ? extras_->close_reason : "close timeout";
        finish(close_code_, reason);
        return;
      }
      break;
    case Phase::closed:
      return;
  }
  reschedule_timer();
}

void Connection::release_loop_resources() {
  TimerWheel::cancel(this);
  if (loop_->corked_ == this) {
    loop_->corked_ = nullptr;
    loop_->cork_.clear();
  }
  if (counted_) {
    counted_ = false;
    --loop_->connection_count_;
  }
}

void Connection::abandon() {
  finished_ = true;
  phase_ = Phase::closed;
  loop_->awaiting_ring_.erase(this);
  if (fd_ >= 0) {
    if (ring_file_ && loop_->ring_) loop_->ring_->release_file(fd_);
    ring_file_ = false;
    loop_->unwatch(fd_);
    ::close(fd_);
    fd_ = -1;
  }
  release_loop_resources();
  handshake_.reset();
  self_.reset();  // the caller holds another reference
}

void Connection::finish_as_recorded() { finish(close_code_, extras_ ? std::string_view(extras_->close_reason) : ""); }

// Best effort: the socket is non-blocking, and a peer gone already is no error.
void Connection::send_close_notify() {
  ERR_clear_error();
  if (ring_io_) {
    // Written at once, as on readiness; but never behind ciphertext the
    // ring has not sent (it would land inside a record).
    if (!send_in_flight_ && !backlogged() && fd_ >= 0) {
      std::string& out = loop_->tls_out_;
      loop_->tls_bio().use_memory(nullptr, 0, &out);
      SSL_shutdown(ssl_);
      if (!out.empty()) (void)::send(fd_, out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      out.clear();
    }
  } else {
    loop_->tls_bio().use_socket(fd_);
    SSL_shutdown(ssl_);
  }
  ERR_clear_error();
}

void Connection::finish(std::uint16_t code, std::string_view reason) {
  if (finished_) return;
  finished_ = true;
  phase_ = Phase::closed;
  set_close(code, reason);
  TimerWheel::cancel(this);
  if (ssl_ && opened_ && !lingering_) send_close_notify();  // lingering sent it already
  if (fd_ >= 0) {
    if (config_->per_ip && ws_.role() == protocol::Role::server) config_->per_ip->remove(fd_);
    if (ring_io_) {
      // The ring's requests hold the socket open until they end: end them
      // (their completions still come, and keep this object alive till then).
      if (recv_armed_) loop_->ring_->cancel(detail::IoRing::tag(this, detail::IoRing::Op::recv));
      if (send_in_flight_) loop_->ring_->cancel(detail::IoRing::tag(this, detail::IoRing::Op::send));
      // The table's reference would keep the socket open past close().
      if (ring_file_) loop_->ring_->release_file(fd_);
      ring_file_ = false;
    } else {
      loop_->unwatch(fd_);
    }
    ::close(fd_);
    fd_ = -1;
  }
  if (ws_.role() == protocol::Role::server && config_->open_connections)
    config_->open_connections->fetch_sub(1, std::memory_order_relaxed);
  if (loop_->corked_ == this) {  // frames not written yet are dropped with the connection
    loop_->corked_ = nullptr;
    loop_->cork_.clear();
  }
  // Nothing is freed here: callers up the stack (the protocol core, the
  // application's handler) may still hold this connection and its buffers.
  // A ring request still in flight keeps self_ (release_if_unarmed drops it).
  if (recv_armed_ || send_in_flight_) {
    if (self_) loop_->awaiting_ring_.insert(this);
    loop_->schedule_reap(shared_from_this());
  } else
    loop_->schedule_reap(self_ ? std::move(self_) : shared_from_this());
}

void Connection::reap() {
  const std::string reason = extras_ ? extras_->close_reason : std::string();
  const Handlers& h = config_->handlers;
  if (opened_) {
    if (h.on_close) guarded("on_close", [&] { h.on_close(*this, close_code_, reason); });
  } else if (served_http_) {
    if (h.on_http_closed) guarded("on_http_closed", [&] { h.on_http_closed(*this); });
  } else if (ws_.role() == protocol::Role::client && h.on_error) {
    // A client that never opened learns why, whatever path failed it.
    guarded("on_error", [&] { h.on_error(reason); });
  }
  release_loop_resources();
  handshake_.reset();  // a client's resolver and socket belong to this loop
  if (!send_in_flight_) give_back(std::move(backlog_));  // else the kernel still reads it: on_ring_send frees it
}

// ---- io_uring -------------------------------------------------------------------

void Connection::start_ring_io() {
  loop_->unwatch(fd_);
  ring_io_ = true;
  ring_file_ = loop_->ring_->register_file(fd_);
  writable_ = true;
  arm_ring_recv();
}

void Connection::arm_ring_recv() {
  loop_->ring_->recv_multishot(fd_, detail::IoRing::tag(this, detail::IoRing::Op::recv), ring_file_);
  recv_armed_ = true;
}

void Connection::ring_uncork() {
  std::string& cork = loop_->cork_;
  loop_->corked_ = nullptr;
  if (!cork.empty() && phase_ != Phase::closed) {
    if (ssl_) {
      ring_tls_send(cork);  // the ciphertext becomes the send instead
    } else {
      if (!backlog_) backlog_ = take_backlog();
      if (send_in_flight_) {
        backlog_->bytes.append(cork);
      } else {
        // The cork's bytes become the send (no copy); the loop keeps the
        // buffer the last send used.
        backlog_->in_flight.swap(cork);
        submit_ring_send();
      }
    }
  }
  cork.clear();
  if (cork.capacity() > keep_cork_capacity) std::string().swap(cork);
}

void Connection::submit_ring_send() {
  Backlog& b = *backlog_;
  if (b.in_flight.empty()) {
    if (b.sent > 0) b.bytes.erase(0, b.sent);
    b.sent = 0;
    b.in_flight.swap(b.bytes);
  }
  send_in_flight_ = true;
  const auto ticket = loop_->ring_->send(fd_, b.in_flight.data(), b.in_flight.size(),
                                         detail::IoRing::tag(this, detail::IoRing::Op::send), ring_file_);
  b.send_entry = ticket.entry;
  b.send_submission = ticket.submission;
}

bool Connection::retract_ring_send() {
  Backlog& b = *backlog_;
  if (!loop_->ring_->retract({static_cast<io_uring_sqe*>(b.send_entry), b.send_submission})) return false;
  send_in_flight_ = false;
  // Its bytes go first, before what queued behind them.
  b.in_flight.append(b.bytes, b.sent, std::string::npos);
  b.bytes.swap(b.in_flight);
  b.in_flight.clear();
  b.sent = 0;
  return true;
}

bool Connection::write_backlog_now() {
  if (loop_->corked_ == this) {
    // The cork joins the backlog first (no send: one is submitted below or not at all).
    std::string& cork = loop_->cork_;
    loop_->corked_ = nullptr;
    if (!backlog_) backlog_ = take_backlog();
    const bool encrypted = !ssl_ || tls_encrypt(cork, backlog_->bytes);
    if (!ssl_) backlog_->bytes.append(cork);
    cork.clear();
    if (!encrypted) return false;
  }
  bool want_read = false;  // raw bytes only here (TLS on the ring: ciphertext): never set
  return write_backlog(want_read) >= 0;
}

long Connection::write_backlog(bool& want_read) {
  long written = 0;
  while (backlogged()) {
    const long n = transport_write(backlog_->bytes.data() + backlog_->sent, backlog_->bytes.size() - backlog_->sent, want_read);
    if (n <= 0) return n == -1 ? written : -1;
    backlog_->sent += static_cast<std::size_t>(n);
    written += n;
  }
  return written;
}

std::shared_ptr<Connection> Connection::on_ring_recv(int result, std::uint32_t cqe_flags) {
  const bool more = (cqe_flags & IORING_CQE_F_MORE) != 0;
  if (!more) recv_armed_ = false;
  struct Recycle {  // the buffer goes back to the kernel however this ends
    detail::IoRing* ring;
    std::uint32_t flags;
    ~Recycle() {
      if (flags & IORING_CQE_F_BUFFER) ring->recycle(flags);
    }
  } recycle{loop_->ring_.get(), cqe_flags};
  if (finished_) return release_if_unarmed();
  if (result > 0 && lingering_) {
    // Read to the peer's FIN and dropped; a multishot the kernel ended is
    // asked again below, or the FIN would only be seen at the deadline.
  } else if (result > 0) {
    last_rx_tick_ = now();
    ping_sent_tick_ = 0;  // any byte proves the peer alive
    in_read_handler_ = true;
    if (ssl_)
      ring_tls_receive(loop_->ring_->buffer(cqe_flags), static_cast<std::size_t>(result));
    else
      on_bytes(loop_->ring_->buffer(cqe_flags), static_cast<std::size_t>(result));
    in_read_handler_ = false;
    if (!finished_) flush();
  } else if (result == 0) {
    lingering_ ? finish_as_recorded() : on_eof();
  } else if (result != -ENOBUFS && result != -ECANCELED) {
    lingering_ ? finish_as_recorded() : finish(protocol::close_code::abnormal, "connection reset");
  }
  // Out of provided buffers (or a kernel that ended the multishot): ask again.
  if (!recv_armed_ && !finished_ && result != 0) arm_ring_recv();
  return release_if_unarmed();
}

std::shared_ptr<Connection> Connection::on_ring_send(int result) {
  send_in_flight_ = false;
  if (finished_) {
    give_back(std::move(backlog_));  // the kernel is done with it; reap (now or later) frees nothing else
    return release_if_unarmed();
  }
  Backlog& b = *backlog_;
  if (result < 0) {
    finish(protocol::close_code::abnormal, "connection reset");
    return release_if_unarmed();
  }
  if (static_cast<std::size_t>(result) < b.in_flight.size()) {
    b.in_flight.erase(0, static_cast<std::size_t>(result));  // MSG_WAITALL stopped short (a signal): the rest
    submit_ring_send();
    return nullptr;
  }
  // The buffer goes back to the loop when it has none (no allocation next
  // turn): to the cork, or for TLS to the ciphertext buffer.
  if (ssl_) {
    b.in_flight.clear();  // sent: what the loop gets back is the empty buffer
    if (loop_->tls_out_.capacity() < b.in_flight.capacity()) loop_->tls_out_.swap(b.in_flight);
  } else if (loop_->cork_.capacity() < b.in_flight.capacity() && loop_->corked_ == nullptr) {
    loop_->cork_.swap(b.in_flight);
  }
  b.in_flight.clear();
  // What queued behind it (the peer was slow): offered to the socket now,
  // as epoll does on writable, so a backlog drains in this turn, not one
  // send per turn.
  if (backlogged() && !write_backlog_now()) {
    finish(protocol::close_code::abnormal, "connection reset");
    return release_if_unarmed();
  }
  flush();
  return release_if_unarmed();
}

// ---- TLS on the io_uring backend ------------------------------------------------

// Moved to the ring only at a clean point: no ciphertext or plaintext
// half-written on readiness (a readiness backlog is plaintext) and nothing
// OpenSSL has read from the socket but not handed out yet.
bool Connection::tls_ready_for_ring() const {
  return !backlogged() && !write_wants_read_ && !read_wants_write_ && SSL_has_pending(ssl_) == 0;
}

// Where the next ciphertext goes: behind what already waits, or the loop's
// buffer that becomes the next send.
std::string& Connection::ring_tls_output() {
  if (backlog_ && (send_in_flight_ || backlogged() || !backlog_->in_flight.empty())) return backlog_->bytes;
  return loop_->tls_out_;
}

// Ciphertext written into the loop's buffer becomes the send (no copy).
void Connection::ring_tls_ship(std::string& out) {
  if (&out != &loop_->tls_out_ || out.empty()) return;
  if (!backlog_) backlog_ = take_backlog();
  backlog_->in_flight.swap(out);
  out.clear();
  submit_ring_send();
}

bool Connection::tls_encrypt(std::string_view plain, std::string& out) {
  // Room for every record at once: growing by appends reallocates and
  // copies the ciphertext written so far once per record.
  out.reserve(out.size() + plain.size() + (plain.size() / tls_record_plaintext + 1) * tls_record_overhead);
  loop_->tls_bio().use_memory(nullptr, 0, &out);
  while (!plain.empty()) {
    ERR_clear_error();
    const int n = SSL_write(ssl_, plain.data(), static_cast<int>(std::min<std::size_t>(plain.size(), 1u << 30)));
    if (n <= 0) {
      ERR_clear_error();
      return false;
    }
    plain.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

void Connection::ring_tls_send(std::string_view plain) {
  std::string& out = ring_tls_output();
  if (!tls_encrypt(plain, out)) {
    write_failed_ = true;  // reported by flush(), outside whoever uncorked us
    if (!flush_scheduled_ && !in_read_handler_) {
      flush_scheduled_ = true;
      loop_->schedule_flush(this);
    }
  }
  ring_tls_ship(out);
}

// Ciphertext from a provided buffer, fed to OpenSSL as it asks for it; each
// record's plaintext goes to the protocol before the next is decrypted. The
// BIO is pointed at what is left before every call: a handler may have used
// it for another connection in between.
void Connection::ring_tls_receive(const std::uint8_t* data, std::size_t size) {
  detail::LoopTlsBio& bio = loop_->tls_bio();
  std::uint8_t* plain = loop_->read_buffer();
  const int cap = static_cast<int>(std::min<std::size_t>(loop_->read_buffer_size(), 1u << 30));
  for (;;) {
    std::string& out = ring_tls_output();  // OpenSSL may answer (an alert, a key update)
    bio.use_memory(data, size, &out);
    ERR_clear_error();
    const int n = SSL_read(ssl_, plain, cap);
    data = bio.input();
    size = bio.input_left();
    ring_tls_ship(out);
    if (n > 0) {
      on_bytes(plain, static_cast<std::size_t>(n));
      if (finished_ || lingering_) return;  // lingering: nothing more is read through TLS
      continue;
    }
    const int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_READ) return;  // all consumed; a partial record waits inside OpenSSL
    if (err == SSL_ERROR_ZERO_RETURN) {
      on_eof();  // the peer's close_notify
      return;
    }
    ERR_clear_error();
    finish(protocol::close_code::abnormal, "connection reset");
    return;
  }
}

std::shared_ptr<Connection> Connection::release_if_unarmed() {
  if (!finished_ || recv_armed_ || send_in_flight_) return nullptr;
  loop_->awaiting_ring_.erase(this);
  return std::move(self_);
}

std::shared_ptr<Connection> Connection::release_after_ring_closed() {
  recv_armed_ = false;
  send_in_flight_ = false;
  return release_if_unarmed();
}

}  // namespace duplex::net
