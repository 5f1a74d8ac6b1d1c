// wss:// end to end with a CA made for the test; client verification on by
// default; request headers reach the server; idle timeout.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>

#include "duplex/duplex.hpp"

using namespace duplex;
using namespace std::chrono_literals;

namespace {

// A throwaway CA and a server certificate for 127.0.0.1, made with openssl(1).
struct TestPki {
  std::filesystem::path dir;
  TestPki() {
    char tmpl[] = "/tmp/duplex-pki-XXXXXX";
    dir = ::mkdtemp(tmpl);
    const std::string d = dir.string();
    const std::string cmd =
        "cd " + d +
        " && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=duplex-test-ca "
        ">/dev/null 2>&1"
        " && openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 >/dev/null 2>&1"
        " && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ext.cnf"
        " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 "
        "-extfile ext.cnf >/dev/null 2>&1";
    ok = std::system(cmd.c_str()) == 0;
  }
  ~TestPki() { std::filesystem::remove_all(dir); }
  std::string path(const char* name) const { return (dir / name).string(); }
  bool ok = false;
};

struct RunningServer {
  RunningServer(net::ServerOptions options, net::Handlers handlers) {
    options.host = "127.0.0.1";
    options.port = 0;
    options.threads = 1;
    server = std::make_unique<net::Server>(options, handlers);
    server->listen();
    thread = std::thread([this] { server->run(); });
  }
  ~RunningServer() {
    server->stop();
    thread.join();
  }
  std::unique_ptr<net::Server> server;
  std::thread thread;
};

struct ClientResult {
  bool opened = false;
  std::string reply;
  std::string error;
  std::uint16_t close_code = 0;
};

ClientResult run_client(const std::string& url, net::ClientOptions options, const std::string& send = "hello",
                        std::chrono::milliseconds limit = 5000ms) {
  ClientResult r;
  net::EventLoop loop;
  net::Handlers h;
  h.on_open = [&](net::Connection& c) {
    r.opened = true;
    if (!send.empty()) c.send_text(send);
  };
  h.on_message = [&](net::Connection& c, protocol::Opcode, std::string_view payload) {
    r.reply = payload;
    c.close();
  };
  h.on_close = [&](net::Connection&, std::uint16_t code, std::string_view) {
    r.close_code = code;
    loop.stop();
  };
  h.on_error = [&](std::string_view e) {
    r.error = e;
    loop.stop();
  };
  net::connect(loop, url, options, h);
  // A stuck client fails the test instead of hanging it.
  net::LoopTimer guard(loop);
  guard.start(limit, [&] {
    r.error += "(test guard fired)";
    loop.stop();
  });
  loop.run();
  return r;
}

net::Handlers echo_handlers() {
  net::Handlers h;
  h.on_message = [](net::Connection& c, protocol::Opcode kind, std::string_view payload) { c.send(payload, kind); };
  return h;
}

}  // namespace

TEST(Tls, WssEchoWithTheTestCa) {
  TestPki pki;
  ASSERT_TRUE(pki.ok) << "openssl could not make the test certificates";
  net::ServerOptions options;
  options.tls.cert_file = pki.path("server.pem");
  options.tls.key_file = pki.path("server.key");
  RunningServer server(options, echo_handlers());
  net::ClientOptions co;
  co.tls.ca_file = pki.path("ca.pem");
  const auto r = run_client("wss://127.0.0.1:" + std::to_string(server.server->port()) + "/", co);
  EXPECT_TRUE(r.opened) << r.error;
  EXPECT_EQ(r.reply, "hello");
  EXPECT_EQ(r.close_code, 1000);
}

TEST(Tls, ClientRefusesAnUntrustedCertificateByDefault) {
  TestPki pki;
  ASSERT_TRUE(pki.ok);
  net::ServerOptions options;
  options.tls.cert_file = pki.path("server.pem");
  options.tls.key_file = pki.path("server.key");
  RunningServer server(options, echo_handlers());
  const auto r = run_client("wss://127.0.0.1:" + std::to_string(server.server->port()) + "/", {});
  EXPECT_FALSE(r.opened);
  EXPECT_NE(r.error.find("certificate verification failed"), std::string::npos) << r.error;
  // ... and it still serves a client that trusts the CA.
  net::ClientOptions co;
  co.tls.ca_file = pki.path("ca.pem");
  EXPECT_EQ(run_client("wss://127.0.0.1:" + std::to_string(server.server->port()) + "/", co).reply, "hello");
}

