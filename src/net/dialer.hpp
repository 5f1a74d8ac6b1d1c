// The client's way to a connected socket: the host's addresses (an IP
// literal at once, a name through getaddrinfo on a thread of its own), then
// a non-blocking connect to each in turn until one succeeds. The connection
// registers the socket with its loop and reports back what the loop saw.
#pragma once
#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace duplex::net {

class Dialer {
 public:
  struct Address {
    sockaddr_storage storage{};
    socklen_t length = 0;
  };
  // Runs on the loop: the addresses, or why there are none.
  using Resolved = std::function<void(std::vector<Address> addresses, std::string error)>;

  // An IP address literal (v4 or v6) as a socket address with `port`.
  static std::optional<Address> ip_literal(const std::string& host, std::uint16_t port);
  // getaddrinfo blocks: it runs on a thread of its own, and `done` runs as a
  // task of the loop with id `loop_id` (dropped if that loop is gone).
  static void resolve(std::uint32_t loop_id, std::string host, std::uint16_t port, Resolved done);

  void set_addresses(std::vector<Address> addresses);
  // A socket with a non-blocking connect under way to the next address not
  // tried yet, or -1 when none is left (failure() says why).
  int connect_next();
  // How connect_next()'s socket's connect ended, once the loop saw it
  // writable or failed: 0 connected, else the errno.
  static int connect_error(int fd);
  // The socket failed (`error`: an errno) and is closed; connect_next()
  // goes on with the next address. The caller unregisters it first.
  void abandon(int fd, int error);
  // "cannot connect to host:port: <the last address's error>".
  std::string failure(const std::string& host, std::uint16_t port) const;

 private:
  std::vector<Address> addresses_;
  std::size_t next_ = 0;
  int last_error_ = 0;  // errno of the last address that failed
};

}  // namespace duplex::net
