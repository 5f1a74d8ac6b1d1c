// Crossing threads: sends and closes posted from other threads
// (Connection::post_send / post_close), a connection's last reference dropped
// on a thread that is not its loop's, and shutdown while other threads keep
// posting. Each asserts behaviour in every build; make test's ThreadSanitizer
// step runs them (CrossThread.*) to prove the crossings are synchronised.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "duplex/duplex.hpp"
#include "support.hpp"

using namespace duplex;
using namespace std::chrono_literals;

namespace {

using test_support::RawClient;
using test_support::TestServer;

const std::string upgrade =
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

// The server's open connections as the handlers saw them, shared with the
// test thread.
struct Registry {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::weak_ptr<net::Connection>> open;
  std::vector<std::shared_ptr<net::Connection>> held;  // strong references the test drops itself
  int opened = 0;
  int closed = 0;
  bool hold = false;

  net::Handlers handlers() {
    net::Handlers h;
    h.on_open = [this](net::Connection& c) {
      std::lock_guard lock(mutex);
      open.push_back(c.weak_from_this());
      if (hold) held.push_back(c.shared_from_this());
      ++opened;
      changed.notify_all();
    };
    h.on_close = [this](net::Connection&, std::uint16_t, std::string_view) {
      std::lock_guard lock(mutex);
      ++closed;
      changed.notify_all();
    };
    return h;
  }
  bool wait(const std::function<bool()>& pred, std::chrono::milliseconds limit = 5s) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, limit, pred);
  }
};

// A client on its own loop thread that records what it receives.
class ThreadedClient {
 public:
  ThreadedClient(std::uint16_t port, std::function<void(std::string_view)> on_text)
      : on_text_(std::move(on_text)) {
    net::Handlers h;
    h.on_open = [this](net::Connection&) { set([this] { opened_ = true; }); };
    h.on_message = [this](net::Connection&, protocol::Opcode, std::string_view payload) { on_text_(payload); };
    h.on_close = [this](net::Connection&, std::uint16_t code, std::string_view) { set([&] { close_code_ = code; }); };
    h.on_error = [this](std::string_view) { set([this] { close_code_ = -1; }); };
    net::ClientOptions options;
    options.timeouts.ping_interval = 0ms;
    connection_ = net::connect(loop_, "ws://127.0.0.1:" + std::to_string(port) + "/", options, h);
    thread_ = std::thread([this] { loop_.run(); });
  }
  ~ThreadedClient() {
    loop_.post([this] { connection_.reset(); });
    loop_.stop();
    thread_.join();
  }
  bool wait_open() {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 5s, [this] { return opened_ || close_code_ != 0; }) && opened_;
  }
  int wait_close(std::chrono::milliseconds limit = 5s) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, limit, [this] { return close_code_ != 0; });
    return close_code_;
  }
  void close() {
    loop_.post([this] {
      if (connection_) connection_->close();
    });
  }

 private:
  template <class F>
  void set(F f) {
    std::lock_guard lock(mutex_);
    f();
    changed_.notify_all();
  }
  std::function<void(std::string_view)> on_text_;
  net::EventLoop loop_;
  std::shared_ptr<net::Connection> connection_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool opened_ = false;
  int close_code_ = 0;
};

// The close code of the first close frame in a server's unmasked byte stream after its 101.
int close_code_in(const std::string& bytes) {
  std::size_t i = bytes.find("\r\n\r\n");
  i = i == std::string::npos ? 0 : i + 4;
  while (i + 2 <= bytes.size()) {
    const auto opcode = static_cast<std::uint8_t>(bytes[i]) & 0x0F;
    std::size_t length = static_cast<std::uint8_t>(bytes[i + 1]) & 0x7F;
    std::size_t header = 2;
    if (length == 126) {
      if (i + 4 > bytes.size()) return -1;
      length = (static_cast<std::uint8_t>(bytes[i + 2]) << 8) | static_cast<std::uint8_t>(bytes[i + 3]);
      header = 4;
    } else if (length == 127) {
      return -1;  // no frame this large in these tests
    }
    if (opcode == 0x8)
      return length >= 2 && i + 4 <= bytes.size()
                 ? (static_cast<std::uint8_t>(bytes[i + 2]) << 8) | static_cast<std::uint8_t>(bytes[i + 3])
                 : 1005;
    i += header + length;
  }
  return -1;
}

}  // namespace

TEST(CrossThread, PostSendFromManyThreadsArrivesInOrderPerThread) {
  Registry registry;
  net::ServerOptions options;
  options.threads = 2;
  options.max_send_buffer = 8u << 20;
  TestServer server(options, registry.handlers());
  constexpr int senders = 4;
  constexpr int per_sender = 500;
  std::mutex mutex;
  std::vector<int> next(senders, 0);
  int received = 0;
  bool in_order = true;
  std::condition_variable all_in;
  ThreadedClient client(server.port(), [&](std::string_view text) {
    // "<sender> <n>"
    const auto space = text.find(' ');
    const int sender = std::stoi(std::string(text.substr(0, space)));
    const int n = std::stoi(std::string(text.substr(space + 1)));
    std::lock_guard lock(mutex);
    if (sender < 0 || sender >= senders || n != next[sender]) in_order = false;
    if (sender >= 0 && sender < senders) next[sender] = n + 1;
    if (++received == senders * per_sender) all_in.notify_all();
  });
  ASSERT_TRUE(client.wait_open());
  ASSERT_TRUE(registry.wait([&] { return registry.opened == 1; }));
  std::weak_ptr<net::Connection> target;
  {
    std::lock_guard lock(registry.mutex);
    target = registry.open.front();
  }
  std::vector<std::thread> threads;
  for (int s = 0; s < senders; ++s)
    threads.emplace_back([s, target] {
      for (int n = 0; n < per_sender; ++n) net::Connection::post_send(target, std::to_string(s) + " " + std::to_string(n));
    });
  for (auto& t : threads) t.join();
  std::unique_lock lock(mutex);
  EXPECT_TRUE(all_in.wait_for(lock, 10s, [&] { return received == senders * per_sender; }))
      << received << " of " << senders * per_sender << " messages arrived";
  EXPECT_TRUE(in_order) << "messages of one sender arrived out of order";
}

