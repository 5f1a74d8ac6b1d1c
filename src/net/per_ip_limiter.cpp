#include "per_ip_limiter.hpp"

#include <netinet/in.h>

namespace duplex::net {

std::string PerIpLimiter::key_of(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(addr);
    return std::string(reinterpret_cast<const char*>(&in.sin_addr), sizeof in.sin_addr);
  }
  if (addr.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(addr);
    return std::string(reinterpret_cast<const char*>(&in6.sin6_addr), sizeof in6.sin6_addr);
  }
  return {};
}

bool PerIpLimiter::try_add(int fd, const sockaddr_storage& peer) {
  std::string key = key_of(peer);
  std::lock_guard lock(mutex_);
  std::size_t& n = open_[key];
  if (n >= limit_) {
    if (n == 0) open_.erase(key);
    return false;
  }
  ++n;
  key_of_fd_[fd] = std::move(key);
  return true;
}

void PerIpLimiter::remove(int fd) {
  std::lock_guard lock(mutex_);
  auto k = key_of_fd_.find(fd);
  if (k == key_of_fd_.end()) return;
  auto it = open_.find(k->second);
  if (it != open_.end() && --it->second == 0) open_.erase(it);
  key_of_fd_.erase(k);
}

std::size_t PerIpLimiter::count(const std::string& key) const {
  std::lock_guard lock(mutex_);
  auto it = open_.find(key);
  return it == open_.end() ? 0 : it->second;
}

}  // namespace duplex::net
