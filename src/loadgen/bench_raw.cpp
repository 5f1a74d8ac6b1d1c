#include "bench_raw.hpp"

#include <netdb.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <random>
#include <stdexcept>

#include "bench_common.hpp"
#include "duplex/protocol/handshake.hpp"

namespace duplex::cli::bench {

namespace {
std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
constexpr int max_events = 256;
constexpr int reads_per_event = 4;
constexpr std::size_t keep_out_capacity = 1u << 20;
}  // namespace

bool resolve_target(const net::WsUrl& url, RawTarget& out, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(url.port);
  const int rc = getaddrinfo(url.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || !res) {
    error = "cannot resolve " + url.host + ": " + gai_strerror(rc);
    return false;
  }
  std::memcpy(&out.addr, res->ai_addr, res->ai_addrlen);
  out.addr_len = static_cast<socklen_t>(res->ai_addrlen);
  freeaddrinfo(res);
  out.host_header = url.host_header();
  out.path = url.target;
  return true;
}

// ---- connection -------------------------------------------------------------------

struct RawConnection::Handshake {
  Handshake() : parser(protocol::HttpHeadParser::Kind::response) {}
  protocol::HttpHeadParser parser;
  std::string key;
  protocol::DeflateClientOffer offer;
};

RawConnection::RawConnection(RawEngine& engine, int fd, const RawOptions& options, std::uint64_t seed)
    : engine_(engine), fd_(fd), ws_(protocol::Role::client, &options.limits, seed) {}

RawConnection::~RawConnection() {
  if (fd_ >= 0) ::close(fd_);
}

bool RawConnection::send(protocol::Opcode kind, std::string_view payload) {
  if (state_ != State::open) return false;
  if (!ws_.send(out_, kind, payload)) return false;
  engine_.mark_dirty(this);
  return true;
}

void RawConnection::close(std::uint16_t code) {
  if (state_ != State::open) return;
  if (!ws_.close(out_, code)) return;
  state_ = State::closing;
  deadline_ns = now_ns() + engine_.options_.close_timeout_ns;
  engine_.mark_dirty(this);
}

void RawConnection::abort(std::string_view why) { finish(false, why); }

void RawConnection::want_write(bool on) {
  if (epollout_ == on || fd_ < 0) return;
  epollout_ = on;
  epoll_event ev{};
  ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
  ev.data.ptr = this;
  epoll_ctl(engine_.epfd_, EPOLL_CTL_MOD, fd_, &ev);
}

void RawConnection::flush() {
  dirty_ = false;
  if (state_ == State::closed || state_ == State::connecting) return;
  while (out_offset_ < out_.size()) {
    const ssize_t n = ::send(fd_, out_.data() + out_offset_, out_.size() - out_offset_, MSG_NOSIGNAL);
    if (n > 0) {
      out_offset_ += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      want_write(true);
      return;
    }
    fail(std::string("send: ") + std::strerror(errno));
    return;
  }
  out_.clear();
  out_offset_ = 0;
  if (out_.capacity() > keep_out_capacity) std::string().swap(out_);
  want_write(false);
  if (ws_.failed()) finish(false, error_);
}

void RawConnection::on_connected() {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) {
    fail(std::string("connect: ") + std::strerror(err));
    return;
  }
  state_ = State::handshake;
  flush();  // the upgrade request, queued by RawEngine::connect
}

void RawConnection::on_writable() {
  if (state_ == State::connecting) {
    on_connected();
    return;
  }
  flush();
}

