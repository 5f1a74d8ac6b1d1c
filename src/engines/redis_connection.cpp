#include "redis_connection.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <random>
#include <stdexcept>
#include <string_view>

#include <asio/post.hpp>
#include <asio/posix/stream_descriptor.hpp>

namespace duplex::engines::detail {

namespace {

void set_keepalive(int fd) {
  int on = 1;
  int idle = 15;
  int interval = 5;
  int count = 3;
  (void)::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

}  // namespace

RedisConnectionOptions parse_redis_address(const std::string& address) {
  RedisConnectionOptions options;
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) {
    options.host = address;
    return options;
  }
  options.host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  int value = 0;
  try {
    value = std::stoi(port);
  } catch (const std::exception&) {
    value = 0;
  }
  if (value <= 0 || value > 65535) throw std::runtime_error("bad Redis address '" + address + "' (expected host:port)");
  options.port = value;
  return options;
}

// The descriptor hiredis reads and writes, watched by Asio. hiredis owns
// (and closes) the fd: cleanup releases it from Asio.
struct RedisConnection::Watch : std::enable_shared_from_this<RedisConnection::Watch> {
  Watch(asio::io_context& io, int fd) : descriptor(io, fd) {}
  asio::posix::stream_descriptor descriptor;
  redisAsyncContext* ac = nullptr;
  bool reading = false;
  bool writing = false;
  bool read_waiting = false;
  bool write_waiting = false;

