// The server and client on real sockets (loopback), in-process: hostile
// input gets the RFC close code or HTTP status while other clients are
// served; timeouts, limits and backpressure behave as configured.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>
#include <thread>

#include "duplex/duplex.hpp"
#include "duplex/protocol/handshake.hpp"
#include "support.hpp"

using namespace duplex;
using namespace std::chrono_literals;

namespace {

using test_support::RawClient;
using test_support::TestServer;
using test_support::eventually;

std::string upgrade_request(std::string_view extra = {}) {
  std::string r =
      "GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
  r += extra;
  r += "\r\n";
  return r;
}

// A masked client frame.
std::string client_frame(std::uint8_t first_byte, std::string_view payload) {
  std::string out;
  protocol::MaskKey key{0x11, 0x22, 0x33, 0x44};
  std::uint8_t header[protocol::max_frame_header_size];
  const std::size_t n = protocol::encode_frame_header(header, static_cast<protocol::Opcode>(first_byte & 0x0F),
                                                      payload.size(), {}, &key);
  header[0] = first_byte;
  out.append(reinterpret_cast<char*>(header), n);
  std::string masked(payload);
  protocol::apply_mask(reinterpret_cast<std::uint8_t*>(masked.data()), masked.size(), key);
  return out + masked;
}

// Parses the first server frame after the 101 head: a close frame's code.
int close_code_in(const std::string& bytes) {
  const auto head_end = bytes.find("\r\n\r\n");
  std::size_t i = head_end == std::string::npos ? 0 : head_end + 4;
  while (i + 2 <= bytes.size()) {
    const auto b0 = static_cast<std::uint8_t>(bytes[i]);
    std::size_t len = static_cast<std::uint8_t>(bytes[i + 1]) & 0x7F;
    std::size_t hdr = 2;
    if (len == 126) {
      len = (static_cast<std::uint8_t>(bytes[i + 2]) << 8) | static_cast<std::uint8_t>(bytes[i + 3]);
      hdr = 4;
    } else if (len == 127) {
      return -1;
    }
    if ((b0 & 0x0F) == 0x8) {
      if (len < 2 || i + hdr + 2 > bytes.size()) return 1005;
      return (static_cast<std::uint8_t>(bytes[i + hdr]) << 8) | static_cast<std::uint8_t>(bytes[i + hdr + 1]);
    }
    i += hdr + len;
  }
  return -1;
}

// Runs an echo round trip with our own client; true if the reply matches.
bool echo_works(std::uint16_t port, const std::string& message = "still served") {
  net::EventLoop loop;
  bool ok = false;
  net::Handlers h;
  h.on_open = [&](net::Connection& c) { c.send_text(message); };
  h.on_message = [&](net::Connection& c, protocol::Opcode, std::string_view payload) {
    ok = payload == message;
    c.close();
  };
  h.on_close = [&](net::Connection&, std::uint16_t, std::string_view) { loop.stop(); };
  h.on_error = [&](std::string_view) { loop.stop(); };
  net::connect(loop, "ws://127.0.0.1:" + std::to_string(port) + "/", {}, h);
  net::LoopTimer guard(loop);
  guard.start(5s, [&] { loop.stop(); });
  loop.run();
  return ok;
}

}  // namespace

