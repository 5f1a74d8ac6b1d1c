// Internal: open connections per client IP address, across a server's loops
// (only at accept and close, never on the message path).
#pragma once
#include <sys/socket.h>

#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

namespace duplex::net {

class PerIpLimiter {
 public:
  explicit PerIpLimiter(std::size_t limit) : limit_(limit) {}

  // The address bytes of a peer (IPv4 or IPv6, port excluded); empty if unknown.
  static std::string key_of(const sockaddr_storage& addr);

  // Counts socket `fd` against its peer's address; false (and nothing
  // counted) when that address is at the limit.
  bool try_add(int fd, const sockaddr_storage& peer);
  // The socket is closing (its address is remembered: getpeername fails after a reset).
  void remove(int fd);
  std::size_t count(const std::string& key) const;

 private:
  std::size_t limit_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::size_t> open_;
  std::unordered_map<int, std::string> key_of_fd_;
};

}  // namespace duplex::net
