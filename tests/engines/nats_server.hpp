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
#include <filesystem>
#include <string>
#include <vector>

#include "test_server_process.hpp"

namespace duplex::test {

// JetStream and clustering, for the JetStream storage's tests.
struct NatsServerSettings {
  bool jetstream = false;   // -js, its store in a temp dir kept across restarts
  std::string name;         // server_name (a JetStream cluster needs one per server)
  int cluster_port = 0;     // > 0: --cluster on this port, --cluster_name duplex-test
  std::vector<int> routes;  // the other servers' cluster ports
};

class NatsServer {
 public:
  NatsServer() : NatsServer(NatsServerSettings{}) {}
  explicit NatsServer(NatsServerSettings settings, bool start_now = true)
      : settings_(std::move(settings)), port_(free_loopback_port()) {
    if (start_now) start();
  }
  ~NatsServer() { kill(); }
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  int port() const { return port_; }
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  bool running() const { return process_.running(); }

  void start() {
    if (process_.running()) return;
    std::vector<std::string> args{"nats-server", "-a", "127.0.0.1", "-p", std::to_string(port_)};
    if (settings_.jetstream) {
      args.insert(args.end(), {"-js", "-sd", store_.path()});
    }
    if (!settings_.name.empty()) args.insert(args.end(), {"-n", settings_.name});
    if (settings_.cluster_port > 0) {
      args.insert(args.end(), {"--cluster_name", "duplex-test", "--cluster",
                               "nats://127.0.0.1:" + std::to_string(settings_.cluster_port)});
      std::string routes;
      for (int route : settings_.routes)
        routes += (routes.empty() ? "" : ",") + std::string("nats://127.0.0.1:") + std::to_string(route);
      if (!routes.empty()) args.insert(args.end(), {"--routes", routes});
    }
    process_.spawn(std::move(args), log_.empty() ? std::string("/dev/null") : log_);
    process_.wait_ready([this] { return says_info(); }, "nats-server", port_, "did not answer within 10s", false);
  }

  // The JetStream store is gone (a server that lost its disk); call stopped.
  void wipe_store() {
    for (const auto& entry : std::filesystem::directory_iterator(store_.path())) std::filesystem::remove_all(entry);
  }
  // The server's output goes to this file from the next start (for failure messages).
  void log_to(std::string path) { log_ = std::move(path); }

  // SIGKILL and wait: connections drop at once, in-flight messages are lost.
  void kill() {
    process_.signal(SIGCONT);
    process_.signal_and_wait(SIGKILL);
  }
  // SIGSTOP: the server keeps its sockets and answers nothing (as across a partition).
  void pause() { process_.signal(SIGSTOP); }
  void resume() { process_.signal(SIGCONT); }
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

  NatsServerSettings settings_;
  int port_;
  TempDir store_{"duplex-nats-js-"};
  std::string log_;
  ChildProcess process_;
};

}  // namespace duplex::test
