// Loopback helpers shared by the net tests: a server on its own thread and a
// blocking raw TCP client for sending arbitrary bytes.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "../common/eventually.hpp"
#include "duplex/duplex.hpp"

namespace test_support {

using namespace duplex;
using namespace std::chrono_literals;

// A server on 127.0.0.1:<free port> running on its own threads.
class TestServer {
 public:
  explicit TestServer(net::ServerOptions options = {}, net::Handlers handlers = {}) {
    options.host = "127.0.0.1";
    options.port = 0;
    if (options.threads == 0) options.threads = 1;
    if (!handlers.on_message)
      handlers.on_message = [](net::Connection& c, protocol::Opcode kind, std::string_view payload) {
        c.send(payload, kind);
      };
    server_ = std::make_unique<net::Server>(options, handlers);
    server_->listen();
    thread_ = std::thread([this] { server_->run(); });
  }
  ~TestServer() {
    server_->stop();
    thread_.join();
  }
  std::uint16_t port() const { return server_->port(); }
  net::Server& server() { return *server_; }

 private:
  std::unique_ptr<net::Server> server_;
  std::thread thread_;
};

// A blocking TCP socket connected to 127.0.0.1:`port` with TCP_NODELAY;
// `connected` says whether connect() succeeded. `receive_buffer` > 0 shrinks
// the kernel receive buffer before connecting (the TCP window stays small).
inline int connect_loopback(std::uint16_t port, bool& connected, int receive_buffer = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (receive_buffer > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  connected = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// A blocking raw TCP client for sending arbitrary bytes.
class RawClient {
 public:
  explicit RawClient(std::uint16_t port) { fd_ = connect_loopback(port, connected_); }
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool connected() const { return connected_; }
  bool send(std::string_view bytes) {
    std::size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }
  // Reads until the peer closes or `timeout` passes; returns what arrived.
  std::string read_all(std::chrono::milliseconds timeout = 3000ms) {
    std::string data;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char buf[65536];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        closed_ = true;
        break;
      }
      data.append(buf, static_cast<std::size_t>(n));
    }
    return data;
  }
  // Reads exactly until the HTTP head ends.
  std::string read_head(std::chrono::milliseconds timeout = 3000ms) {
    std::string data;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (data.find("\r\n\r\n") == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char c;
      if (::recv(fd_, &c, 1, 0) != 1) {
        closed_ = true;
        break;
      }
      data.push_back(c);
    }
    return data;
  }
  bool peer_closed() const { return closed_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
};

}  // namespace test_support