TEST(Tls, ServerRejectsMissingCertificateFiles) {
  net::ServerOptions options;
  options.tls.cert_file = "/nonexistent/cert.pem";
  options.tls.key_file = "/nonexistent/key.pem";
  EXPECT_THROW(net::Server(options, echo_handlers()), std::runtime_error);
}

TEST(Tls, PlainClientAgainstTlsServerFailsCleanly) {
  TestPki pki;
  ASSERT_TRUE(pki.ok);
  net::ServerOptions options;
  options.tls.cert_file = pki.path("server.pem");
  options.tls.key_file = pki.path("server.key");
  options.timeouts.handshake = 1000ms;
  RunningServer server(options, echo_handlers());
  const auto r = run_client("ws://127.0.0.1:" + std::to_string(server.server->port()) + "/", {}, "hello", 3000ms);
  EXPECT_FALSE(r.opened);
  EXPECT_FALSE(r.error.empty());
}

TEST(ClientHeaders, ExtraHeadersSubprotocolAndOriginReachTheServer) {
  // Written on the server's loop thread, read here after the client's loop
  // ended: the socket orders them, which ThreadSanitizer cannot see.
  std::mutex seen_mutex;
  std::string seen_auth, seen_origin, seen_target;
  net::ServerOptions options;
  options.subprotocols = {"duplex.v1"};
  net::Handlers h = echo_handlers();
  h.on_upgrade = [&](net::Connection&, const protocol::UpgradeRequest& req, const protocol::HttpHead& head,
                     net::UpgradeDecision&) {
    const std::lock_guard lock(seen_mutex);
    seen_auth = head.get("Authorization");
    seen_origin = req.origin;
    seen_target = req.target;
  };
  RunningServer server(options, h);
  net::ClientOptions co;
  co.headers = {{"Authorization", "Bearer abc.def"}};
  co.subprotocols = {"duplex.v1"};
  co.origin = "https://app.example";
  std::string negotiated;
  net::EventLoop loop;
  net::Handlers ch;
  ch.on_open = [&](net::Connection& c) {
    negotiated = c.subprotocol();
    c.close();
  };
  ch.on_close = [&](net::Connection&, std::uint16_t, std::string_view) { loop.stop(); };
  ch.on_error = [&](std::string_view) { loop.stop(); };
  net::connect(loop, "ws://127.0.0.1:" + std::to_string(server.server->port()) + "/room?x=1", co, ch);
  loop.run();
  const std::lock_guard lock(seen_mutex);
  EXPECT_EQ(seen_auth, "Bearer abc.def");
  EXPECT_EQ(seen_origin, "https://app.example");
  EXPECT_EQ(seen_target, "/room?x=1");
  EXPECT_EQ(negotiated, "duplex.v1");
}

TEST(ServerTimers, IdleConnectionIsClosedWith1001) {
  net::ServerOptions options;
  options.timeouts.idle = 300ms;
  RunningServer server(options, echo_handlers());
  const auto start = std::chrono::steady_clock::now();
  const auto r = run_client("ws://127.0.0.1:" + std::to_string(server.server->port()) + "/", {}, "", 3000ms);
  EXPECT_TRUE(r.opened);
  EXPECT_EQ(r.close_code, 1001);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2500ms);
}

TEST(ClientTimers, HandshakeTimeoutAgainstASilentServer) {
  // A listener that accepts and never answers.
  net::ServerOptions unused;
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::listen(listener, 4);
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  net::ClientOptions co;
  co.timeouts.handshake = 400ms;
  const auto start = std::chrono::steady_clock::now();
  const auto r = run_client("ws://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/", co, "", 3000ms);
  ::close(listener);
  EXPECT_NE(r.error.find("timed out"), std::string::npos) << r.error;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2000ms);
}
