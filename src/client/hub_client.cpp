#include "duplex/client/hub_client.hpp"

#include <mutex>

#include "duplex/net/client.hpp"
#include "duplex/net/loop_timer.hpp"
#include "duplex/protocol/close_code.hpp"

namespace duplex::client {

namespace {

constexpr Millis tick_period{100};

TimePoint now() { return Clock::now(); }

SessionOptions session_options(const HubClientOptions& options) {
  SessionOptions s;
  s.token = options.token;
  s.use_token_provider = static_cast<bool>(options.token_provider);
  s.backoff_base = options.backoff_base;
  s.backoff_cap = options.backoff_cap;
  s.command_timeout = options.command_timeout;
  s.ping_timeout = options.ping_timeout;
  s.max_queued_publishes = options.max_queued_publishes;
  s.max_data_bytes = options.max_data_bytes;
  return s;
}

// Lets a token provider answer from any thread, even after the client is
// gone: the loop pointer is cleared (under the lock) before the loop dies.
struct LoopHandle {
  std::mutex mutex;
  net::EventLoop* loop = nullptr;
  void post(std::function<void()> fn) {
    std::lock_guard lock(mutex);
    if (loop) loop->post(std::move(fn));
  }
  void reset() {
    std::lock_guard lock(mutex);
    loop = nullptr;
  }
};

}  // namespace

// Owns the session, the transport, the timers; lives on the loop thread.
class HubClient::Driver : public std::enable_shared_from_this<Driver> {
 public:
  Driver(net::EventLoop& loop, HubClientOptions options, std::shared_ptr<std::atomic<ConnectionState>> state)
      : loop_(loop),
        options_(std::move(options)),
        session_(session_options(options_)),
        state_(std::move(state)),
        handle_(std::make_shared<LoopHandle>()),
        reconnect_timer_(loop),
        tick_timer_(loop) {
    handle_->loop = &loop;
    // The session reports state changes; mirror them for state() (any
    // thread) before the application hears of them.
    StateHandlers wrapped;
    wrapped.on_connecting = [this] {
      state_->store(ConnectionState::connecting);
      if (user_handlers_.on_connecting) user_handlers_.on_connecting();
    };
    wrapped.on_connected = [this](const ConnectedEvent& event) {
      state_->store(ConnectionState::connected);
      if (user_handlers_.on_connected) user_handlers_.on_connected(event);
    };
    wrapped.on_disconnected = [this](const DisconnectedEvent& event) {
      state_->store(event.will_reconnect ? ConnectionState::disconnected : ConnectionState::closed);
      if (user_handlers_.on_disconnected) user_handlers_.on_disconnected(event);
    };
    wrapped.on_token_refreshed = [this](std::int64_t expires) {
      if (user_handlers_.on_token_refreshed) user_handlers_.on_token_refreshed(expires);
    };
    wrapped.on_error = [this](const Error& error) {
      if (user_handlers_.on_error) user_handlers_.on_error(error);
    };
    session_.set_state_handlers(std::move(wrapped));
  }

  HubSession& session() { return session_; }
  void set_user_handlers(StateHandlers handlers) { user_handlers_ = std::move(handlers); }

  void start_ticking() {
    tick_timer_.start(tick_period, [weak = weak_from_this()] {
      if (auto self = weak.lock()) {
        if (self->stopped_) return;
        self->session_.tick(now());
        self->pump();
        self->start_ticking();
      }
    });
  }

  void connect() {
    if (stopped_ || transport_active_) return;
    reconnect_timer_.cancel();
    open_transport();
  }

  void close() {
    reconnect_timer_.cancel();
    session_.close(now());
    pump();
  }

  void drop_connection() {
    if (auto connection = connection_.lock()) connection->terminate();
  }

  // The client is going away: close, fail what is pending, stop the timers.
  void shutdown() {
    close();
    stopped_ = true;
    ++generation_;  // callbacks of the current transport are ignored from now on
    if (auto connection = connection_.lock()) connection->terminate();
    transport_active_ = false;
    reconnect_timer_.cancel();
    tick_timer_.cancel();
    handle_->reset();
  }

