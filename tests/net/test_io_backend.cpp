// The two backends of net::EventLoop: choosing one, and the io_uring data
// path (multishot receive into provided buffers, sends as ring requests)
// carrying what epoll carries: large messages across many receive buffers,
// many small ones in order, both roles.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "duplex/duplex.hpp"
#include "support.hpp"

using namespace duplex;
using namespace std::chrono_literals;

namespace {

// Sets an environment variable for one scope, then restores it.
struct ScopedEnv {
  std::string name;
  std::string old;
  bool had;
  ScopedEnv(const char* n, const char* value) : name(n) {
    const char* o = std::getenv(n);
    had = o != nullptr;
    if (had) old = o;
    ::setenv(n, value, 1);
  }
  ~ScopedEnv() {
    if (had)
      ::setenv(name.c_str(), old.c_str(), 1);
    else
      ::unsetenv(name.c_str());
  }
};

// Message `i` of a run: `size` bytes, its index in the first one.
std::string payload_for(int i, std::size_t size) {
  std::string payload(size, static_cast<char>('a' + i % 26));
  payload[0] = static_cast<char>('0' + i % 10);
  return payload;
}

// Echoes through a server and a client on `io`; returns what the client got
// back, concatenated, after sending `count` messages of `size` bytes.
std::string echo_round_trip(net::IoBackend io, std::size_t size, int count, net::IoBackend& server_io,
                            net::RingBuffers ring_buffers = {}) {
  net::ServerOptions options;
  options.io = io;
  options.ring_buffers = ring_buffers;
  options.websocket.max_message_size = 64u << 20;
  options.max_send_buffer = 64u << 20;
  test_support::TestServer server(options);
  server_io = server.server().loops().front()->io();

  net::EventLoop loop(512u << 10, io, ring_buffers);
  std::string received;
  int replies = 0;
  std::promise<void> done;
  net::Handlers h;
  h.on_open = [&](net::Connection& c) {
    for (int i = 0; i < count; ++i) c.send_binary(payload_for(i, size));
  };
  h.on_message = [&](net::Connection& c, protocol::Opcode, std::string_view payload) {
    received.append(payload);
    if (++replies == count) c.close();
  };
  h.on_close = [&](net::Connection&, std::uint16_t, std::string_view) { loop.stop(); };
  h.on_error = [&](std::string_view) { loop.stop(); };
  net::ClientOptions client;
  client.websocket.max_message_size = 64u << 20;
  client.max_send_buffer = 64u << 20;
  auto c = net::Connection::connect(loop, "ws://127.0.0.1:" + std::to_string(server.port()) + "/", client, h);
  net::LoopTimer give_up(loop);  // a run that hangs ends here (and the comparison fails)
  give_up.start(20s, [&] { loop.stop(); });
  loop.run();
  return received;
}

std::string expected(std::size_t size, int count) {
  std::string all;
  for (int i = 0; i < count; ++i) all += payload_for(i, size);
  return all;
}

bool io_uring_here() {
  try {
    net::EventLoop probe(4096, net::IoBackend::io_uring);
    return true;
  } catch (const std::runtime_error&) {
    return false;
  }
}

}  // namespace

TEST(IoBackend, NamesParseBothWays) {
  for (auto io : {net::IoBackend::automatic, net::IoBackend::epoll, net::IoBackend::io_uring})
    EXPECT_EQ(net::parse_io_backend(net::to_string(io)), io);
  EXPECT_FALSE(net::parse_io_backend("uring").has_value());
}

TEST(IoBackend, EpollAskedForIsEpoll) {
  net::EventLoop loop(4096, net::IoBackend::epoll);
  EXPECT_EQ(loop.io(), net::IoBackend::epoll);
}

