// A blocking hub test client that runs over any transport: WebSocket
// (duplex's own client), Server-Sent Events or long-polling (plain loopback
// sockets speaking HTTP/1.1 with keep-alive). The same test code drives all
// three: send commands, wait for replies and pushes by type, drop the
// session. Fallback commands are batched into POSTs (at most 100 lines, one
// POST at a time, like web/client/duplex.js); their replies come in the POST's
// response and are queued with the pushes.
#pragma once
#include <poll.h>

#include <atomic>
#include <string_view>

#include "hub_fixture.hpp"

namespace hub_test {

enum class Transport { websocket, sse, longpoll };

inline const char* transport_name(Transport t) {
  switch (t) {
    case Transport::websocket: return "websocket";
    case Transport::sse: return "sse";
    case Transport::longpoll: return "longpoll";
  }
  return "?";
}

// Where the connection token goes.
enum class TokenIn { query, header, command };

// One HTTP/1.1 connection with keep-alive, blocking, for fallback requests.
class HttpConnection {
 public:
  struct Response {
    int status = 0;
    std::string head;
    std::string body;
    bool ok() const { return status != 0; }
  };

  HttpConnection(std::uint16_t port, const std::atomic<bool>* stop = nullptr) : port_(port), stop_(stop) {}
  ~HttpConnection() { close(); }
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    buffer_.clear();
  }
  // How many TCP connections this object opened (keep-alive check).
  int connects() const { return connects_.load(); }

  // One request; the response is read whole (Content-Length or chunked).
  // status 0: the connection failed or `timeout` passed.
  Response request(const std::string& method, const std::string& target, const std::string& body = {},
                   const std::string& extra_headers = {}, std::chrono::milliseconds timeout = 10000ms) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      const bool reused = fd_ >= 0;
      if (!ensure()) return {};
      const std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra_headers +
                              "Content-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
      if (::send(fd_, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
        close();
        if (reused) continue;
        return {};
      }
      Response r = read_response(timeout);
      if (!r.ok() && reused && !stopping()) {
        close();  // the server closed the idle keep-alive connection: once more on a fresh one
        continue;
      }
      if (r.head.find("Connection: close") != std::string::npos) close();
      return r;
    }
    return {};
  }

  // Reads the response head only (for streams); the rest stays buffered.
  Response read_head(std::chrono::milliseconds timeout) {
    Response r;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos)
      if (!read_some(deadline)) return {};
    r.head = buffer_.substr(0, end);
    buffer_.erase(0, end + 4);
    if (r.head.size() > 12) r.status = std::atoi(r.head.c_str() + 9);
    return r;
  }
  // Sends raw bytes (a request whose response is read with read_head / read_chunk).
  bool send_raw(const std::string& bytes) {
    if (!ensure()) return false;
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
  }
  // One chunk of a chunked body; false at its end, on close or timeout
  // (`ended` tells the terminating chunk apart).
  bool read_chunk(std::string& out, std::chrono::milliseconds timeout, bool* ended = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto crlf = buffer_.find("\r\n");
      if (crlf != std::string::npos) {
        const std::size_t size = std::stoul(buffer_.substr(0, crlf), nullptr, 16);
        if (buffer_.size() >= crlf + 2 + size + 2) {
          out = buffer_.substr(crlf + 2, size);
          buffer_.erase(0, crlf + 2 + size + 2);
          if (size == 0) {
            if (ended) *ended = true;
            return false;
          }
          return true;
        }
      }
      if (!read_some(deadline)) return false;
    }
  }
  int fd() const { return fd_; }
  bool closed_by_peer() const { return peer_closed_; }

 private:
  bool stopping() const { return stop_ && stop_->load(); }
  bool ensure() {
    if (fd_ >= 0) return true;
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port_);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      close();
      return false;
    }
    ++connects_;
    peer_closed_ = false;
    return true;
  }
  // Waits for bytes (in 50 ms slices so a stop request is seen); false on
  // close, error, stop or deadline.
  bool read_some(std::chrono::steady_clock::time_point deadline) {
    char buf[16384];
    while (!stopping() && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      const int ready = ::poll(&p, 1, 50);
      if (ready < 0) return false;
      if (ready == 0) continue;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        buffer_.append(buf, static_cast<std::size_t>(n));
        return true;
      }
      peer_closed_ = true;
      return false;
    }
    return false;
  }
  Response read_response(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    Response r = read_head(timeout);
    if (!r.ok()) return {};
    std::size_t length = 0;
    const std::string lower = [&] {
      std::string l = r.head;
      for (auto& ch : l) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      return l;
    }();
    if (const auto p = lower.find("content-length:"); p != std::string::npos) length = std::stoul(lower.substr(p + 15));
    if (lower.find("transfer-encoding: chunked") != std::string::npos) {
      std::string chunk;
      bool ended = false;
      while (read_chunk(chunk, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()), &ended))
        r.body += chunk;
      if (!ended) return {};
      return r;
    }
    while (buffer_.size() < length)
      if (!read_some(deadline)) return {};
    r.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    return r;
  }

  std::uint16_t port_;
  const std::atomic<bool>* stop_;
  int fd_ = -1;
  std::atomic<int> connects_{0};
  bool peer_closed_ = false;
  std::string buffer_;
};

