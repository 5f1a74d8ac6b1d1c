#include "nats_broker.hpp"

#include <nats/nats.h>

#include <algorithm>
#include <random>
#include <utility>
#include <vector>

#include <asio/post.hpp>

#include "nats_support.hpp"

namespace duplex::engines::detail {

// What nats.c's callbacks hold (through a heap-allocated shared_ptr per
// registration, freed by the matching "complete"/"closed" callback): the
// broker while it runs, null once it stopped. The lock is held while
// posting, so nothing is posted to the io_context after stop().
struct NatsBroker::Bridge {
  std::mutex mutex;
  NatsBroker* broker = nullptr;
  asio::io_context* io = nullptr;
  std::int64_t reconnect_min_ms = 100;
  std::int64_t reconnect_max_ms = 2000;

  template <class F>
  void to_io(const std::shared_ptr<Bridge>& self, F&& f) {
    std::lock_guard lock(mutex);
    if (!broker) return;
    asio::post(*io, [self, f = std::forward<F>(f)]() mutable {
      NatsBroker* target = nullptr;
      {
        std::lock_guard inner(self->mutex);
        target = self->broker;
      }
      if (target) f(*target);
    });
  }
};

// The callbacks nats.c calls (its threads).
struct BridgeAccess {
  using BridgePtr = std::shared_ptr<NatsBroker::Bridge>;
  static BridgePtr& of(void* closure) { return *static_cast<BridgePtr*>(closure); }

  static void on_message(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    BridgePtr& bridge = of(closure);
    std::string subject = natsMsg_GetSubject(msg);
    std::string payload(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
    natsMsg_Destroy(msg);
    bridge->to_io(bridge, [subject = std::move(subject), payload = std::move(payload)](NatsBroker& broker) mutable {
      broker.dispatch(subject, std::move(payload));
    });
  }

  static void on_complete(void* closure) { delete static_cast<BridgePtr*>(closure); }

  static void on_disconnected(natsConnection*, void* closure) {
    BridgePtr& bridge = of(closure);
    bridge->to_io(bridge, [](NatsBroker& broker) {
      broker.up_.store(false, std::memory_order_relaxed);
      if (broker.handlers_.disconnected) broker.handlers_.disconnected();
    });
  }

  static void on_reconnected(natsConnection*, void* closure) {
    BridgePtr& bridge = of(closure);
    bridge->to_io(bridge, [](NatsBroker& broker) {
      broker.reconnects_.fetch_add(1, std::memory_order_relaxed);
      broker.up_.store(true, std::memory_order_relaxed);
      if (broker.handlers_.reconnected) broker.handlers_.reconnected();
    });
  }

  // The first connection, when the server was down at start.
  static void on_connected(natsConnection*, void* closure) {
    BridgePtr& bridge = of(closure);
    bridge->to_io(bridge, [](NatsBroker& broker) {
      broker.up_.store(true, std::memory_order_relaxed);
      if (broker.handlers_.reconnected) broker.handlers_.reconnected();
    });
  }

  static void on_closed(natsConnection*, void* closure) { delete static_cast<BridgePtr*>(closure); }

  static void on_error(natsConnection*, natsSubscription* sub, natsStatus err, void* closure) {
    BridgePtr& bridge = of(closure);
    std::string subject;
    if (err == NATS_SLOW_CONSUMER && sub) {
      if (const char* s = natsSubscription_GetSubject(sub)) subject = s;
    }
    bridge->to_io(bridge, [subject = std::move(subject)](NatsBroker& broker) {
      broker.errors_.fetch_add(1, std::memory_order_relaxed);
      if (subject.empty()) return;
      const auto& prefix = broker.channel_prefix_;
      if (subject.size() < prefix.size() || subject.compare(0, prefix.size(), prefix) != 0) return;
      auto channel = NatsBroker::unescape(std::string_view(subject).substr(prefix.size()));
      if (channel && broker.handlers_.dropped) broker.handlers_.dropped(*channel);
    });
  }

  static int64_t reconnect_delay(natsConnection*, int attempts, void* closure) {
    BridgePtr& bridge = of(closure);
    std::int64_t delay = bridge->reconnect_min_ms;
    for (int i = 1; i < attempts && delay < bridge->reconnect_max_ms; ++i) delay *= 2;
    delay = std::min(delay, bridge->reconnect_max_ms);
    thread_local std::minstd_rand rng{std::random_device{}()};
    // Jitter: somewhere in [delay/2, delay], so restarted servers are not stampeded.
    return delay / 2 + static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(delay / 2 + 1));
  }
};

namespace {

constexpr char kHex[] = "0123456789ABCDEF";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string NatsBroker::escape(std::string_view name) {
  if (name.empty()) return "%";
  std::string out;
  out.reserve(name.size());
  for (char ch : name) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f || c == '.' || c == '*' || c == '>' || c == '%') {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    } else {
      out.push_back(ch);
    }
  }
  return out;
}

