#include "duplex/net/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstring>
#include <stdexcept>

namespace duplex::net {

std::string last_tls_error() {
  std::string s;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!s.empty()) s += "; ";
    s += buf;
  }
  return s.empty() ? "unknown TLS error" : s;
}

namespace {
int min_version(const std::string& v) {
  if (v.empty() || v == "1.2") return TLS1_2_VERSION;
  if (v == "1.3") return TLS1_3_VERSION;
  throw std::runtime_error("tls min_version must be \"1.2\" or \"1.3\", not \"" + v + "\"");
}

// ALPN: we speak HTTP/1.1 only (the WebSocket upgrade needs it).
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned inlen,
                void*) {
  static const unsigned char http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, http11, sizeof http11, in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

void configure_common(SSL_CTX* ctx, const TlsOptions& options) {
  SSL_CTX_set_min_proto_version(ctx, min_version(options.min_version));
  // Partial writes from a buffer that may move: our send buffer can grow between retries.
  // Release buffers: an idle TLS connection keeps no 16 KiB record buffers.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (!options.ciphers.empty() && SSL_CTX_set_cipher_list(ctx, options.ciphers.c_str()) != 1)
    throw std::runtime_error("invalid TLS cipher list: " + last_tls_error());
}

void load_cert_and_key(SSL_CTX* ctx, const TlsOptions& options) {
  if (SSL_CTX_use_certificate_chain_file(ctx, options.cert_file.c_str()) != 1)
    throw std::runtime_error("cannot load TLS certificate " + options.cert_file + ": " + last_tls_error());
  if (SSL_CTX_use_PrivateKey_file(ctx, options.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    throw std::runtime_error("cannot load TLS key " + options.key_file + ": " + last_tls_error());
  if (SSL_CTX_check_private_key(ctx) != 1)
    throw std::runtime_error("TLS key does not match the certificate: " + last_tls_error());
}

// A complete server context, or throws (nothing leaks).
SSL_CTX* new_server_ctx(const TlsOptions& options) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) throw std::runtime_error("SSL_CTX_new failed: " + last_tls_error());
  try {
    configure_common(ctx, options);
    load_cert_and_key(ctx, options);
  } catch (...) {
    SSL_CTX_free(ctx);
    throw;
  }
  SSL_CTX_set_alpn_select_cb(ctx, select_alpn, nullptr);
  return ctx;
}
}  // namespace

std::shared_ptr<TlsContext> TlsContext::server(const TlsOptions& options) {
  return std::shared_ptr<TlsContext>(new TlsContext(new_server_ctx(options)));
}

std::shared_ptr<TlsContext> TlsContext::client(const TlsOptions& options) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) throw std::runtime_error("SSL_CTX_new failed: " + last_tls_error());
  std::shared_ptr<TlsContext> result(new TlsContext(ctx));
  configure_common(ctx, options);
  result->verify_peer_ = options.verify_peer;
  if (options.verify_peer) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (!options.ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(ctx, options.ca_file.c_str(), nullptr) != 1)
        throw std::runtime_error("cannot load CA file " + options.ca_file + ": " + last_tls_error());
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      throw std::runtime_error("cannot load the system CA store: " + last_tls_error());
    }
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!options.cert_file.empty()) load_cert_and_key(ctx, options);
  static const unsigned char http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_protos(ctx, http11, sizeof http11);
  return result;
}

void TlsContext::reload(const TlsOptions& options) {
  SSL_CTX* fresh = new_server_ctx(options);  // throws: the current context stays
  std::lock_guard lock(reload_mutex_);
  retired_.push_back(ctx_.exchange(fresh, std::memory_order_acq_rel));
}

TlsContext::~TlsContext() {
  for (SSL_CTX* old : retired_) SSL_CTX_free(old);
  SSL_CTX_free(ctx_.load());
}

}  // namespace duplex::net