class TransportClient {
 public:
  virtual ~TransportClient() = default;
  TransportClient() = default;
  TransportClient(const TransportClient&) = delete;
  TransportClient& operator=(const TransportClient&) = delete;

  // Opens the session; returns the HTTP status of the opening request
  // (101 or 200 when it worked; 401 for a refused token; 0 on failure).
  // With TokenIn::command the token goes in an `authenticate` command.
  virtual int open(const std::string& token, TokenIn where) = 0;
  // Queues one command.
  virtual void send(std::string json) = 0;
  // Abandons the session at once (a crashed client).
  virtual void drop() = 0;
  virtual Transport transport() const = 0;

  // Sent as the Origin header of every request of the session (set before
  // open; empty: none, as from a non-browser client).
  std::string origin;

  // The first frame whose "type" is `type` (others stay queued). Throws on timeout.
  std::unique_ptr<Frame> next(const std::string& type, std::chrono::milliseconds timeout = 5000ms) {
    return next_where([&](const Frame& f) { return f.str("type") == type; }, "a \"" + type + "\" frame", timeout);
  }
  template <typename Pred>
  std::unique_ptr<Frame> next_where(Pred pred, const std::string& what, std::chrono::milliseconds timeout) {
    std::unique_lock lock(m_);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::size_t scanned = 0;
    for (;;) {
      for (; scanned < frames_.size(); ++scanned) {
        auto f = std::make_unique<Frame>(frames_[scanned]);
        if (!pred(*f)) continue;
        frames_.erase(frames_.begin() + static_cast<std::ptrdiff_t>(scanned));
        return f;
      }
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && scanned == frames_.size())
        throw std::runtime_error(std::string(transport_name(transport())) + ": timed out waiting for " + what);
    }
  }
  // True if a frame of `type` is queued now or arrives within `within`.
  bool has(const std::string& type, std::chrono::milliseconds within = 0ms) {
    try {
      auto f = next(type, within);
      std::lock_guard lock(m_);
      frames_.push_front(f->text);
      return true;
    } catch (const std::runtime_error&) {
      return false;
    }
  }
  // The reply to command `id` (other replies stay queued).
  std::unique_ptr<Frame> reply(std::uint64_t id, std::chrono::milliseconds timeout = 5000ms) {
    return next_where([&](const Frame& f) { return f.str("type") == "reply" && f.u64("id") == id; },
                      "the reply to " + std::to_string(id), timeout);
  }
  std::unique_ptr<Frame> call(std::uint64_t id, const std::string& json) {
    send(json);
    return reply(id);
  }
  bool wait_closed(std::chrono::milliseconds timeout = 5000ms) {
    std::unique_lock lock(m_);
    return cv_.wait_for(lock, timeout, [&] { return closed_; });
  }
  bool is_closed() {
    std::lock_guard lock(m_);
    return closed_;
  }

 protected:
  void deliver(std::string text) {
    {
      std::lock_guard lock(m_);
      frames_.push_back(std::move(text));
    }
    cv_.notify_all();
  }
  void set_closed() {
    {
      std::lock_guard lock(m_);
      closed_ = true;
    }
    cv_.notify_all();
  }

  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::string> frames_;
  bool closed_ = false;
};

