// Resource-exhaustion attacks against the hub (GitHub issue #8): each test
// attacks a HubServer in-process over raw sockets (where the library client
// would refuse to misbehave), then asserts that the server's memory stayed
// bounded (VmRSS of this process) and that a well-behaved client, connected
// before the attack, still publishes and receives its message.
//
// The attacks of issue 13 (HubChildAttacks, EchoAttacks) run against a
// `duplex serve` or `duplex echo` child process instead, so that the memory
// measured (VmRSS/VmHWM in /proc/PID/status) is the server's alone, and check
// that a fresh client is served within 2 s during and after the attack.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "duplex/protocol/frame.hpp"
#include "duplex/protocol/permessage_deflate.hpp"
#include "hub_fixture.hpp"
#include "serve_process.hpp"
#include "../net/support.hpp"

using namespace hub_test;

namespace {

long status_kib(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::string_view(field).size()));
  return -1;
}

// Resident memory of this process (server and test clients alike), in KiB,
// now; and its peak since the last call, so a buffer that was allocated
// and freed during an attack still counts.
long rss_kib() {
  std::ofstream("/proc/self/clear_refs") << "5";  // resets VmHWM to the current RSS
  return status_kib("VmRSS:");
}
long peak_rss_kib() { return status_kib("VmHWM:"); }

// Generous for allocator noise and thread stacks, far below what any attack
// here would cost without its limit (megabytes per connection or message).
constexpr long memory_margin_kib = 48 << 10;

// AddressSanitizer keeps freed memory in quarantine (up to 256 MiB) and
// adds shadow memory, so RSS says nothing about leaks or buffering there:
// the sanitizer builds run the attacks for their other assertions only.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool rss_is_meaningful = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool rss_is_meaningful = false;
#else
constexpr bool rss_is_meaningful = true;
#endif
#else
constexpr bool rss_is_meaningful = true;
#endif

void report_memory(const char* attack, long before, long after) {
  std::printf("[memory] %-28s VmRSS %ld KiB -> peak %ld KiB (%+ld KiB)\n", attack, before, after, after - before);
}

#define EXPECT_MEMORY_BOUNDED(before, after)                 \
  do {                                                        \
    if (rss_is_meaningful) {                                  \
      EXPECT_LT((after) - (before), memory_margin_kib);      \
    }                                                         \
  } while (0)

// A frame from the server (never masked).
struct ServerFrame {
  protocol::Opcode opcode;
  std::string payload;
};

std::string client_frame(protocol::Opcode opcode, std::string_view payload, protocol::FrameFlags flags = {}) {
  std::string out;
  protocol::append_masked_frame(out, opcode, payload, protocol::MaskKey{0x5a, 0x17, 0xc3, 0x08}, flags);
  return out;
}

std::uint16_t close_code_of(const ServerFrame& f) {
  if (f.payload.size() < 2) return 1005;
  return static_cast<std::uint16_t>((static_cast<std::uint8_t>(f.payload[0]) << 8) | static_cast<std::uint8_t>(f.payload[1]));
}