TEST(IoBackend, TheEnvironmentDecidesAutomatic) {
  {
    ScopedEnv env("DUPLEX_IO", "epoll");
    net::EventLoop loop(4096);
    EXPECT_EQ(loop.io(), net::IoBackend::epoll);
    // An explicit choice is not overridden.
    if (io_uring_here()) {
      net::EventLoop ring(4096, net::IoBackend::io_uring);
      EXPECT_EQ(ring.io(), net::IoBackend::io_uring);
    }
  }
  {
    ScopedEnv env("DUPLEX_IO", "kqueue");
    try {
      net::EventLoop loop(4096);
      ADD_FAILURE() << "DUPLEX_IO=kqueue was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("DUPLEX_IO=kqueue"), std::string::npos) << e.what();
    }
  }
  {
    ScopedEnv env("DUPLEX_IO", "");
    net::EventLoop loop(4096);
    if (io_uring_here())
      EXPECT_EQ(loop.io(), net::IoBackend::io_uring) << "unset: io_uring where it is available";
    else
      EXPECT_FALSE(loop.io_fallback_reason().empty()) << "an epoll fallback says why";
  }
  if (io_uring_here()) {
    ScopedEnv env("DUPLEX_IO", "auto");
    net::EventLoop loop(4096);
    EXPECT_EQ(loop.io(), net::IoBackend::io_uring) << "automatic took epoll: " << loop.io_fallback_reason();
  }
}

TEST(IoBackend, ARingLoopRunsItsTurnsOnOneThread) {
  if (!io_uring_here()) GTEST_SKIP() << "no io_uring on this machine";
  net::EventLoop loop(4096, net::IoBackend::io_uring);
  loop.poll();  // this thread is the ring's submitter now
  std::string error;
  std::thread other([&] {
    try {
      loop.poll();
    } catch (const std::logic_error& e) {
      error = e.what();
    }
  });
  other.join();
  EXPECT_NE(error.find("another thread"), std::string::npos) << error;
}

// A ring is torn down by the kernel asynchronously, and that work
// interrupts every thread the ring counts as its user (task work with
// TWA_SIGNAL). The thread that constructs and destroys loops is the
// application's: a blocking call with a timeout there (recv with
// SO_RCVTIMEO, poll) must not fail with EINTR because a loop went away.
// The scenario runs on a fresh thread: one that ran a ring loop itself (as
// earlier tests do on the main thread) is the ring's user and is rightly
// interrupted once when that ring goes.
TEST(IoBackend, DestroyingRingLoopsDoesNotInterruptTheThreadThatOwnedThem) {
  if (!io_uring_here()) GTEST_SKIP() << "no io_uring on this machine";
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  timeval timeout{0, 200'000};
  ASSERT_EQ(::setsockopt(pair[0], SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout), 0);
  int interrupted = 0;
  std::thread owner([&] {
    for (int round = 0; round < 8; ++round) {
      {
        net::EventLoop loop(4096, net::IoBackend::io_uring);
        std::thread runner([&] { loop.run(); });
        loop.post([&] { loop.stop(); });
        runner.join();
      }
      char byte;
      // Nothing is ever sent: the read waits its 200 ms and times out.
      const ssize_t n = ::recv(pair[0], &byte, 1, 0);
      EXPECT_EQ(n, -1);
      if (n < 0 && errno == EINTR) ++interrupted;
      else EXPECT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK) << std::strerror(errno);
    }
  });
  owner.join();
  EXPECT_EQ(interrupted, 0) << "a blocking recv on the owner's thread was interrupted after a loop was destroyed";
  ::close(pair[0]);
  ::close(pair[1]);
}