// ---- WebSocket ----------------------------------------------------------------------

class WsTransportClient final : public TransportClient {
 public:
  explicit WsTransportClient(std::uint16_t port) : port_(port) { thread_ = std::thread([this] { loop_.run(); }); }
  ~WsTransportClient() override {
    loop_.post([this] {
      if (connection_) connection_->terminate();
      connection_.reset();
    });
    loop_.post([this] { loop_.stop(); });
    thread_.join();
  }
  Transport transport() const override { return Transport::websocket; }

  int open(const std::string& token, TokenIn where) override {
    net::ClientOptions options;
    options.subprotocols = {"duplex.v1"};
    options.origin = origin;
    std::string query;
    if (where == TokenIn::query) query = "?token=" + token;
    if (where == TokenIn::header) options.headers.push_back({"Authorization", "Bearer " + token});
    net::Handlers h;
    h.on_open = [this](net::Connection&) { state([&] { open_ = true; }); };
    h.on_message = [this](net::Connection&, protocol::Opcode, std::string_view payload) { deliver(std::string(payload)); };
    h.on_close = [this](net::Connection&, std::uint16_t, std::string_view) { set_closed(); };
    h.on_error = [this](std::string_view error) {
      state([&] { error_ = std::string(error); });
      set_closed();
    };
    const std::string url = "ws://127.0.0.1:" + std::to_string(port_) + "/connection/websocket" + query;
    loop_.post([this, url, options, h] { connection_ = net::connect(loop_, url, options, h); });
    std::unique_lock lock(m_);
    cv_.wait_for(lock, 5000ms, [&] { return open_ || closed_; });
    if (!open_) {
      for (int status : {401, 403})
        if (error_.find(std::to_string(status)) != std::string::npos) return status;
      return 0;
    }
    lock.unlock();
    if (where == TokenIn::command) send(R"({"type":"authenticate","id":999999,"token":")" + token + "\"}");
    return 101;
  }
  void send(std::string json) override {
    loop_.post([this, json = std::move(json)] {
      if (connection_) connection_->send_text(json);
    });
  }
  void drop() override {
    loop_.post([this] {
      if (connection_) connection_->terminate();
    });
  }

 private:
  template <typename Fn>
  void state(Fn fn) {
    {
      std::lock_guard lock(m_);
      fn();
    }
    cv_.notify_all();
  }
  std::uint16_t port_;
  net::EventLoop loop_;
  std::thread thread_;
  std::shared_ptr<net::Connection> connection_;
  bool open_ = false;
  std::string error_;
};

// ---- fallbacks: shared command POSTs ----------------------------------------------

class FallbackTransportClient : public TransportClient {
 public:
  // `post_port`: where command POSTs go (another node of the cluster), 0: `port`.
  explicit FallbackTransportClient(std::uint16_t port, std::uint16_t post_port = 0)
      : port_(port), posts_(post_port ? post_port : port, &stop_) {}
  ~FallbackTransportClient() override { stop_threads(); }

  void send(std::string json) override {
    {
      std::lock_guard lock(out_m_);
      outbox_.push_back(std::move(json));
    }
    out_cv_.notify_all();
  }
  std::string session() const { return session_; }
  // Status of the last command POST that failed (0: none).
  int post_failure() const { return post_failure_.load(); }
  // TCP connections used for command POSTs so far (keep-alive: 1).
  int post_connections() {
    std::lock_guard lock(out_m_);
    return posts_.connects();
  }

 protected:
  virtual std::string commands_path() const = 0;