// A blocking raw TCP client that speaks just enough WebSocket to attack.
class RawSocket {
 public:
  // `receive_buffer` > 0 shrinks the kernel receive buffer (set before
  // connect so the TCP window stays small): a client that never reads.
  explicit RawSocket(std::uint16_t port, int receive_buffer = 0) {
    fd_ = test_support::connect_loopback(port, connected_, receive_buffer);
  }
  ~RawSocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }
  bool eof() const { return eof_; }

  bool send(std::string_view bytes) {
    std::size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }
  // Whether the server has sent something (or closed) without blocking.
  bool readable() const {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  }

  // Sends what it can of `bytes` until `deadline` without ever blocking
  // past it (a server that stops reading must not hang the test): the number
  // of bytes sent; stops early on an error (the server closed).
  std::size_t send_until(std::string_view bytes, std::chrono::steady_clock::time_point deadline) {
    std::size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        off += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLOUT, 0};
      ::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 100)));
    }
    return off;
  }

  // The WebSocket upgrade to the hub; true on 101.
  bool upgrade(const std::string& token, std::string_view extra_headers = {}) {
    return upgrade_to("/connection/websocket" + (token.empty() ? std::string() : "?token=" + token),
                      "Sec-WebSocket-Protocol: duplex.v1\r\n" + std::string(extra_headers));
  }
  // The WebSocket upgrade to any server: `target` is the path and query.
  bool upgrade_to(const std::string& target, std::string_view extra_headers = {}) {
    std::string request = "GET " + target +
                          " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    request += extra_headers;
    request += "\r\n";
    if (!send(request)) return false;
    const auto deadline = std::chrono::steady_clock::now() + 3s;
    std::size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos)
      if (!read_some(deadline)) return false;
    head_ = buffer_.substr(0, end + 4);
    buffer_.erase(0, end + 4);
    return head_.rfind("HTTP/1.1 101", 0) == 0;
  }
  const std::string& head() const { return head_; }

  // The next server frame; nullopt on timeout or EOF.
  std::optional<ServerFrame> next_frame(std::chrono::milliseconds timeout = 3000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto f = parse_frame()) return f;
      if (!read_some(deadline)) return std::nullopt;
    }
  }
  // Reads frames until a close frame: its code, or 0 if none came. Counts
  // the text frames that were pushes of `type` on the way.
  std::uint16_t close_code(std::chrono::milliseconds timeout = 3000ms, std::size_t* text_frames = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (auto f = next_frame(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()))) {
      if (f->opcode == protocol::Opcode::close) return close_code_of(*f);
      if (text_frames && f->opcode == protocol::Opcode::text) ++*text_frames;
    }
    return 0;
  }
  // The next HTTP response (Content-Length bodies only, as the hub sends
  // them); nullopt on timeout, EOF or a head it cannot read.
  struct HttpResponse {
    int status = 0;
    std::string head, body;
  };
  std::optional<HttpResponse> next_http_response(std::chrono::milliseconds timeout = 3000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos)
      if (!read_some(deadline)) return std::nullopt;
    HttpResponse r;
    r.head = buffer_.substr(0, end + 4);
    if (r.head.rfind("HTTP/1.1 ", 0) != 0 || r.head.size() < 12) return std::nullopt;
    r.status = std::atoi(r.head.c_str() + 9);
    std::size_t length = 0;
    if (const auto at = r.head.find("Content-Length: "); at != std::string::npos) length = std::stoul(r.head.substr(at + 16));
    while (buffer_.size() < end + 4 + length)
      if (!read_some(deadline)) return std::nullopt;
    r.body = buffer_.substr(end + 4, length);
    buffer_.erase(0, end + 4 + length);
    return r;
  }
  // Reads HTTP responses until the server ends the connection (EOF or a
  // reset), at most `cap` bytes and until `deadline`, counting the complete
  // ones that were 200 and the others (a part-sent last one is not counted):
  // whether it ended, and the bytes read (through *read).
  bool drain_http_until_closed(std::size_t cap, std::chrono::steady_clock::time_point deadline, std::size_t& ok,
                               std::size_t& not_ok, std::size_t* read = nullptr) {
    const std::size_t start = received_ - buffer_.size();
    for (;;) {
      std::size_t end;
      while ((end = buffer_.find("\r\n\r\n")) != std::string::npos) {
        std::size_t length = 0;
        if (const auto at = buffer_.find("Content-Length: "); at != std::string::npos && at < end)
          length = std::stoul(buffer_.substr(at + 16, 12));
        if (buffer_.size() < end + 4 + length) break;
        (buffer_.rfind("HTTP/1.1 200 ", 0) == 0 ? ok : not_ok) += 1;
        buffer_.erase(0, end + 4 + length);
      }
      if (received_ - start >= cap || !read_some(deadline)) break;
    }
    if (read) *read = received_ - start;
    return eof_;
  }

  // Reads and discards until the server ends the connection (EOF or reset),
  // at most `cap` bytes and until `deadline`: whether it ended, and the
  // bytes read (through *read).
  bool drain_until_closed(std::size_t cap, std::chrono::steady_clock::time_point deadline, std::size_t* read = nullptr) {
    std::size_t total = buffer_.size();
    buffer_.clear();
    while (total < cap) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char chunk[65536];
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) {
        eof_ = true;
        break;
      }
      total += static_cast<std::size_t>(n);
    }
    if (read) *read = total;
    return eof_;
  }

  // The first text frame containing `needle`; nullopt if a close or EOF came first.
  std::optional<std::string> text_containing(std::string_view needle, std::chrono::milliseconds timeout = 3000ms,
                                             std::size_t* pongs = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (auto f = next_frame(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()))) {
      if (f->opcode == protocol::Opcode::close) return std::nullopt;
      if (f->opcode == protocol::Opcode::pong && pongs) ++*pongs;
      if (f->opcode == protocol::Opcode::text && f->payload.find(needle) != std::string::npos) return f->payload;
    }
    return std::nullopt;
  }

 private:
  bool read_some(std::chrono::steady_clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || eof_) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char chunk[65536];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
    received_ += static_cast<std::size_t>(n);
    return true;
  }
  std::optional<ServerFrame> parse_frame() {
    if (buffer_.size() < 2) return std::nullopt;
    const auto byte = [&](std::size_t i) { return static_cast<std::uint64_t>(static_cast<std::uint8_t>(buffer_[i])); };
    std::uint64_t length = byte(1) & 0x7F;
    std::size_t header = 2;
    if (length == 126) {
      if (buffer_.size() < 4) return std::nullopt;
      length = (byte(2) << 8) | byte(3);
      header = 4;
    } else if (length == 127) {
      if (buffer_.size() < 10) return std::nullopt;
      length = 0;
      for (std::size_t i = 2; i < 10; ++i) length = (length << 8) | byte(i);
      header = 10;
    }
    if (buffer_.size() < header + length) return std::nullopt;
    ServerFrame f{static_cast<protocol::Opcode>(byte(0) & 0x0F), buffer_.substr(header, static_cast<std::size_t>(length))};
    buffer_.erase(0, header + static_cast<std::size_t>(length));
    return f;
  }

  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::size_t received_ = 0;  // bytes read from the socket in all
  std::string buffer_;
  std::string head_;
};

// An authenticated raw connection that has seen its `connected` push.
std::unique_ptr<RawSocket> raw_session(Server& server, const std::string& user, int receive_buffer = 0) {
  auto s = std::make_unique<RawSocket>(server.port(), receive_buffer);
  if (!s->connected() || !s->upgrade(token_for(user))) throw std::runtime_error("raw upgrade failed: " + s->head());
  if (!s->text_containing("\"connected\"")) throw std::runtime_error("no connected push");
  return s;
}

// A well-behaved client, connected and subscribed before the attack starts;
// `served()` publishes and waits for its own message.
class Bystander {
 public:
  explicit Bystander(Server& server, std::string channel = "chat:bystander")
      : client_(connect_as(server, "bystander")), channel_(std::move(channel)) {
    auto r = client_->call(next_id_++, R"({"type":"subscribe","id":1,"channel":")" + channel_ + "\"}");
    if (r->has("/error")) throw std::runtime_error("bystander subscribe failed: " + r->text);
  }
  bool served() {
    const std::uint64_t id = next_id_++;
    const std::string marker = "still-served-" + std::to_string(id);
    auto r = client_->call(id, R"({"type":"publish","id":)" + std::to_string(id) + R"(,"channel":")" + channel_ +
                                   R"(","data":{"text":")" + marker + "\"}}");
    if (r->has("/error")) return false;
    auto m = client_->next("message", 5000ms);
    return m->str_at("/data/text") == marker;
  }

 private:
  std::unique_ptr<Client> client_;
  std::string channel_;
  std::uint64_t next_id_ = 1;
};

// A fresh client after the attack: connects, subscribes, publishes, receives.
bool fresh_client_served(Server& server) {
  Bystander late(server, "chat:after-attack");
  return late.served();
}

}  // namespace

