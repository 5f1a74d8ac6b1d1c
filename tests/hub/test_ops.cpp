// Operations: SIGHUP reload of the `duplex serve` binary (TLS certificate,
// API key, an invalid file), TLS min_version and ciphers, /metrics (format
// and values), the node registry (/api/nodes).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "../../src/config/config_fields.hpp"
#include "duplex/config/config_file.hpp"
#include "hub_fixture.hpp"
#include "serve_process.hpp"
#include "../common/eventually.hpp"

using namespace hub_test;
namespace fs = std::filesystem;

namespace {

// A fresh directory for one test, removed at the end.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name)
      : path(fs::temp_directory_path() / ("duplex-ops-" + name + "-" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& file) const { return (path / file).string(); }
};

// A self-signed EC P-256 certificate and key, made by the openssl CLI.
void make_cert(const std::string& cert, const std::string& key, const std::string& cn) {
  const std::string cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=" +
                          cn + " -keyout '" + key + "' -out '" + cert + "' >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

std::string hex(const unsigned char* p, unsigned n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}

std::string fingerprint(X509* x) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  if (!x || X509_digest(x, EVP_sha256(), md, &n) != 1) return {};
  return hex(md, n);
}

std::string file_fingerprint(const std::string& pem) {
  FILE* f = std::fopen(pem.c_str(), "r");
  if (!f) return {};
  X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  std::string out = fingerprint(x);
  X509_free(x);
  return out;
}

// A blocking TLS client on one TCP connection: handshake (with an optional
// maximum version and cipher list), the server certificate's fingerprint, and
// HTTP/1.1 keep-alive requests on the same connection.
class TlsProbe {
 public:
  // Closes without close_notify: the server may still be writing (TLS 1.3
  // session tickets) to a socket the client has closed.
  TlsProbe(std::uint16_t port, int max_version = 0, const char* ciphers = nullptr) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
    if (max_version) SSL_CTX_set_max_proto_version(ctx_, max_version);
    if (ciphers) SSL_CTX_set_cipher_list(ctx_, ciphers);
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return;
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    SSL_set_tlsext_host_name(ssl_, "localhost");
    if (SSL_connect(ssl_) != 1) {
      ERR_clear_error();
      return;
    }
    ok_ = true;
    X509* peer = SSL_get1_peer_certificate(ssl_);
    fingerprint_ = fingerprint(peer);
    X509_free(peer);
  }
  ~TlsProbe() {
    if (ssl_) SSL_free(ssl_);
    if (fd_ >= 0) ::close(fd_);
    SSL_CTX_free(ctx_);
  }
  bool ok() const { return ok_; }
  const std::string& fingerprint_hex() const { return fingerprint_; }
  int version() const { return ssl_ ? SSL_version(ssl_) : 0; }
  // GET `path` (keep-alive); the status code, 0 on failure.
  int get(const std::string& path) {
    if (!ok_) return 0;
    const std::string req = "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
    if (SSL_write(ssl_, req.data(), static_cast<int>(req.size())) <= 0) return 0;
    std::string in;
    char buf[4096];
    while (in.find("\r\n\r\n") == std::string::npos) {
      const int n = SSL_read(ssl_, buf, sizeof buf);
      if (n <= 0) return 0;
      in.append(buf, static_cast<std::size_t>(n));
    }
    // Small bodies: read what Content-Length says so the next request starts clean.
    const auto head_end = in.find("\r\n\r\n") + 4;
    std::size_t length = 0;
    if (auto p = in.find("Content-Length: "); p != std::string::npos && p < head_end) length = std::stoul(in.substr(p + 16));
    while (in.size() < head_end + length) {
      const int n = SSL_read(ssl_, buf, sizeof buf);
      if (n <= 0) return 0;
      in.append(buf, static_cast<std::size_t>(n));
    }
    return in.size() > 12 ? std::stoi(in.substr(9, 3)) : 0;
  }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  bool ok_ = false;
  std::string fingerprint_;
};