  // Carries out what the session asked for; repeats until it asks nothing.
  void pump() {
    if (pumping_) return;  // a transport callback fired while we were sending: the outer loop continues
    pumping_ = true;
    for (;;) {
      bool acted = false;
      auto frames = session_.take_outgoing();
      if (!frames.empty()) {
        acted = true;
        if (auto connection = connection_.lock(); connection && connection->is_open())
          for (const auto& frame : frames) connection->send_text(frame);
      }
      if (auto request = session_.take_token_request()) {
        acted = true;
        fetch_token(*request);
      }
      if (auto close = session_.take_close_request()) {
        acted = true;
        drop_transport(*close);
      }
      if (!acted) break;
    }
    state_->store(session_.state());
    pumping_ = false;
  }

 private:
  void open_transport() {
    const std::uint64_t generation = ++generation_;
    transport_active_ = true;
    session_.on_transport_connecting(now());
    net::ClientOptions client;
    client.subprotocols = {"duplex.v1"};
    client.headers = options_.headers;
    client.origin = options_.origin;
    client.tls = options_.tls;
    client.websocket.max_frame_size = options_.max_message_size;
    client.websocket.max_message_size = options_.max_message_size;
    net::Handlers handlers;
    const std::weak_ptr<Driver> weak = weak_from_this();
    handlers.on_open = [weak, generation](net::Connection&) {
      auto self = weak.lock();
      if (!self || self->generation_ != generation) return;
      self->session_.on_transport_open(now());
      self->pump();
    };
    handlers.on_message = [weak, generation](net::Connection&, protocol::Opcode kind, std::string_view payload) {
      auto self = weak.lock();
      if (!self || self->generation_ != generation || kind != protocol::Opcode::text) return;
      self->session_.on_text(payload, now());
      self->pump();
    };
    handlers.on_close = [weak, generation](net::Connection&, std::uint16_t code, std::string_view reason) {
      if (auto self = weak.lock()) self->transport_closed(generation, code, reason);
    };
    handlers.on_error = [weak, generation](std::string_view error) {
      if (auto self = weak.lock()) self->transport_closed(generation, protocol::close_code::abnormal, error);
    };
    connection_ = net::connect(loop_, options_.url, client, std::move(handlers));
    pump();
  }

  void transport_closed(std::uint64_t generation, std::uint16_t code, std::string_view reason) {
    if (generation != generation_) return;
    transport_active_ = false;
    connection_.reset();
    const ReconnectDecision decision = session_.on_transport_closed(code, reason, now());
    pump();
    if (decision.reconnect && !stopped_ && session_.state() != ConnectionState::closed)
      schedule_reconnect(decision.delay);
  }

  void schedule_reconnect(Millis delay) {
    reconnect_timer_.start(delay, [weak = weak_from_this()] {
      auto self = weak.lock();
      if (!self || self->stopped_ || self->transport_active_) return;
      if (self->session_.state() == ConnectionState::closed) return;
      self->open_transport();
    });
  }

  void drop_transport(const CloseRequest& request) {
    auto connection = connection_.lock();
    if (!connection) return;
    // A stale connection cannot be trusted to finish a close handshake.
    if (request.code == session_close::stale || !connection->is_open()) connection->terminate();
    else connection->close(request.code, request.reason);
  }

  void fetch_token(std::uint64_t request) {
    if (!options_.token_provider) {
      session_.on_token(request, TokenResult{{}, "no token provider"}, now());
      return;
    }
    auto done = [weak = weak_from_this(), handle = handle_, request](TokenResult result) {
      handle->post([weak, request, result = std::move(result)]() mutable {
        if (auto self = weak.lock()) {
          self->session_.on_token(request, std::move(result), now());
          self->pump();
        }
      });
    };
    options_.token_provider(std::move(done));
  }

