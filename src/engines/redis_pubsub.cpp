#include "redis_pubsub.hpp"

#include <hiredis/hiredis.h>

#include <algorithm>

#include <asio/post.hpp>

#include "jump_hash.hpp"
#include "redis_wire.hpp"

namespace duplex::engines::detail {

namespace {

std::string_view text(const redisReply* reply) {
  if (!reply || (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_STATUS)) return {};
  return {reply->str, reply->len};
}

}  // namespace

RedisPubSub::RedisPubSub(asio::io_context& io, const RedisConfig& config, RedisSentinels* sentinels,
                         RedisCluster* cluster)
    : io_(io), channel_prefix_(config.prefix + ":ch:"), per_address_(std::max<std::size_t>(config.subscriber_connections, 1)) {
  const std::vector<std::string> targets = cluster ? std::vector<std::string>{std::string()} : redis_targets(config);
  for (const auto& address : targets) {
    for (std::size_t i = 0; i < per_address_; ++i) {
      RedisConnectionOptions options =
          sentinels || cluster ? RedisConnectionOptions{} : parse_redis_address(address);
      options.require_master = sentinels != nullptr;
      options.username = config.username;
      options.password = config.password;  // pub/sub ignores the db: no SELECT
      options.connect_timeout = config.connect_timeout;
      options.command_timeout = config.command_timeout;
      options.reconnect_min = config.reconnect_min;
      options.reconnect_max = config.reconnect_max;
      options.tls = redis_tls_options(config);
      auto link = std::make_unique<Link>();
      link->conn = std::make_unique<RedisConnection>(io_, std::move(options));
      if (sentinels) follow_sentinels(*link->conn, *sentinels);
      if (cluster) {
        link->conn->set_locate([cluster](RedisConnection::Found found) { cluster->locate_any(std::move(found)); },
                               cluster->label());
      }
      Link* raw = link.get();
      link->conn->set_on_push([this, raw](redisReply* reply) { on_push(*raw, reply); });
      link->conn->set_on_ready([this, raw] { on_ready(*raw); });
      link->conn->set_on_down([this, raw](const std::string&) { on_down(*raw); });
      links_.push_back(std::move(link));
    }
  }
}

RedisPubSub::~RedisPubSub() { stop(); }

void RedisPubSub::start() {
  for (auto& link : links_) link->conn->start();
}

void RedisPubSub::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& link : links_) {
    link->conn->stop();
    for (auto& [name, state] : link->channels) {
      auto waiters = std::move(state.waiters);
      for (auto& ready : waiters) ready(EngineErrc::unavailable);
    }
    link->channels.clear();
  }
}

bool RedisPubSub::all_up() const {
  return std::all_of(links_.begin(), links_.end(), [](const auto& link) { return link->conn->up(); });
}

std::uint64_t RedisPubSub::reconnects() const {
  std::uint64_t total = 0;
  for (const auto& link : links_) total += link->conn->reconnects();
  return total;
}

RedisPubSub::Link& RedisPubSub::link_for(const std::string& channel) {
  const std::uint64_t hash = fnv1a64(channel);
  const std::size_t address = jump_hash(hash, links_.size() / per_address_);  // = RedisStorage::shard_of
  const std::size_t connection = static_cast<std::size_t>((hash ^ (hash >> 29)) % per_address_);
  return *links_[address * per_address_ + connection];
}

void RedisPubSub::subscribe(const std::string& channel, std::function<void(EngineErrc)> ready) {
  if (stopped_) {
    if (ready) ready(EngineErrc::unavailable);
    return;
  }
  Link& link = link_for(channel);
  ChannelState& state = link.channels[channel];
  ++state.refs;
  switch (state.status) {
    case Status::active:
      if (ready) ready(EngineErrc::ok);
      return;
    case Status::subscribing:
    case Status::unsubscribing:  // subscribes again once the UNSUBSCRIBE is confirmed
      if (ready) state.waiters.push_back(std::move(ready));
      return;
    case Status::idle:
      if (!link.conn->ready() && !link.conn->connecting()) {
        if (ready) ready(EngineErrc::unavailable);
        return;  // refs stay counted: the hub's node_unsubscribe follows
      }
      state.status = Status::subscribing;
      state.sent = false;
      if (ready) state.waiters.push_back(std::move(ready));
      link.to_subscribe.push_back(channel);
      schedule_flush(link);
      return;
  }
}