// The server ends a connection and is stopped in the same turn: the cancel
// of its multishot receive never completes on the loop, and the loop is then
// destroyed on another thread (the test's), where the ring cannot be drained.
// The connection that request held must still be freed (it leaked, with its
// TLS session, before the loop kept a list of them).
TEST(IoBackend, AConnectionEndedInTheLoopsLastTurnIsFreedWhenTheLoopIsDestroyedElsewhere) {
  if (!io_uring_here()) GTEST_SKIP() << "no io_uring on this machine";
  const std::size_t before = net::Connection::alive();
  for (int round = 0; round < 5; ++round) {
    net::ServerOptions options;
    options.io = net::IoBackend::io_uring;
    net::Server* running = nullptr;
    std::atomic<bool> ended{false};
    net::Handlers server_handlers;
    server_handlers.on_message = [&](net::Connection& c, protocol::Opcode, std::string_view) {
      c.terminate();
      running->stop();
      ended = true;
    };
    auto server = std::make_unique<test_support::TestServer>(options, server_handlers);
    running = &server->server();
    ASSERT_EQ(running->loops().front()->io(), net::IoBackend::io_uring);
    {
      net::EventLoop loop;
      bool closed = false;
      net::Handlers h;
      h.on_open = [](net::Connection& c) { c.send_text("end"); };
      h.on_close = [&](net::Connection&, std::uint16_t, std::string_view) {
        closed = true;
        loop.stop();
      };
      h.on_error = [&](std::string_view) { loop.stop(); };
      auto client = net::Connection::connect(loop, "ws://127.0.0.1:" + std::to_string(server->port()) + "/", {}, h);
      net::LoopTimer poll(loop);
      std::function<void()> check = [&] {
        if (ended) return loop.stop();
        poll.start(5ms, [&] { check(); });
      };
      check();
      net::LoopTimer give_up(loop);
      give_up.start(5s, [&] { loop.stop(); });
      loop.run();  // until the server has ended the connection and stopped
      ASSERT_TRUE(ended) << "round " << round;
      server.reset();  // joins the server's thread, then destroys its loop on this one
      loop.run();  // the server's side of the socket is closed now
      EXPECT_TRUE(closed) << "round " << round;
    }
    EXPECT_EQ(net::Connection::alive(), before) << "round " << round;
  }
}

// The smallest ring (16 buffers of 1 KiB) on both ends: a 3 MiB message
// takes thousands of buffers, so receives run out of them (ENOBUFS) and are
// re-armed over and over; every byte still comes back, in order.
TEST(IoBackend, TheSmallestReceiveRingStillEchoesLargeAndManyMessages) {
  if (!io_uring_here()) GTEST_SKIP() << "no io_uring on this machine";
  const net::RingBuffers smallest{16, 1024};
  net::IoBackend server_io{};
  std::string got = echo_round_trip(net::IoBackend::io_uring, 3u << 20, 3, server_io, smallest);
  EXPECT_EQ(server_io, net::IoBackend::io_uring);
  EXPECT_TRUE(got == expected(3u << 20, 3)) << "got " << got.size() << " bytes";
  got = echo_round_trip(net::IoBackend::io_uring, 37, 20000, server_io, smallest);
  EXPECT_TRUE(got == expected(37, 20000)) << "got " << got.size() << " bytes";
}