void write_file(const std::string& path, const std::string& text) {
  // Written aside and renamed: the server never reads half a file.
  std::ofstream(path + ".tmp") << text;
  fs::rename(path + ".tmp", path);
}

std::string base_config(const std::string& api_key, const std::string& auth_extra = {}) {
  return "[engine]\ntype = \"memory\"\n[auth]\nhmac_secret = \"" + std::string(secret) + "\"\n" + auth_extra + "[api]\nkey = \"" +
         api_key + "\"\n[namespaces.chat]\nhistory_size = 100\nallow_publish = true\n";
}

std::string tls_section(const std::string& cert, const std::string& key, const std::string& extra = {}) {
  return "[server.tls]\ncert_file = \"" + cert + "\"\nkey_file = \"" + key + "\"\n" + extra;
}

int status_of(const std::string& response) { return response.size() > 12 ? std::stoi(response.substr(9, 3)) : 0; }

using test_support::eventually;

}  // namespace

// ---- SIGHUP ------------------------------------------------------------------------

TEST(OpsReload, SighupSwapsTheTlsCertificateForNewConnectionsOnly) {
  TempDir dir("tls");
  make_cert(dir / "a.crt", dir / "a.key", "a.localhost");
  make_cert(dir / "b.crt", dir / "b.key", "b.localhost");
  const std::string fp_a = file_fingerprint(dir / "a.crt"), fp_b = file_fingerprint(dir / "b.crt");
  ASSERT_FALSE(fp_a.empty());
  ASSERT_NE(fp_a, fp_b);
  const std::string config = dir / "duplex.toml";
  write_file(config, base_config("k") + tls_section(dir / "a.crt", dir / "a.key"));
  ServeProcess serve(config, dir / "log");

  TlsProbe old_connection(serve.port());
  ASSERT_TRUE(old_connection.ok());
  EXPECT_EQ(old_connection.fingerprint_hex(), fp_a);
  EXPECT_EQ(old_connection.get("/healthz"), 200);

  write_file(config, base_config("k") + tls_section(dir / "b.crt", dir / "b.key"));
  serve.signal(SIGHUP);
  ASSERT_TRUE(serve.wait_log("configuration reloaded")) << serve.log();
  TlsProbe fresh(serve.port());
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh.fingerprint_hex(), fp_b) << "a new handshake must use the new certificate";
  EXPECT_EQ(fresh.get("/healthz"), 200);
  // The connection made before the reload goes on, with its certificate.
  EXPECT_EQ(old_connection.get("/healthz"), 200);
  EXPECT_EQ(old_connection.fingerprint_hex(), fp_a);

  // In-place rotation (same paths, new contents) is picked up too.
  make_cert(dir / "c.crt", dir / "c.key", "c.localhost");
  fs::copy_file(dir / "c.crt", dir / "b.crt", fs::copy_options::overwrite_existing);
  fs::copy_file(dir / "c.key", dir / "b.key", fs::copy_options::overwrite_existing);
  serve.signal(SIGHUP);
  ASSERT_TRUE(serve.wait_log("configuration reloaded", 2)) << serve.log();
  EXPECT_EQ(TlsProbe(serve.port()).fingerprint_hex(), file_fingerprint(dir / "c.crt"));

  ASSERT_TRUE(serve.running()) << serve.log();
  // A broken certificate: logged, the current one stays.
  std::ofstream(dir / "broken.crt") << "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n";
  write_file(config, base_config("k") + tls_section(dir / "broken.crt", dir / "b.key"));
  serve.signal(SIGHUP);
  ASSERT_TRUE(serve.wait_log("reload failed")) << serve.log();
  EXPECT_NE(serve.log().find("broken.crt"), std::string::npos) << "the error names the file: " << serve.log();
  TlsProbe after_bad(serve.port());
  ASSERT_TRUE(after_bad.ok()) << serve.log();
  EXPECT_EQ(after_bad.fingerprint_hex(), file_fingerprint(dir / "c.crt"));
  EXPECT_EQ(old_connection.get("/healthz"), 200);
  EXPECT_TRUE(serve.running());
}

