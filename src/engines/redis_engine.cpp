#include "duplex/engines/redis_engine.hpp"

#include <mutex>
#include <optional>
#include <thread>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include "operation_gate.hpp"
#include "redis_pubsub.hpp"
#include "redis_storage.hpp"

namespace duplex::engines {

struct RedisEngine::Impl {
  explicit Impl(RedisEngineOptions options)
      : gate(io, options.max_in_flight),
        storage(io, options.config, std::move(options.clock)),
        pubsub(io, options.config, storage.sentinels(), storage.cluster()) {}

  asio::io_context io{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work{io.get_executor()};
  detail::OperationGate gate;  // before storage: its completions leave the gate
  detail::RedisStorage storage;
  detail::RedisPubSub pubsub;
  std::mutex thread_mutex;  // around joining `thread`
  std::thread thread;

  // The io thread: runs until stop()'s shutdown ended the loop, then runs
  // what the shutdown's failures posted last, so no completion is dropped.
  void run() {
    io.run();
    io.restart();
    while (io.poll() > 0) {
    }
  }

  // After every operation the gate let in (the gate is closed): fails what
  // is pending, then ends the loop.
  void shutdown() {
    pubsub.stop();
    storage.stop();
    asio::post(io, [this] { io.stop(); });
  }

  // Joins the io thread unless this is it (stop() from a callback: the loop
  // ends on its own once the callback returns).
  void join() {
    std::lock_guard lock(thread_mutex);
    if (thread.joinable() && thread.get_id() != std::this_thread::get_id()) thread.join();
  }
};

namespace {

PublishResult refused_publish(const detail::OperationGate& gate, detail::OperationGate::Admission admission) {
  PublishResult result;
  result.error = EngineErrc::unavailable;
  result.message = gate.refusal(admission, "redis") + "; not published";
  return result;
}

HistoryResult refused_history(const detail::OperationGate& gate, detail::OperationGate::Admission admission) {
  HistoryResult result;
  result.error = EngineErrc::unavailable;
  result.message = gate.refusal(admission, "redis");
  return result;
}

}  // namespace

RedisEngine::RedisEngine(RedisEngineOptions options) {
  if (options.config.addresses.empty() && options.config.sentinels.empty())
    throw std::runtime_error("engine.redis.addresses and engine.redis.sentinels are both empty");
  if (options.config.cluster && !options.config.sentinels.empty())
    throw std::runtime_error("engine.redis.cluster and engine.redis.sentinels exclude each other");
  if (options.config.cluster && options.config.addresses.empty())
    throw std::runtime_error("engine.redis.cluster is set but engine.redis.addresses lists no seed node");
  if (!options.config.sentinels.empty() && options.config.sentinel_master.empty())
    throw std::runtime_error("engine.redis.sentinels is set but engine.redis.sentinel_master is empty");
  impl_ = std::make_shared<Impl>(std::move(options));
  Impl* impl = impl_.get();
  impl->gate.post([impl] {
    impl->storage.start();
    impl->pubsub.start();
  });
  // The thread shares the implementation: destroyed from one of its own
  // callbacks, the engine leaves it to the thread, which frees it last.
  impl->thread = std::thread([keep = impl_] { keep->run(); });
}

RedisEngine::~RedisEngine() {
  stop();
  std::lock_guard lock(impl_->thread_mutex);
  if (impl_->thread.joinable()) impl_->thread.detach();  // on the io thread itself: see the constructor
}

void RedisEngine::stop() {
  Impl* impl = impl_.get();
  if (impl->gate.close()) {
    asio::post(impl->io, [impl] { impl->shutdown(); });
    impl->work.reset();
  }
  impl->join();
}

std::size_t RedisEngine::shard_of(const std::string& channel) const { return impl_->storage.shard_of(channel); }

void RedisEngine::set_deliver(Deliver deliver) {
  Impl* impl = impl_.get();
  impl->gate.post([impl, deliver = std::move(deliver)]() mutable { impl->pubsub.set_deliver(std::move(deliver)); });
}

void RedisEngine::set_node_name(const std::string& name) {
  Impl* impl = impl_.get();
  impl->gate.post([impl, name] { impl->pubsub.subscribe_node(impl->storage.node_channel(name)); });
}

void RedisEngine::set_node_message_handler(NodeMessage handler) {
  Impl* impl = impl_.get();
  impl->gate.post([impl, handler = std::move(handler)]() mutable {
    impl->pubsub.set_node_message_handler(std::move(handler));
  });
}

void RedisEngine::publish(PublishRequest request, std::function<void(PublishResult)> done) {
  Impl* impl = impl_.get();
  const auto admission = impl->gate.submit(done, [impl, request = std::move(request)](auto completion) mutable {
    impl->storage.publish(std::move(request), true,
                          [completion = std::move(completion)](detail::RedisStorage::Published out) {
                            completion(std::move(out.result));
                          });
  });
  if (admission != detail::OperationGate::Admission::accepted && done) done(refused_publish(impl->gate, admission));
}

void RedisEngine::history(HistoryRequest request, std::function<void(HistoryResult)> done) {
  Impl* impl = impl_.get();
  const auto admission = impl->gate.submit(done, [impl, request = std::move(request)](auto completion) mutable {
    impl->storage.history(std::move(request), std::move(completion));
  });
  if (admission != detail::OperationGate::Admission::accepted && done) done(refused_history(impl->gate, admission));
}

void RedisEngine::presence_add(const std::string& channel, const ClientInfo& client, bool announce) {
  Impl* impl = impl_.get();
  impl->gate.post([impl, channel, client, announce] { impl->storage.presence_add(channel, client, announce, true); });
}

void RedisEngine::presence_remove(const std::string& channel, const ClientInfo& client, bool announce) {
  Impl* impl = impl_.get();
  impl->gate.post([impl, channel, client, announce] { impl->storage.presence_remove(channel, client, announce, true); });
}

void RedisEngine::presence(const std::string& channel, std::function<void(std::vector<ClientInfo>)> done) {
  Impl* impl = impl_.get();
  const auto admission = impl->gate.submit(done, [impl, channel](auto completion) mutable {
    impl->storage.presence(channel, std::move(completion));
  });
  if (admission != detail::OperationGate::Admission::accepted && done) done({});
}

void RedisEngine::node_subscribe(const std::string& channel, std::function<void(EngineErrc)> ready) {
  Impl* impl = impl_.get();
  // Counted but never refused for load: the hub answers a failed subscribe
  // with node_unsubscribe, which must find this subscriber counted.
  const auto admission = impl->gate.submit(
      ready, [impl, channel](auto completion) mutable { impl->pubsub.subscribe(channel, std::move(completion)); },
      detail::OperationGate::Limit::exempt);
  if (admission != detail::OperationGate::Admission::accepted && ready) ready(EngineErrc::unavailable);
}

void RedisEngine::node_unsubscribe(const std::string& channel) {
  Impl* impl = impl_.get();
  impl->gate.post([impl, channel] { impl->pubsub.unsubscribe(channel); });
}

void RedisEngine::node_heartbeat(const NodeInfo& self) {
  Impl* impl = impl_.get();
  impl->gate.post([impl, self] { impl->storage.node_heartbeat(self); });
}

void RedisEngine::nodes(std::function<void(std::vector<NodeInfo>)> done) {
  Impl* impl = impl_.get();
  const auto admission =
      impl->gate.submit(done, [impl](auto completion) mutable { impl->storage.nodes(std::move(completion)); });
  if (admission != detail::OperationGate::Admission::accepted && done) done({});
}

bool RedisEngine::send_to_node(const std::string& node, std::string payload) {
  Impl* impl = impl_.get();
  if (!impl->storage.up(0)) return false;
  return impl->gate.post([impl, channel = impl->storage.node_channel(node), payload = std::move(payload)]() mutable {
    impl->storage.publish_raw(channel, std::move(payload));
  });
}

bool RedisEngine::healthy() const {
  return !impl_->gate.closed() && impl_->storage.backends_up() == impl_->storage.shard_count() && impl_->pubsub.all_up();
}

EngineHealth RedisEngine::health() const {
  EngineHealth h;
  h.backends_total = impl_->storage.shard_count();
  h.backends_up = impl_->gate.closed() ? 0 : impl_->storage.backends_up();
  h.healthy = healthy();
  h.in_flight = impl_->gate.in_flight();
  h.refused = impl_->gate.refused();
  h.reconnects = impl_->storage.reconnects() + impl_->pubsub.reconnects();
  h.errors = impl_->storage.errors();
  return h;
}

}  // namespace duplex::engines