void RawConnection::on_readable() {
  std::uint8_t* buf = engine_.buf_.get();
  const std::size_t cap = engine_.buf_size_;
  for (int i = 0; i < reads_per_event; ++i) {
    const ssize_t n = ::recv(fd_, buf, cap, 0);
    if (n > 0) {
      engine_.read_time_ = now_ns();
      const auto size = static_cast<std::size_t>(n);
      if (state_ == State::handshake) {
        handshake_bytes(buf, size);
      } else {
        ws_.receive(buf, size, *this, out_);
        if (ws_.state() == protocol::WebSocket::State::closed) {
          if (ws_.failed()) {
            flush();  // our close frame, best effort; finishes the connection
            if (state_ != State::closed) finish(false, error_);
            return;
          }
          state_ = State::closing;  // the reply is queued; the server closes TCP next
        }
      }
      if (state_ == State::closed) return;
      if (size < cap) break;
      continue;
    }
    if (n == 0) {
      if (ws_.close_received()) finish(true, {});
      else if (state_ == State::handshake) fail("the server closed the connection during the handshake");
      else fail("the server closed the connection without a close frame");
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    fail(std::string("recv: ") + std::strerror(errno));
    return;
  }
  if (dirty_ || out_offset_ < out_.size()) flush();
}

void RawConnection::handshake_bytes(std::uint8_t* data, std::size_t size) {
  std::size_t consumed = 0;
  const auto status = handshake_->parser.feed(std::string_view(reinterpret_cast<const char*>(data), size), consumed);
  if (status == protocol::HttpParseStatus::incomplete) return;
  if (status == protocol::HttpParseStatus::error) {
    fail("invalid HTTP response: " + std::string(handshake_->parser.error()));
    return;
  }
  const protocol::HttpHead& head = handshake_->parser.head();
  protocol::UpgradeResponse response;
  std::string error;
  if (!protocol::validate_upgrade_response(head, handshake_->key, {}, response, error)) {
    fail(head.status != 101 ? "HTTP " + std::to_string(head.status) + " " + head.reason : error);
    return;
  }
  if (!response.extensions.empty()) {
    if (!engine_.options_.deflate) {
      fail("the server accepted an extension we did not offer");
      return;
    }
    auto params = protocol::accept_deflate_response(response.extensions, handshake_->offer, error);
    if (!error.empty()) {
      fail(error);
      return;
    }
    if (params) {
      deflate_ = std::make_unique<protocol::PerMessageDeflate>(*params, false);
      ws_.set_deflate(deflate_.get());
    }
  }
  handshake_.reset();
  state_ = State::open;
  opened_ = true;
  deadline_ns = 0;
  --engine_.pending_;
  ++engine_.open_;
  engine_.handler_.on_open(*this);
  if (state_ == State::open && consumed < size) {
    ws_.receive(data + consumed, size - consumed, *this, out_);
    if (ws_.state() == protocol::WebSocket::State::closed) {
      if (ws_.failed()) {
        flush();
        if (state_ != State::closed) finish(false, error_);
        return;
      }
      state_ = State::closing;
    }
  }
}

void RawConnection::on_message(protocol::Opcode kind, std::string_view payload) {
  if (state_ == State::closed) return;  // aborted by an earlier message of this read
  engine_.handler_.on_message(*this, kind, payload);
}

void RawConnection::on_close(std::uint16_t, std::string_view) {
  if (state_ == State::open) state_ = State::closing;
}

void RawConnection::on_protocol_error(std::uint16_t code, std::string_view what) {
  error_ = "protocol error (" + std::to_string(code) + "): " + std::string(what);
}

void RawConnection::fail(std::string why) { finish(false, why); }

void RawConnection::finish(bool clean, std::string_view why) {
  if (state_ == State::closed) return;
  if (state_ == State::connecting || state_ == State::handshake) --engine_.pending_;
  if (opened_) --engine_.open_;
  --engine_.live_;
  state_ = State::closed;
  ::close(fd_);  // also leaves the epoll set
  fd_ = -1;
  std::string().swap(out_);
  out_offset_ = 0;
  handshake_.reset();
  engine_.handler_.on_closed(*this, opened_, clean, why);
}

// ---- engine ------------------------------------------------------------------------

RawEngine::RawEngine(RawHandler& handler, RawOptions options, std::size_t read_buffer_size)
    : handler_(handler),
      options_(std::move(options)),
      epfd_(epoll_create1(EPOLL_CLOEXEC)),
      buf_(new std::uint8_t[read_buffer_size]),
      buf_size_(read_buffer_size),
      seed_((std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}()) {
  if (epfd_ < 0) throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
}

RawEngine::~RawEngine() {
  conns_.clear();  // closes their sockets
  ::close(epfd_);
}

RawConnection* RawEngine::connect(const RawTarget& target, const sockaddr_in* source, int& err) {
  const int fd = ::socket(target.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    err = errno;
    return nullptr;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (source) {
    // Let connect() pick the port from the whole 4-tuple space.
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (::bind(fd, reinterpret_cast<const sockaddr*>(source), sizeof *source) != 0) {
      err = errno;
      ::close(fd);
      return nullptr;
    }
  }
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&target.addr), target.addr_len) != 0 && errno != EINPROGRESS) {
    err = errno;
    ::close(fd);
    return nullptr;
  }
  auto conn = std::make_unique<RawConnection>(*this, fd, options_, splitmix64(seed_));
  RawConnection* c = conn.get();
  c->started_ns = now_ns();
  c->deadline_ns = c->started_ns + options_.handshake_timeout_ns;
  c->handshake_ = std::make_unique<RawConnection::Handshake>();
  std::array<std::uint8_t, 16> nonce{};
  for (std::size_t i = 0; i < nonce.size(); i += 8) {
    const std::uint64_t r = splitmix64(seed_);
    std::memcpy(nonce.data() + i, &r, 8);
  }
  c->handshake_->key = protocol::make_client_key(nonce);
  protocol::ClientRequestOptions request;
  request.host = target.host_header;
  request.target = target.path;
  if (options_.deflate) request.extensions = protocol::format_deflate_offer(c->handshake_->offer);
  c->out_ = protocol::build_upgrade_request(request, c->handshake_->key);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.ptr = c;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    err = errno;
    return nullptr;  // `conn` closes the socket
  }
  c->epollout_ = true;
  conns_.push_back(std::move(conn));
  ++pending_;
  ++live_;
  return c;
}

