#include "dialer.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>

#include "duplex/net/event_loop.hpp"

namespace duplex::net {

std::optional<Dialer::Address> Dialer::ip_literal(const std::string& host, std::uint16_t port) {
  Address out;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out.storage);
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    out.length = sizeof(sockaddr_in);
    return out;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
  if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    out.length = sizeof(sockaddr_in6);
    return out;
  }
  return std::nullopt;
}

void Dialer::resolve(std::uint32_t loop_id, std::string host, std::uint16_t port, Resolved done) {
  std::thread([loop_id, host = std::move(host), port = std::to_string(port), done = std::move(done)]() mutable {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
    std::vector<Address> addresses;
    for (addrinfo* a = found; a; a = a->ai_next) {
      if (a->ai_addrlen > sizeof(sockaddr_storage)) continue;
      Address address;
      std::memcpy(&address.storage, a->ai_addr, a->ai_addrlen);
      address.length = static_cast<socklen_t>(a->ai_addrlen);
      addresses.push_back(address);
    }
    if (found) ::freeaddrinfo(found);
    std::string error = rc != 0 ? ::gai_strerror(rc) : addresses.empty() ? "no address" : "";
    std::lock_guard lock(EventLoop::live_mutex());
    if (EventLoop* loop = EventLoop::live(loop_id))
      loop->post([done = std::move(done), addresses = std::move(addresses), error = std::move(error)]() mutable {
        done(std::move(addresses), std::move(error));
      });
  }).detach();
}

void Dialer::set_addresses(std::vector<Address> addresses) {
  addresses_ = std::move(addresses);
  next_ = 0;
}

int Dialer::connect_next() {
  while (next_ < addresses_.size()) {
    const Address& a = addresses_[next_++];
    const int fd = ::socket(a.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last_error_ = errno;
      continue;
    }
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&a.storage), a.length) != 0 && errno != EINPROGRESS) {
      abandon(fd, errno);
      continue;
    }
    return fd;
  }
  return -1;
}

int Dialer::connect_error(int fd) {
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
  return error;
}

void Dialer::abandon(int fd, int error) {
  last_error_ = error;
  ::close(fd);
}

std::string Dialer::failure(const std::string& host, std::uint16_t port) const {
  return "cannot connect to " + host + ":" + std::to_string(port) + ": " +
         std::strerror(last_error_ ? last_error_ : ECONNREFUSED);
}

}  // namespace duplex::net