  net::EventLoop& loop_;
  HubClientOptions options_;
  HubSession session_;
  StateHandlers user_handlers_;
  std::shared_ptr<std::atomic<ConnectionState>> state_;
  std::shared_ptr<LoopHandle> handle_;
  std::weak_ptr<net::Connection> connection_;
  std::uint64_t generation_ = 0;  // transports opened; callbacks of older ones are ignored
  bool transport_active_ = false;  // a transport is opening or open
  bool stopped_ = false;
  bool pumping_ = false;
  net::LoopTimer reconnect_timer_;
  net::LoopTimer tick_timer_;
};

// ---- HubClient --------------------------------------------------------------------

HubClient::HubClient(HubClientOptions options)
    : own_loop_(std::make_unique<net::EventLoop>(256u << 10)),
      loop_(own_loop_.get()),
      state_(std::make_shared<std::atomic<ConnectionState>>(ConnectionState::disconnected)),
      max_data_bytes_(options.max_data_bytes) {
  start(std::move(options));
  thread_ = std::thread([loop = loop_] { loop->run(); });
}

HubClient::HubClient(net::EventLoop& loop, HubClientOptions options)
    : loop_(&loop),
      state_(std::make_shared<std::atomic<ConnectionState>>(ConnectionState::disconnected)),
      max_data_bytes_(options.max_data_bytes) {
  start(std::move(options));
}

void HubClient::start(HubClientOptions options) {
  driver_ = std::make_shared<Driver>(*loop_, std::move(options), state_);
  loop_->post([weak = std::weak_ptr<Driver>(driver_)] {
    if (auto driver = weak.lock()) driver->start_ticking();
  });
}

HubClient::~HubClient() {
  if (own_loop_) {
    loop_->post([driver = driver_, loop = loop_] {
      driver->shutdown();
      loop->stop();
    });
    if (thread_.joinable()) thread_.join();
  } else {
    driver_->shutdown();
  }
  driver_.reset();  // its timers go while their loop still exists
  own_loop_.reset();
}

void HubClient::set_state_handlers(StateHandlers handlers) {
  loop_->post([weak = std::weak_ptr<Driver>(driver_), handlers = std::move(handlers)]() mutable {
    if (auto driver = weak.lock()) driver->set_user_handlers(std::move(handlers));
  });
}

void HubClient::connect() {
  loop_->post([weak = std::weak_ptr<Driver>(driver_)] {
    if (auto driver = weak.lock()) driver->connect();
  });
}

void HubClient::close() {
  loop_->post([weak = std::weak_ptr<Driver>(driver_)] {
    if (auto driver = weak.lock()) driver->close();
  });
}

void HubClient::drop_connection_for_test() {
  loop_->post([weak = std::weak_ptr<Driver>(driver_)] {
    if (auto driver = weak.lock()) driver->drop_connection();
  });
}

std::optional<Error> HubClient::subscribe(std::string channel, SubscriptionHandlers handlers, SubscribeOptions options) {
  if (auto error = HubSession::validate_channel(channel)) return error;
  loop_->post([weak = std::weak_ptr<Driver>(driver_), channel = std::move(channel), handlers = std::move(handlers),
               options = std::move(options)]() mutable {
    auto driver = weak.lock();
    if (!driver) return;
    if (auto error = driver->session().subscribe(channel, handlers, std::move(options), now());
        error && handlers.on_error)
      handlers.on_error(channel, *error, false);
    driver->pump();
  });
  return std::nullopt;
}

void HubClient::unsubscribe(std::string channel) {
  loop_->post([weak = std::weak_ptr<Driver>(driver_), channel = std::move(channel)] {
    auto driver = weak.lock();
    if (!driver) return;
    driver->session().unsubscribe(channel, now());
    driver->pump();
  });
}

std::optional<Error> HubClient::publish(std::string channel, std::string data, PublishCallback done,
                                        PublishOptions options) {
  if (auto error = HubSession::validate_publish(channel, data, options.idempotency_key, max_data_bytes_)) return error;
  loop_->post([weak = std::weak_ptr<Driver>(driver_), channel = std::move(channel), data = std::move(data),
               done = std::move(done), options = std::move(options)]() mutable {
    auto driver = weak.lock();
    if (!driver) return;
    driver->session().publish(std::move(channel), std::move(data), std::move(done), std::move(options), now());
    driver->pump();
  });
  return std::nullopt;
}

std::optional<Error> HubClient::presence(std::string channel, PresenceCallback done) {
  if (auto error = HubSession::validate_channel(channel)) return error;
  loop_->post([weak = std::weak_ptr<Driver>(driver_), channel = std::move(channel), done = std::move(done)]() mutable {
    auto driver = weak.lock();
    if (!driver) return;
    driver->session().presence(std::move(channel), std::move(done), now());
    driver->pump();
  });
  return std::nullopt;
}

std::optional<Error> HubClient::history(std::string channel, HistoryOptions options, HistoryCallback done) {
  if (auto error = HubSession::validate_channel(channel)) return error;
  loop_->post([weak = std::weak_ptr<Driver>(driver_), channel = std::move(channel), options = std::move(options),
               done = std::move(done)]() mutable {
    auto driver = weak.lock();
    if (!driver) return;
    driver->session().history(std::move(channel), std::move(options), std::move(done), now());
    driver->pump();
  });
  return std::nullopt;
}

}  // namespace duplex::client
