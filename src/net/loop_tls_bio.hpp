// The one OpenSSL BIO every TLS connection of a loop reads and writes
// through (what uSockets does with its per-loop shared BIOs): a connection
// creates no BIO of its own (SSL_set_fd would: a BIO, its ex-data and lock
// per idle connection), and points this one at itself before each SSL call.
//
// Two modes, chosen before each call:
// - socket: reads and writes the connection's descriptor (readiness: the
//   epoll backend, and handshakes on io_uring), as OpenSSL's socket BIO does;
// - memory: reads the ciphertext a ring receive brought (a span of a
//   provided buffer, consumed as OpenSSL asks for it) and appends what
//   OpenSSL writes to a string the caller hands to the ring's send path.
//
// Loop thread only. The BIO object itself is reference-counted by OpenSSL:
// every SSL attached holds a reference, so it may outlive this object (a
// connection freed after its loop); it then fails every call, touching nothing.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

typedef struct bio_st BIO;
typedef struct ssl_st SSL;

namespace duplex::net::detail {

class LoopTlsBio {
 public:
  LoopTlsBio();  // throws std::runtime_error if OpenSSL cannot make it
  ~LoopTlsBio();
  LoopTlsBio(const LoopTlsBio&) = delete;
  LoopTlsBio& operator=(const LoopTlsBio&) = delete;

  // Makes this BIO `ssl`'s reading and writing BIO (it takes a reference).
  void attach(SSL* ssl);

  // Before an SSL call of a connection on readiness.
  void use_socket(int fd) {
    fd_ = fd;
    in_ = nullptr;
    in_size_ = 0;
    out_ = nullptr;
    eof_ = false;
  }
  // Before an SSL call of a connection on the ring: `in` is the ciphertext
  // not consumed yet (OpenSSL keeps a partial record itself), `out` where
  // the ciphertext OpenSSL writes goes (never refused: the caller applies
  // the output budget).
  void use_memory(const std::uint8_t* in, std::size_t size, std::string* out) {
    fd_ = -1;
    in_ = in;
    in_size_ = size;
    out_ = out;
    eof_ = false;
  }
  // What the last call left of the input given to use_memory.
  const std::uint8_t* input() const { return in_; }
  std::size_t input_left() const { return in_size_; }

 private:
  static int read(BIO* bio, char* out, int size);
  static int write(BIO* bio, const char* data, int size);
  static long ctrl(BIO* bio, int cmd, long num, void* ptr);

  BIO* bio_ = nullptr;
  int fd_ = -1;
  const std::uint8_t* in_ = nullptr;
  std::size_t in_size_ = 0;
  std::string* out_ = nullptr;
  bool eof_ = false;  // the last socket read saw the peer's FIN
};

}  // namespace duplex::net::detail