TEST(HubAttacks, ThousandsOfHalfOpenHandshakesAreCutAtTheHandshakeTimeout) {
  auto config = test_config();
  config.server.timeouts.handshake = 1500ms;
  Server server(config);
  Bystander bystander(server);
  const long before = rss_kib();

  // 2000 sockets here and 2000 in the server: raise the soft descriptor
  // limit if need be (scaling down only where the hard limit forbids).
  rlimit files{};
  ::getrlimit(RLIMIT_NOFILE, &files);
  if (files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  const std::size_t attackers = std::min<std::size_t>(2000, (static_cast<std::size_t>(files.rlim_cur) - 256) / 2);
  std::vector<std::unique_ptr<RawSocket>> sockets;
  sockets.reserve(attackers);
  for (std::size_t i = 0; i < attackers; ++i) {
    sockets.push_back(std::make_unique<RawSocket>(server.port()));
    ASSERT_TRUE(sockets.back()->connected()) << i;
    sockets.back()->send("GET /connection/websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n");  // and never finishes
  }
  EXPECT_TRUE(bystander.served()) << "while 2000 handshakes hang";
  const long during = peak_rss_kib();

  // Every half-open connection is closed by the server.
  std::vector<pollfd> fds;
  for (auto& s : sockets) fds.push_back(pollfd{s->fd(), POLLIN, 0});
  std::size_t closed = 0;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (closed < attackers && std::chrono::steady_clock::now() < deadline) {
    if (::poll(fds.data(), fds.size(), 200) <= 0) continue;
    for (auto& p : fds) {
      if (p.fd < 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char byte;
      if (::recv(p.fd, &byte, 1, MSG_DONTWAIT) <= 0) {
        ++closed;
        p.fd = -1;  // poll ignores it from now on
      }
    }
  }
  EXPECT_EQ(closed, attackers);
  sockets.clear();
  report_memory("2000 half-open handshakes", before, std::max(during, peak_rss_kib()));
  EXPECT_MEMORY_BOUNDED(before, std::max(during, peak_rss_kib()));
  EXPECT_TRUE(bystander.served());
  EXPECT_TRUE(fresh_client_served(server));
}

TEST(HubAttacks, PingFloodIsAnsweredAndTheConnectionStaysResponsive) {
  Server server;
  Bystander bystander(server);
  auto attacker = raw_session(server, "pinger");
  const long before = rss_kib();

  constexpr std::size_t pings = 5000;
  std::string flood;
  for (std::size_t i = 0; i < pings; ++i) flood += client_frame(protocol::Opcode::ping, "ping");
  ASSERT_TRUE(attacker->send(flood));
  EXPECT_TRUE(bystander.served()) << "during the flood";
  ASSERT_TRUE(attacker->send(client_frame(protocol::Opcode::text, R"({"type":"ping","id":77})")));
  std::size_t pongs = 0;
  const auto reply = attacker->text_containing("\"id\":77", 10000ms, &pongs);
  ASSERT_TRUE(reply.has_value()) << "the flooder's own command went unanswered";
  EXPECT_NE(reply->find("\"result\":{}"), std::string::npos) << *reply;
  EXPECT_LE(pongs, pings);
  const long after = peak_rss_kib();
  report_memory("5000 pings", before, after);
  std::printf("[ping flood] %zu pongs for %zu pings before the reply\n", pongs, pings);
  EXPECT_MEMORY_BOUNDED(before, after);
  EXPECT_TRUE(bystander.served());
}

TEST(HubAttacks, FrameHeaderDeclaringAHugeLengthIsClosedWith1009WithoutAllocating) {
  Server server;
  Bystander bystander(server);
  auto attacker = raw_session(server, "liar");
  const long before = rss_kib();

  // A text frame claiming 2^40 bytes (1 TiB), then a few bytes of it.
  std::string header = {static_cast<char>(0x81), static_cast<char>(0x80 | 127)};
  const std::uint64_t length = 1ull << 40;
  for (int shift = 56; shift >= 0; shift -= 8) header.push_back(static_cast<char>((length >> shift) & 0xFF));
  header += std::string("\x01\x02\x03\x04", 4) + std::string(64, 'x');
  ASSERT_TRUE(attacker->send(header));
  EXPECT_EQ(attacker->close_code(), hub::disconnect_code::too_large);
  const long after = peak_rss_kib();
  report_memory("1 TiB frame header", before, after);
  EXPECT_MEMORY_BOUNDED(before, after);
  EXPECT_TRUE(bystander.served());
}

TEST(HubAttacks, EndlessFragmentedMessageIsClosedWith1009AtTheCommandLimit) {
  Server server;  // default limits: commands up to 64 KiB
  Bystander bystander(server);
  auto attacker = raw_session(server, "fragmenter");
  const long before = rss_kib();

  // A text message that never ends: 16 KiB fragments, up to 32 MiB in all
  // (beyond any message limit) unless the server closes first.
  const std::string piece(16 << 10, 'a');
  protocol::FrameFlags more;
  more.fin = false;
  std::size_t sent = 0;
  bool cut = false;
  ASSERT_TRUE(attacker->send(client_frame(protocol::Opcode::text, piece, more)));
  sent += piece.size();
  while (sent < (32u << 20)) {
    if (attacker->readable()) {
      cut = true;
      break;
    }
    if (!attacker->send(client_frame(protocol::Opcode::continuation, piece, more))) break;
    sent += piece.size();
  }
  EXPECT_TRUE(cut || attacker->readable()) << "the server never reacted to " << sent << " bytes";
  EXPECT_EQ(attacker->close_code(), hub::disconnect_code::too_large);
  std::printf("[fragments] server closed after the client sent %zu KiB\n", sent >> 10);
  // The close comes once 64 KiB are buffered; what the client sent beyond
  // that sat in kernel buffers meanwhile (a few MiB on loopback at most).
  EXPECT_LT(sent, 8u << 20);
  const long after = peak_rss_kib();
  report_memory("endless fragmented message", before, after);
  EXPECT_MEMORY_BOUNDED(before, after);
  EXPECT_TRUE(bystander.served());
}

TEST(HubAttacks, CompressionBombIsClosedWith1009AndMemoryStaysBounded) {
  auto config = test_config();
  config.server.deflate.mode = net::DeflateMode::shared;
  Server server(config);
  Bystander bystander(server);
  auto attacker = std::make_unique<RawSocket>(server.port());
  ASSERT_TRUE(attacker->upgrade(token_for("bomber"), "Sec-WebSocket-Extensions: permessage-deflate\r\n")) << attacker->head();
  ASSERT_NE(attacker->head().find("permessage-deflate"), std::string::npos) << attacker->head();
  auto connected = attacker->next_frame();  // compressed: not looked into
  ASSERT_TRUE(connected && connected->opcode == protocol::Opcode::text);

  // 64 MiB of one letter compresses to about 64 KiB; inflated in full it
  // would cost the server 64 MiB (and more while the string grows). Built
  // before measuring: its 64 MiB source is the test's, not the server's.
  std::string bomb;
  {
    protocol::PerMessageDeflate client_side(protocol::DeflateParams{}, false);
    ASSERT_TRUE(client_side.compress(std::string(64u << 20, 'a'), bomb));
  }
  const long before = rss_kib();
  std::printf("[bomb] %zu KiB compressed, 65536 KiB inflated\n", bomb.size() >> 10);
  protocol::FrameFlags compressed;
  compressed.rsv1 = true;
  attacker->send(client_frame(protocol::Opcode::text, bomb, compressed));
  EXPECT_EQ(attacker->close_code(), hub::disconnect_code::too_large);
  const long after = peak_rss_kib();
  report_memory("compression bomb", before, after);
  EXPECT_MEMORY_BOUNDED(before, after);
  EXPECT_TRUE(bystander.served());
}

TEST(HubAttacks, SubscriberThatNeverReadsIsCutWith1008AndOthersKeepReceiving) {
  auto config = test_config();
  config.server.max_send_buffer = 256u << 10;
  config.limits.publish_rate = 1e6;  // the publisher below is legitimate, just busy
  config.limits.publish_burst = 1e6;
  hub::NamespaceOptions busy;
  busy.allow_publish = true;  // no history: the pushes are the only copies
  config.namespaces["busy"] = busy;
  Server server(config);
  Bystander bystander(server);
  auto reader = connect_as(server, "reader");
  ASSERT_FALSE(reader->call(1, R"({"type":"subscribe","id":1,"channel":"busy:feed"})")->has("/error"));
  auto stalled = raw_session(server, "stalled", 4096);
  ASSERT_TRUE(stalled->send(client_frame(protocol::Opcode::text, R"({"type":"subscribe","id":1,"channel":"busy:feed"})")));
  ASSERT_TRUE(stalled->text_containing("\"id\":1").has_value());
  const long before = rss_kib();

  // 480 messages of 16 KiB (7.5 MiB, more than the kernel buffers of the
  // stalled connection hold) while `stalled` reads nothing. In lockstep
  // batches of 128 KiB that the reader consumes before the next: however
  // loaded the machine, the reader is never a slow consumer itself.
  auto publisher = connect_as(server, "publisher");
  constexpr std::size_t messages = 480, batch = 8;
  const std::string filler(16u << 10, 'z');
  for (std::size_t first = 1; first <= messages; first += batch) {
    for (std::size_t i = first; i < first + batch; ++i)
      publisher->send(R"({"type":"publish","id":)" + std::to_string(i) + R"(,"channel":"busy:feed","data":")" + filler + "\"}");
    for (std::size_t i = first; i < first + batch; ++i) ASSERT_FALSE(publisher->reply(i, 10000ms)->has("/error")) << i;
    for (std::size_t i = first; i < first + batch; ++i) ASSERT_EQ(reader->next("message", 10000ms)->u64("offset"), i);
  }
  const long after = peak_rss_kib();

  // Now `stalled` reads: some messages, then the end of the connection.
  std::size_t delivered = 0;
  const std::uint16_t code = stalled->close_code(5000ms, &delivered);
  EXPECT_TRUE(code == hub::disconnect_code::slow || (code == 0 && stalled->eof())) << code;
  EXPECT_LT(delivered, messages);
  std::printf("[never reads] stalled client got %zu of %zu messages, close code %u\n", delivered, messages, code);
  report_memory("subscriber that never reads", before, after);
  EXPECT_MEMORY_BOUNDED(before, after);
  EXPECT_TRUE(bystander.served());
}

TEST(HubAttacks, InvalidUtf8TextFramesAtHighRateGet1007Each) {
  Server server;
  Bystander bystander(server);
  const long before = rss_kib();
  for (int i = 0; i < 200; ++i) {
    auto attacker = raw_session(server, "mojibake");
    attacker->send(client_frame(protocol::Opcode::text, "{\"type\":\"ping\",\"id\":1,\"x\":\"\xC3\x28\xFF\"}"));
    ASSERT_EQ(attacker->close_code(), 1007) << i;
  }
  const long after = peak_rss_kib();
  report_memory("200 invalid UTF-8 frames", before, after);
  EXPECT_MEMORY_BOUNDED(before, after);
  EXPECT_TRUE(bystander.served());
}

TEST(HubAttacks, MalformedCommandsAtHighRateGet4500AndOversizedOnes1009) {
  auto config = test_config();
  config.limits.max_command_bytes = 4096;
  Server server(config);
  Bystander bystander(server);
  const long before = rss_kib();
  const std::vector<std::string> malformed = {"not json", "[1,2,3]", "42", "\"a string\"", "null", "{\"type\":\"ping\"}",
                                              "{\"type\":7,\"id\":1}", "{\"id\":1}", "{\"type\":\"ping\",\"id\":0}",
                                              "{\"type\":\"ping\",\"id\":1", std::string(40, '[') + std::string(40, ']')};
  for (int round = 0; round < 30; ++round) {
    for (const auto& text : malformed) {
      auto attacker = raw_session(server, "garbler");
      attacker->send(client_frame(protocol::Opcode::text, text));
      ASSERT_EQ(attacker->close_code(), hub::disconnect_code::bad_request) << text;
    }
  }
  // Valid JSON, but over limits.max_command_bytes.
  for (int i = 0; i < 20; ++i) {
    auto attacker = raw_session(server, "oversized");
    attacker->send(client_frame(protocol::Opcode::text,
                                R"({"type":"publish","id":1,"channel":"chat:x","data":")" + std::string(5000, 'o') + "\"}"));
    ASSERT_EQ(attacker->close_code(), hub::disconnect_code::too_large) << i;
  }
  const long after = peak_rss_kib();
  report_memory("350 malformed/oversized", before, after);
  EXPECT_MEMORY_BOUNDED(before, after);
  EXPECT_TRUE(bystander.served());
}