TEST(CrossThread, PostCloseFromAnotherThreadClosesWithItsCode) {
  Registry registry;
  TestServer server({}, registry.handlers());
  ThreadedClient client(server.port(), [](std::string_view) {});
  ASSERT_TRUE(client.wait_open());
  ASSERT_TRUE(registry.wait([&] { return registry.opened == 1; }));
  std::weak_ptr<net::Connection> target;
  {
    std::lock_guard lock(registry.mutex);
    target = registry.open.front();
  }
  std::thread([target] { net::Connection::post_close(target, 4001, "from another thread"); }).join();
  EXPECT_EQ(client.wait_close(), 4001);
  EXPECT_TRUE(registry.wait([&] { return registry.closed == 1; }));
}

TEST(CrossThread, PostsToAConnectionThatHasClosedAreDropped) {
  Registry registry;
  TestServer server({}, registry.handlers());
  std::weak_ptr<net::Connection> target;
  {
    ThreadedClient client(server.port(), [](std::string_view) {});
    ASSERT_TRUE(client.wait_open());
    ASSERT_TRUE(registry.wait([&] { return registry.opened == 1; }));
    {
      std::lock_guard lock(registry.mutex);
      target = registry.open.front();
    }
    client.close();
    EXPECT_EQ(client.wait_close(), 1000);
  }
  ASSERT_TRUE(registry.wait([&] { return registry.closed == 1; }));
  std::thread([target] {
    for (int i = 0; i < 100; ++i) {
      net::Connection::post_send(target, "too late");
      net::Connection::post_close(target, 4002, "too late");
    }
  }).join();
  // The server goes on: a new client is served and gets nothing meant for the old one.
  std::atomic<int> stray{0};
  ThreadedClient next(server.port(), [&](std::string_view text) {
    if (text == "too late") ++stray;
  });
  EXPECT_TRUE(next.wait_open());
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(stray.load(), 0);
}

TEST(CrossThread, LastReferenceDroppedOnAnotherThreadWhileTheLoopServesOthers) {
  Registry registry;
  registry.hold = true;  // the test keeps a strong reference to every connection
  net::ServerOptions options;
  options.threads = 1;
  TestServer server(options, registry.handlers());
  constexpr int first_batch = 20;
  {
    std::vector<std::unique_ptr<RawClient>> clients;
    for (int i = 0; i < first_batch; ++i) {
      clients.push_back(std::make_unique<RawClient>(server.port()));
      clients.back()->send(upgrade);
      ASSERT_NE(clients.back()->read_head().find(" 101 "), std::string::npos);
    }
  }  // all dropped by the clients: the connections end, the test still holds them
  ASSERT_TRUE(registry.wait([&] { return registry.closed == first_batch; }));
  std::vector<std::shared_ptr<net::Connection>> last;
  {
    std::lock_guard lock(registry.mutex);
    last.swap(registry.held);
  }
  // Drop them here, not on their loop, while the loop accepts and serves new clients.
  std::atomic<bool> served{true};
  std::thread churn([&] {
    for (int i = 0; i < 20; ++i) {
      RawClient c(server.port());
      c.send(upgrade);
      if (c.read_head().find(" 101 ") == std::string::npos) served = false;
    }
  });
  for (auto& c : last) {
    c.reset();
    std::this_thread::yield();
  }
  churn.join();
  EXPECT_TRUE(served.load());
  EXPECT_TRUE(registry.wait([&] { return registry.closed == registry.opened; }));
  // Every connection is gone from the server's count.
  for (int i = 0; i < 100 && server.server().connection_count() != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(server.server().connection_count(), 0u);
  {
    std::lock_guard lock(registry.mutex);
    registry.held.clear();
  }
}

TEST(CrossThread, ShutdownWhileOtherThreadsPostSends) {
  Registry registry;
  net::ServerOptions options;
  options.threads = 2;
  auto server = std::make_unique<TestServer>(options, registry.handlers());
  constexpr int clients_count = 8;
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < clients_count; ++i) {
    clients.push_back(std::make_unique<RawClient>(server->port()));
    clients.back()->send(upgrade);
    ASSERT_NE(clients.back()->read_head().find(" 101 "), std::string::npos);
  }
  ASSERT_TRUE(registry.wait([&] { return registry.opened == clients_count; }));
  std::vector<std::weak_ptr<net::Connection>> targets;
  {
    std::lock_guard lock(registry.mutex);
    targets = registry.open;
  }
  std::atomic<bool> stop{false};
  std::vector<std::thread> posters;
  for (int t = 0; t < 2; ++t)
    posters.emplace_back([&] {
      for (int n = 0; n < 2000 && !stop; ++n)
        for (auto& w : targets) net::Connection::post_send(w, "tick");
    });
  std::this_thread::sleep_for(20ms);
  std::thread([&] { server->server().shutdown(1001, 2000ms); }).join();
  for (auto& c : clients) {
    std::string bytes;
    for (int i = 0; i < 40 && close_code_in(bytes) < 0; ++i) bytes += c->read_all(50ms);
    EXPECT_EQ(close_code_in(bytes), 1001);
  }
  stop = true;
  for (auto& t : posters) t.join();
  server.reset();  // the loops stop and are destroyed while posts may still be queued
}