std::optional<std::string> NatsBroker::unescape(std::string_view token) {
  if (token == "%") return std::string();
  if (token.empty()) return std::nullopt;
  std::string out;
  out.reserve(token.size());
  for (std::size_t i = 0; i < token.size(); ++i) {
    if (token[i] != '%') {
      out.push_back(token[i]);
      continue;
    }
    if (i + 2 >= token.size()) return std::nullopt;
    const int hi = hex_value(token[i + 1]);
    const int lo = hex_value(token[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

NatsBroker::NatsBroker(asio::io_context& io, NatsBrokerOptions options, Handlers handlers)
    : io_(io),
      options_(std::move(options)),
      handlers_(std::move(handlers)),
      channel_prefix_(options_.subject_prefix + ".ch."),
      node_prefix_(options_.subject_prefix + ".node."),
      bridge_(std::make_shared<Bridge>()) {
  bridge_->broker = this;
  bridge_->io = &io_;
  bridge_->reconnect_min_ms = std::max<std::int64_t>(options_.reconnect_min.count(), 1);
  bridge_->reconnect_max_ms = std::max<std::int64_t>(options_.reconnect_max.count(), bridge_->reconnect_min_ms);
}

NatsBroker::~NatsBroker() { stop(); }

std::string NatsBroker::channel_subject(const std::string& channel) const { return channel_prefix_ + escape(channel); }
std::string NatsBroker::node_subject(const std::string& name) const { return node_prefix_ + escape(name); }

std::string NatsBroker::unavailable() const {
  return "nats " + options_.url + " unavailable: " +
         (stopped_ ? std::string("engine stopped") : std::string("not connected (reconnecting)"));
}

std::string NatsBroker::start() {
  if (conn_ || stopped_) return {};
  const auto urls = split_urls(options_.url);
  if (urls.empty()) return "engine.nats.url is empty";

  natsOptions* opts = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  if (s != NATS_OK) return "nats: cannot create options: " + status_text(s);
  auto* closure = new std::shared_ptr<Bridge>(bridge_);
  auto check = [&s](natsStatus r) {
    if (s == NATS_OK) s = r;
  };
  check(set_connection_options(opts, urls, options_.name, options_.connect_timeout,
                               std::chrono::milliseconds(bridge_->reconnect_min_ms), options_.ping_interval));
  check(natsOptions_SetCustomReconnectDelay(opts, &BridgeAccess::reconnect_delay, closure));
  // One library delivery pool instead of a thread per subscription (one
  // subscription per channel).
  check(natsOptions_UseGlobalMessageDelivery(opts, true));
  check(natsOptions_SetRetryOnFailedConnect(opts, true, &BridgeAccess::on_connected, closure));
  check(natsOptions_SetDisconnectedCB(opts, &BridgeAccess::on_disconnected, closure));
  check(natsOptions_SetReconnectedCB(opts, &BridgeAccess::on_reconnected, closure));
  check(natsOptions_SetClosedCB(opts, &BridgeAccess::on_closed, closure));
  check(natsOptions_SetErrorHandler(opts, &BridgeAccess::on_error, closure));
  if (s != NATS_OK) {
    natsOptions_Destroy(opts);
    delete closure;
    return "nats: invalid options (url '" + options_.url + "'): " + status_text(s);
  }
  s = natsConnection_Connect(&conn_, opts);
  natsOptions_Destroy(opts);
  if (s == NATS_OK) {
    up_.store(true, std::memory_order_relaxed);
  } else if (s != NATS_NOT_YET_CONNECTED) {
    if (conn_) {
      natsConnection_Destroy(conn_);
      conn_ = nullptr;
    } else {
      delete closure;
    }
    return "nats " + options_.url + ": cannot connect: " + status_text(s);
  }
  flush_thread_ = std::thread([this] { flush_worker(); });
  return {};
}

void NatsBroker::stop() {
  if (stopped_) return;
  stopped_ = true;
  up_.store(false, std::memory_order_relaxed);
  {
    std::lock_guard lock(bridge_->mutex);
    bridge_->broker = nullptr;
  }
  std::deque<FlushRequest> left;
  {
    std::lock_guard lock(flush_mutex_);
    flush_stop_ = true;
    left.swap(flush_queue_);
  }
  flush_cv_.notify_all();
  // Closing first wakes a flush in progress.
  if (conn_) natsConnection_Close(conn_);
  if (flush_thread_.joinable()) flush_thread_.join();
  for (auto& [channel, sub] : subs_) natsSubscription_Destroy(sub);
  subs_.clear();
  if (node_sub_) natsSubscription_Destroy(node_sub_);
  node_sub_ = nullptr;
  if (conn_) natsConnection_Destroy(conn_);
  conn_ = nullptr;
  for (auto& request : left)
    if (request.done) request.done(false, unavailable());
}

bool NatsBroker::live() const { return conn_ && !stopped_ && natsConnection_Status(conn_) == NATS_CONN_STATUS_CONNECTED; }

bool NatsBroker::subscribe(const std::string& channel) {
  if (!conn_ || stopped_) return false;
  if (subs_.count(channel)) return true;
  auto* closure = new std::shared_ptr<Bridge>(bridge_);
  natsSubscription* sub = nullptr;
  const std::string subject = channel_subject(channel);
  natsStatus s = natsConnection_Subscribe(&sub, conn_, subject.c_str(), &BridgeAccess::on_message, closure);
  if (s != NATS_OK) {
    delete closure;
    errors_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  // Frees the closure once the last message was handled. If the
  // subscription closed already (the connection is closing), the closure is
  // left: a callback may still be using it.
  natsSubscription_SetOnCompleteCB(sub, &BridgeAccess::on_complete, closure);
  subs_.emplace(channel, sub);
  return true;
}

void NatsBroker::unsubscribe(const std::string& channel) {
  auto it = subs_.find(channel);
  if (it == subs_.end()) return;
  natsSubscription_Unsubscribe(it->second);
  natsSubscription_Destroy(it->second);
  subs_.erase(it);
}

bool NatsBroker::subscribe_node(const std::string& name) {
  if (!conn_ || stopped_ || node_sub_) return node_sub_ != nullptr;
  auto* closure = new std::shared_ptr<Bridge>(bridge_);
  const std::string subject = node_subject(name);
  natsStatus s = natsConnection_Subscribe(&node_sub_, conn_, subject.c_str(), &BridgeAccess::on_message, closure);
  if (s != NATS_OK) {
    delete closure;
    node_sub_ = nullptr;
    errors_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  natsSubscription_SetOnCompleteCB(node_sub_, &BridgeAccess::on_complete, closure);
  return true;
}

void NatsBroker::flush(std::function<void(bool ok, const std::string& why)> done) {
  if (!conn_ || stopped_) {
    if (done) done(false, unavailable());
    return;
  }
  {
    std::lock_guard lock(flush_mutex_);
    flush_queue_.push_back(FlushRequest{std::move(done)});
  }
  flush_cv_.notify_one();
}

void NatsBroker::flush_worker() {
  for (;;) {
    std::deque<FlushRequest> batch;
    {
      std::unique_lock lock(flush_mutex_);
      flush_cv_.wait(lock, [this] { return flush_stop_ || !flush_queue_.empty(); });
      if (flush_stop_) return;
      batch.swap(flush_queue_);
    }
    // Every SUB written before these requests were queued is answered by
    // this one PING/PONG.
    if (natsConnection_Status(conn_) != NATS_CONN_STATUS_CONNECTED) {
      finish_flushes(std::move(batch), false, "nats " + options_.url + " unavailable: not connected (reconnecting)");
      continue;
    }
    const natsStatus s = natsConnection_FlushTimeout(conn_, options_.flush_timeout.count());
    if (s == NATS_OK)
      finish_flushes(std::move(batch), true, {});
    else
      finish_flushes(std::move(batch), false, "nats " + options_.url + " unavailable: flush failed: " + status_text(s));
  }
}

void NatsBroker::finish_flushes(std::deque<FlushRequest> batch, bool ok, const std::string& why) {
  if (!ok) errors_.fetch_add(1, std::memory_order_relaxed);
  bridge_->to_io(bridge_, [batch = std::move(batch), ok, why](NatsBroker&) mutable {
    for (auto& request : batch)
      if (request.done) request.done(ok, why);
  });
}

bool NatsBroker::publish(const std::string& channel, const std::string& payload) {
  if (!conn_ || stopped_) return false;
  const std::string subject = channel_subject(channel);
  const natsStatus s =
      natsConnection_Publish(conn_, subject.c_str(), payload.data(), static_cast<int>(payload.size()));
  if (s != NATS_OK) errors_.fetch_add(1, std::memory_order_relaxed);
  return s == NATS_OK;
}

bool NatsBroker::publish_node(const std::string& name, const std::string& payload) {
  if (!conn_ || stopped_) return false;
  const std::string subject = node_subject(name);
  const natsStatus s =
      natsConnection_Publish(conn_, subject.c_str(), payload.data(), static_cast<int>(payload.size()));
  if (s != NATS_OK) errors_.fetch_add(1, std::memory_order_relaxed);
  return s == NATS_OK;
}

bool NatsBroker::connected() const { return up_.load(std::memory_order_relaxed); }

void NatsBroker::dispatch(const std::string& subject, std::string payload) {
  if (stopped_) return;
  if (subject.size() > channel_prefix_.size() && subject.compare(0, channel_prefix_.size(), channel_prefix_) == 0) {
    auto channel = unescape(std::string_view(subject).substr(channel_prefix_.size()));
    if (channel && handlers_.message) handlers_.message(*channel, std::move(payload));
    return;
  }
  if (subject.size() > node_prefix_.size() && subject.compare(0, node_prefix_.size(), node_prefix_) == 0) {
    if (handlers_.node_message) handlers_.node_message(std::move(payload));
  }
}

}  // namespace duplex::engines::detail