TEST(IoBackend, AReceiveRingLayoutOutOfRangeIsRefusedNamingTheValue) {
  if (!io_uring_here()) GTEST_SKIP() << "no io_uring on this machine";
  const auto refusal = [](net::RingBuffers layout) -> std::string {
    try {
      net::EventLoop loop(4096, net::IoBackend::io_uring, layout);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "accepted";
  };
  EXPECT_EQ(refusal({24, 4096}), "io_uring: the receive buffer count must be a power of two from 16 to 32768, not 24");
  EXPECT_EQ(refusal({8, 4096}), "io_uring: the receive buffer count must be a power of two from 16 to 32768, not 8");
  EXPECT_EQ(refusal({512, 512}), "io_uring: the receive buffer size must be 1KiB..1MiB, not 512 bytes");
  EXPECT_EQ(refusal({512, (1u << 20) + 1}), "io_uring: the receive buffer size must be 1KiB..1MiB, not 1048577 bytes");
  EXPECT_EQ(refusal({32768, 1024}), "accepted");
}

class RingEcho : public ::testing::TestWithParam<net::IoBackend> {};

TEST_P(RingEcho, LargeMessagesSpanManyReceiveBuffers) {
  if (GetParam() == net::IoBackend::io_uring && !io_uring_here()) GTEST_SKIP() << "no io_uring on this machine";
  net::IoBackend server_io{};
  const std::string got = echo_round_trip(GetParam(), 3u << 20, 3, server_io);
  EXPECT_EQ(server_io, GetParam());
  EXPECT_TRUE(got == expected(3u << 20, 3)) << "got " << got.size() << " bytes";
}

TEST_P(RingEcho, ManySmallMessagesComeBackInOrder) {
  if (GetParam() == net::IoBackend::io_uring && !io_uring_here()) GTEST_SKIP() << "no io_uring on this machine";
  net::IoBackend server_io{};
  const std::string got = echo_round_trip(GetParam(), 37, 20000, server_io);
  EXPECT_TRUE(got == expected(37, 20000)) << "got " << got.size() << " bytes";
}

// One loop turn sends a burst to connection B while it also answers A, so
// B's output leaves the cork several times in that turn. The socket takes
// it all at once (a reading peer on loopback): B is not a slow consumer,
// although the burst is larger than its send budget. On io_uring the first
// part becomes a ring send that the kernel sees only when the turn submits.
TEST_P(RingEcho, ABurstInOneTurnThatTheSocketTakesIsNotOverBudget) {
  if (GetParam() == net::IoBackend::io_uring && !io_uring_here()) GTEST_SKIP() << "no io_uring on this machine";
  constexpr int burst = 32;
  constexpr std::size_t size = 16u << 10;
  net::ServerOptions options;
  options.io = GetParam();
  options.max_send_buffer = 64u << 10;  // a quarter of the burst
  std::weak_ptr<net::Connection> b_on_server;
  net::Handlers server_handlers;
  server_handlers.on_open = [&](net::Connection& c) {
    if (c.target() == "/b") b_on_server = c.weak_from_this();
  };
  server_handlers.on_message = [&](net::Connection& a, protocol::Opcode, std::string_view) {
    auto b = b_on_server.lock();
    if (!b) return;
    for (int i = 0; i < burst; ++i) {
      b->send_binary(payload_for(i, size));
      a.send_text("sent");  // takes the loop's cork from B
    }
  };
  test_support::TestServer server(options, server_handlers);

  net::EventLoop loop(512u << 10, GetParam());
  const std::string base = "ws://127.0.0.1:" + std::to_string(server.port());
  std::string received;
  int messages = 0;
  std::uint16_t b_close_code = 0;
  std::shared_ptr<net::Connection> a;
  net::Handlers a_handlers;
  a_handlers.on_open = [&](net::Connection& c) { c.send_text("burst"); };
  net::Handlers b_handlers;
  b_handlers.on_open = [&](net::Connection&) { a = net::Connection::connect(loop, base + "/a", {}, a_handlers); };
  b_handlers.on_message = [&](net::Connection&, protocol::Opcode, std::string_view payload) {
    received.append(payload);
    if (++messages == burst) loop.stop();
  };
  b_handlers.on_close = [&](net::Connection&, std::uint16_t code, std::string_view) {
    b_close_code = code;
    loop.stop();
  };
  b_handlers.on_error = [&](std::string_view) { loop.stop(); };
  auto b = net::Connection::connect(loop, base + "/b", {}, b_handlers);
  net::LoopTimer give_up(loop);
  give_up.start(10s, [&] { loop.stop(); });
  loop.run();
  EXPECT_EQ(b_close_code, 0) << "B was cut off as a slow consumer";
  EXPECT_EQ(messages, burst);
  EXPECT_TRUE(received == expected(size, burst)) << "got " << received.size() << " bytes";
}

// Large plain messages leave from the caller's bytes when nothing is queued
// before them (Connection::write_directly), after what the connection
// corked this turn; the part the kernel does not take is queued. In one
// turn the server interleaves small frames (corked) with large ones, one of
// them 8 MiB (more than a socket's send buffer, 4 MiB at most here), then
// more of both behind the queued rest: the client gets every byte in order.
TEST_P(RingEcho, LargeMessagesWrittenFromTheCallersBytesKeepTheirOrder) {
  if (GetParam() == net::IoBackend::io_uring && !io_uring_here()) GTEST_SKIP() << "no io_uring on this machine";
  const std::vector<std::size_t> sizes = {5, 16u << 10, 7, 64u << 10, 8u << 20, 9, 16u << 10, 11, 1u << 20, 3};
  net::ServerOptions options;
  options.io = GetParam();
  options.max_send_buffer = 32u << 20;
  // What the kernel left of the 8 MiB message right after its send: set on
  // the server's thread, read on this one (atomic: the socket orders the
  // two, but ThreadSanitizer does not see through it).
  std::atomic<std::size_t> queued_after_large{0};
  net::Handlers server_handlers;
  server_handlers.on_message = [&](net::Connection& c, protocol::Opcode, std::string_view) {
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      EXPECT_EQ(c.send_binary(payload_for(static_cast<int>(i), sizes[i])), net::SendStatus::ok) << i;
      if (sizes[i] == (8u << 20)) queued_after_large.store(c.buffered_amount());
    }
  };
  test_support::TestServer server(options, server_handlers);

  net::EventLoop loop(512u << 10, GetParam());
  std::vector<std::string> received;
  net::Handlers h;
  h.on_open = [&](net::Connection& c) { c.send_text("go"); };
  h.on_message = [&](net::Connection& c, protocol::Opcode, std::string_view payload) {
    received.emplace_back(payload);
    if (received.size() == sizes.size()) c.close();
  };
  h.on_close = [&](net::Connection&, std::uint16_t, std::string_view) { loop.stop(); };
  h.on_error = [&](std::string_view) { loop.stop(); };
  net::ClientOptions client;
  client.websocket.max_message_size = 16u << 20;
  auto c = net::Connection::connect(loop, "ws://127.0.0.1:" + std::to_string(server.port()) + "/", client, h);
  net::LoopTimer give_up(loop);
  give_up.start(20s, [&] { loop.stop(); });
  loop.run();
  ASSERT_EQ(received.size(), sizes.size());
  for (std::size_t i = 0; i < sizes.size(); ++i)
    EXPECT_TRUE(received[i] == payload_for(static_cast<int>(i), sizes[i])) << "message " << i << ": "
                                                                           << received[i].size() << " bytes";
  EXPECT_GT(queued_after_large.load(), 0u) << "the kernel took 8 MiB at once: the queued rest went untested";
}

