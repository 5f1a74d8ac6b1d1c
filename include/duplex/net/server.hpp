// The WebSocket server: one event loop per thread, SO_REUSEPORT acceptors.
#pragma once
#include <sys/socket.h>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "duplex/net/connection.hpp"
#include "duplex/net/event_loop.hpp"
#include "duplex/net/handlers.hpp"
#include "duplex/net/options.hpp"

namespace duplex::net {

class PerIpLimiter;

class Server {
 public:
  // Throws std::runtime_error on a bad TLS file. With TLS configured it sets
  // SIGPIPE to SIG_IGN for the whole process: OpenSSL writes with write(2),
  // not send(MSG_NOSIGNAL), and a peer that resets must not kill the process.
  Server(ServerOptions options, Handlers handlers);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds every loop's acceptor (throws std::system_error on failure). After
  // this, port() is the bound port (useful with port 0).
  void listen();
  // listen() if needed, then runs the loops: the calling thread runs loop 0
  // and this returns once every loop has stopped.
  void run();
  // Thread-safe. Stops accepting, closes every connection with `code`
  // (default 1001 going away) and stops the loops once they are closed or
  // `deadline` has passed.
  void shutdown(std::uint16_t code = protocol::close_code::going_away, Millis deadline = Millis{5000});
  // Thread-safe, immediate: stops the loops, dropping connections.
  void stop();
  // Thread-safe (SIGHUP): new TLS handshakes use a context built from
  // `tls`; established connections keep theirs. Throws std::runtime_error and
  // keeps the current context on a bad file or setting, or when TLS was off
  // at start.
  void reload_tls(const TlsOptions& tls);

  std::uint16_t port() const { return port_; }
  std::size_t connection_count() const;
  const ServerOptions& options() const { return options_; }
  std::vector<EventLoop*> loops();

 private:
  struct Acceptor;
  void accept_ready(Acceptor& a);
  // io_uring loops: a multishot accept per listening socket instead of
  // readiness and accept4 (loop thread only).
  void arm_ring_accept(Acceptor& a);
  void ring_accepted(Acceptor& a, int result, std::uint32_t flags);
  // Takes an accepted socket: refused past max_connections or the peer's
  // per-IP share, else a connection on a's loop.
  void admit(Acceptor& a, int fd, const sockaddr_storage& peer);
  void pause_accepts(Acceptor& a, int error);
  static void watch_shutdown(Acceptor* a, std::chrono::steady_clock::time_point started, Millis deadline);

  ServerOptions options_;
  std::unique_ptr<PerIpLimiter> per_ip_;  // before the loops: connections use it until they stop
  std::shared_ptr<ConnectionConfig> config_;
  std::vector<std::unique_ptr<EventLoop>> loops_;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  std::vector<std::thread> threads_;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
};

}  // namespace duplex::net
