#include "duplex/net/server.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdio>

#include "connection_config.hpp"
#include "duplex/net/loop_timer.hpp"
#include "io_ring.hpp"
#include "per_ip_limiter.hpp"
#include "duplex/protocol/handshake.hpp"

namespace duplex::net {

// A listening socket of one loop. On epoll it is in the loop's epoll set
// (level-triggered: what is left after one turn's share of accepts wakes the
// next turn); on io_uring a multishot accept brings each new socket as a
// completion, with no system call of its own.
struct Server::Acceptor final : FdWatcher, detail::RingHandler {
  Acceptor(Server& s, EventLoop& l) : server(s), loop(l), retry(l), shutdown_watch(l) {}
  ~Acceptor() { close(); }
  void on_events(std::uint32_t) override { server.accept_ready(*this); }
  void on_ring_completion(int result, std::uint32_t flags) override { server.ring_accepted(*this, result, flags); }
  bool on_ring() const { return loop.ring_ != nullptr && !ring_refused; }
  std::uint64_t ring_tag() const { return detail::IoRing::tag(static_cast<const detail::RingHandler*>(this), detail::IoRing::Op::handler); }
  bool watch() {
    watched = loop.watch(fd, this, EPOLLIN);
    return watched;
  }
  void unwatch() {
    // Explicitly: the other loops' dup()s of a shared socket keep its epoll
    // entries alive after a close.
    if (watched) loop.unwatch(fd);
    watched = false;
  }
  void close() {
    if (fd < 0) return;
    unwatch();
    // The kernel's pending accept holds the socket open (and listening)
    // until cancelled. Off the loop thread the loop is gone or stopped, and
    // the ring's teardown cancels it.
    if (ring_armed && loop.running_in_this_thread()) loop.ring_->cancel(ring_tag());
    ::close(fd);
    fd = -1;
  }
  Server& server;
  EventLoop& loop;
  int fd = -1;
  bool watched = false;
  LoopTimer retry;           // after EMFILE/ENFILE: try again shortly instead of spinning
  LoopTimer shutdown_watch;  // shutdown(): polls for the loop's last connection
  bool reported_fd_limit = false;
  bool ring_armed = false;    // a multishot accept is in the ring (its last completion clears it)
  bool ring_refused = false;  // the kernel refused multishot accept: readiness and accept4 instead
};

Server::Server(ServerOptions options, Handlers handlers) : options_(std::move(options)) {
  check_size_options(options_.max_send_buffer, options_.websocket, options_.http);
  config_ = std::make_shared<ConnectionConfig>();
  config_->handlers = std::move(handlers);
  config_->limits = options_.websocket;
  config_->http = options_.http;
  config_->timeouts = options_.timeouts;
  config_->max_send_buffer = options_.max_send_buffer;
  config_->backpressure = options_.backpressure;
  config_->subprotocols = options_.subprotocols;
  config_->deflate = options_.deflate;
  if (options_.tls.enabled()) {
    config_->tls = TlsContext::server(options_.tls);
    // OpenSSL writes to the socket with write(), not send(MSG_NOSIGNAL): a
    // TLS peer that resets would otherwise kill the process with SIGPIPE.
    ::signal(SIGPIPE, SIG_IGN);
  }
  config_->open_connections = new std::atomic<std::size_t>(0);
  if (options_.max_connections_per_ip > 0) {
    per_ip_ = std::make_unique<PerIpLimiter>(options_.max_connections_per_ip);
    config_->per_ip = per_ip_.get();
  }
  // OpenSSL 3 loads its providers on first use (about 2 MB of code and
  // tables); do it now rather than in the first client's handshake.
  (void)protocol::compute_accept_key("dGhlIHNhbXBsZSBub25jZQ==");
  unsigned n = options_.threads ? options_.threads : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) loops_.push_back(std::make_unique<EventLoop>(options_.read_buffer_size, options_.io, options_.ring_buffers));
}

Server::~Server() {
  stop();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  acceptors_.clear();
  loops_.clear();
  delete config_->open_connections;
}

std::vector<EventLoop*> Server::loops() {
  std::vector<EventLoop*> v;
  for (auto& l : loops_) v.push_back(l.get());
  return v;
}

void Server::reload_tls(const TlsOptions& tls) {
  if (!config_->tls) throw std::runtime_error("TLS was off at start: enabling it needs a restart");
  config_->tls->reload(tls);
}

std::size_t Server::connection_count() const { return config_->open_connections->load(std::memory_order_relaxed); }

namespace {

struct ListenAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  std::string text;  // as the user reads it: 127.0.0.1:8080, [::1]:8080
};

