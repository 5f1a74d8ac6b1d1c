#include "duplex/engines/redis_engine.hpp"

#include <atomic>
#include <mutex>
#include <optional>
#include <thread>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include "redis_pubsub.hpp"
#include "redis_storage.hpp"

namespace duplex::engines {

struct RedisEngine::Impl {
  explicit Impl(RedisEngineOptions options)
      : storage(io, options.config, std::move(options.clock)), pubsub(io, options.config, storage.sentinels()) {}

  asio::io_context io{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work{io.get_executor()};
  detail::RedisStorage storage;
  detail::RedisPubSub pubsub;
  std::atomic<bool> stopped{false};
  std::mutex stop_mutex;
  std::thread thread;

  template <class F>
  void post(F&& f) {
    asio::post(io, std::forward<F>(f));
  }
};

RedisEngine::RedisEngine(RedisEngineOptions options) {
  if (options.config.addresses.empty() && options.config.sentinels.empty())
    throw std::runtime_error("engine.redis.addresses and engine.redis.sentinels are both empty");
  if (!options.config.sentinels.empty() && options.config.sentinel_master.empty())
    throw std::runtime_error("engine.redis.sentinels is set but engine.redis.sentinel_master is empty");
  impl_ = std::make_unique<Impl>(std::move(options));
  Impl* impl = impl_.get();
  impl->post([impl] {
    impl->storage.start();
    impl->pubsub.start();
  });
  impl->thread = std::thread([impl] { impl->io.run(); });
}

RedisEngine::~RedisEngine() { stop(); }

void RedisEngine::stop() {
  std::lock_guard lock(impl_->stop_mutex);
  if (impl_->stopped.exchange(true)) return;
  Impl* impl = impl_.get();
  impl->post([impl] {
    impl->pubsub.stop();
    impl->storage.stop();
    // After what stopping posted (failed callbacks), end the loop.
    asio::post(impl->io, [impl] { impl->io.stop(); });
  });
  impl->work.reset();
  if (impl->thread.joinable()) {
    if (impl->thread.get_id() == std::this_thread::get_id()) {
      impl->thread.detach();  // stop() from a callback: the loop ends on its own
    } else {
      impl->thread.join();
    }
  }
}

std::size_t RedisEngine::shard_of(const std::string& channel) const { return impl_->storage.shard_of(channel); }

void RedisEngine::set_deliver(Deliver deliver) {
  Impl* impl = impl_.get();
  impl->post([impl, deliver = std::move(deliver)]() mutable { impl->pubsub.set_deliver(std::move(deliver)); });
}

void RedisEngine::set_node_name(const std::string& name) {
  Impl* impl = impl_.get();
  impl->post([impl, name] { impl->pubsub.subscribe_node(impl->storage.node_channel(name)); });
}

void RedisEngine::set_node_message_handler(NodeMessage handler) {
  Impl* impl = impl_.get();
  impl->post([impl, handler = std::move(handler)]() mutable {
    impl->pubsub.set_node_message_handler(std::move(handler));
  });
}

void RedisEngine::publish(PublishRequest request, std::function<void(PublishResult)> done) {
  if (impl_->stopped) {
    PublishResult result;
    result.error = EngineErrc::unavailable;
    result.message = "redis engine stopped; not published";
    if (done) done(std::move(result));
    return;
  }
  Impl* impl = impl_.get();
  impl->post([impl, request = std::move(request), done = std::move(done)]() mutable {
    impl->storage.publish(std::move(request), true, [done = std::move(done)](detail::RedisStorage::Published out) {
      if (done) done(std::move(out.result));
    });
  });
}

void RedisEngine::history(HistoryRequest request, std::function<void(HistoryResult)> done) {
  if (impl_->stopped) {
    HistoryResult result;
    result.error = EngineErrc::unavailable;
    result.message = "redis engine stopped";
    if (done) done(std::move(result));
    return;
  }
  Impl* impl = impl_.get();
  impl->post([impl, request = std::move(request), done = std::move(done)]() mutable {
    impl->storage.history(std::move(request), std::move(done));
  });
}

void RedisEngine::presence_add(const std::string& channel, const ClientInfo& client, bool announce) {
  if (impl_->stopped) return;
  Impl* impl = impl_.get();
  impl->post([impl, channel, client, announce] { impl->storage.presence_add(channel, client, announce, true); });
}

void RedisEngine::presence_remove(const std::string& channel, const ClientInfo& client, bool announce) {
  if (impl_->stopped) return;
  Impl* impl = impl_.get();
  impl->post([impl, channel, client, announce] { impl->storage.presence_remove(channel, client, announce, true); });
}

void RedisEngine::presence(const std::string& channel, std::function<void(std::vector<ClientInfo>)> done) {
  if (impl_->stopped) {
    if (done) done({});
    return;
  }
  Impl* impl = impl_.get();
  impl->post([impl, channel, done = std::move(done)]() mutable { impl->storage.presence(channel, std::move(done)); });
}

void RedisEngine::node_subscribe(const std::string& channel, std::function<void(EngineErrc)> ready) {
  if (impl_->stopped) {
    if (ready) ready(EngineErrc::unavailable);
    return;
  }
  Impl* impl = impl_.get();
  impl->post([impl, channel, ready = std::move(ready)]() mutable { impl->pubsub.subscribe(channel, std::move(ready)); });
}

void RedisEngine::node_unsubscribe(const std::string& channel) {
  if (impl_->stopped) return;
  Impl* impl = impl_.get();
  impl->post([impl, channel] { impl->pubsub.unsubscribe(channel); });
}

void RedisEngine::node_heartbeat(const NodeInfo& self) {
  if (impl_->stopped) return;
  Impl* impl = impl_.get();
  impl->post([impl, self] { impl->storage.node_heartbeat(self); });
}

void RedisEngine::nodes(std::function<void(std::vector<NodeInfo>)> done) {
  if (impl_->stopped) {
    if (done) done({});
    return;
  }
  Impl* impl = impl_.get();
  impl->post([impl, done = std::move(done)]() mutable { impl->storage.nodes(std::move(done)); });
}

bool RedisEngine::send_to_node(const std::string& node, std::string payload) {
  if (impl_->stopped || !impl_->storage.up(0)) return false;
  Impl* impl = impl_.get();
  impl->post([impl, channel = impl->storage.node_channel(node), payload = std::move(payload)]() mutable {
    impl->storage.publish_raw(channel, std::move(payload));
  });
  return true;
}

bool RedisEngine::healthy() const {
  return !impl_->stopped && impl_->storage.backends_up() == impl_->storage.shard_count() && impl_->pubsub.all_up();
}

EngineHealth RedisEngine::health() const {
  EngineHealth h;
  h.backends_total = impl_->storage.shard_count();
  h.backends_up = impl_->stopped ? 0 : impl_->storage.backends_up();
  h.healthy = healthy();
  h.reconnects = impl_->storage.reconnects() + impl_->pubsub.reconnects();
  h.errors = impl_->storage.errors();
  return h;
}

}  // namespace duplex::engines
