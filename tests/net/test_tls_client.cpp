// wss:// end to end with a CA made for the test; client verification on by
// default; request headers reach the server; idle timeout. TLS on the loop's
// backend: on io_uring an open TLS connection (server and client) runs its
// ciphertext through the ring (the loop's shared BIO in memory mode), which
// the TlsOnLoop cases check against a raw TLS peer that splits records,
// sends close_notify, stops reading, or has its connection ended by a
// handler in the middle of a receive.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/time.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <vector>
#include <string>
#include <thread>

#include "duplex/duplex.hpp"
#include "support.hpp"

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

namespace {

// One PKI for the TlsOnLoop cases (making RSA keys costs most of a case).
const TestPki& shared_pki() {
  static TestPki pki;
  return pki;
}

net::ServerOptions tls_server_options() {
  net::ServerOptions options;
  options.tls.cert_file = shared_pki().path("server.pem");
  options.tls.key_file = shared_pki().path("server.key");
  return options;
}

// A masked client frame (mask key 0: the payload reads as sent).
std::string client_frame(std::string_view payload, std::uint8_t opcode = 0x1) {
  std::string f;
  f.push_back(static_cast<char>(0x80 | opcode));
  if (payload.size() < 126) {
    f.push_back(static_cast<char>(0x80 | payload.size()));
  } else {
    f.push_back(static_cast<char>(0x80 | 126));
    f.push_back(static_cast<char>(payload.size() >> 8));
    f.push_back(static_cast<char>(payload.size() & 0xff));
  }
  f.append(4, '\0');
  f.append(payload);
  return f;
}

// A blocking TLS peer on a raw socket: OpenSSL's own client, so the test
// decides how the ciphertext is cut into sends (records split at every
// byte, several records in one send) and when it reads, shuts down or
// stops reading. Every read gives up after 5 s (SO_RCVTIMEO): a hang fails.
class RawTlsPeer {
 public:
  explicit RawTlsPeer(std::uint16_t port, int receive_buffer = 0) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
    fd_ = test_support::connect_loopback(port, connected_, receive_buffer);
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    ok_ = connected_ && retrying([&] { return SSL_connect(ssl_); }) == 1;
    // From here what this side writes is collected in memory and sent by
    // hand; reads stay on the socket.
    out_ = BIO_new(BIO_s_mem());
    SSL_set0_wbio(ssl_, out_);
  }
  ~RawTlsPeer() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
    ::close(fd_);
  }
  bool ok() const { return ok_; }

  // The upgrade request for `target`; true once the 101 head is read.
  bool upgrade(const std::string& target = "/") {
    if (!ok_) return false;
    const std::string request = "GET " + target +
                                " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    if (!send_raw(encrypt(request))) return false;
    std::string head;
    while (head.find("\r\n\r\n") == std::string::npos) {
      char c;
      if (retrying([&] { return SSL_read(ssl_, &c, 1); }) != 1) return false;
      head.push_back(c);
    }
    return head.rfind("HTTP/1.1 101", 0) == 0;
  }
  // `plain` as one TLS record's ciphertext (or several, past 16 KiB).
  std::string encrypt(std::string_view plain) {
    SSL_write(ssl_, plain.data(), static_cast<int>(plain.size()));
    return drain_output();
  }
  // The close_notify alert's ciphertext.
  std::string close_notify() {
    SSL_shutdown(ssl_);
    return drain_output();
  }
  bool send_raw(std::string_view bytes, std::size_t piece = ~std::size_t{0}) {
    for (std::size_t off = 0; off < bytes.size();) {
      const std::size_t n = std::min(piece, bytes.size() - off);
      const ssize_t sent = ::send(fd_, bytes.data() + off, n, MSG_NOSIGNAL);
      if (sent < 0 && errno == EINTR) continue;
      if (sent <= 0) return false;
      off += static_cast<std::size_t>(sent);
    }
    return true;
  }
  // The next server frame's payload (unmasked, header as RFC 6455), or
  // nullopt when the stream ended; `ended_by_close_notify` says how.
  std::optional<std::string> read_frame() {
    std::string h;
    if (!read_exact(2, h)) return std::nullopt;
    std::uint64_t len = static_cast<std::uint8_t>(h[1]) & 0x7f;
    std::string ext;
    if (len == 126 || len == 127) {
      if (!read_exact(len == 126 ? 2 : 8, ext)) return std::nullopt;
      len = 0;
      for (char ch : ext) len = (len << 8) | static_cast<std::uint8_t>(ch);
    }
    last_opcode = static_cast<std::uint8_t>(h[0]) & 0x0f;
    std::string payload;
    if (!read_exact(static_cast<std::size_t>(len), payload)) return std::nullopt;
    return payload;
  }
  bool ended_by_close_notify = false;
  std::uint8_t last_opcode = 0;

 private:
  // A blocking call again after EINTR: this thread ran io_uring loops in
  // earlier cases, and the kernel interrupts a ring's users when it tears
  // the ring down (see src/net/io_ring.hpp).
  template <typename Call>
  int retrying(Call call) {
    for (;;) {
      errno = 0;
      const int r = call();
      if (r > 0 || errno != EINTR) return r;  // OpenSSL reports it as SYSCALL or WANT_READ/WRITE
      ERR_clear_error();
    }
  }
  std::string drain_output() {
    std::string bytes;
    char buf[16384];
    int n;
    while ((n = BIO_read(out_, buf, sizeof buf)) > 0) bytes.append(buf, static_cast<std::size_t>(n));
    return bytes;
  }
  bool read_exact(std::size_t n, std::string& into) {
    into.resize(n);
    std::size_t got = 0;
    while (got < n) {
      const int r = retrying([&] { return SSL_read(ssl_, into.data() + got, static_cast<int>(n - got)); });
      if (r <= 0) {
        ended_by_close_notify = SSL_get_error(ssl_, r) == SSL_ERROR_ZERO_RETURN;
        ERR_clear_error();
        return false;
      }
      got += static_cast<std::size_t>(r);
    }
    return true;
  }
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  BIO* out_ = nullptr;
  int fd_ = -1;
  bool connected_ = false;
  bool ok_ = false;
};

