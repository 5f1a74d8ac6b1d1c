// A TCP relay on loopback in front of a test's server (Redis), that can cut
// the link the way a network partition does: partition() stops relaying in
// both directions and holds every connection open (nothing is refused or
// reset; the bytes wait in the kernel's buffers), heal() relays again. One
// node connects through it, the others straight: a partition of one node.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace duplex::test {

class TcpProxy {
 public:
  explicit TcpProxy(int target_port) : target_port_(target_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = loopback(0);
    socklen_t length = sizeof addr;
    if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener_, 64) != 0 || ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &length) != 0)
      throw std::runtime_error("tcp proxy: cannot listen on loopback");
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~TcpProxy() {
    stop_ = true;
    thread_.join();
    for (auto& [client, server] : pairs_) {
      ::close(client);
      ::close(server);
    }
    ::close(listener_);
  }
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void partition() { partitioned_ = true; }
  void heal() { partitioned_ = false; }

 private:
  static sockaddr_in loopback(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    return addr;
  }

  // One thread relays everything; polls wake it every 20 ms to see the flags.
  void run() {
    std::vector<char> buffer(64 * 1024);
    while (!stop_) {
      std::vector<pollfd> fds{{listener_, POLLIN, 0}};
      const bool relaying = !partitioned_;
      if (relaying) {
        for (auto& [client, server] : pairs_) {
          fds.push_back({client, POLLIN, 0});
          fds.push_back({server, POLLIN, 0});
        }
      }
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (relaying) relay(fds, buffer);
      // After relaying: the pairs polled are the first ones, an accepted one joins at the end.
      if (fds[0].revents & POLLIN) accept_one();
    }
  }

  // The pairs polled in `fds` (after the listener), in order.
  void relay(const std::vector<pollfd>& fds, std::vector<char>& buffer) {
    const std::size_t polled = (fds.size() - 1) / 2;
    std::vector<std::size_t> closed;
    for (std::size_t i = 0; i < polled; ++i) {
      const auto [client, server] = pairs_[i];
      bool open = true;
      if (fds[1 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR)) open = pump(client, server, buffer);
      if (open && fds[2 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR)) open = pump(server, client, buffer);
      if (!open) closed.push_back(i);
    }
    for (auto it = closed.rbegin(); it != closed.rend(); ++it) {
      ::close(pairs_[*it].first);
      ::close(pairs_[*it].second);
      pairs_.erase(pairs_.begin() + static_cast<std::ptrdiff_t>(*it));
    }
  }

  void accept_one() {
    const int client = ::accept(listener_, nullptr, nullptr);
    if (client < 0) return;
    const int server = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = loopback(target_port_);
    if (server < 0 || ::connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(client);
      if (server >= 0) ::close(server);
      return;
    }
    pairs_.emplace_back(client, server);
  }

  // Moves what `from` has to `to`; false when either side is gone.
  static bool pump(int from, int to, std::vector<char>& buffer) {
    const ssize_t n = ::recv(from, buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (n == 0) return false;
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    for (ssize_t sent = 0; sent < n;) {
      const ssize_t m = ::send(to, buffer.data() + sent, static_cast<std::size_t>(n - sent), MSG_NOSIGNAL);
      if (m <= 0) return false;
      sent += m;
    }
    return true;
  }

  int target_port_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> partitioned_{false};
  std::vector<std::pair<int, int>> pairs_;  // client side, server side; the relay thread's only
  std::thread thread_;
};

}  // namespace duplex::test