void RedisPubSub::unsubscribe(const std::string& channel) {
  if (stopped_) return;
  Link& link = link_for(channel);
  auto it = link.channels.find(channel);
  if (it == link.channels.end()) return;
  ChannelState& state = it->second;
  if (state.refs > 0) --state.refs;
  if (state.refs > 0) return;
  switch (state.status) {
    case Status::idle:
      if (state.waiters.empty()) link.channels.erase(it);
      return;
    case Status::subscribing:  // flush drops it if unsent; the confirmation handler otherwise
    case Status::unsubscribing:
      return;
    case Status::active:
      link.to_unsubscribe.push_back(channel);
      schedule_flush(link);
      return;
  }
}

void RedisPubSub::subscribe_node(const std::string& node_channel) {
  if (stopped_ || links_.empty()) return;
  Link& link = *links_.front();
  link.node_channel = node_channel;
  link.node_subscribed = false;
  schedule_flush(link);
}

void RedisPubSub::schedule_flush(Link& link) {
  if (link.flush_posted) return;
  link.flush_posted = true;
  asio::post(io_, [this, &link] { flush(link); });
}

void RedisPubSub::flush(Link& link) {
  link.flush_posted = false;
  if (stopped_ || !link.conn->ready()) return;  // on_ready sends what is still wanted
  std::vector<std::string> subscribe{"SUBSCRIBE"};
  std::vector<std::string> unsubscribe{"UNSUBSCRIBE"};
  for (const auto& name : link.to_subscribe) {
    auto it = link.channels.find(name);
    if (it == link.channels.end()) continue;
    ChannelState& state = it->second;
    if (state.status != Status::subscribing || state.sent) continue;
    if (state.refs == 0) {  // unsubscribed before it went out
      auto waiters = std::move(state.waiters);
      link.channels.erase(it);
      for (auto& ready : waiters) ready(EngineErrc::unavailable);
      continue;
    }
    state.sent = true;
    state.watch = link.conn->watch_begin();
    subscribe.push_back(channel_prefix_ + name);
  }
  for (const auto& name : link.to_unsubscribe) {
    auto it = link.channels.find(name);
    if (it == link.channels.end()) continue;
    ChannelState& state = it->second;
    if (state.status != Status::active || state.refs > 0) continue;
    state.status = Status::unsubscribing;
    unsubscribe.push_back(channel_prefix_ + name);
  }
  link.to_subscribe.clear();
  link.to_unsubscribe.clear();
  if (!link.node_channel.empty() && !link.node_subscribed) {
    link.node_subscribed = true;
    subscribe.push_back(link.node_channel);
  }
  if (subscribe.size() > 1) link.conn->pubsub_command(subscribe);
  if (unsubscribe.size() > 1) link.conn->pubsub_command(unsubscribe);
}

void RedisPubSub::emit_resubscribe(const std::string& channel) {
  if (!deliver_ || stopped_) return;
  ChannelEvent event;
  event.kind = ChannelEvent::Kind::resubscribe;
  event.channel = channel;
  deliver_(event);
}

