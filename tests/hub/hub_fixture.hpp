// Hub integration tests: a HubServer on a free loopback port and blocking
// test clients speaking duplex.v1 over duplex's own WebSocket client.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "duplex/duplex.hpp"
#include "duplex/hub/token.hpp"
#include "duplex/server/hub_server.hpp"

namespace hub_test {

using namespace std::chrono_literals;
using namespace duplex;

inline const char* secret = "test-secret-0123456789";

inline std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

inline std::string token_for(const std::string& user, std::int64_t ttl = 3600, std::vector<std::string> channels = {},
                             std::vector<std::string> publish = {}, std::string channel = {}) {
  hub::TokenClaims c;
  c.sub = user;
  if (ttl) c.exp = now_s() + ttl;
  c.info = "{\"name\":\"" + user + "\"}";
  c.channels = std::move(channels);
  c.publish = std::move(publish);
  c.channel = std::move(channel);
  return hub::sign_token_hs256(hub::make_claims_json(c), secret);
}

// A test configuration: memory engine, HMAC auth, a `chat` namespace with
// everything on, a closed `secret` namespace, personal `user` channels.
inline hub::HubConfig test_config() {
  hub::HubConfig config;
  config.node_name = "test-node";
  config.server.host = "127.0.0.1";
  config.server.port = 0;
  config.server.threads = 2;
  config.engine.type = "memory";
  config.auth.hmac_secret = secret;
  config.api.key = "test-api-key";
  config.stats_interval = std::chrono::seconds(0);
  hub::NamespaceOptions chat;
  chat.history_size = 1000;
  chat.recovery = true;
  chat.presence = true;
  chat.join_leave = true;
  chat.allow_publish = true;
  config.namespaces["chat"] = chat;
  hub::NamespaceOptions closed = chat;
  closed.allow_subscribe = false;
  closed.allow_publish = false;
  config.namespaces["secret"] = closed;
  hub::NamespaceOptions user;
  user.history_size = 100;
  user.recovery = true;
  config.namespaces["user"] = user;
  return config;
}

// One frame parsed for assertions.
struct Frame {
  std::string text;
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  explicit Frame(std::string t) : text(std::move(t)) {
    if (parser.parse(text).get(root) != simdjson::SUCCESS) throw std::runtime_error("bad JSON from server: " + text);
  }
  std::string str(const char* key) const {
    std::string_view v;
    return root[key].get(v) == simdjson::SUCCESS ? std::string(v) : std::string();
  }
  std::uint64_t u64(const char* key) const {
    std::uint64_t v = 0;
    return root[key].get(v) == simdjson::SUCCESS ? v : 0;
  }
  simdjson::dom::array array(const char* pointer) const {
    simdjson::dom::array a;
    if (root.at_pointer(pointer).get(a) != simdjson::SUCCESS) throw std::runtime_error(std::string("no array at ") + pointer + " in " + text);
    return a;
  }
  std::uint64_t u64_at(const char* pointer) const {
    std::uint64_t v = 0;
    if (root.at_pointer(pointer).get(v) != simdjson::SUCCESS) throw std::runtime_error(std::string("no integer at ") + pointer + " in " + text);
    return v;
  }
  std::string str_at(const char* pointer) const {
    std::string_view v;
    if (root.at_pointer(pointer).get(v) != simdjson::SUCCESS) throw std::runtime_error(std::string("no string at ") + pointer + " in " + text);
    return std::string(v);
  }
  bool bool_at(const char* pointer) const {
    bool v = false;
    if (root.at_pointer(pointer).get(v) != simdjson::SUCCESS) throw std::runtime_error(std::string("no bool at ") + pointer + " in " + text);
    return v;
  }
  bool has(const char* pointer) const { return root.at_pointer(pointer).error() == simdjson::SUCCESS; }
};

// A blocking client on its own loop thread.
class Client {
 public:
  explicit Client(std::uint16_t port, std::string query = {}, net::ClientOptions options = {}) {
    options.subprotocols = {"duplex.v1"};
    thread_ = std::thread([this] { loop_.run(); });
    net::Handlers h;
    h.on_open = [this](net::Connection&) { notify([&] { open_ = true; }); };
    h.on_message = [this](net::Connection&, protocol::Opcode, std::string_view payload) {
      notify([&] { frames_.emplace_back(payload); });
    };
    h.on_close = [this](net::Connection&, std::uint16_t code, std::string_view) {
      notify([&] {
        closed_ = true;
        close_code_ = code;
      });
    };
    h.on_error = [this](std::string_view error) {
      notify([&] {
        closed_ = true;
        error_ = std::string(error);
      });
    };
    const std::string url = "ws://127.0.0.1:" + std::to_string(port) + "/connection/websocket" + query;
    loop_.post([this, url, options, h] { connection_ = net::connect(loop_, url, options, h); });
  }
  ~Client() {
    loop_.post([this] {
      if (connection_) connection_->terminate();
      connection_.reset();
    });
    loop_.post([this] { loop_.stop(); });
    thread_.join();
  }

