#include "duplex/engines/nats_engine.hpp"

#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include "nats_broker.hpp"
#include "operation_gate.hpp"
#include "ordered_delivery.hpp"
#include "jetstream_storage.hpp"
#include "redis_storage.hpp"
#include "redis_wire.hpp"

namespace duplex::engines {

namespace {

detail::NatsBrokerOptions broker_options(const NatsConfig& config) {
  detail::NatsBrokerOptions options;
  options.url = config.url;
  options.subject_prefix = config.subject_prefix;
  options.ping_interval = config.ping_interval;
  return options;
}

detail::JetStreamOptions jetstream_options(const NatsConfig& config) {
  detail::JetStreamOptions options;
  options.url = config.url;
  options.subject_prefix = config.subject_prefix;
  options.ping_interval = config.ping_interval;
  options.storage = config.jetstream_storage;
  options.replicas = config.jetstream_replicas;
  options.request_timeout = config.request_timeout;
  options.history_meta_ttl = config.history_meta_ttl;
  options.presence_ttl = config.presence_ttl;
  options.node_ttl = config.node_ttl;
  return options;
}

bool on_jetstream(const NatsConfig& config) { return config.storage == "jetstream"; }

std::unique_ptr<detail::ChannelStores> make_stores(asio::io_context& io, NatsEngineOptions& options) {
  if (on_jetstream(options.nats))
    return std::make_unique<detail::JetStreamStorage>(io, jetstream_options(options.nats), std::move(options.clock));
  return std::make_unique<detail::RedisStorage>(io, options.redis, std::move(options.clock));
}

}  // namespace

struct NatsEngine::Impl {
  using Clock = std::chrono::steady_clock;

  // One channel this node is subscribed to (node_subscribe counted).
  struct Channel {
    std::size_t refs = 0;
    // ready() callbacks waiting for the SUB round trip and the baseline read.
    std::vector<std::function<void(EngineErrc)>> waiters;
    bool establishing = false;
    // The current establish attempt; answers of older ones are ignored.
    std::uint64_t attempt = 0;
  };

  explicit Impl(NatsEngineOptions options)
      : gate(io, options.max_in_flight),
        storage(make_stores(io, options)),
        ordered(detail::OrderedDeliveryOptions{options.nats.reorder_window, options.max_held}, ordered_callbacks()),
        tick_timer(io) {
    broker = std::make_unique<detail::NatsBroker>(io, broker_options(options.nats), broker_handlers());
  }