void RedisPubSub::on_push(Link& link, redisReply* reply) {
  if (stopped_ || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) return;
  const std::string_view kind = text(reply->element[0]);
  const std::string_view name = text(reply->element[1]);
  if (kind == "message") {
    const std::string_view payload = text(reply->element[2]);
    if (!link.node_channel.empty() && name == link.node_channel) {
      if (node_handler_) node_handler_(std::string(payload));
      return;
    }
    if (name.substr(0, channel_prefix_.size()) != channel_prefix_) return;
    const std::string channel(name.substr(channel_prefix_.size()));
    auto it = link.channels.find(channel);
    if (it == link.channels.end()) return;
    ChannelState& state = it->second;
    auto message = redis_wire::decode_message(payload);
    if (!message || !deliver_) return;
    ChannelEvent event;
    event.kind = message->kind;
    event.channel = channel;
    if (message->kind == ChannelEvent::Kind::publication) {
      const std::uint64_t offset = message->publication->offset;
      // Defensive: pub/sub does not lose messages on a live connection, but
      // if offsets ever skip within an epoch, the subscribers recover.
      const bool gap = !state.epoch.empty() && state.epoch == message->epoch && offset > state.last_offset + 1;
      state.epoch = message->epoch;
      state.last_offset = offset;
      event.epoch = std::move(message->epoch);
      event.publication = std::move(message->publication);
      deliver_(event);
      if (gap) emit_resubscribe(channel);
    } else {
      event.client = std::move(message->client);
      deliver_(event);
    }
    return;
  }
  if (kind == "subscribe") {
    if (name.substr(0, channel_prefix_.size()) != channel_prefix_) return;  // the node channel
    auto it = link.channels.find(std::string(name.substr(channel_prefix_.size())));
    if (it == link.channels.end()) return;
    ChannelState& state = it->second;
    if (state.status != Status::subscribing) return;
    link.conn->watch_end(state.watch);
    state.sent = false;
    state.status = Status::active;
    state.epoch.clear();
    state.last_offset = 0;
    auto waiters = std::move(state.waiters);
    state.waiters.clear();
    if (state.refs == 0) {
      link.to_unsubscribe.push_back(it->first);
      schedule_flush(link);
    }
    for (auto& ready : waiters) ready(EngineErrc::ok);
    return;
  }
  if (kind == "unsubscribe") {
    if (name.substr(0, channel_prefix_.size()) != channel_prefix_) return;
    auto it = link.channels.find(std::string(name.substr(channel_prefix_.size())));
    if (it == link.channels.end() || it->second.status != Status::unsubscribing) return;
    ChannelState& state = it->second;
    if (state.refs > 0) {  // subscribed again meanwhile
      state.status = Status::subscribing;
      state.sent = false;
      link.to_subscribe.push_back(it->first);
      schedule_flush(link);
    } else {
      link.channels.erase(it);
    }
  }
}

void RedisPubSub::on_ready(Link& link) {
  if (stopped_) return;
  for (auto& [name, state] : link.channels) {
    if (state.refs > 0 && state.status == Status::idle) {
      state.status = Status::subscribing;
      state.sent = false;
      link.to_subscribe.push_back(name);
    } else if (state.status == Status::subscribing && !state.sent) {
      link.to_subscribe.push_back(name);
    }
  }
  link.node_subscribed = false;
  schedule_flush(link);
}

void RedisPubSub::on_down(Link& link) {
  link.node_subscribed = false;
  if (stopped_) return;
  std::vector<std::string> lost;
  std::vector<std::function<void(EngineErrc)>> failed;
  for (auto it = link.channels.begin(); it != link.channels.end();) {
    ChannelState& state = it->second;
    const bool was_live = state.status == Status::active || state.status == Status::unsubscribing;
    if (was_live && state.refs > 0) lost.push_back(it->first);
    for (auto& ready : state.waiters) failed.push_back(std::move(ready));
    state.waiters.clear();
    if (state.refs == 0) {
      it = link.channels.erase(it);
    } else {
      state.status = Status::idle;
      state.sent = false;
      state.epoch.clear();
      state.last_offset = 0;
      ++it;
    }
  }
  for (auto& ready : failed) ready(EngineErrc::unavailable);
  for (const auto& channel : lost) emit_resubscribe(channel);
}

}  // namespace duplex::engines::detail