// The server ends connections on its own (a close handshake, then TCP; or
// a terminate), many in a row so descriptor numbers are reused: every
// client sees the end at once. On io_uring a socket in the ring's
// registered-file table stays open until its slot is released, so a
// missed release would leave these clients waiting for the idle timeout.
TEST_P(RingEcho, ConnectionsTheServerEndsCloseTheirSocketsAtOnce) {
  if (GetParam() == net::IoBackend::io_uring && !io_uring_here()) GTEST_SKIP() << "no io_uring on this machine";
  net::ServerOptions options;
  options.io = GetParam();
  net::Handlers server_handlers;
  server_handlers.on_message = [](net::Connection& c, protocol::Opcode, std::string_view payload) {
    if (payload == "close")
      c.close(1000, "asked");
    else
      c.terminate();
  };
  test_support::TestServer server(options, server_handlers);
  const std::string url = "ws://127.0.0.1:" + std::to_string(server.port()) + "/";
  net::EventLoop loop(64u << 10, GetParam());
  constexpr int rounds = 40;
  int round = 0, clean = 0, dropped = 0;
  std::shared_ptr<net::Connection> client;
  net::Handlers h;
  std::function<void()> next;
  h.on_open = [&](net::Connection& c) { c.send_text(round % 2 ? "close" : "terminate"); };
  h.on_close = [&](net::Connection&, std::uint16_t code, std::string_view) {
    (code == 1000 ? clean : dropped) += 1;
    if (++round == rounds) loop.stop();
    else loop.post([&] { next(); });
  };
  h.on_error = [&](std::string_view) { loop.stop(); };
  next = [&] { client = net::Connection::connect(loop, url, {}, h); };
  next();
  net::LoopTimer give_up(loop);
  give_up.start(10s, [&] { loop.stop(); });
  const auto started = std::chrono::steady_clock::now();
  loop.run();
  EXPECT_EQ(round, rounds) << "a connection the server ended was not closed";
  EXPECT_EQ(clean, rounds / 2);
  EXPECT_EQ(dropped, rounds / 2);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
}

INSTANTIATE_TEST_SUITE_P(Backends, RingEcho, ::testing::Values(net::IoBackend::epoll, net::IoBackend::io_uring),
                         [](const auto& param_info) { return std::string(net::to_string(param_info.param)); });