TEST(HubAttacks, PublishFloodGets110ThenDisconnect4004) {
  auto config = test_config();
  config.limits.publish_rate = 0.2;  // no refill during the test
  config.limits.publish_burst = 5;
  config.limits.rate_violations_before_disconnect = 10;
  Server server(config);
  Bystander bystander(server);
  auto flooder = connect_as(server, "flooder");
  const auto publish = [&](std::uint64_t id) {
    flooder->send(R"({"type":"publish","id":)" + std::to_string(id) + R"(,"channel":"chat:flood","data":1})");
  };
  // The burst is accepted (replies come once stored: wait for them, the
  // disconnect below would overtake them).
  for (std::uint64_t id = 1; id <= 5; ++id) publish(id);
  for (std::uint64_t id = 1; id <= 5; ++id) ASSERT_FALSE(flooder->reply(id)->has("/error")) << id;
  // Then 10 violations get 110 and the 11th disconnects.
  for (std::uint64_t id = 6; id <= 40; ++id) publish(id);
  for (std::uint64_t id = 6; id <= 15; ++id)
    EXPECT_EQ(flooder->reply(id)->u64_at("/error/code"), hub::error_code::too_many_requests) << id;
  auto goodbye = flooder->next("disconnect");
  EXPECT_EQ(goodbye->u64("code"), hub::disconnect_code::rate_limited);
  ASSERT_TRUE(flooder->wait_closed());
  EXPECT_EQ(flooder->close_code(), hub::disconnect_code::rate_limited);
  EXPECT_TRUE(bystander.served());
}