  static void arm_read(const std::shared_ptr<Watch>& w) {
    if (w->read_waiting || !w->ac) return;
    w->read_waiting = true;
    w->descriptor.async_wait(asio::posix::stream_descriptor::wait_read, [w](const asio::error_code& ec) {
      w->read_waiting = false;
      if (ec || !w->ac || !w->reading) return;
      redisAsyncHandleRead(w->ac);  // may free the context (cleanup clears w->ac)
      if (w->ac && w->reading) arm_read(w);
    });
  }
  static void arm_write(const std::shared_ptr<Watch>& w) {
    if (w->write_waiting || !w->ac) return;
    w->write_waiting = true;
    w->descriptor.async_wait(asio::posix::stream_descriptor::wait_write, [w](const asio::error_code& ec) {
      w->write_waiting = false;
      if (ec || !w->ac || !w->writing) return;
      redisAsyncHandleWrite(w->ac);
      if (w->ac && w->writing) arm_write(w);
    });
  }
  static void add_read(void* data) {
    auto w = static_cast<Watch*>(data)->shared_from_this();
    w->reading = true;
    arm_read(w);
  }
  static void del_read(void* data) { static_cast<Watch*>(data)->reading = false; }
  static void add_write(void* data) {
    auto w = static_cast<Watch*>(data)->shared_from_this();
    w->writing = true;
    arm_write(w);
  }
  static void del_write(void* data) { static_cast<Watch*>(data)->writing = false; }
  static void cleanup(void* data) {
    auto* w = static_cast<Watch*>(data);
    w->ac = nullptr;
    w->reading = false;
    w->writing = false;
    if (w->descriptor.is_open()) (void)w->descriptor.release();  // cancels the waits; hiredis closes the fd
  }
};

struct RedisConnection::Pending {
  RedisConnection* self;
  Callback callback;
  std::uint64_t watch_id;
};

RedisConnection::RedisConnection(asio::io_context& io, RedisConnectionOptions options)
    : io_(io),
      options_(std::move(options)),
      address_(options_.host + ":" + std::to_string(options_.port)),
      connect_timer_(io),
      reconnect_timer_(io),
      watchdog_(io) {}

RedisConnection::~RedisConnection() { stop(); }

std::string RedisConnection::unavailable() const { return "redis " + address_ + " unavailable: " + last_error_; }

void RedisConnection::start() {
  if (state_ != State::idle) return;
  connect();
}

void RedisConnection::stop() {
  if (state_ == State::stopped) return;
  stopping_ = true;
  reconnect_timer_.cancel();
  connect_timer_.cancel();
  watchdog_.cancel();
  if (ac_) {
    lost(ac_, "engine stopped", true);
  } else {
    last_error_ = "engine stopped";
  }
  auto queued = std::move(queued_);
  queued_.clear();
  for (auto& [args, callback] : queued) {
    if (callback) callback(nullptr, unavailable());
  }
  state_ = State::stopped;
  up_ = false;
}

void RedisConnection::connect() {
  ++generation_;
  state_ = State::connecting;
  const std::uint64_t generation = generation_;
  connect_timer_.expires_after(options_.connect_timeout);
  connect_timer_.async_wait([this, generation](const asio::error_code& ec) {
    if (ec || generation != generation_ || !connecting()) return;
    const std::string why = "connect timeout after " + std::to_string(options_.connect_timeout.count()) + "ms";
    if (ac_) return lost(ac_, why, true);
    fail_attempt(why);
  });
  if (!locate_) return open();
  address_ = label_;
  locate_([this, generation](std::string host, int port, std::string error) {
    if (generation != generation_ || state_ != State::connecting || ac_) return;
    if (!error.empty()) return fail_attempt(error);
    options_.host = std::move(host);
    options_.port = port;
    address_ = options_.host + ":" + std::to_string(options_.port);
    open();
  });
}

void RedisConnection::fail_attempt(const std::string& why) {
  ++generation_;
  state_ = State::down;
  up_ = false;
  last_error_ = why;
  connect_timer_.cancel();
  auto queued = std::move(queued_);
  queued_.clear();
  for (auto& [args, callback] : queued) {
    if (callback) asio::post(io_, [callback = std::move(callback), message = unavailable()] { callback(nullptr, message); });
  }
  if (on_down_) on_down_(why);
  schedule_reconnect();
}

void RedisConnection::open() {
  redisAsyncContext* ac = redisAsyncConnect(options_.host.c_str(), options_.port);
  if (!ac || ac->err) {
    const std::string why = ac && ac->errstr ? ac->errstr : "cannot allocate a connection";
    if (ac) redisAsyncFree(ac);
    return fail_attempt(why);
  }
  ac->data = this;
  ac_ = ac;
  auto watch = std::make_shared<Watch>(io_, ac->c.fd);
  watch->ac = ac;
  watch_ = watch;
  ac->ev.data = watch.get();
  ac->ev.addRead = &Watch::add_read;
  ac->ev.delRead = &Watch::del_read;
  ac->ev.addWrite = &Watch::add_write;
  ac->ev.delWrite = &Watch::del_write;
  ac->ev.cleanup = &Watch::cleanup;
  redisAsyncSetConnectCallback(ac, &RedisConnection::on_connect_cb);
  redisAsyncSetDisconnectCallback(ac, &RedisConnection::on_disconnect_cb);
}

void RedisConnection::follow_master(const std::string& host, int port) {
  if (stopping_ || state_ == State::stopped || !locate_) return;
  if (state_ == State::ready && options_.host == host && options_.port == port) return;
  attempts_ = 0;  // the new master is expected to answer: no long backoff
  if (ac_) return lost(ac_, "the master moved to " + host + ":" + std::to_string(port) + " (+switch-master)", true);
  if (state_ == State::down) {
    reconnect_timer_.cancel();
    ++generation_;  // the cancelled wait ignores itself
    schedule_reconnect();
  }
  // Locating now: that attempt asks the sentinels, which know the new master.
}

void RedisConnection::on_connect_cb(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<RedisConnection*>(ac->data);
  self->on_connected(const_cast<redisAsyncContext*>(ac), status);
}

void RedisConnection::on_disconnect_cb(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<RedisConnection*>(ac->data);
  self->on_disconnected(const_cast<redisAsyncContext*>(ac), status);
}

void RedisConnection::on_connected(redisAsyncContext* ac, int status) {
  if (ac != ac_) return;
  if (status != REDIS_OK) {
    std::string why = ac->errstr ? ac->errstr : "connect failed";
    std::transform(why.begin(), why.end(), why.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    lost(ac, why, false);  // hiredis frees the context after this callback
    return;
  }
  // A silent peer (half-open TCP after a network partition) is found by
  // keepalive on idle pub/sub connections; commands have their timeout.
  set_keepalive(ac->c.fd);
  state_ = State::handshaking;
  run_handshake(0);
}

void RedisConnection::run_handshake(int step) {
  const std::uint64_t generation = generation_;
  auto next = [this, generation, step](redisReply* reply, const std::string&) {
    if (!reply || generation != generation_ || state_ != State::handshaking) return;
    if (reply->type == REDIS_REPLY_ERROR) {
      // Says which user was refused (never the password: Redis' WRONGPASS
      // reply does not contain it).
      const std::string user = options_.username.empty() ? std::string("default") : options_.username;
      const std::string what = step == 0 ? "AUTH as user \"" + user + "\" refused: " : "";
      lost(ac_, "handshake failed: " + what + std::string(reply->str, reply->len), true);
      return;
    }
    run_handshake(step + 1);
  };
  switch (step) {
    case 0:
      if (!options_.password.empty()) {
        if (!options_.username.empty()) return send({"AUTH", options_.username, options_.password}, std::move(next));
        return send({"AUTH", options_.password}, std::move(next));
      }
      [[fallthrough]];
    case 1:
      if (options_.db != 0) return send({"SELECT", std::to_string(options_.db)}, std::move(next));
      [[fallthrough]];
    case 2:
      if (options_.require_master) {
        return send({"ROLE"}, [this, generation](redisReply* reply, const std::string&) {
          if (!reply || generation != generation_ || state_ != State::handshaking) return;
          std::string_view role;
          if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 && reply->element[0]->type == REDIS_REPLY_STRING)
            role = std::string_view(reply->element[0]->str, std::min<std::size_t>(reply->element[0]->len, 32));
          if (role != "master") {
            return lost(ac_, "handshake failed: " + address_ + " is not a master (ROLE: " +
                                 (role.empty() ? std::string("no answer") : std::string(role)) + ")", true);
          }
          run_handshake(3);
        });
      }
      [[fallthrough]];
    case 3:
      if (handshake_) {
        return handshake_(*this, [this, generation](std::string error) {
          if (generation != generation_ || state_ != State::handshaking) return;
          if (!error.empty()) return lost(ac_, "handshake failed: " + error, true);
          handshake_done();
        });
      }
      [[fallthrough]];
    default:
      handshake_done();
  }
}

void RedisConnection::handshake_done() {
  state_ = State::ready;
  up_ = true;
  connect_timer_.cancel();
  attempts_ = 0;
  if (ever_ready_) reconnects_.fetch_add(1, std::memory_order_relaxed);
  ever_ready_ = true;
  auto queued = std::move(queued_);
  queued_.clear();
  for (auto& [args, callback] : queued) send(std::move(args), std::move(callback));
  if (on_ready_) on_ready_();
}

void RedisConnection::on_disconnected(redisAsyncContext* ac, int status) {
  (void)status;
  const std::string why = ac->err && ac->errstr ? ac->errstr : "connection closed";
  lost(ac, why, false);
}

void RedisConnection::lost(redisAsyncContext* ac, const std::string& why, bool free_context) {
  if (ac == nullptr || ac != ac_) return;
  ac_ = nullptr;
  ++generation_;
  state_ = State::down;
  up_ = false;
  last_error_ = why;
  connect_timer_.cancel();
  watchdog_.cancel();
  watchdog_armed_ = false;
  deadlines_.clear();
  open_.clear();
  // Every pending command's callback runs now with a null reply.
  if (free_context) redisAsyncFree(ac);
  auto queued = std::move(queued_);
  queued_.clear();
  for (auto& [args, callback] : queued) {
    if (callback) callback(nullptr, unavailable());
  }
  if (on_down_) on_down_(why);
  if (!stopping_) schedule_reconnect();
}

void RedisConnection::schedule_reconnect() {
  if (stopping_) return;
  const auto min = std::max<std::int64_t>(options_.reconnect_min.count(), 1);
  const auto max = std::max<std::int64_t>(options_.reconnect_max.count(), min);
  std::int64_t base = min;
  for (unsigned i = 0; i < attempts_ && base < max; ++i) base *= 2;
  base = std::min(base, max);
  if (attempts_ < 64) ++attempts_;
  thread_local std::minstd_rand random{std::random_device{}()};
  const std::int64_t half = base / 2;
  const std::int64_t delay =
      half + std::uniform_int_distribution<std::int64_t>(0, std::max<std::int64_t>(base - half, 0))(random);
  const std::uint64_t generation = generation_;
  reconnect_timer_.expires_after(std::chrono::milliseconds(delay));
  reconnect_timer_.async_wait([this, generation](const asio::error_code& ec) {
    if (ec || stopping_ || generation != generation_ || state_ != State::down) return;
    connect();
  });
}

void RedisConnection::command(std::vector<std::string> args, Callback callback) {
  switch (state_) {
    case State::ready:
      return send(std::move(args), std::move(callback));
    case State::idle:
    case State::connecting:
    case State::handshaking:
      queued_.emplace_back(std::move(args), std::move(callback));
      return;
    case State::down:
    case State::stopped:
      if (callback) asio::post(io_, [callback = std::move(callback), message = unavailable()] { callback(nullptr, message); });
      return;
  }
}

void RedisConnection::send(std::vector<std::string> args, Callback callback) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  argv.reserve(args.size());
  lengths.reserve(args.size());
  for (const auto& arg : args) {
    argv.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  auto* pending = new Pending{this, std::move(callback), watch_begin()};
  if (!ac_ || redisAsyncCommandArgv(ac_, &RedisConnection::on_reply, pending, static_cast<int>(argv.size()),
                                    argv.data(), lengths.data()) != REDIS_OK) {
    watch_end(pending->watch_id);
    Callback failed = std::move(pending->callback);
    delete pending;
    if (failed) asio::post(io_, [failed = std::move(failed), message = unavailable()] { failed(nullptr, message); });
  }
}

bool RedisConnection::pubsub_command(const std::vector<std::string>& args) {
  if (state_ != State::ready || !ac_) return false;
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  for (const auto& arg : args) {
    argv.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  return redisAsyncCommandArgv(ac_, &RedisConnection::on_push_reply, this, static_cast<int>(argv.size()),
                               argv.data(), lengths.data()) == REDIS_OK;
}

void RedisConnection::on_reply(redisAsyncContext* ac, void* reply, void* privdata) {
  std::unique_ptr<Pending> pending(static_cast<Pending*>(privdata));
  RedisConnection* self = pending->self;
  if (!reply) {
    self->lost(ac, ac->err && ac->errstr ? ac->errstr : "connection lost", false);
    if (pending->callback) pending->callback(nullptr, self->unavailable());
    return;
  }
  if (ac == self->ac_) self->watch_end(pending->watch_id);
  auto* r = static_cast<redisReply*>(reply);
  const bool demoted = self->options_.require_master && r->type == REDIS_REPLY_ERROR && r->len >= 8 &&
                       std::string_view(r->str, 8) == "READONLY";
  if (pending->callback) pending->callback(r, {});
  if (demoted && ac == self->ac_) {
    // The master became a replica under us: find the new one. Dropped
    // after this callback returns (hiredis is still using the context).
    asio::post(self->io_, [self, generation = self->generation_] {
      if (generation == self->generation_ && self->ac_)
        self->lost(self->ac_, self->address_ + " is a replica now (READONLY)", true);
    });
  }
}

void RedisConnection::on_push_reply(redisAsyncContext* ac, void* reply, void* privdata) {
  auto* self = static_cast<RedisConnection*>(privdata);
  if (!reply || ac != self->ac_) return;
  if (self->on_push_) self->on_push_(static_cast<redisReply*>(reply));
}

std::uint64_t RedisConnection::watch_begin() {
  const std::uint64_t id = next_watch_++;
  deadlines_.emplace_back(id, std::chrono::steady_clock::now() + options_.command_timeout);
  open_.insert(id);
  arm_watchdog();
  return id;
}

void RedisConnection::watch_end(std::uint64_t id) {
  open_.erase(id);
  while (!deadlines_.empty() && !open_.count(deadlines_.front().first)) deadlines_.pop_front();
}

void RedisConnection::arm_watchdog() {
  if (watchdog_armed_ || deadlines_.empty() || !ac_) return;
  watchdog_armed_ = true;
  const std::uint64_t generation = generation_;
  watchdog_.expires_at(deadlines_.front().second);
  watchdog_.async_wait([this, generation](const asio::error_code& ec) {
    if (generation != generation_) return;
    watchdog_armed_ = false;
    if (ec) return;
    on_watchdog();
  });
}

void RedisConnection::on_watchdog() {
  while (!deadlines_.empty() && !open_.count(deadlines_.front().first)) deadlines_.pop_front();
  if (deadlines_.empty()) return;
  if (deadlines_.front().second <= std::chrono::steady_clock::now()) {
    lost(ac_, "no reply within " + std::to_string(options_.command_timeout.count()) + "ms (command timeout)", true);
    return;
  }
  arm_watchdog();
}

}  // namespace duplex::engines::detail
