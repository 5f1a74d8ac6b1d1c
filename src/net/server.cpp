#include "duplex/net/server.hpp"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <cstdio>

#include "connection_config.hpp"
#include "per_ip_limiter.hpp"
#include "duplex/protocol/handshake.hpp"

namespace duplex::net {

using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

struct Server::Acceptor {
  explicit Acceptor(EventLoop& l) : loop(l), acceptor(l.io()), retry(l.io()) {}
  EventLoop& loop;
  asio::ip::tcp::acceptor acceptor;
  asio::steady_timer retry;  // after EMFILE/ENFILE: try again shortly instead of spinning
  bool reported_fd_limit = false;
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
  for (unsigned i = 0; i < n; ++i) loops_.push_back(std::make_unique<EventLoop>(options_.read_buffer_size));
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

std::string printable(const asio::ip::tcp::endpoint& endpoint) {
  const asio::ip::address a = endpoint.address();
  return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(endpoint.port());
}

// The error a user can act on: which address, what went wrong, and for the
// two common cases what it means.
[[noreturn]] void fail_listen(const asio::ip::tcp::endpoint& endpoint, const char* step, const asio::error_code& ec) {
  std::string text = "cannot listen on " + printable(endpoint) + ": " + step + ": " + ec.message();
  if (ec.value() == EADDRINUSE)
    text += " (another socket holds it; choose another port, or enable reuse_port to share it on purpose)";
  else if (ec.value() == EADDRNOTAVAIL)
    text += " (no network interface of this machine has that address)";
  throw std::runtime_error(text);
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
  asio::error_code ec;
  const asio::ip::address address = asio::ip::make_address(options_.host, ec);
  if (ec) throw std::runtime_error("cannot listen on " + options_.host + ": not an IP address");
  std::uint16_t port = options_.port;
  try {
    int shared_fd = -1;
    for (auto& loop : loops_) {
      auto a = std::make_unique<Acceptor>(*loop);
      const asio::ip::tcp::endpoint endpoint(address, port);
      if (shared_fd >= 0) {
        const int fd = ::dup(shared_fd);
        if (fd < 0) fail_listen(endpoint, "dup", asio::error_code(errno, asio::system_category()));
        a->acceptor.assign(endpoint.protocol(), fd, ec);
        if (ec) {
          ::close(fd);
          fail_listen(endpoint, "assign", ec);
        }
        acceptors_.push_back(std::move(a));
        continue;
      }
      a->acceptor.open(endpoint.protocol(), ec);
      if (ec) fail_listen(endpoint, "socket", ec);
      a->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
      if (ec) fail_listen(endpoint, "SO_REUSEADDR", ec);
      if (options_.reuse_port) a->acceptor.set_option(reuse_port(true), ec);
      if (ec) fail_listen(endpoint, "SO_REUSEPORT", ec);
      a->acceptor.bind(endpoint, ec);
      if (ec) fail_listen(endpoint, "bind", ec);
      a->acceptor.listen(options_.backlog, ec);
      if (ec) fail_listen(endpoint, "listen", ec);
      a->acceptor.non_blocking(true, ec);
      if (ec) fail_listen(endpoint, "non-blocking", ec);
      if (port == 0) port = a->acceptor.local_endpoint().port();
      if (!options_.reuse_port) shared_fd = a->acceptor.native_handle();
      acceptors_.push_back(std::move(a));
    }
  } catch (...) {
    acceptors_.clear();  // nothing half-listening: listen() may be called again
    throw;
  }
  port_ = port;
  for (std::size_t i = 0; i < acceptors_.size(); ++i) {
    EventLoop& loop = acceptors_[i]->loop;
    asio::post(loop.io(), [this, i] { accept_next(i); });
  }
}

void Server::accept_next(std::size_t index) {
  Acceptor& a = *acceptors_[index];
  if (stopping_ || !a.acceptor.is_open()) return;
  a.acceptor.async_wait(asio::ip::tcp::acceptor::wait_read, [this, index](const asio::error_code& ec) {
    if (ec || stopping_) return;
    Acceptor& acc = *acceptors_[index];
    // Accept what is queued (bounded, so one loop cannot starve its connections).
    for (int i = 0; i < 128; ++i) {
      sockaddr_storage peer{};
      socklen_t peer_len = sizeof peer;
      const int fd = ::accept4(acc.acceptor.native_handle(), reinterpret_cast<sockaddr*>(&peer), &peer_len,
                               SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // Out of file descriptors: keep serving who we have, retry shortly.
          if (!acc.reported_fd_limit) {
            std::fprintf(stderr, "duplex: accept failed (%s); pausing accepts while at the limit\n",
                         std::strerror(errno));
            acc.reported_fd_limit = true;
          }
          acc.retry.expires_after(Millis{100});
          acc.retry.async_wait([this, index](const asio::error_code& e) {
            if (!e) accept_next(index);
          });
          return;
        }
        break;  // EAGAIN: drained
      }
      acc.reported_fd_limit = false;
      if (connection_count() >= options_.max_connections) {
        ::close(fd);  // over the limit: refuse at once
        continue;
      }
      if (per_ip_ && !per_ip_->try_add(fd, peer)) {
        ::close(fd);  // this address has its share
        continue;
      }
      config_->open_connections->fetch_add(1, std::memory_order_relaxed);
      Connection::accept(acc.loop, fd, config_);
    }
    accept_next(index);
  });
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

// Polls a loop during shutdown. The only reference to the timer is in its
// pending handler, so nothing leaks if the loop is stopped first.
void Server::watch_shutdown(Acceptor* a, std::shared_ptr<asio::steady_timer> timer,
                            std::chrono::steady_clock::time_point started, Millis deadline) {
  auto remaining = a->loop.connections();
  if (remaining.empty() || std::chrono::steady_clock::now() - started >= deadline) {
    for (auto& c : remaining) c->terminate();
    // Posted: the closing callbacks of the connections ended just now (and
    // of any still being reaped) run first.
    a->loop.post([a] { a->loop.stop(); });
    return;
  }
  timer->expires_after(Millis{20});
  timer->async_wait([a, timer, started, deadline](const asio::error_code& ec) {
    if (!ec) watch_shutdown(a, timer, started, deadline);
  });
}

void Server::shutdown(std::uint16_t code, Millis deadline) {
  stopping_ = true;
  for (std::size_t i = 0; i < acceptors_.size(); ++i) {
    Acceptor* a = acceptors_[i].get();
    a->loop.post([a, code, deadline] {
      asio::error_code ec;
      a->acceptor.close(ec);
      a->retry.cancel();
      for (auto& c : a->loop.connections()) {
        const auto phase = c->phase();
        if (phase == Connection::Phase::open || phase == Connection::Phase::http_handshake)
          c->close(code, "server shutting down");  // what is owed (a disconnect push, an SSE chunk) goes first
        else if (phase != Connection::Phase::closing)
          c->terminate();
      }
      // Stop this loop when its connections are gone or the deadline passes.
      watch_shutdown(a, std::make_shared<asio::steady_timer>(a->loop.io()), std::chrono::steady_clock::now(),
                     deadline);
    });
  }
}

}  // namespace duplex::net