// The error a user can act on: which address, what went wrong, and for the
// two common cases what it means.
[[noreturn]] void fail_listen(const ListenAddress& address, const char* step, int error) {
  std::string text = "cannot listen on " + address.text + ": " + step + ": " + std::strerror(error);
  if (error == EADDRINUSE)
    text += " (another socket holds it; choose another port, or enable reuse_port to share it on purpose)";
  else if (error == EADDRNOTAVAIL)
    text += " (no network interface of this machine has that address)";
  throw std::runtime_error(text);
}

bool parse_listen_address(const std::string& host, std::uint16_t port, ListenAddress& out) {
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out.storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    out.length = sizeof(sockaddr_in);
    out.text = host + ":" + std::to_string(port);
  } else if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    out.length = sizeof(sockaddr_in6);
    char canonical[INET6_ADDRSTRLEN];
    ::inet_ntop(AF_INET6, &v6->sin6_addr, canonical, sizeof canonical);
    out.text = "[" + std::string(canonical) + "]:" + std::to_string(port);
  } else {
    return false;
  }
  return true;
}

}  // namespace

// Two ways to give every loop an acceptor:
// - reuse_port off (the default): ONE socket, bound without SO_REUSEPORT,
//   and each loop watches a dup() of it. The kernel refuses every other
//   socket on that address (EADDRINUSE) — a second process cannot join, and
//   since the bind itself is the check there is no window between "is it
//   free?" and "take it" (a probe before SO_REUSEPORT binds would have one).
//   All loops wake for a connection; the first accept4 takes it, the others
//   see EAGAIN.
// - reuse_port on: a socket per loop, each with SO_REUSEPORT; the kernel
//   spreads connections over them, and over other processes' sockets on the
//   same address (several processes on one port, on purpose).
void Server::listen() {
  if (!acceptors_.empty()) return;
  ListenAddress address;
  if (!parse_listen_address(options_.host, options_.port, address))
    throw std::runtime_error("cannot listen on " + options_.host + ": not an IP address");
  std::uint16_t port = options_.port;
  try {
    int shared_fd = -1;
    for (auto& loop : loops_) {
      auto a = std::make_unique<Acceptor>(*this, *loop);
      if (shared_fd >= 0) {
        a->fd = ::fcntl(shared_fd, F_DUPFD_CLOEXEC, 0);
        if (a->fd < 0) fail_listen(address, "dup", errno);
        acceptors_.push_back(std::move(a));
        continue;
      }
      a->fd = ::socket(address.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (a->fd < 0) fail_listen(address, "socket", errno);
      const int one = 1;
      if (::setsockopt(a->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        fail_listen(address, "SO_REUSEADDR", errno);
      if (options_.reuse_port && ::setsockopt(a->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        fail_listen(address, "SO_REUSEPORT", errno);
      if (::bind(a->fd, reinterpret_cast<const sockaddr*>(&address.storage), address.length) != 0)
        fail_listen(address, "bind", errno);
      if (::listen(a->fd, options_.backlog) != 0) fail_listen(address, "listen", errno);
      if (port == 0) {
        sockaddr_storage bound{};
        socklen_t length = sizeof bound;
        if (::getsockname(a->fd, reinterpret_cast<sockaddr*>(&bound), &length) != 0)
          fail_listen(address, "getsockname", errno);
        port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                 : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
        if (!parse_listen_address(options_.host, port, address)) throw std::logic_error("listen address");
      }
      if (!options_.reuse_port) shared_fd = a->fd;
      acceptors_.push_back(std::move(a));
    }
    for (auto& a : acceptors_)
      if (!a->on_ring() && !a->watch()) fail_listen(address, "epoll_ctl", errno);
    // Armed from the loop's own thread, the ring's one submitter (the loop
    // may not run yet: the task waits for it).
    for (auto& a : acceptors_)
      if (a->on_ring()) a->loop.post([this, acceptor = a.get()] { arm_ring_accept(*acceptor); });
  } catch (...) {
    acceptors_.clear();  // nothing half-listening: listen() may be called again
    throw;
  }
  port_ = port;
}

void Server::accept_ready(Acceptor& a) {
  if (stopping_) {
    a.close();
    return;
  }
  // Accept what is queued (bounded, so one loop cannot starve its
  // connections; the rest wakes the next turn).
  for (int i = 0; i < 128; ++i) {
    sockaddr_storage peer{};
    socklen_t peer_len = sizeof peer;
    const int fd = ::accept4(a.fd, reinterpret_cast<sockaddr*>(&peer), &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        a.unwatch();
        pause_accepts(a, errno);
        return;
      }
      return;  // EAGAIN: drained
    }
    admit(a, fd, peer);
  }
}

// Out of file descriptors (or memory): keep serving who we have, and try
// accepting again shortly instead of spinning on the error.
void Server::pause_accepts(Acceptor& a, int error) {
  if (!a.reported_fd_limit) {
    std::fprintf(stderr, "duplex: accept failed (%s); pausing accepts while at the limit\n", std::strerror(error));
    a.reported_fd_limit = true;
  }
  a.retry.start(Millis{100}, [&a] {
    if (a.server.stopping_ || a.fd < 0) return;
    if (a.on_ring()) a.server.arm_ring_accept(a);
    else a.watch();
  });
}

void Server::admit(Acceptor& a, int fd, const sockaddr_storage& peer) {
  a.reported_fd_limit = false;
  if (connection_count() >= options_.max_connections) {
    ::close(fd);  // over the limit: refuse at once
    return;
  }
  if (per_ip_ && !per_ip_->try_add(fd, peer)) {
    ::close(fd);  // this address has its share
    return;
  }
  config_->open_connections->fetch_add(1, std::memory_order_relaxed);
  Connection::accept(a.loop, fd, config_);
}

void Server::arm_ring_accept(Acceptor& a) {
  if (stopping_ || a.fd < 0 || a.ring_armed || !a.on_ring()) return;
  a.loop.ring_->accept_multishot(a.fd, a.ring_tag());
  a.ring_armed = true;
}

void Server::ring_accepted(Acceptor& a, int result, std::uint32_t flags) {
  const bool last = !(flags & IORING_CQE_F_MORE);
  if (last) a.ring_armed = false;
  if (result >= 0) {
    if (stopping_ || a.fd < 0) {
      ::close(result);  // accepted while being cancelled
      if (stopping_) a.close();
      return;
    }
    sockaddr_storage peer{};
    socklen_t peer_len = sizeof peer;
    if (per_ip_ && ::getpeername(result, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) {
      ::close(result);  // reset before we saw it
    } else {
      admit(a, result, peer);
    }
    if (last) arm_ring_accept(a);
    return;
  }
  const int error = -result;
  if (error == ECANCELED || a.fd < 0 || stopping_) return;  // closed
  if (error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM) {
    if (!last) return;  // still armed: the kernel goes on trying
    pause_accepts(a, error);
    return;
  }
  if (error == EINTR || error == ECONNABORTED || error == EAGAIN) {
    if (last) arm_ring_accept(a);
    return;
  }
  // Anything else (a kernel without multishot accept says EINVAL): this
  // socket goes back to readiness and accept4.
  if (last) {
    std::fprintf(stderr, "duplex: io_uring multishot accept failed (%s); accepting through epoll\n", std::strerror(error));
    a.ring_refused = true;
    a.watch();
  }
}

void Server::run() {
  listen();
  for (std::size_t i = 1; i < loops_.size(); ++i) threads_.emplace_back([this, i] { loops_[i]->run(); });
  loops_[0]->run();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

void Server::stop() {
  stopping_ = true;
  for (auto& l : loops_) l->stop();
}

// Polls a loop during shutdown, every 20 ms until its connections are gone
// or the deadline passes; then stops it.
void Server::watch_shutdown(Acceptor* a, std::chrono::steady_clock::time_point started, Millis deadline) {
  auto remaining = a->loop.connections();
  if (remaining.empty() || std::chrono::steady_clock::now() - started >= deadline) {
    for (auto& c : remaining) c->terminate();
    // Posted: the closing callbacks of the connections ended just now (and
    // of any still being reaped) run first.
    a->loop.post([a] { a->loop.stop(); });
    return;
  }
  a->shutdown_watch.start(Millis{20}, [a, started, deadline] { watch_shutdown(a, started, deadline); });
}

void Server::shutdown(std::uint16_t code, Millis deadline) {
  stopping_ = true;
  for (std::size_t i = 0; i < acceptors_.size(); ++i) {
    Acceptor* a = acceptors_[i].get();
    a->loop.post([a, code, deadline] {
      a->close();
      a->retry.cancel();
      for (auto& c : a->loop.connections()) {
        const auto phase = c->phase();
        if (phase == Connection::Phase::open || phase == Connection::Phase::http_handshake)
          c->close(code, "server shutting down");  // what is owed (a disconnect push, an SSE chunk) goes first
        else if (phase != Connection::Phase::closing)
          c->terminate();
      }
      // Stop this loop when its connections are gone or the deadline passes.
      watch_shutdown(a, std::chrono::steady_clock::now(), deadline);
    });
  }
}

}  // namespace duplex::net