void RawEngine::mark_dirty(RawConnection* c) {
  if (c->dirty_) return;
  c->dirty_ = true;
  dirty_.push_back(c);
}

void RawEngine::flush_dirty() {
  // Flushing may fail a connection, whose callback may queue more: iterate by index.
  for (std::size_t i = 0; i < dirty_.size(); ++i)
    if (dirty_[i]->dirty_) dirty_[i]->flush();
  dirty_.clear();
}

void RawEngine::flush_all() { flush_dirty(); }

void RawEngine::reap() {
  flush_dirty();
  std::erase_if(conns_, [](const std::unique_ptr<RawConnection>& c) {
    return c->state_ == RawConnection::State::closed;
  });
}

void RawEngine::poll(std::uint64_t timeout_ns) {
  flush_dirty();
  epoll_event events[max_events];
  int n = -1;
  if (use_pwait2_) {
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(timeout_ns / ns_per_s);
    ts.tv_nsec = static_cast<long>(timeout_ns % ns_per_s);
    n = epoll_pwait2(epfd_, events, max_events, &ts, nullptr);
    if (n < 0 && errno == ENOSYS) use_pwait2_ = false;
  }
  if (!use_pwait2_) {
    const auto ms = static_cast<int>(std::min<std::uint64_t>((timeout_ns + 999'999) / 1'000'000, 60'000));
    n = epoll_wait(epfd_, events, max_events, ms);
  }
  for (int i = 0; i < n; ++i) {
    auto* c = static_cast<RawConnection*>(events[i].data.ptr);
    const std::uint32_t e = events[i].events;
    if (c->state_ == RawConnection::State::closed) continue;
    if (c->state_ == RawConnection::State::connecting) {
      if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) c->on_connected();
      continue;
    }
    if (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) c->on_readable();
    if ((e & EPOLLOUT) && c->state_ != RawConnection::State::closed) c->on_writable();
  }
  flush_dirty();
}

void RawEngine::expire(std::uint64_t now) {
  // By index: an abort's callback may start new connections.
  for (std::size_t i = 0; i < conns_.size(); ++i) {
    RawConnection* c = conns_[i].get();
    if (c->state_ == RawConnection::State::closed || c->state_ == RawConnection::State::open) continue;
    if (c->deadline_ns != 0 && now >= c->deadline_ns)
      c->abort(c->state_ == RawConnection::State::closing ? "close handshake timed out" : "handshake timed out");
  }
}

void RawEngine::close_all(std::uint64_t deadline) {
  for (std::size_t i = 0; i < conns_.size(); ++i) {
    RawConnection* c = conns_[i].get();
    if (c->state_ == RawConnection::State::open) c->close();
    else if (c->state_ == RawConnection::State::connecting || c->state_ == RawConnection::State::handshake) c->abort();
  }
  for (;;) {
    const std::uint64_t now = now_ns();
    if (live_ == 0 || now >= deadline) break;
    poll(std::min<std::uint64_t>(deadline - now, 50'000'000));
  }
  for (std::size_t i = 0; i < conns_.size(); ++i)
    if (conns_[i]->state_ != RawConnection::State::closed) conns_[i]->abort();
}


std::optional<BenchTarget> open_bench_target(std::string_view mode, const std::string& url_text,
                                             const std::string& engine_option) {
  const int mode_len = static_cast<int>(mode.size());
  std::string error;
  const auto url = net::parse_ws_url(url_text, error);
  if (!url) {
    std::fprintf(stderr, "duplex bench %.*s: %s\n", mode_len, mode.data(), error.c_str());
    return std::nullopt;
  }
  BenchTarget t;
  t.url = *url;
  t.engine = engine_option == "auto" ? (url->secure ? "net" : "raw") : engine_option;
  if (t.engine == "raw" && url->secure) {
    std::fprintf(stderr,
                 "duplex bench %.*s: the raw engine speaks ws:// only (wss:// needs --engine net, where the mode has it)\n",
                 mode_len, mode.data());
    return std::nullopt;
  }
  if (t.engine == "raw" && !resolve_target(t.url, t.raw, error)) {
    std::fprintf(stderr, "duplex bench %.*s: %s\n", mode_len, mode.data(), error.c_str());
    return std::nullopt;
  }
  return t;
}

}  // namespace duplex::cli::bench