  asio::io_context io{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work{io.get_executor()};
  detail::OperationGate gate;  // before storage: its completions leave the gate
  std::unique_ptr<detail::ChannelStores> storage;  // history, presence, registry (channel_stores.hpp)
  std::unique_ptr<detail::NatsBroker> broker;
  detail::OrderedDelivery ordered;
  asio::steady_timer tick_timer;
  std::optional<Clock::time_point> tick_at;

  Deliver deliver;
  NodeMessage node_handler;
  std::unordered_map<std::string, Channel> channels;
  std::uint64_t next_attempt = 1;
  bool shut = false;

  std::mutex thread_mutex;  // around joining `thread`
  std::thread thread;

  // Copied out of the io thread for ordering_stats().
  mutable std::mutex stats_mutex;
  detail::OrderedDelivery::Stats stats;

  template <class F>
  void post(F&& f) {
    asio::post(io, std::forward<F>(f));
  }

  static Clock::time_point now() { return Clock::now(); }

  detail::OrderedDelivery::Callbacks ordered_callbacks() {
    detail::OrderedDelivery::Callbacks callbacks;
    callbacks.deliver = [this](const std::string& channel, const std::string& epoch, const PublicationPtr& p) {
      if (!deliver) return;
      ChannelEvent event;
      event.kind = ChannelEvent::Kind::publication;
      event.channel = channel;
      event.epoch = epoch;
      event.publication = p;
      deliver(event);
    };
    // Both run inside an OrderedDelivery call: the work is posted, so the
    // answer never re-enters it.
    callbacks.fill = [this](const detail::OrderedDelivery::FillRequest& request) {
      post([this, request] { fill(request); });
    };
    callbacks.resubscribe = [this](const std::string& channel) { post([this, channel] { lost(channel); }); };
    return callbacks;
  }

  detail::NatsBroker::Handlers broker_handlers() {
    detail::NatsBroker::Handlers handlers;
    handlers.message = [this](const std::string& channel, std::string payload) { on_message(channel, payload); };
    handlers.node_message = [this](std::string payload) {
      if (node_handler) node_handler(std::move(payload));
    };
    handlers.disconnected = [this] { on_disconnected(); };
    handlers.reconnected = [this] { on_reconnected(); };
    handlers.dropped = [this](const std::string& channel) {
      if (!channels.count(channel)) return;
      ordered.reset(channel);
      lost(channel);
    };
    return handlers;
  }

  void save_stats() {
    std::lock_guard lock(stats_mutex);
    stats = ordered.stats();
  }

  // --- the reorder stage's timer

  void schedule_tick() {
    save_stats();
    if (shut) return;
    const auto next = ordered.next_deadline();
    if (!next) return;
    if (tick_at && *tick_at <= *next) return;
    tick_at = *next;
    tick_timer.expires_at(*next);
    tick_timer.async_wait([this](const asio::error_code& ec) {
      if (ec || shut) return;  // re-armed earlier, or stopping
      tick_at.reset();
      ordered.tick(now());
      schedule_tick();
    });
  }

  // A gap older than the reorder window: read it from Redis history.
  void fill(const detail::OrderedDelivery::FillRequest& request) {
    if (shut || !channels.count(request.channel)) return;
    HistoryRequest read;
    read.channel = request.channel;
    read.since = StreamPosition{request.epoch, request.from - 1};
    read.limit = static_cast<std::size_t>(request.to - request.from + 1);
    // No TTL filter: a late publication still in Redis is better delivered
    // than turned into a resubscribe.
    storage->history(std::move(read), [this, request](HistoryResult result) {
      if (shut) return;
      const bool complete = result.error == EngineErrc::ok && result.top.epoch == request.epoch;
      ordered.filled(request.channel, request.id, result.publications, complete, now());
      schedule_tick();
    });
  }

  // --- node subscriptions

  void fail_waiters(Channel& channel) {
    auto waiters = std::move(channel.waiters);
    channel.waiters.clear();
    for (auto& ready : waiters)
      if (ready) ready(EngineErrc::unavailable);
  }

  // SUB (if not yet), a PING round trip, then the channel's top from Redis
  // as the baseline; then every waiter is ready.
  void establish(const std::string& name) {
    auto it = channels.find(name);
    if (it == channels.end() || shut) return;
    Channel& channel = it->second;
    if (channel.establishing) return;
    if (!broker->subscribed(name) && !broker->subscribe(name)) {
      fail_waiters(channel);
      return;
    }
    channel.establishing = true;
    const std::uint64_t attempt = channel.attempt = next_attempt++;
    broker->flush([this, name, attempt](bool ok, const std::string& why) {
      (void)why;
      auto flushed = channels.find(name);
      if (shut || flushed == channels.end() || flushed->second.attempt != attempt) return;
      if (!ok) {
        flushed->second.establishing = false;
        fail_waiters(flushed->second);
        return;
      }
      HistoryRequest top;
      top.channel = name;
      top.limit = 0;
      storage->history(std::move(top), [this, name, attempt](HistoryResult result) {
        auto read = channels.find(name);
        if (shut || read == channels.end() || read->second.attempt != attempt) return;
        Channel& state = read->second;
        state.establishing = false;
        if (result.error != EngineErrc::ok) {
          fail_waiters(state);
          return;
        }
        // From here on every publication above the top reaches this node
        // (the SUB is active); everything up to it is in history.
        ordered.set_baseline(name, result.top.epoch, result.top.offset, now());
        auto waiters = std::move(state.waiters);
        state.waiters.clear();
        for (auto& ready : waiters)
          if (ready) ready(EngineErrc::ok);
        schedule_tick();
      });
    });
  }

  // Publications of `name` may have been missed (the reorder stage was
  // reset): subscribers resubscribe and recover; a new baseline is read for
  // whoever subscribes next.
  void lost(const std::string& name) {
    auto it = channels.find(name);
    if (shut || it == channels.end()) return;
    it->second.attempt = next_attempt++;  // an establish in flight is void
    it->second.establishing = false;
    if (deliver) {
      ChannelEvent event;
      event.kind = ChannelEvent::Kind::resubscribe;
      event.channel = name;
      deliver(event);
    }
    establish(name);
    save_stats();
  }

  void subscribe(const std::string& name, std::function<void(EngineErrc)> ready) {
    if (shut) {
      if (ready) ready(EngineErrc::unavailable);
      return;
    }
    Channel& channel = channels[name];
    ++channel.refs;
    ordered.add(name);
    if (ordered.baselined(name) && !channel.establishing) {
      if (ready) ready(EngineErrc::ok);
      return;
    }
    channel.waiters.push_back(std::move(ready));
    establish(name);
  }

  void unsubscribe(const std::string& name) {
    auto it = channels.find(name);
    if (it == channels.end()) return;
    if (--it->second.refs > 0) return;
    fail_waiters(it->second);
    channels.erase(it);
    ordered.remove(name);
    broker->unsubscribe(name);
    save_stats();
  }

  // --- what NATS brings

  void on_message(const std::string& channel, const std::string& payload) {
    if (shut || !channels.count(channel)) return;
    auto message = redis_wire::decode_message(payload);
    if (!message) {
      storage->count_error();
      return;
    }
    if (message->kind == ChannelEvent::Kind::publication) {
      ordered.accept(channel, message->epoch, std::move(message->publication), now());
      schedule_tick();
      return;
    }
    if (!deliver) return;
    ChannelEvent event;
    event.kind = message->kind;
    event.channel = channel;
    event.client = std::move(message->client);
    deliver(event);
  }

  void on_disconnected() {
    if (shut) return;
    // Messages are lost from now until the reconnect: every channel starts
    // over (its subscribers recover from history once NATS is back).
    std::vector<std::string> names;
    names.reserve(channels.size());
    for (auto& [name, channel] : channels) {
      names.push_back(name);
      ordered.reset(name);
      channel.attempt = next_attempt++;
      channel.establishing = false;
      fail_waiters(channel);
    }
    for (const auto& name : names) {
      if (!deliver) break;
      ChannelEvent event;
      event.kind = ChannelEvent::Kind::resubscribe;
      event.channel = name;
      deliver(event);
    }
    save_stats();
  }

  void on_reconnected() {
    if (shut) return;
    // nats.c re-sent the SUBs; new baselines for the channels still wanted.
    std::vector<std::string> names;
    for (auto& [name, channel] : channels) names.push_back(name);
    for (const auto& name : names) {
      ordered.reset(name);
      auto it = channels.find(name);
      if (it == channels.end()) continue;
      it->second.attempt = next_attempt++;
      it->second.establishing = false;
      establish(name);
    }
  }

  // --- publish

  void publish(PublishRequest request, std::function<void(PublishResult)> done) {
    if (shut || !broker->live()) {
      // Nothing is written while the fan-out is down: other nodes would not
      // learn of it until their next gap.
      PublishResult result;
      result.error = EngineErrc::unavailable;
      result.message = broker->unavailable() + "; not published";
      if (done) done(std::move(result));
      return;
    }
    std::string channel = request.channel;
    storage->store(std::move(request),
                    [this, channel = std::move(channel), done = std::move(done)](detail::Published out) {
                      if (!shut && out.result.error == EngineErrc::ok && out.publication) {
                        broker->publish(channel, redis_wire::encode_publication(out.epoch, *out.publication));
                        // This node's own subscribers need not wait for the
                        // round trip; the echo from NATS is a duplicate.
                        if (channels.count(channel)) {
                          ordered.accept(channel, out.epoch, out.publication, now());
                          schedule_tick();
                        }
                      }
                      if (done) done(std::move(out.result));
                    });
  }

  // The io thread: runs until stop()'s shutdown ended the loop, then runs
  // what the shutdown's failures posted last, so no completion is dropped.
  void run() {
    io.run();
    io.restart();
    while (io.poll() > 0) {
    }
  }

  // Joins the io thread unless this is it (stop() from a callback: the loop
  // ends on its own once the callback returns).
  void join() {
    std::lock_guard lock(thread_mutex);
    if (thread.joinable() && thread.get_id() != std::this_thread::get_id()) thread.join();
  }

  // After every operation the gate let in (the gate is closed): fails what
  // is pending, closes both connections.
  void shutdown() {
    if (shut) return;
    shut = true;
    tick_timer.cancel();
    broker->stop();
    for (auto& [name, channel] : channels) fail_waiters(channel);
    channels.clear();
    storage->stop();
    save_stats();
  }
};

namespace {

PublishResult refused_publish(const detail::OperationGate& gate, detail::OperationGate::Admission admission) {
  PublishResult result;
  result.error = EngineErrc::unavailable;
  result.message = gate.refusal(admission, "nats") + "; not published";
  return result;
}

HistoryResult refused_history(const detail::OperationGate& gate, detail::OperationGate::Admission admission) {
  HistoryResult result;
  result.error = EngineErrc::unavailable;
  result.message = gate.refusal(admission, "nats");
  return result;
}

}  // namespace

NatsEngine::NatsEngine(NatsEngineOptions options) {
  if (options.nats.storage != "redis" && !on_jetstream(options.nats))
    throw std::runtime_error("engine.nats.storage '" + options.nats.storage + "': expected \"redis\" or \"jetstream\"");
  if (on_jetstream(options.nats)) {
    if (std::string error = detail::JetStreamStorage::validate(jetstream_options(options.nats)); !error.empty())
      throw std::runtime_error(error);
  } else if (options.redis.addresses.empty() && options.redis.sentinels.empty()) {
    throw std::runtime_error("engine.redis.addresses and engine.redis.sentinels are both empty");
  }
  if (options.nats.subject_prefix.empty()) throw std::runtime_error("engine.nats.subject_prefix is empty");
  if (options.nats.reorder_window.count() <= 0) throw std::runtime_error("engine.nats.reorder_window must be positive");
  impl_ = std::make_shared<Impl>(std::move(options));
  // Before the io thread runs: start() may block up to the connect timeout
  // when a server answers slowly, never when it is down.
  if (std::string error = impl_->broker->start(); !error.empty()) throw std::runtime_error(error);
  Impl* impl = impl_.get();
  impl->gate.post([impl] { impl->storage->start(); });
  // The thread shares the implementation: destroyed from one of its own
  // callbacks, the engine leaves it to the thread, which frees it last.
  impl->thread = std::thread([keep = impl_] { keep->run(); });
}

NatsEngine::~NatsEngine() {
  stop();
  std::lock_guard lock(impl_->thread_mutex);
  if (impl_->thread.joinable()) impl_->thread.detach();  // on the io thread itself: see the constructor
}

void NatsEngine::stop() {
  Impl* impl = impl_.get();
  if (impl->gate.close()) {
    asio::post(impl->io, [impl] {
      impl->shutdown();
      asio::post(impl->io, [impl] { impl->io.stop(); });
    });
    impl->work.reset();
  }
  impl->join();
}

void NatsEngine::set_deliver(Deliver deliver) {
  Impl* impl = impl_.get();
  impl->gate.post([impl, deliver = std::move(deliver)]() mutable { impl->deliver = std::move(deliver); });
}

void NatsEngine::set_node_name(const std::string& name) {
  Impl* impl = impl_.get();
  impl->gate.post([impl, name] {
    if (!impl->shut) impl->broker->subscribe_node(name);
  });
}

void NatsEngine::set_node_message_handler(NodeMessage handler) {
  Impl* impl = impl_.get();
  impl->gate.post([impl, handler = std::move(handler)]() mutable { impl->node_handler = std::move(handler); });
}

void NatsEngine::publish(PublishRequest request, std::function<void(PublishResult)> done) {
  Impl* impl = impl_.get();
  const auto admission = impl->gate.submit(done, [impl, request = std::move(request)](auto completion) mutable {
    impl->publish(std::move(request), std::move(completion));
  });
  if (admission != detail::OperationGate::Admission::accepted && done) done(refused_publish(impl->gate, admission));
}

void NatsEngine::history(HistoryRequest request, std::function<void(HistoryResult)> done) {
  Impl* impl = impl_.get();
  const auto admission = impl->gate.submit(done, [impl, request = std::move(request)](auto completion) mutable {
    impl->storage->history(std::move(request), std::move(completion));
  });
  if (admission != detail::OperationGate::Admission::accepted && done) done(refused_history(impl->gate, admission));
}

void NatsEngine::presence_add(const std::string& channel, const ClientInfo& client, bool announce) {
  Impl* impl = impl_.get();
  impl->gate.post([impl, channel, client, announce] {
    impl->storage->add_presence(channel, client, [impl, channel, client, announce](bool added) {
      if (added && announce && !impl->shut) impl->broker->publish(channel, redis_wire::encode_join(client));
    });
  });
}

void NatsEngine::presence_remove(const std::string& channel, const ClientInfo& client, bool announce) {
  Impl* impl = impl_.get();
  impl->gate.post([impl, channel, client, announce] {
    impl->storage->remove_presence(channel, client, [impl, channel, client, announce](bool removed) {
      if (removed && announce && !impl->shut) impl->broker->publish(channel, redis_wire::encode_leave(client));
    });
  });
}

void NatsEngine::presence(const std::string& channel, std::function<void(std::vector<ClientInfo>)> done) {
  Impl* impl = impl_.get();
  const auto admission = impl->gate.submit(done, [impl, channel](auto completion) mutable {
    impl->storage->presence(channel, std::move(completion));
  });
  if (admission != detail::OperationGate::Admission::accepted && done) done({});
}

void NatsEngine::node_subscribe(const std::string& channel, std::function<void(EngineErrc)> ready) {
  Impl* impl = impl_.get();
  // Counted but never refused for load: the hub answers a failed subscribe
  // with node_unsubscribe, which must find this subscriber counted.
  const auto admission = impl->gate.submit(
      ready, [impl, channel](auto completion) mutable { impl->subscribe(channel, std::move(completion)); },
      detail::OperationGate::Limit::exempt);
  if (admission != detail::OperationGate::Admission::accepted && ready) ready(EngineErrc::unavailable);
}

void NatsEngine::node_unsubscribe(const std::string& channel) {
  Impl* impl = impl_.get();
  impl->gate.post([impl, channel] { impl->unsubscribe(channel); });
}

void NatsEngine::node_heartbeat(const NodeInfo& self) {
  Impl* impl = impl_.get();
  impl->gate.post([impl, self] { impl->storage->node_heartbeat(self); });
}

void NatsEngine::nodes(std::function<void(std::vector<NodeInfo>)> done) {
  Impl* impl = impl_.get();
  const auto admission =
      impl->gate.submit(done, [impl](auto completion) mutable { impl->storage->nodes(std::move(completion)); });
  if (admission != detail::OperationGate::Admission::accepted && done) done({});
}

bool NatsEngine::send_to_node(const std::string& node, std::string payload) {
  Impl* impl = impl_.get();
  if (!impl->broker->connected()) return false;
  return impl->gate.post([impl, node, payload = std::move(payload)] {
    if (!impl->shut) impl->broker->publish_node(node, payload);
  });
}

bool NatsEngine::healthy() const {
  return !impl_->gate.closed() && impl_->broker->connected() &&
         impl_->storage->backends_up() == impl_->storage->shard_count();
}

EngineHealth NatsEngine::health() const {
  EngineHealth h;
  h.backends_total = impl_->storage->shard_count() + 1;
  h.backends_up = impl_->gate.closed() ? 0 : impl_->storage->backends_up() + (impl_->broker->connected() ? 1 : 0);
  h.healthy = healthy();
  h.in_flight = impl_->gate.in_flight();
  h.refused = impl_->gate.refused();
  h.reconnects = impl_->storage->reconnects() + impl_->broker->reconnects();
  h.errors = impl_->storage->errors() + impl_->broker->errors();
  return h;
}

NatsEngine::OrderingStats NatsEngine::ordering_stats() const {
  std::lock_guard lock(impl_->stats_mutex);
  const auto& s = impl_->stats;
  return OrderingStats{s.delivered, s.duplicates, s.reordered, s.fills, s.filled, s.resubscribes};
}

}  // namespace duplex::engines