TEST(OpsReload, SighupRotatesTheApiKey) {
  TempDir dir("apikey");
  const std::string config = dir / "duplex.toml";
  write_file(config, base_config("old-key"));
  ServeProcess serve(config, dir / "log");
  EXPECT_EQ(status_of(http_post(serve.port(), "/api/info", "{}", "old-key")), 200);
  EXPECT_EQ(status_of(http_post(serve.port(), "/api/info", "{}", "new-key")), 401);

  write_file(config, base_config("new-key"));
  serve.signal(SIGHUP);
  ASSERT_TRUE(serve.wait_log("configuration reloaded")) << serve.log();
  EXPECT_NE(serve.log().find("api.key"), std::string::npos) << serve.log();
  EXPECT_EQ(serve.log().find("new-key"), std::string::npos) << "the key itself is never logged";
  EXPECT_EQ(status_of(http_post(serve.port(), "/api/info", "{}", "new-key")), 200);
  EXPECT_EQ(status_of(http_post(serve.port(), "/api/info", "{}", "old-key")), 401);
}

TEST(OpsReload, SighupWithAnInvalidFileKeepsTheOldConfig) {
  TempDir dir("invalid");
  const std::string config = dir / "duplex.toml";
  write_file(config, base_config("k1"));
  ServeProcess serve(config, dir / "log");
  Client c(serve.port(), "?token=" + token_for("alice"));
  ASSERT_TRUE(c.wait_open());
  c.next("connected");

  write_file(config, "[api\nkey = \"k2\"\n");  // not TOML
  serve.signal(SIGHUP);
  ASSERT_TRUE(serve.wait_log("reload failed")) << serve.log();
  write_file(config, base_config("k2") + "[limits]\nmax_subscriptions = 0\n");  // TOML, but invalid
  serve.signal(SIGHUP);
  ASSERT_TRUE(serve.wait_log("reload failed", 2)) << serve.log();
  EXPECT_NE(serve.log().find("max_subscriptions"), std::string::npos) << serve.log();
  write_file(config, base_config("k2", "public_key_file = \"" + (dir / "missing.pem") + "\"\n"));
  serve.signal(SIGHUP);
  ASSERT_TRUE(serve.wait_log("reload failed", 3)) << serve.log();

  EXPECT_TRUE(serve.running());
  EXPECT_EQ(status_of(http_post(serve.port(), "/api/info", "{}", "k1")), 200);
  EXPECT_EQ(status_of(http_post(serve.port(), "/api/info", "{}", "k2")), 401);
  auto r = c.call(1, R"({"type":"subscribe","id":1,"channel":"chat:x"})");
  EXPECT_FALSE(r->has("/error")) << r->text;

  // Valid, with a change that needs a restart: logged as such, the rest applied.
  write_file(config, base_config("k2") + "[server]\nmax_connections = 5\n");
  serve.signal(SIGHUP);
  ASSERT_TRUE(serve.wait_log("configuration reloaded")) << serve.log();
  EXPECT_NE(serve.log().find("needs a restart"), std::string::npos) << serve.log();
  EXPECT_NE(serve.log().find("server.max_connections"), std::string::npos) << serve.log();
  EXPECT_EQ(status_of(http_post(serve.port(), "/api/info", "{}", "k2")), 200);
}

