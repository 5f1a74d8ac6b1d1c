// OpenSSL 3 contexts for wss:// (server and client).
#pragma once
#include <memory>
#include <string>

#include "duplex/net/options.hpp"

typedef struct ssl_ctx_st SSL_CTX;

namespace duplex::net {

class TlsContext {
 public:
  // Throws std::runtime_error with OpenSSL's message on a bad file or setting.
  static std::shared_ptr<TlsContext> server(const TlsOptions& options);
  static std::shared_ptr<TlsContext> client(const TlsOptions& options);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  SSL_CTX* native() const { return ctx_; }
  bool verify_peer() const { return verify_peer_; }
  // Re-reads certificate and key (SIGHUP); throws and keeps the old ones on error.
  void reload(const TlsOptions& options);

 private:
  explicit TlsContext(SSL_CTX* ctx) : ctx_(ctx) {}
  SSL_CTX* ctx_;
  bool verify_peer_ = false;
};

// The last OpenSSL error as text (clears the queue).
std::string last_tls_error();

}  // namespace duplex::net