// What the server's handlers saw, read by the test thread after waiting.
struct ServerSide {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::string> messages;
  std::vector<std::uint16_t> close_codes;
  int on_loop_backend = 0;   // messages handled on a connection on its loop's backend
  int off_loop_backend = 0;  // ... and on another (a TLS connection left on readiness)
  template <typename Pred>
  bool wait(Pred pred, std::chrono::milliseconds limit = 5000ms) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, limit, [&] { return pred(); });
  }
  void saw_message(net::Connection& c, std::string_view payload) {
    std::lock_guard lock(mutex);
    messages.emplace_back(payload);
    (c.io() == c.loop().io() ? on_loop_backend : off_loop_backend) += 1;
    changed.notify_all();
  }
  void saw_close(std::uint16_t code) {
    std::lock_guard lock(mutex);
    close_codes.push_back(code);
    changed.notify_all();
  }
};

// An echo server that records what it saw.
net::Handlers recording_echo(ServerSide& seen) {
  net::Handlers h;
  h.on_message = [&seen](net::Connection& c, protocol::Opcode kind, std::string_view payload) {
    seen.saw_message(c, payload);
    c.send(payload, kind);
  };
  h.on_close = [&seen](net::Connection&, std::uint16_t code, std::string_view) { seen.saw_close(code); };
  return h;
}

}  // namespace

// Our own server and client on the loop's backend: large messages (records
// cut across many 4 KiB receive buffers) and many small ones come back
// intact, and on io_uring both ends' open connections are on the ring.
TEST(TlsOnLoop, LargeAndSmallMessagesBothEndsOnTheLoopsBackend) {
  ASSERT_TRUE(shared_pki().ok);
  ServerSide seen;
  net::ServerOptions options = tls_server_options();
  options.websocket.max_message_size = 8u << 20;
  options.max_send_buffer = 16u << 20;
  test_support::TestServer server(options, recording_echo(seen));
  net::EventLoop loop;
  net::ClientOptions co;
  co.tls.ca_file = shared_pki().path("ca.pem");
  co.websocket.max_message_size = 8u << 20;
  const std::vector<std::size_t> sizes = {3u << 20, 1, 16384, 16385, 100000, 2u << 20};
  std::string sent, received;
  std::size_t replies = 0;
  net::IoBackend client_io{};
  net::Handlers h;
  h.on_open = [&](net::Connection& c) {
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      std::string payload(sizes[i], static_cast<char>('a' + i));
      sent += payload;
      c.send_binary(payload);
    }
    for (int i = 0; i < 2000; ++i) {
      const std::string small = "m" + std::to_string(i);
      sent += small;
      c.send_text(small);
    }
  };
  h.on_message = [&](net::Connection& c, protocol::Opcode, std::string_view payload) {
    client_io = c.io();
    received.append(payload);
    if (++replies == sizes.size() + 2000) c.close();
  };
  h.on_close = [&](net::Connection&, std::uint16_t, std::string_view) { loop.stop(); };
  h.on_error = [&](std::string_view e) {
    ADD_FAILURE() << e;
    loop.stop();
  };
  auto c = net::connect(loop, "wss://127.0.0.1:" + std::to_string(server.port()) + "/", co, h);
  net::LoopTimer guard(loop);
  guard.start(15s, [&] { loop.stop(); });
  loop.run();
  EXPECT_EQ(replies, sizes.size() + 2000);
  EXPECT_TRUE(received == sent) << "got " << received.size() << " of " << sent.size() << " bytes";
  EXPECT_EQ(client_io, loop.io()) << "the client's TLS connection is not on its loop's backend";
  std::lock_guard lock(seen.mutex);
  EXPECT_EQ(seen.off_loop_backend, 0) << "the server's TLS connection is not on its loop's backend";
  EXPECT_GT(seen.on_loop_backend, 0);
}