TEST(OpsReload, ReloadAppliesLimitsAndTokenKeysInProcess) {
  auto config = test_config();
  Server server(config);
  auto alice = connect_as(server, "alice");
  config.limits.max_subscriptions = 1;
  config.auth.hmac_secret = "another-secret-0123456789";
  const auto result = server.get().reload(config);
  EXPECT_NE(std::find(result.applied.begin(), result.applied.end(), "limits.max_subscriptions"), result.applied.end());
  EXPECT_NE(std::find(result.applied.begin(), result.applied.end(), "auth.hmac_secret"), result.applied.end());
  EXPECT_TRUE(result.needs_restart.empty());
  EXPECT_FALSE(alice->call(1, R"({"type":"subscribe","id":1,"channel":"chat:a"})")->has("/error"));
  EXPECT_EQ(alice->call(2, R"({"type":"subscribe","id":2,"channel":"chat:b"})")->u64_at("/error/code"), 106u);
  // Tokens signed with the old secret no longer verify; the connected session stays.
  Client bob(server.port(), "?token=" + token_for("bob"));
  EXPECT_FALSE(bob.wait_open());
}

// The config field table's deflate rows were parsed but neither applied nor
// reported by reload before it drove the diff.
TEST(OpsReload, DeflateTuningIsReportedAsNeedingARestart) {
  auto config = test_config();
  Server server(config);
  config.server.deflate.tuning.level = 1;
  config.server.deflate.tuning.mem_level = 9;
  config.server.deflate.tuning.min_size = 4096;
  const auto result = server.get().reload(config);
  EXPECT_TRUE(result.applied.empty());
  EXPECT_EQ(result.needs_restart,
            (std::vector<std::string>{"server.deflate.level", "server.deflate.mem_level", "server.deflate.min_size"}));
  EXPECT_EQ(server.get().live_config()->server.deflate.tuning.level, 6);  // kept until a restart
}

namespace {

namespace fields = hub::config_fields;

// Changes the value `ref` points to (attempt 0: one way, 1: another, e.g.
// the other bound); false if the kind has no other way.
bool change_field(const fields::ConfigField& field, fields::Ref ref, int attempt) {
  // Attempt 0: the lower bound (or the upper one if that is the value),
  // 1: the upper bound, 2: just above the lower bound.
  auto bound = [&](auto& value, auto make) {
    if (attempt == 2) {
      value = make(field.min + 1);
      return;
    }
    const auto first = make(attempt == 0 ? field.min : field.max);
    const auto second = make(attempt == 0 ? field.max : field.min);
    value = value != first ? first : second;
  };
  return std::visit(
      [&](auto* p) -> bool {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, bool>) {
          if (attempt) return false;
          *p = !*p;
        } else if constexpr (std::is_same_v<T, std::string>) {
          if (field.kind == fields::Kind::choice) {
            if (static_cast<std::size_t>(attempt) + 1 >= field.choices.size()) return false;
            std::vector<std::string_view> others;
            for (auto c : field.choices)
              if (c != *p) others.push_back(c);
            *p = std::string(others.at(static_cast<std::size_t>(attempt)));
          } else {
            if (attempt) return false;
            *p += "-changed";
          }
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          if (attempt) return false;
          p->push_back(field.kind == fields::Kind::origins ? "https://example.com" : "127.0.0.1:6380");
        } else if constexpr (std::is_enum_v<T>) {
          if (static_cast<std::size_t>(attempt) + 1 >= field.choices.size()) return false;
          *p = static_cast<T>((static_cast<std::size_t>(*p) + 1 + static_cast<std::size_t>(attempt)) % field.choices.size());
        } else if constexpr (std::is_same_v<T, double>) {
          if (attempt > 2) return false;
          bound(*p, [](double v) { return v; });
        } else if constexpr (std::is_same_v<T, std::chrono::seconds> || std::is_same_v<T, std::chrono::milliseconds>) {
          if (attempt > 2) return false;
          bound(*p, [](double v) { return T(static_cast<typename T::rep>(v)); });
        } else {
          if (attempt > 2) return false;
          bound(*p, [](double v) { return static_cast<T>(v); });
        }
        return true;
      },
      ref);
}

}  // namespace

