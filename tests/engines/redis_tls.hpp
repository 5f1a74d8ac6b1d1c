// TLS for the Redis tests: throwaway certificates made with the openssl
// command in a temp dir (a CA, a server certificate for 127.0.0.1 and
// localhost, a client certificate, and a second CA that signed neither), and
// a redis-server that listens with TLS on a second port (its plain port
// stays for the fixtures' PING and query()).
#pragma once
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "redis_server.hpp"
#include "test_server_process.hpp"

namespace duplex::test {

class TestCertificates {
 public:
  TestCertificates() : dir_("duplex-certs-") {
    const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    run("openssl req -x509" + ec + " -days 2 -subj /CN=duplex-test-ca -keyout " + file("ca.key") + " -out " + ca());
    run("openssl req -x509" + ec + " -days 2 -subj /CN=other-ca -keyout " + file("other-ca.key") + " -out " + other_ca());
    issue("server", "/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth");
    issue("client", "/CN=duplex-client", "extendedKeyUsage=clientAuth");
  }

  std::string ca() const { return file("ca.pem"); }
  std::string other_ca() const { return file("other-ca.pem"); }
  std::string server_cert() const { return file("server.pem"); }
  std::string server_key() const { return file("server.key"); }
  std::string client_cert() const { return file("client.pem"); }
  std::string client_key() const { return file("client.key"); }
  std::string file(const std::string& name) const { return dir_.path() + "/" + name; }

 private:
  static void run(const std::string& command) {
    if (std::system((command + " >/dev/null 2>&1").c_str()) != 0)
      throw std::runtime_error("certificate generation failed: " + command);
  }
  void issue(const std::string& name, const std::string& subject, const std::string& extensions) {
    std::ofstream(file(name + ".ext")) << extensions << "\n";
    run("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj " + subject + " -keyout " +
        file(name + ".key") + " -out " + file(name + ".csr"));
    run("openssl x509 -req -days 2 -in " + file(name + ".csr") + " -CA " + ca() + " -CAkey " + file("ca.key") +
        " -CAcreateserial -extfile " + file(name + ".ext") + " -out " + file(name + ".pem"));
  }

  TempDir dir_;
};

// redis-server arguments for TLS on `tls_port` with the certificates'
// server certificate; `auth_clients`: require a client certificate.
inline std::vector<std::string> redis_tls_arguments(const TestCertificates& certs, int tls_port, bool auth_clients,
                                                    std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"--tls-port",         std::to_string(tls_port), "--tls-cert-file",
                                certs.server_cert(),  "--tls-key-file",         certs.server_key(),
                                "--tls-ca-cert-file", certs.ca(),               "--tls-auth-clients",
                                auth_clients ? "yes" : "no"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// A redis-server with TLS on tls_port() (and plain TCP on port(), for checks).
class RedisTlsServer {
 public:
  explicit RedisTlsServer(const TestCertificates& certs, bool auth_clients = false, std::vector<std::string> extra = {})
      : tls_port_(free_loopback_port()), server_(redis_tls_arguments(certs, tls_port_, auth_clients, std::move(extra))) {}

  int tls_port() const { return tls_port_; }
  std::string tls_address() const { return "127.0.0.1:" + std::to_string(tls_port_); }
  RedisServer& plain() { return server_; }

 private:
  int tls_port_;
  RedisServer server_;
};

}  // namespace duplex::test