// Every record arrives cut into one-byte sends (TCP_NODELAY: a segment
// each), so OpenSSL is fed partial headers and bodies at every boundary;
// then several records in one send. Each message is echoed whole, in order.
TEST(TlsOnLoop, RecordsSplitAtEveryByteAndSeveralInOneSend) {
  ASSERT_TRUE(shared_pki().ok);
  ServerSide seen;
  test_support::TestServer server(tls_server_options(), recording_echo(seen));
  RawTlsPeer peer(server.port());
  ASSERT_TRUE(peer.upgrade());
  std::vector<std::string> payloads;
  for (int i = 0; i < 3; ++i) payloads.push_back("split-" + std::to_string(i) + std::string(150, 'x'));
  for (const auto& p : payloads) ASSERT_TRUE(peer.send_raw(peer.encrypt(client_frame(p)), 1));
  std::string several;
  for (int i = 0; i < 5; ++i) {
    payloads.push_back("together-" + std::to_string(i));
    several += peer.encrypt(client_frame(payloads.back()));
  }
  ASSERT_TRUE(peer.send_raw(several));
  for (const auto& p : payloads) {
    const auto got = peer.read_frame();
    ASSERT_TRUE(got.has_value()) << "echo of " << p << " missing";
    EXPECT_EQ(*got, p);
  }
  std::lock_guard lock(seen.mutex);
  EXPECT_EQ(seen.messages, payloads);
  EXPECT_EQ(seen.off_loop_backend, 0);
}

// close_notify both ways: the peer's alone (its socket still open) ends the
// server's connection at once (1006: no close frame); a connection the
// server ends sends its own before the FIN.
TEST(TlsOnLoop, CloseNotifyBothWays) {
  ASSERT_TRUE(shared_pki().ok);
  ServerSide seen;
  net::Handlers h = recording_echo(seen);
  h.on_message = [&seen](net::Connection& c, protocol::Opcode kind, std::string_view payload) {
    seen.saw_message(c, payload);
    if (payload == "bye")
      c.terminate();
    else
      c.send(payload, kind);
  };
  test_support::TestServer server(tls_server_options(), h);
  {
    RawTlsPeer peer(server.port());
    ASSERT_TRUE(peer.upgrade());
    ASSERT_TRUE(peer.send_raw(peer.encrypt(client_frame("first"))));
    ASSERT_EQ(peer.read_frame().value_or(""), "first");
    ASSERT_TRUE(peer.send_raw(peer.close_notify()));
    EXPECT_TRUE(seen.wait([&] { return seen.close_codes.size() == 1; }))
        << "the server did not end the connection on the peer's close_notify";
    std::lock_guard lock(seen.mutex);
    EXPECT_EQ(seen.close_codes, std::vector<std::uint16_t>{1006});
  }
  RawTlsPeer peer(server.port());
  ASSERT_TRUE(peer.upgrade());
  ASSERT_TRUE(peer.send_raw(peer.encrypt(client_frame("bye"))));
  EXPECT_FALSE(peer.read_frame().has_value());
  EXPECT_TRUE(peer.ended_by_close_notify) << "the server closed without close_notify";
  std::lock_guard lock(seen.mutex);
  EXPECT_EQ(seen.off_loop_backend, 0);
}