// Every row of the field table, changed alone: reload applies it or reports
// it as needing a restart, by its reload class.
TEST(OpsReload, EveryFieldIsAppliedOrReportedByItsReloadClass) {
  // Namespace defaults with history and presence, so that history_ttl,
  // recovery and join_leave can change alone and stay valid.
  auto original = test_config();
  original.namespace_defaults.history_size = 10;
  original.namespace_defaults.presence = true;
  Server server(original);
  std::vector<std::string> untested;
  for (const auto& field : fields::fields()) {
    if (field.reload == fields::Reload::tls) continue;  // OpsTls covers [server.tls]
    SCOPED_TRACE(field.key);
    auto next = original;
    bool valid = false;
    for (int attempt = 0; !valid && change_field(field, field.get(next), attempt); ++attempt) {
      valid = hub::config_problems(next).empty();
      if (!valid) next = original;
    }
    ASSERT_TRUE(valid) << "no valid other value";
    ASSERT_FALSE(fields::equal(field, next, original));
    const hub::HubConfig before = *server.get().live_config();
    std::vector<std::string> applied, needs_restart;
    try {
      auto result = server.get().reload(next);
      applied = std::move(result.applied);
      needs_restart = std::move(result.needs_restart);
    } catch (const std::exception& e) {
      untested.push_back(field.key + ": " + e.what());
      continue;
    }
    const auto& listed = field.reload == fields::Reload::live ? applied : needs_restart;
    const auto& other = field.reload == fields::Reload::live ? needs_restart : applied;
    EXPECT_NE(std::find(listed.begin(), listed.end(), field.key), listed.end());
    EXPECT_EQ(std::find(other.begin(), other.end(), field.key), other.end());
    const auto live = server.get().live_config();
    if (field.reload == fields::Reload::live) {
      EXPECT_TRUE(fields::equal(field, *live, next)) << "applied but not in the live config";
    } else {
      EXPECT_TRUE(fields::equal(field, *live, before)) << "needs a restart but changed the live config";
    }
    const auto back = server.get().reload(original);  // the live config was left as it was
    EXPECT_TRUE(back.needs_restart.empty()) << ::testing::PrintToString(back.needs_restart);
  }
  // A public key file that does not exist fails the reload (naming it) before anything changes.
  ASSERT_EQ(untested.size(), 1u) << ::testing::PrintToString(untested);
  EXPECT_NE(untested[0].find("auth.public_key_file"), std::string::npos) << untested[0];
}

// ---- TLS settings ------------------------------------------------------------------

TEST(OpsTls, MinVersion13RefusesATls12Client) {
  TempDir dir("tls13");
  make_cert(dir / "s.crt", dir / "s.key", "localhost");
  auto config = test_config();
  config.server.tls.cert_file = dir / "s.crt";
  config.server.tls.key_file = dir / "s.key";
  config.server.tls.min_version = "1.3";
  Server server(config);
  TlsProbe old_client(server.port(), TLS1_2_VERSION);
  EXPECT_FALSE(old_client.ok()) << "a TLS 1.2-only client must be refused";
  TlsProbe client(server.port());
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(client.version(), TLS1_3_VERSION);
  EXPECT_EQ(client.get("/healthz"), 200);
}

