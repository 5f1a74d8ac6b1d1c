// OpenSSL 3 contexts for wss:// (server and client).
#pragma once
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

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

  // The context new connections use (SSL_new takes its own reference).
  SSL_CTX* native() const { return ctx_.load(std::memory_order_acquire); }
  bool verify_peer() const { return verify_peer_; }
  // Server contexts (SIGHUP): builds a new OpenSSL context from `options`
  // (certificate chain, key, min_version, ciphers) and swaps it in atomically:
  // new handshakes use it, established connections keep theirs. Throws and
  // keeps the current context on any error (bad file, key mismatch, bad
  // cipher list). Thread-safe with native().
  void reload(const TlsOptions& options);

 private:
  explicit TlsContext(SSL_CTX* ctx) : ctx_(ctx) {}
  std::atomic<SSL_CTX*> ctx_;
  // Replaced contexts stay allocated until this object goes: a thread may
  // have read native() just before a swap (one small context per reload).
  std::mutex reload_mutex_;
  std::vector<SSL_CTX*> retired_;
  bool verify_peer_ = false;
};

// The last OpenSSL error as text (clears the queue).
std::string last_tls_error();

// Why a server cannot use its certificate and key files, in words an
// operator can act on ("not a PEM certificate", "does not match the
// certificate"), naming which file; nullopt if they load and match. Reads
// the files; never prompts for a pass phrase (encrypted keys are refused).
struct TlsFileProblem {
  enum class File { cert, key } file;
  std::string what;
};
std::optional<TlsFileProblem> check_server_tls_files(const TlsOptions& options);

// Why a CA bundle cannot verify peers ("no PEM certificate in it"), in the
// same words; nullopt if OpenSSL loads it.
std::optional<std::string> check_ca_file(const std::string& path);

}  // namespace duplex::net