  void start_sender() {
    sender_ = std::thread([this] {
      for (;;) {
        std::string body;
        {
          std::unique_lock lock(out_m_);
          out_cv_.wait(lock, [&] { return stop_ || !outbox_.empty(); });
          if (stop_) return;
          for (std::size_t n = 0; n < 100 && !outbox_.empty(); ++n) {
            if (!body.empty()) body += '\n';
            body += outbox_.front();
            outbox_.pop_front();
          }
        }
        auto r = posts_.request("POST", commands_path(), body, origin_header());
        if (stop_) return;
        if (r.status != 200) {
          post_failure_ = r.status ? r.status : -1;
          continue;
        }
        try {
          Frame answer(r.body);
          for (auto reply : answer.array("/replies")) deliver(std::string(simdjson::minify(reply)));
        } catch (const std::exception&) {
          post_failure_ = -2;  // not {"replies":[...]}
        }
      }
    });
  }
  void stop_threads() {
    {
      std::lock_guard lock(out_m_);
      stop_ = true;
    }
    out_cv_.notify_all();
    if (sender_.joinable()) sender_.join();
    if (reader_.joinable()) reader_.join();
  }
  static std::string token_query(const std::string& token, TokenIn where, char sep) {
    return where == TokenIn::query ? std::string(1, sep) + "token=" + token : std::string();
  }
  std::string token_header(const std::string& token, TokenIn where) const {
    return (where == TokenIn::header ? "Authorization: Bearer " + token + "\r\n" : std::string()) + origin_header();
  }
  std::string origin_header() const { return origin.empty() ? std::string() : "Origin: " + origin + "\r\n"; }

  std::uint16_t port_;
  std::atomic<bool> stop_{false};
  std::string session_;
  std::thread reader_;

 private:
  std::mutex out_m_;
  std::condition_variable out_cv_;
  std::deque<std::string> outbox_;
  HttpConnection posts_;
  std::thread sender_;
  std::atomic<int> post_failure_{0};
};

// ---- Server-Sent Events -------------------------------------------------------------

class SseTransportClient final : public FallbackTransportClient {
 public:
  explicit SseTransportClient(std::uint16_t port, std::uint16_t post_port = 0)
      : FallbackTransportClient(port, post_port), stream_(port, &stop_) {}
  ~SseTransportClient() override { stop_threads(); }
  Transport transport() const override { return Transport::sse; }

  int open(const std::string& token, TokenIn where) override {
    const std::string req = "GET /connection/sse" + token_query(token, where, '?') +
                            " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n" + token_header(token, where) + "\r\n";
    if (!stream_.send_raw(req)) return 0;
    auto head = stream_.read_head(5000ms);
    head_ = head.head;
    if (head.status != 200) return head.status;
    // The first event names the session.
    std::string text;
    while (text.find("\n\n") == std::string::npos) {
      std::string chunk;
      if (!stream_.read_chunk(chunk, 5000ms)) return 0;
      text += chunk;
    }
    const auto data = text.find("data: ");
    session_ = Frame(text.substr(data + 6, text.find('\n', data) - data - 6)).str("session");
    pending_ = text.substr(text.find("\n\n") + 2);
    reader_ = std::thread([this] { read_events(); });
    start_sender();
    if (where == TokenIn::command) send(R"({"type":"authenticate","id":999999,"token":")" + token + "\"}");
    return 200;
  }
  void drop() override {
    stop_threads();
    stream_.close();
  }
  const std::string& head() const { return head_; }
  // Event ids seen, in order.
  std::vector<std::uint64_t> event_ids() {
    std::lock_guard lock(m_);
    return ids_;
  }

 protected:
  std::string commands_path() const override { return "/connection/sse/" + session_; }

 private:
  void read_events() {
    std::string text = std::move(pending_);
    for (;;) {
      std::size_t end;
      while ((end = text.find("\n\n")) != std::string::npos) {
        const std::string block = text.substr(0, end);
        text.erase(0, end + 2);
        std::string data, id;
        std::size_t start = 0;
        while (start < block.size()) {
          std::size_t nl = block.find('\n', start);
          if (nl == std::string::npos) nl = block.size();
          const std::string line = block.substr(start, nl - start);
          start = nl + 1;
          if (line.starts_with("data: ")) data += line.substr(6);
          else if (line.starts_with("id: ")) id = line.substr(4);
        }
        if (data.empty()) continue;
        if (!id.empty()) {
          std::lock_guard lock(m_);
          ids_.push_back(std::stoull(id));
        }
        deliver(std::move(data));
      }
      std::string chunk;
      bool ended = false;
      if (stream_.read_chunk(chunk, 3600s, &ended)) {
        text += chunk;
        continue;
      }
      if (!stop_) set_closed();
      return;
    }
  }

  HttpConnection stream_;
  std::string head_, pending_;
  std::vector<std::uint64_t> ids_;
};