  bool wait_open(std::chrono::milliseconds timeout = 3000ms) {
    std::unique_lock lock(m_);
    return cv_.wait_for(lock, timeout, [&] { return open_ || closed_; }) && open_;
  }
  void send(std::string text) {
    loop_.post([this, text = std::move(text)] {
      if (connection_) connection_->send_text(text);
    });
  }
  // A binary frame and then a text frame in one loop turn, so they reach the
  // server in one write (one read there).
  void send_binary_then_text(std::string binary, std::string text) {
    loop_.post([this, binary = std::move(binary), text = std::move(text)] {
      if (!connection_) return;
      connection_->send_binary(binary);
      connection_->send_text(text);
    });
  }
  // The first frame whose "type" is `type`; frames of other types stay
  // queued for later calls. Throws on timeout.
  std::unique_ptr<Frame> next(const std::string& type, std::chrono::milliseconds timeout = 3000ms) {
    std::unique_lock lock(m_);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::size_t scanned = 0;
    for (;;) {
      for (; scanned < frames_.size(); ++scanned) {
        auto f = std::make_unique<Frame>(frames_[scanned]);
        if (f->str("type") != type) continue;
        frames_.erase(frames_.begin() + static_cast<std::ptrdiff_t>(scanned));
        return f;
      }
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && scanned == frames_.size())
        throw std::runtime_error("timed out waiting for a \"" + type + "\" frame");
    }
  }
  // The reply to command `id`.
  std::unique_ptr<Frame> reply(std::uint64_t id, std::chrono::milliseconds timeout = 3000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto f = next("reply", std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
      if (f->u64("id") == id) return f;
    }
  }
  std::unique_ptr<Frame> call(std::uint64_t id, const std::string& json) {
    send(json);
    return reply(id);
  }
  bool wait_closed(std::chrono::milliseconds timeout = 3000ms) {
    std::unique_lock lock(m_);
    return cv_.wait_for(lock, timeout, [&] { return closed_; });
  }
  std::uint16_t close_code() {
    std::lock_guard lock(m_);
    return close_code_;
  }
  std::string error() {
    std::lock_guard lock(m_);
    return error_;
  }
  // Drops TCP without a close frame (a crashed client or a dead network).
  void drop() {
    loop_.post([this] {
      if (connection_) connection_->terminate();
    });
  }

 private:
  template <typename Fn>
  void notify(Fn fn) {
    {
      std::lock_guard lock(m_);
      fn();
    }
    cv_.notify_all();
  }
  net::EventLoop loop_;
  std::thread thread_;
  std::shared_ptr<net::Connection> connection_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::string> frames_;
  bool open_ = false;
  bool closed_ = false;
  std::uint16_t close_code_ = 0;
  std::string error_;
};

// A server on a free port for one test.
class Server {
 public:
  explicit Server(hub::HubConfig config = test_config()) : server_(std::move(config)) { server_.start(); }
  std::uint16_t port() const { return server_.port(); }
  transport::HubServer& get() { return server_; }

 private:
  transport::HubServer server_;
};

// An authenticated client (token in the query) that saw `connected`.
inline std::unique_ptr<Client> connect_as(Server& server, const std::string& user) {
  auto c = std::make_unique<Client>(server.port(), "?token=" + token_for(user));
  if (!c->wait_open()) throw std::runtime_error("connect failed: " + c->error());
  c->next("connected");
  return c;
}

// A blocking HTTP/1.1 request (POST with a body and the API key, or GET).
inline std::string http_post(std::uint16_t port, const std::string& path, const std::string& body,
                             const std::string& key = "test-api-key", const std::string& method = "POST") {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return {};
  }
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-API-Key: " + key +
                    "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[8192];
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return out;
}
inline std::string http_get(std::uint16_t port, const std::string& path) { return http_post(port, path, "", "", "GET"); }

// Waits (at most 5 s) until the server's /readyz answers 200: its engine is connected.
inline void wait_ready(Server& server) {
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (http_get(server.port(), "/readyz").find(" 200 ") == std::string::npos && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(50ms);
}

inline std::string http_body(const std::string& response) {
  const auto p = response.find("\r\n\r\n");
  return p == std::string::npos ? std::string() : response.substr(p + 4);
}

}  // namespace hub_test
