#include "duplex/net/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstring>
#include <fstream>
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
  // Read-ahead: one recv brings what the socket holds, up to OpenSSL's
  // record buffer, instead of a record's 5-byte header and then its body.
  // Records read ahead sit inside OpenSSL where epoll cannot see them, so
  // every reader drains SSL_read to WANT_READ or comes back by itself (the
  // read budget's repost, on_readable after the handshake and after a
  // paused HTTP phase), and the move to the ring waits for SSL_has_pending.
  SSL_CTX_set_read_ahead(ctx, 1);
  if (!options.ciphers.empty() && SSL_CTX_set_cipher_list(ctx, options.ciphers.c_str()) != 1)
    throw std::runtime_error("invalid TLS cipher list: " + last_tls_error());
}

// A server never waits on a terminal for a pass phrase: an encrypted key fails to load.
int no_pass_phrase(char*, int, int, void*) { return 0; }

// The first MiB of a file (a PEM file is far smaller); empty if unreadable.
std::string head_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string text(1u << 20, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  return text;
}

// Why OpenSSL refused `path`, in a few words: what the file lacks when that
// is visible in its text, else the first error's reason (the cause; later
// ones are the layers above). The error queue is cleared.
std::string refusal(const std::string& path, bool key) {
  unsigned long first = 0;
  while (const unsigned long e = ERR_get_error())
    if (!first) first = e;
  const std::string text = head_of(path);
  if (!key && text.find("-----BEGIN CERTIFICATE-----") == std::string::npos)
    return "no PEM certificate in it (\"-----BEGIN CERTIFICATE-----\")";
  if (key) {
    if (text.find("ENCRYPTED PRIVATE KEY-----") != std::string::npos || text.find("Proc-Type: 4,ENCRYPTED") != std::string::npos)
      return "it is encrypted (give it unencrypted: a server asks no pass phrase)";
    if (text.find("PRIVATE KEY-----") == std::string::npos) return "no PEM private key in it";
    if (ERR_GET_LIB(first) == ERR_LIB_X509 && ERR_GET_REASON(first) == X509_R_KEY_VALUES_MISMATCH)
      return "it does not match the certificate";
  }
  const char* reason = first ? ERR_reason_error_string(first) : nullptr;
  return reason ? reason : "unreadable";
}

// Loads the files into ctx; the problem, if any, in an operator's words.
std::optional<TlsFileProblem> use_cert_and_key(SSL_CTX* ctx, const TlsOptions& options) {
  using File = TlsFileProblem::File;
  ERR_clear_error();
  SSL_CTX_set_default_passwd_cb(ctx, no_pass_phrase);
  if (SSL_CTX_use_certificate_chain_file(ctx, options.cert_file.c_str()) != 1)
    return TlsFileProblem{File::cert, "not a usable certificate: " + refusal(options.cert_file, false)};
  if (SSL_CTX_use_PrivateKey_file(ctx, options.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    return TlsFileProblem{File::key, "not a usable private key: " + refusal(options.key_file, true)};
  if (SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    return TlsFileProblem{File::key, "not a usable private key: it does not match the certificate"};
  }
  return std::nullopt;
}

void load_cert_and_key(SSL_CTX* ctx, const TlsOptions& options) {
  if (auto problem = use_cert_and_key(ctx, options)) {
    const bool cert = problem->file == TlsFileProblem::File::cert;
    throw std::runtime_error(std::string(cert ? "TLS certificate " : "TLS key ") +
                             (cert ? options.cert_file : options.key_file) + ": " + problem->what);
  }
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

std::optional<TlsFileProblem> check_server_tls_files(const TlsOptions& options) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) throw std::runtime_error("SSL_CTX_new failed: " + last_tls_error());
  auto problem = use_cert_and_key(ctx, options);
  SSL_CTX_free(ctx);
  return problem;
}

std::optional<std::string> check_ca_file(const std::string& path) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) throw std::runtime_error("SSL_CTX_new failed: " + last_tls_error());
  ERR_clear_error();
  std::optional<std::string> problem;
  if (SSL_CTX_load_verify_locations(ctx, path.c_str(), nullptr) != 1)
    problem = "not a usable CA bundle: " + refusal(path, false);
  SSL_CTX_free(ctx);
  return problem;
}

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