// ---- long-polling -------------------------------------------------------------------

class PollTransportClient final : public FallbackTransportClient {
 public:
  // Opens on `port`; commands go to `post_port` and polls to `poll_port` (0: `port`).
  explicit PollTransportClient(std::uint16_t port, std::uint16_t post_port = 0, std::uint16_t poll_port = 0)
      : FallbackTransportClient(port, post_port), polls_(poll_port ? poll_port : port, &stop_) {}
  ~PollTransportClient() override { stop_threads(); }
  Transport transport() const override { return Transport::longpoll; }

  int open(const std::string& token, TokenIn where) override {
    HttpConnection opener(port_);
    auto r = opener.request("POST", "/connection/poll/open" + token_query(token, where, '?'), {}, token_header(token, where));
    if (r.status != 200) return r.status;
    session_ = Frame(r.body).str("session");
    reader_ = std::thread([this] { poll_loop(); });
    start_sender();
    if (where == TokenIn::command) send(R"({"type":"authenticate","id":999999,"token":")" + token + "\"}");
    return 200;
  }
  void drop() override {
    stop_threads();
    polls_.close();
  }

 protected:
  std::string commands_path() const override { return "/connection/poll/" + session_; }

 private:
  void poll_loop() {
    std::uint64_t last = 0;
    while (!stop_) {
      auto r = polls_.request("GET", "/connection/poll/" + session_ + "?last=" + std::to_string(last), {}, origin_header(), 60s);
      if (stop_) return;
      if (r.status != 200) {
        set_closed();
        return;
      }
      std::unique_ptr<Frame> events;
      try {
        events = std::make_unique<Frame>(r.body);
      } catch (const std::exception&) {
        set_closed();
        return;
      }
      bool disconnected = false;
      for (auto e : events->array("")) {
        std::uint64_t id = 0;
        if (e["id"].get(id) == simdjson::SUCCESS) last = id;
        std::string_view type;
        if (e["data"]["type"].get(type) == simdjson::SUCCESS && type == "disconnect") disconnected = true;
        deliver(std::string(simdjson::minify(e["data"])));
      }
      if (disconnected) {
        set_closed();
        return;
      }
    }
  }

  HttpConnection polls_;
};

inline std::unique_ptr<TransportClient> make_transport_client(Transport t, std::uint16_t port) {
  switch (t) {
    case Transport::websocket: return std::make_unique<WsTransportClient>(port);
    case Transport::sse: return std::make_unique<SseTransportClient>(port);
    case Transport::longpoll: return std::make_unique<PollTransportClient>(port);
  }
  return nullptr;
}

// An authenticated client on `t` that saw `connected` (or the authenticate reply).
inline std::unique_ptr<TransportClient> connect_over(Transport t, Server& server, const std::string& user,
                                                     TokenIn where = TokenIn::query) {
  auto c = make_transport_client(t, server.port());
  const int status = c->open(token_for(user), where);
  if (status != 101 && status != 200) throw std::runtime_error(std::string(transport_name(t)) + ": open failed, HTTP " + std::to_string(status));
  if (where == TokenIn::command) {
    auto r = c->reply(999999);
    if (r->has("/error")) throw std::runtime_error("authenticate failed: " + r->text);
  } else {
    c->next("connected");
  }
  return c;
}

}  // namespace hub_test