TEST(HubAttacks, TooManySubscriptionsGet106) {
  auto config = test_config();
  config.limits.max_subscriptions = 5;
  Server server(config);
  auto greedy = connect_as(server, "greedy");
  for (std::uint64_t id = 1; id <= 5; ++id)
    ASSERT_FALSE(greedy->call(id, R"({"type":"subscribe","id":)" + std::to_string(id) + R"(,"channel":"chat:c)" +
                                      std::to_string(id) + "\"}")
                     ->has("/error"));
  for (std::uint64_t id = 6; id <= 50; ++id) {
    auto r = greedy->call(id, R"({"type":"subscribe","id":)" + std::to_string(id) + R"(,"channel":"chat:c)" +
                                  std::to_string(id) + "\"}");
    ASSERT_EQ(r->u64_at("/error/code"), hub::error_code::limit_exceeded) << r->text;
  }
  // Unsubscribing frees a slot; the connection was never dropped.
  ASSERT_FALSE(greedy->call(51, R"({"type":"unsubscribe","id":51,"channel":"chat:c1"})")->has("/error"));
  EXPECT_FALSE(greedy->call(52, R"({"type":"subscribe","id":52,"channel":"chat:c6"})")->has("/error"));
  EXPECT_TRUE(fresh_client_served(server));
}

// ---- issue 13: attacks on a `duplex serve` / `duplex echo` child process ----------

namespace {

namespace fs = std::filesystem;

// A field of /proc/PID/status, in KiB (-1 if unreadable).
long child_status_kib(pid_t pid, const char* field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::string_view(field).size()));
  return -1;
}
// The child's resident memory now, its peak reset to it (so that the peak
// read later is the attack's).
long child_rss_kib(pid_t pid) {
  std::ofstream("/proc/" + std::to_string(pid) + "/clear_refs") << "5";
  return child_status_kib(pid, "VmRSS:");
}
long child_peak_kib(pid_t pid) { return child_status_kib(pid, "VmHWM:"); }

double mib(long kib) { return static_cast<double>(kib) / 1024.0; }
void report_server_memory(const char* attack, long before, long peak, long after) {
  std::printf("[memory] %-40s server VmRSS %.1f MiB before, peak %.1f MiB (%+.1f MiB), %.1f MiB after\n", attack,
              mib(before), mib(peak), mib(peak - before), mib(after));
}

#define EXPECT_GROWTH_BELOW(before, peak, bound_kib)                                    \
  do {                                                                                  \
    if (rss_is_meaningful) {                                                            \
      EXPECT_LT((peak) - (before), (bound_kib)) << "server grew by " << mib((peak) - (before)) << " MiB"; \
    }                                                                                   \
  } while (0)

// A scratch directory for one child's config and log, removed at the end.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name) {
    std::string pattern = (fs::temp_directory_path() / ("duplex-attack-" + name + "-XXXXXX")).string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp " + pattern);
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// `duplex serve` with the memory engine, this file's HMAC secret, the
// library's default 1 MiB send buffer and a 1 s handshake timeout (which
// also bounds how long a keep-alive socket may hold owed bytes undrained).
class HubChild {
 public:
  explicit HubChild(const std::string& name) : dir_(name) {
    std::ofstream(dir_ / "duplex.toml") << "[engine]\ntype = \"memory\"\n[auth]\nhmac_secret = \"" << secret
                                        << "\"\n[namespaces.chat]\nallow_publish = true\n"
                                           "[server.timeouts]\nhandshake = \"1s\"\n";
    serve_ = std::make_unique<ServeProcess>(dir_ / "duplex.toml", dir_ / "log",
                                            std::vector<std::string>{"--threads", "2", "--log-level", "warn"});
  }
  std::uint16_t port() const { return serve_->port(); }
  pid_t pid() const { return serve_->pid(); }
  bool running() const { return serve_->running(); }
  std::string log() const { return serve_->log(); }

 private:
  ScratchDir dir_;
  std::unique_ptr<ServeProcess> serve_;
};