// A TLS peer that stops reading while the server floods it: the output
// budget holds (the connection is cut, 1008), and the server goes on
// serving another TLS client.
TEST(TlsOnLoop, APeerThatStopsReadingIsCutOffAndOthersAreServed) {
  ASSERT_TRUE(shared_pki().ok);
  ServerSide seen;
  std::atomic<int> sent_before_cut{0};
  net::Handlers h = recording_echo(seen);
  h.on_message = [&](net::Connection& c, protocol::Opcode kind, std::string_view payload) {
    seen.saw_message(c, payload);
    if (payload != "flood") {
      c.send(payload, kind);
      return;
    }
    const std::string chunk(64u << 10, 'f');
    for (int i = 0; i < 4096 && c.send_binary(chunk) == net::SendStatus::ok; ++i) ++sent_before_cut;
  };
  net::ServerOptions options = tls_server_options();
  options.max_send_buffer = 256u << 10;
  test_support::TestServer server(options, h);
  RawTlsPeer stalled(server.port(), 4096);
  ASSERT_TRUE(stalled.upgrade());
  ASSERT_TRUE(stalled.send_raw(stalled.encrypt(client_frame("flood"))));
  EXPECT_TRUE(seen.wait([&] { return seen.close_codes.size() == 1; })) << "the stalled peer was never cut off";
  {
    std::lock_guard lock(seen.mutex);
    ASSERT_EQ(seen.close_codes.size(), 1u);
    EXPECT_EQ(seen.close_codes[0], 1008);
  }
  EXPECT_LT(sent_before_cut.load(), 4096) << "the budget never held";
  RawTlsPeer other(server.port());
  ASSERT_TRUE(other.upgrade());
  ASSERT_TRUE(other.send_raw(other.encrypt(client_frame("still here"))));
  EXPECT_EQ(other.read_frame().value_or(""), "still here");
  std::lock_guard lock(seen.mutex);
  EXPECT_EQ(seen.off_loop_backend, 0);
}

// Re-entrancy: in the middle of one receive that carries three records, a
// handler writes to another TLS connection (the loop's shared BIO is used
// for it in between) and ends its own. Nothing after the end is delivered,
// the other connection gets its message whole, and the server goes on.
TEST(TlsOnLoop, AHandlerEndsItsConnectionAndWritesToAnotherDuringOneReceive) {
  ASSERT_TRUE(shared_pki().ok);
  ServerSide seen;
  std::mutex peers_mutex;
  std::weak_ptr<net::Connection> b_on_server;
  net::Handlers h = recording_echo(seen);
  h.on_open = [&](net::Connection& c) {
    std::lock_guard lock(peers_mutex);
    if (c.target() == "/b") b_on_server = c.weak_from_this();
  };
  h.on_message = [&](net::Connection& c, protocol::Opcode kind, std::string_view payload) {
    seen.saw_message(c, payload);
    if (payload == "handoff") {
      std::shared_ptr<net::Connection> b;
      {
        std::lock_guard lock(peers_mutex);
        b = b_on_server.lock();
      }
      if (b) b->send_text("from a: " + std::string(20000, 'h'));
      c.terminate();
      return;
    }
    c.send(payload, kind);
  };
  test_support::TestServer server(tls_server_options(), h);
  RawTlsPeer b(server.port());
  ASSERT_TRUE(b.upgrade("/b"));
  RawTlsPeer a(server.port());
  ASSERT_TRUE(a.upgrade("/a"));
  std::string three = a.encrypt(client_frame("before"));  // in order: each record's sequence number
  three += a.encrypt(client_frame("handoff"));
  three += a.encrypt(client_frame("after"));
  ASSERT_TRUE(a.send_raw(three));
  // The echo of "before" may or may not have left: terminate drops what is unsent.
  int frames_to_a = 0;
  while (a.read_frame()) ++frames_to_a;
  EXPECT_LE(frames_to_a, 1) << "a was not ended";
  EXPECT_TRUE(b.read_frame().value_or("") == "from a: " + std::string(20000, 'h')) << "b did not get a's message whole";
  ASSERT_TRUE(b.send_raw(b.encrypt(client_frame("b goes on"))));
  EXPECT_EQ(b.read_frame().value_or(""), "b goes on");
  std::lock_guard lock(seen.mutex);
  EXPECT_EQ(seen.messages, (std::vector<std::string>{"before", "handoff", "b goes on"}));
  EXPECT_EQ(seen.off_loop_backend, 0);
}
