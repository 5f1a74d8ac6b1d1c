#include "loop_tls_bio.hpp"

#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace duplex::net::detail {

namespace {
int create(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}
int destroy(BIO*) { return 1; }  // the data is the loop's, never the BIO's

// One method for the process: every loop's BIO is of it.
const BIO_METHOD* loop_method(int (*read)(BIO*, char*, int), int (*write)(BIO*, const char*, int),
                              long (*ctrl)(BIO*, int, long, void*)) {
  static BIO_METHOD* const method = [&] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "duplex loop");
    if (!m) return m;
    BIO_meth_set_read(m, read);
    BIO_meth_set_write(m, write);
    BIO_meth_set_ctrl(m, ctrl);
    BIO_meth_set_create(m, create);
    BIO_meth_set_destroy(m, destroy);
    return m;
  }();
  return method;
}
}  // namespace

LoopTlsBio::LoopTlsBio() {
  const BIO_METHOD* method = loop_method(&LoopTlsBio::read, &LoopTlsBio::write, &LoopTlsBio::ctrl);
  bio_ = method ? BIO_new(method) : nullptr;
  if (!bio_) throw std::runtime_error("TLS: cannot create the loop's BIO");
  BIO_set_data(bio_, this);
}

LoopTlsBio::~LoopTlsBio() {
  BIO_set_data(bio_, nullptr);  // connections that outlive the loop fail their calls from now on
  BIO_free(bio_);
}

void LoopTlsBio::attach(SSL* ssl) {
  // SSL_set_bio with the same BIO twice takes one reference and adds one.
  BIO_up_ref(bio_);
  SSL_set_bio(ssl, bio_, bio_);
}

int LoopTlsBio::read(BIO* bio, char* out, int size) {
  BIO_clear_retry_flags(bio);
  auto* self = static_cast<LoopTlsBio*>(BIO_get_data(bio));
  if (!self || size <= 0) return -1;
  if (self->fd_ >= 0) {
    for (;;) {
      const ssize_t n = ::recv(self->fd_, out, static_cast<std::size_t>(size), 0);
      if (n > 0) return static_cast<int>(n);
      if (n == 0) {
        self->eof_ = true;
        return 0;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_read(bio);
      return -1;
    }
  }
  if (self->in_size_ == 0) {
    BIO_set_retry_read(bio);  // the rest of the record comes with a later receive
    return -1;
  }
  const std::size_t n = std::min(self->in_size_, static_cast<std::size_t>(size));
  std::memcpy(out, self->in_, n);
  self->in_ += n;
  self->in_size_ -= n;
  return static_cast<int>(n);
}

int LoopTlsBio::write(BIO* bio, const char* data, int size) {
  BIO_clear_retry_flags(bio);
  auto* self = static_cast<LoopTlsBio*>(BIO_get_data(bio));
  if (!self || size < 0) return -1;
  if (self->fd_ >= 0) {
    for (;;) {
      const ssize_t n = ::send(self->fd_, data, static_cast<std::size_t>(size), MSG_NOSIGNAL);
      if (n >= 0) return static_cast<int>(n);
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(bio);
      return -1;
    }
  }
  if (!self->out_) return -1;
  self->out_->append(data, static_cast<std::size_t>(size));
  return size;
}

long LoopTlsBio::ctrl(BIO* bio, int cmd, long, void*) {
  auto* self = static_cast<LoopTlsBio*>(BIO_get_data(bio));
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;  // nothing is held here
    case BIO_CTRL_EOF:
      return self && self->eof_ ? 1 : 0;
    default:
      return 0;
  }
}

}  // namespace duplex::net::detail