using Clock = std::chrono::steady_clock;
std::chrono::milliseconds since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}
constexpr auto served_within = 2000ms;
// What "not served" reads as in the time figures below.
constexpr auto never = std::chrono::milliseconds(99'999);

// A normal client of the hub, fresh: GET /healthz on a new socket, then a
// WebSocket session that sees `connected` and a reply to its ping command.
// How long it all took, or `never` if any step failed or took over 2 s.
std::chrono::milliseconds hub_served_in(std::uint16_t port) {
  const auto start = Clock::now();
  const auto left = [&] { return std::max(1ms, served_within - since(start)); };
  {
    RawSocket http(port);
    if (!http.connected() || !http.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")) return never;
    auto r = http.next_http_response(left());
    if (!r || r->status != 200) return never;
  }
  try {
    Client ws(port, "?token=" + token_for("bystander"));
    if (!ws.wait_open(left())) return never;
    ws.next("connected", left());
    ws.send(R"({"type":"ping","id":1})");
    if (ws.reply(1, left())->has("/error")) return never;
  } catch (const std::exception&) {
    return never;
  }
  const auto took = since(start);
  return took <= served_within ? took : never;
}

// Pipelined requests of `path` on one keep-alive socket whose owner never
// reads (a 4 KiB receive window): the responses may cost the server at most
// its send buffer plus what it read of the requests, and once the socket
// stops draining it is dropped within the handshake timeout (1 s here).
void pipelined_requests_never_read(const char* path, std::size_t requests) {
  HubChild hub(std::string("pipeline") + (path + 1));
  ASSERT_LE(hub_served_in(hub.port()).count(), served_within.count()) << hub.log();
  {  // the path once, normally: whatever it loads on first use is not the attack's
    RawSocket warm(hub.port());
    ASSERT_TRUE(warm.send(std::string("GET ") + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
    auto r = warm.next_http_response();
    ASSERT_TRUE(r && r->status == 200) << path;
  }
  const long before = child_rss_kib(hub.pid());

  RawSocket attacker(hub.port(), 4096);
  ASSERT_TRUE(attacker.connected());
  // Ten requests every 2 ms, as a client sending at its own pace would (all
  // at once, today's server reads part of them out of order and gives up with
  // a 400 before the memory shows). The server may stop reading them (it owes
  // too much): then the rest stays unsent.
  const std::string request = std::string("GET ") + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  std::string ten;
  for (int i = 0; i < 10; ++i) ten += request;
  std::size_t sent = 0;
  std::thread sender([&] {
    const auto deadline = Clock::now() + 3s;
    for (std::size_t i = 0; i < requests / 10 && Clock::now() < deadline; ++i) {
      const std::size_t n = attacker.send_until(ten, deadline);
      sent += n;
      if (n < ten.size()) break;
      std::this_thread::sleep_for(2ms);
    }
  });
  const auto during = hub_served_in(hub.port());
  sender.join();
  EXPECT_LE(during.count(), served_within.count()) << "while the pipelined requests are answered";

  // The handshake timeout (1 s) passes with nothing drained, then some slack.
  std::this_thread::sleep_for(2000ms);
  const long peak = child_peak_kib(hub.pid());
  // Now the attacker reads: a dropped socket gives at most what the kernel
  // buffers held, then EOF (or a reset). 16 MiB without an end means the
  // server is still producing responses for it.
  std::size_t read = 0, ok = 0, not_ok = 0;
  const bool dropped = attacker.drain_http_until_closed(16u << 20, Clock::now() + 3s, ok, not_ok, &read);
  const auto after = hub_served_in(hub.port());
  const long after_kib = child_status_kib(hub.pid(), "VmRSS:");

  std::printf("[pipelined %s] %zu of %zu requests sent (%zu KiB); the attacker then read %zu KiB: %zu responses "
              "200, %zu others; dropped: %s; a fresh client served in %lld ms during, %lld ms after\n",
              path, sent / request.size(), requests, sent >> 10, read >> 10, ok, not_ok, dropped ? "yes" : "no",
              static_cast<long long>(during.count()), static_cast<long long>(after.count()));
  report_server_memory((std::to_string(requests) + " pipelined GET " + path + ", never read").c_str(), before, peak,
                       after_kib);
  // The send buffer (1 MiB) plus the requests read, one response over, and
  // allocator slack: far below the unbounded server's growth (+200 MiB for
  // 3,000 GET /duplex.js, +35 MiB for 5,000 GET /metrics).
  EXPECT_GROWTH_BELOW(before, peak, 16 << 10);
  EXPECT_EQ(not_ok, 0u) << "valid requests answered with an error";
  EXPECT_TRUE(dropped) << "the socket was neither drained nor dropped; read " << (read >> 10) << " KiB";
  EXPECT_LE(after.count(), served_within.count()) << "after the attack";
  EXPECT_TRUE(hub.running()) << hub.log();
}

}  // namespace

TEST(HubChildAttacks, PipelinedGetDuplexJsNeverReadIsBoundedAndDropped) {
  pipelined_requests_never_read("/duplex.js", 3000);
}

TEST(HubChildAttacks, PipelinedGetMetricsNeverReadIsBoundedAndDropped) {
  pipelined_requests_never_read("/metrics", 5000);
}

// 100,000 pings of 125 B on an authenticated session whose pongs are never
// read: owed pongs coalesce (a pong answers only the latest ping) or count
// against the 1 MiB send buffer, over which the connection is closed 1008.
TEST(HubChildAttacks, PongFloodNeverReadIsBounded) {
  HubChild hub("pongs");
  ASSERT_LE(hub_served_in(hub.port()).count(), served_within.count()) << hub.log();
  auto attacker = std::make_unique<RawSocket>(hub.port(), 4096);
  ASSERT_TRUE(attacker->connected() && attacker->upgrade(token_for("pinger"))) << attacker->head();
  ASSERT_TRUE(attacker->text_containing("\"connected\""));
  const long before = child_rss_kib(hub.pid());

  constexpr std::size_t pings = 100'000;
  const std::string payload(protocol::max_control_payload, 'p');
  std::string flood;
  flood.reserve(pings * (payload.size() + 6));
  for (std::size_t i = 0; i < pings; ++i) flood += client_frame(protocol::Opcode::ping, payload);
  std::size_t sent = 0;
  std::thread sender([&] { sent = attacker->send_until(flood, Clock::now() + 5s); });
  const auto during = hub_served_in(hub.port());
  sender.join();
  std::this_thread::sleep_for(500ms);  // what was sent is read and answered meanwhile
  const long peak = child_peak_kib(hub.pid());

  // Now the attacker reads: either the session was closed (1008) or it is
  // still open and answers its own command after the pongs it is owed.
  attacker->send_until(client_frame(protocol::Opcode::text, R"({"type":"ping","id":77})"), Clock::now() + 1s);
  std::size_t pongs = 0;
  const auto reply = attacker->text_containing("\"id\":77", 5000ms, &pongs);
  const bool closed = !reply.has_value();
  std::uint16_t code = 0;
  if (closed && !attacker->eof()) code = attacker->close_code(1000ms);
  const auto after = hub_served_in(hub.port());
  const long after_kib = child_status_kib(hub.pid(), "VmRSS:");

  std::printf("[pong flood] %zu of %zu pings sent (%zu KiB), %zu pongs read, then %s; a fresh client served in "
              "%lld ms during, %lld ms after\n",
              sent / (payload.size() + 6), pings, sent >> 10, pongs,
              closed ? ("closed, code " + std::to_string(code)).c_str() : "the command was answered",
              static_cast<long long>(during.count()), static_cast<long long>(after.count()));
  report_server_memory("100,000 pings of 125 B, pongs never read", before, peak, after_kib);
  // The send buffer (1 MiB) and slack; unbounded pongs cost the server
  // +14 MiB (100,000 x 127 B).
  EXPECT_GROWTH_BELOW(before, peak, 8 << 10);
  EXPECT_LE(pongs, pings);
  if (closed) {
    EXPECT_TRUE(code == hub::disconnect_code::slow || attacker->eof()) << code;
  }
  EXPECT_LE(during.count(), served_within.count()) << "during the flood";
  EXPECT_LE(after.count(), served_within.count()) << "after the flood";
  EXPECT_TRUE(hub.running()) << hub.log();
}

// 1,000 valid pipelined requests in chunks of 100 on one keep-alive socket,
// read as they come (two chunks in flight): each answered 200, in order. The paths alternate in the
// Thue-Morse sequence between /healthz and /readyz (different bodies), so a
// response lost, repeated or out of order shows.
TEST(HubChildAttacks, PipelinedRequestsAreAllAnsweredInOrder) {
  HubChild hub("in-order");
  ASSERT_LE(hub_served_in(hub.port()).count(), served_within.count()) << hub.log();
  const long before = child_rss_kib(hub.pid());
  RawSocket client(hub.port());
  ASSERT_TRUE(client.connected());
  constexpr std::size_t requests = 1000, chunk = 100;
  const auto readyz = [](std::size_t i) { return std::popcount(i) % 2 == 1; };
  const auto send_chunk = [&](std::size_t first) {
    std::string batch;
    for (std::size_t i = first; i < first + chunk; ++i)
      batch += std::string("GET ") + (readyz(i) ? "/readyz" : "/healthz") + "?i=" + std::to_string(i) +
               " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    return client.send(batch);
  };
  // Two chunks in flight: the next is sent once the oldest is answered, so
  // requests arrive while earlier ones are still being answered.
  ASSERT_TRUE(send_chunk(0) && send_chunk(chunk));
  std::size_t answered = 0;
  for (std::size_t first = 0; first < requests; first += chunk) {
    for (std::size_t i = first; i < first + chunk; ++i) {
      auto r = client.next_http_response(3000ms);
      ASSERT_TRUE(r.has_value()) << "no response to request " << i << " (" << answered << " answered)";
      ASSERT_EQ(r->status, 200) << "request " << i << ": " << r->head << r->body;
      ASSERT_EQ(r->body, readyz(i) ? "ready\n" : "ok\n") << "request " << i << " answered out of order";
      ++answered;
    }
    if (first + 2 * chunk < requests) {
      ASSERT_TRUE(send_chunk(first + 2 * chunk)) << "at request " << first + 2 * chunk;
    }
  }
  const long peak = child_peak_kib(hub.pid());
  const auto after = hub_served_in(hub.port());
  std::printf("[pipelined in order] %zu of %zu answered 200 in order; a fresh client served in %lld ms after\n",
              answered, requests, static_cast<long long>(after.count()));
  report_server_memory("1,000 pipelined GET /healthz|/readyz", before, peak, child_status_kib(hub.pid(), "VmRSS:"));
  EXPECT_GROWTH_BELOW(before, peak, 16 << 10);
  EXPECT_LE(after.count(), served_within.count());
}

namespace {

// `duplex echo` with its defaults (two loops, no pings).
class EchoChild {
 public:
  explicit EchoChild(std::vector<std::string> flags = {}) : dir_("echo") {
    std::vector<std::string> args = {"echo", "--listen", "127.0.0.1:0", "--threads", "2", "--ping-interval", "0"};
    args.insert(args.end(), flags.begin(), flags.end());
    echo_ = std::make_unique<DuplexProcess>(args, dir_ / "log");
  }
  std::uint16_t port() const { return echo_->port(); }
  pid_t pid() const { return echo_->pid(); }
  bool running() const { return echo_->running(); }
  std::string log() const { return echo_->log(); }

 private:
  ScratchDir dir_;
  std::unique_ptr<DuplexProcess> echo_;
};

// A fresh echo client: upgrade, one text message, its echo. How long it
// took, or `never` if it failed or took over 2 s.
std::chrono::milliseconds echo_served_in(std::uint16_t port, int n) {
  const auto start = Clock::now();
  RawSocket client(port);
  if (!client.connected() || !client.upgrade_to("/")) return never;
  const std::string text = "still echoed " + std::to_string(n);
  if (!client.send(client_frame(protocol::Opcode::text, text))) return never;
  auto f = client.next_frame(std::max(1ms, served_within - since(start)));
  if (!f || f->opcode != protocol::Opcode::text || f->payload != text) return never;
  const auto took = since(start);
  return took <= served_within ? took : never;
}

}  // namespace

// 64 clients send 256 KiB messages and never read their echoes: each may
// cost the server its 1 MiB send buffer (the library's default, which
// `duplex echo` keeps) before it is closed, not the 32 MiB the command used to
// give itself behind its flags' back.
TEST(EchoAttacks, SixtyFourClientsThatNeverReadAreClosedAndMemoryStaysBounded) {
  EchoChild echo;
  ASSERT_LE(echo_served_in(echo.port(), 0).count(), served_within.count()) << echo.log();
  const long before = child_rss_kib(echo.pid());

  constexpr std::size_t clients = 64, per_client_cap = 8u << 20;
  const std::string message = client_frame(protocol::Opcode::binary, std::string(256u << 10, 'e'));
  std::vector<std::unique_ptr<RawSocket>> attackers;
  for (std::size_t i = 0; i < clients; ++i) {
    attackers.push_back(std::make_unique<RawSocket>(echo.port(), 4096));
    ASSERT_TRUE(attackers.back()->connected() && attackers.back()->upgrade_to("/")) << i << attackers.back()->head();
  }
  // Round robin, never blocking: each sends messages until it has sent
  // 8 MiB, the server closed it, or nothing moves for a second.
  std::vector<std::size_t> sent(clients, 0);
  std::thread flood([&] {
    const auto deadline = Clock::now() + 6s;
    std::vector<char> done(clients, 0);
    auto last_progress = Clock::now();
    while (Clock::now() < deadline && Clock::now() - last_progress < 1s) {
      std::size_t busy = 0;
      for (std::size_t i = 0; i < clients; ++i) {
        if (done[i]) continue;
        ++busy;
        const std::size_t offset = sent[i] % message.size();
        const std::size_t n = attackers[i]->send_until(std::string_view(message).substr(offset), Clock::now());
        if (n > 0) last_progress = Clock::now();
        sent[i] += n;
        if (sent[i] >= per_client_cap || attackers[i]->eof()) done[i] = 1;
        pollfd p{attackers[i]->fd(), 0, 0};
        if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLERR | POLLHUP))) done[i] = 1;  // closed by the server
      }
      if (busy == 0) break;
      std::this_thread::sleep_for(1ms);
    }
  });
  const auto during = echo_served_in(echo.port(), 1);
  flood.join();
  // The server works through what they sent at its own pace (slowly under a
  // sanitizer on a busy machine) and closes each as its echoes pass the send
  // buffer: seen here as the FIN or reset, while they still read nothing
  // (reading would drain the server's buffer and spare them).
  std::size_t closed = 0;
  const auto close_deadline = Clock::now() + 15s;
  do {
    closed = 0;
    for (auto& a : attackers) {
      pollfd p{a->fd(), POLLRDHUP, 0};
      if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) ++closed;
    }
    if (closed < clients) std::this_thread::sleep_for(20ms);
  } while (closed < clients && Clock::now() < close_deadline);
  const long peak = child_peak_kib(echo.pid());

  // Now they read what the kernel held, to the EOF or reset.
  std::size_t total_sent = 0;
  const auto drain_deadline = Clock::now() + 4s;
  for (auto& a : attackers) a->drain_until_closed(16u << 20, drain_deadline);
  for (std::size_t n : sent) total_sent += n;
  const auto after = echo_served_in(echo.port(), 2);
  const long after_kib = child_status_kib(echo.pid(), "VmRSS:");

  std::printf("[echo never read] %zu clients sent %zu MiB in all (at most %zu MiB each), %zu closed by the server; "
              "a fresh client echoed in %lld ms during, %lld ms after\n",
              clients, total_sent >> 20, per_client_cap >> 20, closed, static_cast<long long>(during.count()),
              static_cast<long long>(after.count()));
  report_server_memory("64 echo clients that never read", before, peak, after_kib);
  // 64 x (1 MiB send buffer + a message being echoed + one being read)
  // = 96 MiB at the very worst; with the former 32 MiB buffer the same
  // clients held 8 MiB each (their cap), 512 MiB.
  EXPECT_GROWTH_BELOW(before, peak, 128 << 10);
  EXPECT_EQ(closed, clients) << "clients over the send buffer must be closed";
  EXPECT_LE(during.count(), served_within.count()) << "during the attack";
  EXPECT_LE(after.count(), served_within.count()) << "after the attack";
  EXPECT_TRUE(echo.running()) << echo.log();
}

