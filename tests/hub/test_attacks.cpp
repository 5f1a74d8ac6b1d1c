// Resource-exhaustion attacks against the hub (GitHub issue #8): each test
// attacks a HubServer in-process over raw sockets (where the library client
// would refuse to misbehave), then asserts that the server's memory stayed
// bounded (VmRSS of this process) and that a well-behaved client, connected
// before the attack, still publishes and receives its message.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "duplex/protocol/frame.hpp"
#include "duplex/protocol/permessage_deflate.hpp"
#include "hub_fixture.hpp"
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

  // The WebSocket upgrade to the hub; true on 101.
  bool upgrade(const std::string& token, std::string_view extra_headers = {}) {
    std::string request = "GET /connection/websocket" + (token.empty() ? std::string() : "?token=" + token) +
                          " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                          "Sec-WebSocket-Protocol: duplex.v1\r\n";
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