TEST(ServerHandshake, AcceptsRfcSampleAndAnswers101) {
  TestServer server;
  RawClient client(server.port());
  ASSERT_TRUE(client.connected());
  client.send(upgrade_request());
  const std::string head = client.read_head();
  EXPECT_NE(head.find("HTTP/1.1 101 Switching Protocols\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), std::string::npos) << head;
}

TEST(ServerHandshake, WrongVersionGets426WithVersionHeader) {
  TestServer server;
  RawClient client(server.port());
  client.send(
      "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n");
  const std::string reply = client.read_all();
  EXPECT_EQ(reply.rfind("HTTP/1.1 426", 0), 0u) << reply;
  EXPECT_NE(reply.find("Sec-WebSocket-Version: 13"), std::string::npos);
  EXPECT_TRUE(client.peer_closed());
}

TEST(ServerHandshake, GarbageGets400AndTheServerKeepsServing) {
  TestServer server;
  for (std::string garbage : {std::string("HELLO\r\n\r\n"), std::string("GET / HTTP/1.1\r\nHost x\r\n\r\n"),
                              std::string("GET / HTTP/1.1\r\n\r\n"), std::string("\x16\x03\x01\x02\x00\x01", 6) + "\r\n\r\n"}) {
    RawClient client(server.port());
    client.send(garbage);
    const std::string reply = client.read_all();
    EXPECT_EQ(reply.rfind("HTTP/1.1 400", 0), 0u) << reply;
    EXPECT_TRUE(client.peer_closed());
  }
  EXPECT_TRUE(echo_works(server.port()));
}

TEST(ServerHandshake, OversizedHeadGets431) {
  net::ServerOptions options;
  options.http.max_head_bytes = 1024;
  TestServer server(options);
  RawClient client(server.port());
  client.send(upgrade_request("X-Big: " + std::string(2000, 'a') + "\r\n"));
  const std::string reply = client.read_all();
  EXPECT_EQ(reply.rfind("HTTP/1.1 431", 0), 0u) << reply.substr(0, 100);
}

TEST(ServerHandshake, OnUpgradeCanRejectWithStatus) {
  net::Handlers h;
  h.on_upgrade = [](net::Connection&, const protocol::UpgradeRequest& request, const protocol::HttpHead&,
                    net::UpgradeDecision& decision) {
    if (request.origin != "https://good.example") decision.reject(403, "origin not allowed");
  };
  TestServer server({}, h);
  RawClient bad(server.port());
  bad.send(upgrade_request("Origin: https://evil.example\r\n"));
  const std::string reply = bad.read_all();
  EXPECT_EQ(reply.rfind("HTTP/1.1 403", 0), 0u) << reply;
  EXPECT_NE(reply.find("origin not allowed"), std::string::npos);
  RawClient good(server.port());
  good.send(upgrade_request("Origin: https://good.example\r\n"));
  EXPECT_NE(good.read_head().find("101"), std::string::npos);
}

TEST(ServerHandshake, SlowlorisIsCutAtTheHandshakeTimeout) {
  net::ServerOptions options;
  options.timeouts.handshake = 300ms;
  TestServer server(options);
  RawClient client(server.port());
  client.send("GET / HTTP/1.1\r\nHost: x\r\n");  // and never finishes
  const auto start = std::chrono::steady_clock::now();
  client.read_all(3000ms);
  EXPECT_TRUE(client.peer_closed());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_TRUE(echo_works(server.port()));
}

TEST(ServerHandshake, SubprotocolNegotiated) {
  net::ServerOptions options;
  options.subprotocols = {"duplex.v1", "chat"};
  TestServer server(options);
  RawClient client(server.port());
  client.send(upgrade_request("Sec-WebSocket-Protocol: other, chat, duplex.v1\r\n"));
  const std::string head = client.read_head();
  EXPECT_NE(head.find("Sec-WebSocket-Protocol: chat\r\n"), std::string::npos) << head;
}

struct BadFrame {
  const char* name;
  std::string bytes;
  int code;
};

TEST(ServerFrames, MalformedFramesGetTheirCloseCodeAndOthersAreServed) {
  net::ServerOptions options;
  options.websocket.max_message_size = 1000;
  options.websocket.max_frame_size = 1000;
  TestServer server(options);
  std::string unmasked = "\x81\x02hi";
  const std::vector<BadFrame> cases = {
      {"unmasked frame", unmasked, 1002},
      {"reserved opcode", client_frame(0x83, "x"), 1002},
      {"RSV bits", client_frame(0xC1, "x"), 1002},
      {"fragmented ping", client_frame(0x09, "x"), 1002},
      {"continuation without start", client_frame(0x80, "x"), 1002},
      {"invalid UTF-8", client_frame(0x81, "\xC3\x28"), 1007},
      {"close with 1 byte", client_frame(0x88, "\x03"), 1002},
      {"close with code 1005", client_frame(0x88, "\x03\xED"), 1002},
      {"frame over the limit", client_frame(0x82, std::string(1001, 'x')), 1009},
      {"fragments over the limit", client_frame(0x02, std::string(600, 'x')) + client_frame(0x80, std::string(600, 'x')), 1009},
  };
  for (const auto& c : cases) {
    RawClient client(server.port());
    client.send(upgrade_request());
    ASSERT_NE(client.read_head().find("101"), std::string::npos);
    client.send(c.bytes);
    const std::string reply = client.read_all();
    EXPECT_EQ(close_code_in(reply), c.code) << c.name;
    EXPECT_TRUE(client.peer_closed()) << c.name << ": the server closes TCP after failing";
  }
  EXPECT_TRUE(echo_works(server.port()));
}

TEST(ServerFrames, HugeDeclaredLengthIsRefusedBeforeThePayload) {
  net::ServerOptions options;
  options.websocket.max_frame_size = 1 << 20;
  TestServer server(options);
  RawClient client(server.port());
  client.send(upgrade_request());
  ASSERT_NE(client.read_head().find("101"), std::string::npos);
  // 64-bit length of 2^40 with only the header sent: must fail at once.
  std::string header = "\x82\xFF";
  for (int i = 7; i >= 0; --i) header.push_back(static_cast<char>((std::uint64_t{1} << 40) >> (8 * i)));
  header += "\x11\x22\x33\x44";
  client.send(header);
  EXPECT_EQ(close_code_in(client.read_all(2000ms)), 1009);
}

// A client still sending when the server fails its connection (the rest of
// a frame over the limit) gets the close frame: the server half-closes and
// reads to the client's FIN instead of closing with unread bytes, which
// would reset the connection and make the client's kernel drop the close
// frame (and fail the client's send).
TEST(ServerClose, FailedConnectionLingersSoASenderStillGetsTheCloseCode) {
  net::ServerOptions options;
  options.websocket.max_message_size = 1000;
  options.websocket.max_frame_size = 1000;
  TestServer server(options);
  RawClient client(server.port());
  client.send(upgrade_request());
  ASSERT_NE(client.read_head().find("101"), std::string::npos);
  // 8 MiB: far more than the kernel buffers hold, so the server must read it.
  EXPECT_TRUE(client.send(client_frame(0x82, std::string(8u << 20, 'x')))) << "reset while sending";
  EXPECT_EQ(close_code_in(client.read_all(3000ms)), 1009);
  EXPECT_TRUE(client.peer_closed());
  EXPECT_TRUE(echo_works(server.port()));
}

// Lingering is bounded by the close timeout: a client that never closes its
// side is closed anyway, and on_close reports the failure's code.
TEST(ServerClose, LingeringEndsAtTheCloseTimeout) {
  net::ServerOptions options;
  options.websocket.max_message_size = 1000;
  options.timeouts.close = 200ms;
  std::atomic<int> closed_with{0};
  net::Handlers handlers;
  handlers.on_close = [&](net::Connection&, std::uint16_t code, std::string_view) { closed_with = code; };
  TestServer server(options, handlers);
  RawClient client(server.port());
  client.send(upgrade_request());
  ASSERT_NE(client.read_head().find("101"), std::string::npos);
  client.send(client_frame(0x82, std::string(4000, 'x')));
  EXPECT_EQ(close_code_in(client.read_all(100ms)), 1009) << "the close frame comes at once";
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  while (closed_with == 0 && std::chrono::steady_clock::now() < deadline) {
    client.send("still here");  // never a FIN: only the timeout ends it
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(closed_with.load(), 1009);
}

TEST(ServerClose, ClientCloseIsEchoedAndTcpClosedByTheServer) {
  TestServer server;
  RawClient client(server.port());
  client.send(upgrade_request());
  ASSERT_NE(client.read_head().find("101"), std::string::npos);
  client.send(client_frame(0x88, std::string("\x0F\xA1", 2) + "bye"));  // 4001
  const std::string reply = client.read_all();
  EXPECT_EQ(close_code_in(reply), 4001);
  EXPECT_TRUE(client.peer_closed());
}

// close() and terminate() say what they did, and neither ends the connection
// inside the handler that called them.
TEST(ServerClose, CloseAndTerminateReportWhatTheyDid) {
  std::mutex m;
  std::vector<net::CloseStatus> statuses;
  bool closed_inside_handler = true;
  std::atomic<bool> on_close_ran{false};
  net::Handlers h;
  h.on_message = [&](net::Connection& c, protocol::Opcode, std::string_view) {
    std::lock_guard lock(m);
    statuses.push_back(c.close(4002, "first"));
    statuses.push_back(c.close(4003, "second"));
    statuses.push_back(c.terminate());
    statuses.push_back(c.terminate());
    statuses.push_back(c.close());
    closed_inside_handler = on_close_ran.load();
  };
  h.on_close = [&](net::Connection&, std::uint16_t, std::string_view) { on_close_ran = true; };
  TestServer server({}, h);
  RawClient client(server.port());
  client.send(upgrade_request());
  ASSERT_NE(client.read_head().find("101"), std::string::npos);
  client.send(client_frame(0x81, "x"));
  client.read_all();  // terminate() drops what was queued, the close frame too
  EXPECT_TRUE(client.peer_closed());
  for (int i = 0; i < 200 && !on_close_ran; ++i) std::this_thread::sleep_for(10ms);
  std::lock_guard lock(m);
  EXPECT_EQ(statuses, (std::vector<net::CloseStatus>{net::CloseStatus::started, net::CloseStatus::closing,
                                                     net::CloseStatus::started, net::CloseStatus::closed,
                                                     net::CloseStatus::closed}));
  EXPECT_FALSE(closed_inside_handler);
  EXPECT_TRUE(on_close_ran);
}

TEST(ServerClose, PingIsAnsweredWithPong) {
  TestServer server;
  RawClient client(server.port());
  client.send(upgrade_request());
  ASSERT_NE(client.read_head().find("101"), std::string::npos);
  client.send(client_frame(0x89, "are you there"));
  const std::string reply = client.read_all(500ms);
  ASSERT_GE(reply.size(), 2u + 13u);
  EXPECT_EQ(static_cast<std::uint8_t>(reply[0]), 0x8A);
  EXPECT_EQ(reply.substr(2, 13), "are you there");
}

TEST(ServerTimers, SilentPeerIsPingedThenDropped) {
  net::ServerOptions options;
  options.timeouts.ping_interval = 200ms;
  options.timeouts.pong_timeout = 200ms;
  TestServer server(options);
  RawClient client(server.port());
  client.send(upgrade_request());
  ASSERT_NE(client.read_head().find("101"), std::string::npos);
  const std::string bytes = client.read_all(3000ms);  // we never answer
  ASSERT_FALSE(bytes.empty());
  EXPECT_EQ(static_cast<std::uint8_t>(bytes[0]), 0x89) << "a ping comes first";
  EXPECT_TRUE(client.peer_closed()) << "then the server drops the connection";
}

TEST(ServerTimers, PongKeepsTheConnectionAlive) {
  net::ServerOptions options;
  options.timeouts.ping_interval = 150ms;
  options.timeouts.pong_timeout = 300ms;
  net::Handlers h;
  std::atomic<int> pongs{0};
  TestServer server(options, h);
  // Our client answers pings automatically.
  net::EventLoop loop;
  bool closed = false;
  net::Handlers ch;
  ch.on_close = [&](net::Connection&, std::uint16_t, std::string_view) {
    closed = true;
    loop.stop();
  };
  ch.on_ping = [&](net::Connection&, std::string_view) { ++pongs; };
  net::ClientOptions co;
  co.timeouts.ping_interval = 0ms;
  auto conn = net::connect(loop, "ws://127.0.0.1:" + std::to_string(server.port()) + "/", co, ch);
  std::thread stopper([&] {
    std::this_thread::sleep_for(1500ms);
    loop.stop();
  });
  loop.run();
  stopper.join();
  EXPECT_FALSE(closed);
  EXPECT_GE(pongs.load(), 3);
}

TEST(ServerLimits, MaxConnectionsRefusesTheRest) {
  net::ServerOptions options;
  options.max_connections = 2;
  TestServer server(options);
  RawClient a(server.port()), b(server.port());
  a.send(upgrade_request());
  b.send(upgrade_request());
  ASSERT_NE(a.read_head().find("101"), std::string::npos);
  ASSERT_NE(b.read_head().find("101"), std::string::npos);
  RawClient c(server.port());
  c.send(upgrade_request());
  c.read_all(1000ms);
  EXPECT_TRUE(c.peer_closed());
}

TEST(ServerLimits, ClientThatNeverReadsIsCutOffAtTheSendBufferLimit) {
  net::ServerOptions options;
  options.max_send_buffer = 256 << 10;
  std::atomic<int> close_code{0};
  net::Handlers h;
  h.on_open = [](net::Connection& c) {
    if (c.target() != "/chat") return;  // only the raw client below never reads
    // Flood a client that never reads.
    const std::string chunk(64 << 10, 'x');
    for (int i = 0; i < 200 && c.is_open(); ++i) c.send_binary(chunk);
  };
  h.on_close = [&](net::Connection&, std::uint16_t code, std::string_view) { close_code = code; };
  TestServer server(options, h);
  RawClient client(server.port());
  client.send(upgrade_request());
  EXPECT_TRUE(eventually([&] { return close_code.load() != 0; }));
  EXPECT_EQ(close_code.load(), 1008);
  EXPECT_TRUE(echo_works(server.port()));
}

TEST(ServerShutdown, ShutdownSends1001ToEveryClient) {
  auto server = std::make_unique<TestServer>();
  RawClient client(server->port());
  client.send(upgrade_request());
  ASSERT_NE(client.read_head().find("101"), std::string::npos);
  server->server().shutdown(1001, 2000ms);
  EXPECT_EQ(close_code_in(client.read_all(1000ms)), 1001);
}

// On io_uring the kernel's pending multishot accept holds the listening
// socket open until it is cancelled: closing the descriptor alone would leave
// the port accepting connections nobody serves.
TEST(ServerShutdown, TheListeningSocketStopsAcceptingAtOnce) {
  TestServer server;
  const std::uint16_t port = server.port();
  ASSERT_TRUE(echo_works(port));
  server.server().shutdown(1001, 2000ms);
  bool refused = false;
  for (int i = 0; i < 100 && !refused; ++i) {
    bool connected = false;
    const int fd = test_support::connect_loopback(port, connected);
    ::close(fd);
    refused = !connected;
    if (!refused) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(refused) << "127.0.0.1:" << port << " still accepts connections 2 s after shutdown";
}

TEST(ClientConnect, ReportsRefusedConnectionAndBadUrl) {
  net::EventLoop loop;
  std::string error;
  net::Handlers h;
  h.on_error = [&](std::string_view e) {
    error = e;
    loop.stop();
  };
  net::connect(loop, "ftp://nope/", {}, h);
  loop.run();
  EXPECT_NE(error.find("scheme"), std::string::npos) << error;
  error.clear();
  // A port nobody listens on (bind one, close it, use its number).
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(s);
  net::connect(loop, "ws://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/", {}, h);
  loop.run();
  EXPECT_NE(error.find("cannot connect"), std::string::npos) << error;
}

TEST(ClientConnect, RejectsAServerThatIsNotWebSocket) {
  // A plain HTTP "server" that answers 200.
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::listen(listener, 1);
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  std::thread peer([&] {
    int c = ::accept(listener, nullptr, nullptr);
    char buf[4096];
    (void)::recv(c, buf, sizeof buf, 0);
    const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    (void)::send(c, reply, sizeof reply - 1, 0);
    std::this_thread::sleep_for(200ms);
    ::close(c);
  });
  net::EventLoop loop;
  std::string error;
  net::Handlers h;
  h.on_error = [&](std::string_view e) {
    error = e;
    loop.stop();
  };
  net::connect(loop, "ws://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/", {}, h);
  loop.run();
  peer.join();
  ::close(listener);
  EXPECT_NE(error.find("200"), std::string::npos) << error;
}

TEST(ServerBroadcast, PreparedMessageReachesEverySubscriberAcrossLoops) {
  // Two loops; every connection gets the same pre-encoded frame.
  net::ServerOptions options;
  options.threads = 2;
  std::mutex mu;
  std::vector<std::weak_ptr<net::Connection>> conns;
  net::Handlers h;
  h.on_open = [&](net::Connection& c) {
    std::lock_guard lock(mu);
    conns.push_back(c.weak_from_this());
  };
  h.on_message = [&](net::Connection&, protocol::Opcode, std::string_view payload) {
    auto message = std::make_shared<net::PreparedMessage>(protocol::Opcode::text, payload);
    std::lock_guard lock(mu);
    for (auto& w : conns)
      if (auto c = w.lock()) c->loop().post([w, message] {
        if (auto cc = w.lock()) cc->send_prepared(*message);
      });
  };
  TestServer server(options, h);
  constexpr int n = 20;
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < n; ++i) {
    clients.push_back(std::make_unique<RawClient>(server.port()));
    clients.back()->send(upgrade_request());
    ASSERT_NE(clients.back()->read_head().find("101"), std::string::npos);
  }
  for (int i = 0; i < 50 && [&] { std::lock_guard l(mu); return conns.size(); }() < n; ++i) std::this_thread::sleep_for(10ms);
  clients[0]->send(client_frame(0x81, "to everyone"));
  for (auto& c : clients) {
    std::string got;
    for (int i = 0; i < 20 && got.find("to everyone") == std::string::npos; ++i) got += c->read_all(50ms);
    EXPECT_NE(got.find("to everyone"), std::string::npos);
  }
}

TEST(ServerLimits, ConnectionsPerIpAreCappedAndFreedOnClose) {
  net::ServerOptions options;
  options.max_connections_per_ip = 3;
  TestServer server(options);
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<RawClient>(server.port()));
    ASSERT_TRUE(clients.back()->send(upgrade_request()));
    EXPECT_NE(clients.back()->read_head().find(" 101 "), std::string::npos);
  }
  // The fourth from the same address is closed at once.
  RawClient fourth(server.port());
  fourth.send(upgrade_request());
  EXPECT_EQ(fourth.read_all(500ms), "");
  EXPECT_TRUE(fourth.peer_closed());
  // Closing one (even by reset) frees its slot.
  clients.pop_back();
  EXPECT_TRUE(eventually([&] { return server.server().connection_count() == clients.size(); }));
  RawClient again(server.port());
  ASSERT_TRUE(again.send(upgrade_request()));
  EXPECT_NE(again.read_head().find(" 101 "), std::string::npos);
}