TEST(OpsTls, CipherListIsApplied) {
  TempDir dir("ciphers");
  make_cert(dir / "s.crt", dir / "s.key", "localhost");
  auto config = test_config();
  config.server.tls.cert_file = dir / "s.crt";
  config.server.tls.key_file = dir / "s.key";
  config.server.tls.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256";
  Server server(config);
  EXPECT_FALSE(TlsProbe(server.port(), TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384").ok());
  TlsProbe allowed(server.port(), TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256");
  ASSERT_TRUE(allowed.ok());
  EXPECT_EQ(allowed.get("/healthz"), 200);
}

// ---- /metrics ----------------------------------------------------------------------

namespace {

struct Metrics {
  std::map<std::string, double> samples;  // "name{labels}" -> value
  std::string text;
  double operator[](const std::string& key) const {
    auto it = samples.find(key);
    if (it == samples.end()) throw std::runtime_error("no sample " + key + " in\n" + text);
    return it->second;
  }
  bool has(const std::string& key) const { return samples.count(key) > 0; }
};

// Parses the text format and checks it: HELP and TYPE once per family, before its samples.
Metrics scrape(std::uint16_t port) {
  Metrics m;
  m.text = http_body(http_get(port, "/metrics"));
  std::set<std::string> helps, types;
  std::istringstream in(m.text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
      const std::string name = line.substr(7, line.find(' ', 7) - 7);
      auto& seen = line[2] == 'H' ? helps : types;
      EXPECT_TRUE(seen.insert(name).second) << "family " << name << " declared twice";
      continue;
    }
    EXPECT_NE(line[0], '#') << line;
    const auto space = line.rfind(' ');
    const std::string key = line.substr(0, space);
    std::string family = key.substr(0, key.find('{'));
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (family.size() > std::strlen(suffix) && family.ends_with(suffix) && !types.count(family))
        family.resize(family.size() - std::strlen(suffix));
    EXPECT_TRUE(types.count(family) && helps.count(family)) << "sample before its HELP/TYPE: " << line;
    EXPECT_TRUE(m.samples.emplace(key, std::stod(line.substr(space + 1))).second) << "duplicate sample " << key;
  }
  return m;
}

}  // namespace

TEST(OpsMetrics, FamiliesAreWellFormedAndValuesMove) {
  Server server;
  const auto before = scrape(server.port());
  auto info = before.samples.lower_bound("duplex_node_info{node=\"test-node\",version=\"");
  ASSERT_NE(info, before.samples.end());
  EXPECT_TRUE(info->first.starts_with("duplex_node_info{node=\"test-node\",version=\"")) << before.text;
  EXPECT_EQ(info->second, 1);
  EXPECT_EQ(before["duplex_engine_up"], 1);
  EXPECT_EQ(before["duplex_engine_backends_up"], 1);
  EXPECT_EQ(before["duplex_engine_backends_total"], 1);
  EXPECT_EQ(before["duplex_engine_reconnects_total"], 0);
  EXPECT_EQ(before["duplex_engine_errors_total"], 0);
  EXPECT_EQ(before["duplex_resubscribes_total"], 0);
  EXPECT_EQ(before["duplex_namespace_subscriptions{namespace=\"chat\"}"], 0);
  EXPECT_EQ(before["duplex_namespace_publications_total{namespace=\"\"}"], 0);
  EXPECT_EQ(before["duplex_messages_in_total"], 0);

  auto alice = connect_as(server, "alice");
  ASSERT_FALSE(alice->call(1, R"({"type":"subscribe","id":1,"channel":"chat:room"})")->has("/error"));
  ASSERT_FALSE(alice->call(2, R"({"type":"subscribe","id":2,"channel":"lobby"})")->has("/error"));
  ASSERT_FALSE(alice->call(3, R"({"type":"publish","id":3,"channel":"chat:room","data":{"n":1}})")->has("/error"));
  alice->next("message");
  EXPECT_EQ(status_of(http_post(server.port(), "/api/publish", R"({"channel":"lobby","data":1})")), 200);
  alice->next("message");
  // A namespace not in the config has no label of its own: it counts under "".
  EXPECT_EQ(status_of(http_post(server.port(), "/api/publish", R"({"channel":"adhoc:x","data":1})")), 200);

  Metrics after;
  ASSERT_TRUE(eventually([&] {
    after = scrape(server.port());
    return after["duplex_namespace_messages_delivered_total{namespace=\"\"}"] >= 1;
  })) << after.text;
  EXPECT_EQ(after["duplex_namespace_subscriptions{namespace=\"chat\"}"], 1);
  EXPECT_EQ(after["duplex_namespace_subscriptions{namespace=\"\"}"], 1);
  EXPECT_EQ(after["duplex_namespace_publications_total{namespace=\"chat\"}"], 1);
  EXPECT_EQ(after["duplex_namespace_publications_total{namespace=\"\"}"], 2);
  EXPECT_EQ(after["duplex_namespace_messages_delivered_total{namespace=\"chat\"}"], 1);
  EXPECT_EQ(after["duplex_namespace_publications_total{namespace=\"secret\"}"], 0);
  EXPECT_FALSE(after.has("duplex_namespace_publications_total{namespace=\"adhoc\"}"));
  EXPECT_EQ(after["duplex_messages_in_total"], 3);  // three commands (the token came with the handshake)
  EXPECT_GE(after["duplex_messages_out_total"], 6);  // connected, three replies, two messages
  EXPECT_GT(after["duplex_bytes_in_total"], 100);
  EXPECT_GT(after["duplex_bytes_out_total"], after["duplex_bytes_in_total"]);
  EXPECT_EQ(after["duplex_connections"], 1);
  EXPECT_EQ(after["duplex_publications_total"], 3);
  EXPECT_EQ(after["duplex_fanout_seconds_count"], after["duplex_fanout_seconds_bucket{le=\"+Inf\"}"]);

  alice.reset();
  ASSERT_TRUE(eventually([&] { return scrape(server.port())["duplex_connections"] == 0; }));
  const auto gone = scrape(server.port());
  EXPECT_EQ(gone["duplex_namespace_subscriptions{namespace=\"chat\"}"], 0);
  EXPECT_EQ(gone["duplex_namespace_subscriptions{namespace=\"\"}"], 0);
}

// ---- node registry -----------------------------------------------------------------

TEST(OpsNodes, ApiNodesListsThisNodeWithItsCounters) {
  Server server;
  EXPECT_EQ(status_of(http_post(server.port(), "/api/nodes", "", "wrong", "GET")), 401);
  auto first = Frame(http_body(http_post(server.port(), "/api/nodes", "", "test-api-key", "GET")));
  auto nodes = first.array("/nodes");
  ASSERT_EQ(nodes.size(), 1u) << first.text;
  EXPECT_EQ(first.str_at("/nodes/0/name"), "test-node");
  EXPECT_GT(first.u64_at("/nodes/0/started_ms"), 1'700'000'000'000u);
  EXPECT_GE(first.u64_at("/nodes/0/updated_ms"), first.u64_at("/nodes/0/started_ms"));

  auto alice = connect_as(server, "alice");
  ASSERT_FALSE(alice->call(1, R"({"type":"subscribe","id":1,"channel":"chat:room"})")->has("/error"));
  EXPECT_EQ(status_of(http_post(server.port(), "/api/publish", R"({"channel":"chat:room","data":1})")), 200);
  alice->next("message");
  std::string text;
  ASSERT_TRUE(eventually(
      [&] {
        text = http_body(http_post(server.port(), "/api/nodes", "{}", "test-api-key"));  // POST works too
        Frame f(text);
        return f.u64_at("/nodes/0/pushes_out") == 1;
      },
      4000ms))
      << "a heartbeat every 2 s: " << text;
  Frame f(text);
  EXPECT_EQ(f.u64_at("/nodes/0/connections"), 1u);
  EXPECT_EQ(f.u64_at("/nodes/0/subscriptions"), 1u);
  EXPECT_EQ(f.u64_at("/nodes/0/channels"), 1u);
  EXPECT_EQ(f.u64_at("/nodes/0/publications_in"), 1u);
  EXPECT_GT(f.u64_at("/nodes/0/updated_ms"), first.u64_at("/nodes/0/updated_ms"));

  Frame info(http_body(http_post(server.port(), "/api/info", "{}")));
  EXPECT_EQ(info.str_at("/result/node"), "test-node");
}

TEST(OpsReload, ConfiguredPublishRateIsInForceFromTheStart) {
  auto config = test_config();
  config.limits.publish_rate = 1e6;
  config.limits.publish_burst = 1e6;
  Server server(config);
  EXPECT_EQ(server.get().hub().limits()->publish_burst, 1e6);
  auto alice = connect_as(server, "alice");
  for (int i = 0; i < 150; ++i)
    alice->send(R"({"type":"publish","id":)" + std::to_string(100 + i) + R"(,"channel":"chat:r","data":1})");
  for (int i = 0; i < 150; ++i) EXPECT_FALSE(alice->reply(100 + static_cast<std::uint64_t>(i))->has("/error"));
}

TEST(OpsReload, ReloadAppliesAllowedOriginsAndCors) {
  auto config = test_config();
  Server server(config);
  net::ClientOptions from_app;
  from_app.origin = "https://app.example";
  {
    Client refused(server.port(), "?token=" + token_for("alice"), from_app);
    EXPECT_FALSE(refused.wait_open()) << "another site's page, not in auth.allowed_origins";
  }
  config.auth.allowed_origins = {"https://app.example"};
  config.web.cors_origins = {"https://app.example"};
  server.get().reload(config);
  Client accepted(server.port(), "?token=" + token_for("alice"), from_app);
  EXPECT_TRUE(accepted.wait_open()) << accepted.error();
  EXPECT_EQ(server.get().live_config()->web.cors_origins.size(), 1u);
}

// A TLS client that closes right after the handshake (the server may still be
// writing session tickets) must not kill the process with SIGPIPE.
TEST(OpsTls, ClientsClosingTlsConnectionsAbruptlyDoNotKillTheServer) {
  TempDir dir("sigpipe");
  make_cert(dir / "s.crt", dir / "s.key", "localhost");
  const std::string config = dir / "duplex.toml";
  write_file(config, base_config("k") + tls_section(dir / "s.crt", dir / "s.key"));
  ServeProcess serve(config, dir / "log");
  for (int i = 0; i < 30; ++i) {
    TlsProbe probe(serve.port());
    ASSERT_TRUE(probe.ok()) << i << serve.log();
  }
  std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(serve.running());
  EXPECT_EQ(TlsProbe(serve.port()).get("/healthz"), 200);
}

// The dashboard channel reports the hub's traffic, not its own: with nobody
// but two dashboards connected, messages out stays 0 however many stats pushes
// they receive.
TEST(OpsStats, TheStatsChannelDoesNotCountItsOwnPushesAsTraffic) {
  auto config = test_config();
  config.stats_interval = std::chrono::seconds(1);
  hub::NamespaceOptions stats;
  stats.allow_subscribe = true;
  stats.allow_publish = false;
  config.namespaces["stats"] = stats;
  Server server(config);
  auto a = connect_as(server, "dash-a");
  auto b = connect_as(server, "dash-b");
  ASSERT_FALSE(a->call(1, R"({"type":"subscribe","id":1,"channel":"stats:node"})")->has("/error"));
  ASSERT_FALSE(b->call(1, R"({"type":"subscribe","id":1,"channel":"stats:node"})")->has("/error"));
  // The first figure may include the connects and subscribes; the next ones are quiet.
  a->next("message", 3000ms);
  for (int i = 0; i < 2; ++i) {
    auto m = a->next("message", 3000ms);
    ASSERT_TRUE(m);
    double out = -1;
    ASSERT_EQ(m->root.at_pointer("/data/messages_out").get(out), simdjson::SUCCESS) << m->text;
    EXPECT_EQ(out, 0.0) << m->text;
    std::uint64_t connections = 0;
    ASSERT_EQ(m->root.at_pointer("/data/connections").get(connections), simdjson::SUCCESS) << m->text;
    EXPECT_EQ(connections, 2u) << m->text;
  }
}
