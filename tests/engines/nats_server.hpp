// A throwaway nats-server for tests: 127.0.0.1 on a free port, stopped when
// the object goes (also when a test fails; the child also dies with the test
// process). It can be killed and started again on the same port.
#pragma once
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "redis_server.hpp"  // free_loopback_port

namespace duplex::test {

class NatsServer {
 public:
  NatsServer() : port_(free_loopback_port()) { start(); }
  ~NatsServer() { kill(); }
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  int port() const { return port_; }
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  bool running() const { return pid_ > 0; }

  void start() {
    if (pid_ > 0) return;
    std::vector<std::string> args{"nats-server", "-a", "127.0.0.1", "-p", std::to_string(port_)};
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test process
      if (::getppid() != parent) ::_exit(1);
      const int quiet = ::open("/dev/null", O_WRONLY);
      if (quiet >= 0) {
        ::dup2(quiet, STDOUT_FILENO);
        ::dup2(quiet, STDERR_FILENO);
      }
      std::vector<char*> argv;
      for (auto& arg : args) argv.push_back(arg.data());
      argv.push_back(nullptr);
      ::execvp("nats-server", argv.data());
      ::_exit(127);
    }
    wait_ready();
  }

  // SIGKILL and wait: connections drop at once, in-flight messages are lost.
  void kill() { signal_and_wait(SIGKILL); }
  void stop() { signal_and_wait(SIGTERM); }

 private:
  void signal_and_wait(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

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

  void wait_ready() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (says_info()) return;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("nats-server exited at start (port " + std::to_string(port_) + ")");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    throw std::runtime_error("nats-server did not answer within 10s");
  }

  int port_;
  pid_t pid_ = -1;
};

}  // namespace duplex::test
