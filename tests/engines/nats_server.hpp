// A throwaway nats-server for tests: 127.0.0.1 on a free port, stopped when
// the object goes (also when a test fails; the child also dies with the test
// process). It can be killed and started again on the same port.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "test_server_process.hpp"

namespace duplex::test {

class NatsServer {
 public:
  NatsServer() : port_(free_loopback_port()) { start(); }
  ~NatsServer() { kill(); }
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  int port() const { return port_; }
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  bool running() const { return process_.running(); }

  void start() {
    if (process_.running()) return;
    process_.spawn({"nats-server", "-a", "127.0.0.1", "-p", std::to_string(port_)}, true);
    process_.wait_ready([this] { return says_info(); }, "nats-server", port_, "did not answer within 10s", false);
  }

  // SIGKILL and wait: connections drop at once, in-flight messages are lost.
  void kill() { process_.signal_and_wait(SIGKILL); }
  void stop() { process_.signal_and_wait(SIGTERM); }

 private:
  // Ready when a TCP client receives the server's INFO line.
  bool says_info() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port_));
    bool ok = false;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      pollfd p{fd, POLLIN, 0};
      char buffer[4] = {};
      if (::poll(&p, 1, 500) == 1 && ::recv(fd, buffer, sizeof buffer, 0) == 4) ok = std::string(buffer, 4) == "INFO";
    }
    ::close(fd);
    return ok;
  }

  int port_;
  ChildProcess process_;
};

}  // namespace duplex::test