// The limits `duplex echo --help` states: with the defaults, the largest
// message (1 MiB send buffer - 268 B) is echoed and one byte more is refused
// with 1009; a message limit the buffer cannot echo is refused at startup.
TEST(EchoAttacks, DefaultLimitsAreTheOnesItsHelpStates) {
  EchoChild echo;
  constexpr std::size_t largest = (1u << 20) - 268;
  {
    RawSocket client(echo.port());
    ASSERT_TRUE(client.connected() && client.upgrade_to("/")) << client.head();
    const std::string payload(largest, 'L');
    ASSERT_TRUE(client.send(client_frame(protocol::Opcode::binary, payload)));
    auto f = client.next_frame();
    ASSERT_TRUE(f.has_value()) << echo.log();
    EXPECT_EQ(f->opcode, protocol::Opcode::binary);
    EXPECT_TRUE(f->payload == payload) << "echo of " << f->payload.size() << " B";
  }
  {
    RawSocket client(echo.port());
    ASSERT_TRUE(client.connected() && client.upgrade_to("/")) << client.head();
    ASSERT_TRUE(client.send(client_frame(protocol::Opcode::binary, std::string(largest + 1, 'L'))));
    EXPECT_EQ(client.close_code(), 1009);
  }
  ScratchDir dir("echo-refused");
  const std::string command = std::string(DUPLEX_BINARY) +
                              " echo --listen 127.0.0.1:0 --max-message-size 16MiB >" + (dir / "out") + " 2>&1";
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
  std::ifstream out(dir / "out");
  const std::string text((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("use --max-send-buffer 16777484 or more"), std::string::npos) << text;
}
