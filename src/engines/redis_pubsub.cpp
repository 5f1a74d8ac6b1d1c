#include "redis_pubsub.hpp"

#include <hiredis/hiredis.h>

#include <algorithm>

#include <asio/post.hpp>

#include "jump_hash.hpp"
#include "redis_cluster_slots.hpp"
#include "redis_connection_options.hpp"
#include "redis_wire.hpp"

namespace duplex::engines::detail {

namespace {

std::string_view text(const redisReply* reply) {
  if (!reply || (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_STATUS)) return {};
  return {reply->str, reply->len};
}

std::size_t connection_of(const std::string& channel, std::size_t per_address) {
  const std::uint64_t hash = fnv1a64(channel);
  return static_cast<std::size_t>((hash ^ (hash >> 29)) % per_address);
}

}  // namespace

RedisPubSub::RedisPubSub(asio::io_context& io, const RedisConfig& config, RedisSentinels* sentinels,
                         RedisCluster* cluster)
    : io_(io),
      names_(redis_channel_names(config)),
      cluster_(cluster),
      shard_options_(redis_connection_options(config)),  // pub/sub ignores the db: no SELECT
      per_address_(std::max<std::size_t>(config.subscriber_connections, 1)),
      placement_min_(std::max(config.reconnect_min, std::chrono::milliseconds(1))),
      placement_max_(std::max(config.reconnect_max, placement_min_)),
      command_timeout_(config.command_timeout),
      ping_interval_(config.pubsub_ping_interval),
      placement_timer_(io),
      placement_backoff_(placement_min_) {
  if (names_.sharded) {
    // The node channel's connection; channels get theirs per master.
    Link& link = make_link(shard_options_);
    link.conn->set_locate([cluster](RedisConnection::Found found) { cluster->locate_any(std::move(found)); },
                          cluster->label());
    cluster->set_on_map_change([this] { on_map_change(); });
    return;
  }
  const std::vector<std::string> targets = cluster ? std::vector<std::string>{std::string()} : redis_targets(config);
  for (const auto& address : targets) {
    for (std::size_t i = 0; i < per_address_; ++i) {
      RedisConnectionOptions options = redis_connection_options(
          config, sentinels || cluster ? RedisConnectionOptions{} : parse_redis_address(address));
      options.require_master = sentinels != nullptr;
      Link& link = make_link(std::move(options));
      if (sentinels) follow_sentinels(*link.conn, *sentinels);
      if (cluster) {
        link.conn->set_locate([cluster](RedisConnection::Found found) { cluster->locate_any(std::move(found)); },
                              cluster->label());
      }
    }
  }
}

RedisPubSub::~RedisPubSub() { stop(); }

RedisPubSub::Link& RedisPubSub::make_link(RedisConnectionOptions options) {
  auto link = std::make_unique<Link>();
  Link* raw = link.get();
  connect_link(*raw, std::move(options));
  std::lock_guard lock(links_mutex_);
  links_.push_back(std::move(link));
  return *raw;
}

void RedisPubSub::connect_link(Link& link, RedisConnectionOptions options) {
  options.ping_interval = ping_interval_;
  auto conn = std::make_unique<RedisConnection>(io_, std::move(options));
  Link* raw = &link;
  conn->set_on_push([this, raw](redisReply* reply) { on_push(*raw, reply); });
  conn->set_on_ready([this, raw] { on_ready(*raw); });
  conn->set_on_down([this, raw](const std::string&) { on_down(*raw); });
  if (link.shard) conn->set_on_pubsub_error([this, raw](std::string_view error) { on_pubsub_error(*raw, error); });
  std::lock_guard lock(links_mutex_);
  if (link.conn) {
    retired_connections_.push_back(std::move(link.conn));
    asio::post(io_, [this] { retired_connections_.clear(); });
  }
  link.conn = std::move(conn);
}

void RedisPubSub::start() {
  started_ = true;
  for (auto& link : links_) link->conn->start();
}

void RedisPubSub::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (names_.sharded) cluster_->set_on_map_change(nullptr);
  placement_timer_.cancel();
  std::vector<std::function<void(EngineErrc)>> failed;
  for (auto& link : links_) {
    link->conn->stop();
    for (auto& [name, state] : link->channels) {
      for (auto& ready : state.waiters) failed.push_back(std::move(ready));
    }
    link->channels.clear();
  }
  for (auto& [name, state] : homeless_) {
    for (auto& ready : state.waiters) failed.push_back(std::move(ready));
  }
  homeless_.clear();
  home_.clear();
  for (auto& ready : failed) ready(EngineErrc::unavailable);
}

bool RedisPubSub::all_up() const {
  std::lock_guard lock(links_mutex_);
  // A shard link that goes down gives its channels away at once (they wait
  // in homeless_ for a master), so it may stay down (its master left).
  return homeless_count_.load(std::memory_order_relaxed) == 0 &&
         std::all_of(links_.begin(), links_.end(), [](const auto& link) { return link->shard || link->conn->up(); });
}

std::uint64_t RedisPubSub::reconnects() const {
  std::lock_guard lock(links_mutex_);
  std::uint64_t total = retired_reconnects_;
  for (const auto& link : links_) total += link->conn->reconnects();
  return total;
}

RedisPubSub::Link& RedisPubSub::link_for(const std::string& channel) {
  const std::size_t address = jump_hash(fnv1a64(channel), links_.size() / per_address_);  // = RedisStorage::shard_of
  return *links_[address * per_address_ + connection_of(channel, per_address_)];
}

RedisPubSub::Link* RedisPubSub::shard_link_for(const std::string& channel) {
  const auto master = cluster_->master_of(cluster_key_slot(names_.pubsub(channel)));
  if (!master) return nullptr;
  const std::string address = master->host + ":" + std::to_string(master->port);
  auto& group = shard_links_[address];
  RedisConnectionOptions options = shard_options_;
  options.host = master->host;
  options.port = master->port;
  if (group.empty()) {
    for (std::size_t i = 0; i < per_address_; ++i) {
      auto made = std::make_unique<Link>();
      made->shard = true;
      made->node = *master;
      connect_link(*made, options);
      if (started_) made->conn->start();
      group.push_back(made.get());
      std::lock_guard lock(links_mutex_);
      links_.push_back(std::move(made));
    }
  } else if (group.front()->retired) {  // a master again
    for (Link* link : group) {
      link->retired = false;
      link->was_up = false;
      connect_link(*link, options);
      if (started_) link->conn->start();
    }
  }
  return group[connection_of(channel, per_address_)];
}

RedisPubSub::Link* RedisPubSub::home_of(const std::string& channel) {
  if (!names_.sharded) return &link_for(channel);
  const auto it = home_.find(channel);
  return it == home_.end() ? nullptr : it->second;
}

void RedisPubSub::forget(Link& link, const std::string& channel) {
  if (link.shard) home_.erase(channel);
  link.channels.erase(channel);
}

void RedisPubSub::subscribe(const std::string& channel, std::function<void(EngineErrc)> ready) {
  if (stopped_) {
    if (ready) ready(EngineErrc::unavailable);
    return;
  }
  Link* link = home_of(channel);
  if (!link && names_.sharded) {
    auto homeless = homeless_.find(channel);
    if (homeless == homeless_.end()) {
      link = shard_link_for(channel);
      if (link) home_[channel] = link;
    }
    if (!link) {  // waits for the slot map or a placement
      ChannelState& state = homeless_[channel];
      if (state.refs++ == 0) state.homeless_since = std::chrono::steady_clock::now();
      if (ready) state.waiters.push_back(std::move(ready));
      homeless_count_.store(homeless_.size(), std::memory_order_relaxed);
      schedule_placement(placement_min_);
      return;
    }
  }
  ChannelState& state = link->channels[channel];
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
      if (!link->conn->ready() && !link->conn->connecting()) {
        if (ready) ready(EngineErrc::unavailable);
        return;  // refs stay counted: the hub's node_unsubscribe follows
      }
      state.status = Status::subscribing;
      state.sent = false;
      if (ready) state.waiters.push_back(std::move(ready));
      link->to_subscribe.push_back(channel);
      schedule_flush(*link);
      return;
  }
}

void RedisPubSub::unsubscribe(const std::string& channel) {
  if (stopped_) return;
  if (auto homeless = homeless_.find(channel); homeless != homeless_.end()) {
    if (homeless->second.refs > 0) --homeless->second.refs;  // place_homeless drops it at 0
    return;
  }
  Link* link = home_of(channel);
  if (!link) return;
  auto it = link->channels.find(channel);
  if (it == link->channels.end()) return;
  ChannelState& state = it->second;
  if (state.refs > 0) --state.refs;
  if (state.refs > 0) return;
  switch (state.status) {
    case Status::idle:
      if (state.waiters.empty()) forget(*link, channel);
      return;
    case Status::subscribing:  // flush drops it if unsent; the confirmation handler otherwise
    case Status::unsubscribing:
      return;
    case Status::active:
      link->to_unsubscribe.push_back(channel);
      schedule_flush(*link);
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

void RedisPubSub::evict(Link& link, const std::string& channel, bool map_is_current) {
  auto it = link.channels.find(channel);
  if (it == link.channels.end()) return;
  ChannelState state = std::move(it->second);
  forget(link, channel);
  if (state.refs == 0 && state.waiters.empty()) return;
  state.status = Status::idle;
  state.sent = false;
  state.epoch.clear();
  state.last_offset = 0;
  state.homeless_since = std::chrono::steady_clock::now();
  state.evicted_at_map = map_is_current ? 0 : cluster_->map_version();
  homeless_[channel] = std::move(state);
  homeless_count_.store(homeless_.size(), std::memory_order_relaxed);
  if (!map_is_current) cluster_->refresh_soon();
  schedule_placement(placement_backoff_);
}

bool RedisPubSub::placeable(const Link& link) {
  return !link.retired && (link.conn->ready() || (!link.was_up && link.conn->connecting()));
}

// Sharded: channels follow the map to their slot's master, homeless ones
// are placed now, and links whose node is no master any more close.
void RedisPubSub::on_map_change() {
  if (stopped_ || !names_.sharded) return;
  std::vector<std::pair<Link*, std::string>> moving;
  for (const auto& [channel, link] : home_) {
    const auto master = cluster_->master_of(cluster_key_slot(names_.pubsub(channel)));
    if (master && !(*master == link->node)) moving.emplace_back(link, channel);
  }
  for (const auto& [link, channel] : moving) move_away(*link, channel);
  place_homeless();
  retire_idle_links();
}

// Its node may still serve it (a demoted master serves its new master's
// shard channels as a replica), but a channel lives on its master: it is
// unsubscribed there and placed again, with a resubscribe event if it was
// live (the move may have lost publications).
void RedisPubSub::move_away(Link& link, const std::string& channel) {
  auto it = link.channels.find(channel);
  if (it == link.channels.end()) return;
  ChannelState& state = it->second;
  const bool live = state.status == Status::active && state.refs > 0;
  const bool in_flight = state.status == Status::subscribing && state.sent;
  if (in_flight) link.conn->watch_end(state.watch);
  if ((live || in_flight || state.status == Status::active) && link.conn->ready()) {
    link.conn->pubsub_command({"SUNSUBSCRIBE", names_.pubsub(channel)});
    link.unanswered.emplace_back(channel, false);
  }
  evict(link, channel, true);
  if (live) emit_resubscribe(channel);
}

void RedisPubSub::retire_idle_links() {
  for (auto& [address, group] : shard_links_) {
    if (group.empty() || group.front()->retired || cluster_->is_master(group.front()->node)) continue;
    const bool idle = std::all_of(group.begin(), group.end(),
                                  [](const Link* link) { return link->channels.empty() && link->unanswered.empty(); });
    if (!idle) continue;
    for (Link* link : group) {
      link->retired = true;
      {
        std::lock_guard lock(links_mutex_);
        retired_reconnects_ += link->conn->reconnects();
      }
      link->conn->stop();
    }
  }
}

void RedisPubSub::schedule_placement(std::chrono::milliseconds delay) {
  if (stopped_ || placement_scheduled_) return;
  placement_scheduled_ = true;
  placement_timer_.expires_after(delay);
  placement_timer_.async_wait([this](const asio::error_code& ec) {
    placement_scheduled_ = false;
    if (!ec && !stopped_) place_homeless();
  });
}

void RedisPubSub::place_homeless() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::function<void(EngineErrc)>> failed;
  for (auto it = homeless_.begin(); it != homeless_.end();) {
    ChannelState& state = it->second;
    if (state.refs == 0) {
      for (auto& ready : state.waiters) failed.push_back(std::move(ready));
      it = homeless_.erase(it);
      continue;
    }
    Link* link = cluster_->map_version() > state.evicted_at_map ? shard_link_for(it->first) : nullptr;
    if (!link || link->channels.count(it->first) || !placeable(*link)) {
      if (now - state.homeless_since > command_timeout_) {  // refs stay: the hub's node_unsubscribe follows
        for (auto& ready : state.waiters) failed.push_back(std::move(ready));
        state.waiters.clear();
      }
      ++it;
      continue;
    }
    ChannelState& placed = link->channels[it->first];
    placed = std::move(state);
    placed.status = Status::subscribing;
    placed.sent = false;
    home_[it->first] = link;
    link->to_subscribe.push_back(it->first);
    schedule_flush(*link);
    it = homeless_.erase(it);
  }
  homeless_count_.store(homeless_.size(), std::memory_order_relaxed);
  if (homeless_.empty()) {
    placement_backoff_ = placement_min_;
  } else {
    placement_backoff_ = std::min(placement_backoff_ * 2, placement_max_);
    cluster_->refresh_soon();
    schedule_placement(placement_backoff_);
  }
  for (auto& ready : failed) ready(EngineErrc::unavailable);
}

void RedisPubSub::schedule_flush(Link& link) {
  if (link.flush_posted) return;
  link.flush_posted = true;
  asio::post(io_, [this, &link] { flush(link); });
}

// One pass over what the link should (un)subscribe: SUBSCRIBE batches, or
// one SSUBSCRIBE per channel on a shard link.
void RedisPubSub::flush(Link& link) {
  link.flush_posted = false;
  if (stopped_ || !link.conn->ready()) return;  // on_ready sends what is still wanted
  std::vector<std::string> subscribe{"SUBSCRIBE"};
  std::vector<std::string> unsubscribe{"UNSUBSCRIBE"};
  auto send = [&](bool subscribing, const std::string& name) {
    if (!link.shard) return (subscribing ? subscribe : unsubscribe).push_back(names_.pubsub(name));
    link.conn->pubsub_command({subscribing ? "SSUBSCRIBE" : "SUNSUBSCRIBE", names_.pubsub(name)});
    link.unanswered.emplace_back(name, subscribing);
  };
  const auto to_subscribe = std::move(link.to_subscribe);
  const auto to_unsubscribe = std::move(link.to_unsubscribe);
  link.to_subscribe.clear();
  link.to_unsubscribe.clear();
  std::vector<std::function<void(EngineErrc)>> dropped;
  for (const auto& name : to_subscribe) {
    auto it = link.channels.find(name);
    if (it == link.channels.end()) continue;
    ChannelState& state = it->second;
    if (state.status != Status::subscribing || state.sent) continue;
    if (state.refs == 0) {  // unsubscribed before it went out
      for (auto& ready : state.waiters) dropped.push_back(std::move(ready));
      forget(link, name);
      continue;
    }
    state.sent = true;
    state.watch = link.conn->watch_begin();
    send(true, name);
  }
  for (const auto& name : to_unsubscribe) {
    auto it = link.channels.find(name);
    if (it == link.channels.end()) continue;
    ChannelState& state = it->second;
    if (state.status != Status::active || state.refs > 0) continue;
    state.status = Status::unsubscribing;
    send(false, name);
  }
  if (!link.node_channel.empty() && !link.node_subscribed) {
    link.node_subscribed = true;
    subscribe.push_back(link.node_channel);
  }
  if (subscribe.size() > 1) link.conn->pubsub_command(subscribe);
  if (unsubscribe.size() > 1) link.conn->pubsub_command(unsubscribe);
  for (auto& ready : dropped) ready(EngineErrc::unavailable);
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
  if (kind == "message" || kind == "smessage") {
    const std::string_view payload = text(reply->element[2]);
    if (!link.node_channel.empty() && name == link.node_channel) {
      if (node_handler_) node_handler_(std::string(payload));
      return;
    }
    const auto channel = names_.channel_of(name);
    if (!channel) return;
    auto it = link.channels.find(*channel);
    if (it == link.channels.end()) return;
    ChannelState& state = it->second;
    auto message = redis_wire::decode_message(payload);
    if (!message || !deliver_) return;
    ChannelEvent event;
    event.kind = message->kind;
    event.channel = *channel;
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
      if (gap) emit_resubscribe(*channel);
    } else {
      event.client = std::move(message->client);
      deliver_(event);
    }
    return;
  }
  const bool subscribed = kind == "subscribe" || kind == "ssubscribe";
  if (!subscribed && kind != "unsubscribe" && kind != "sunsubscribe") return;
  const auto channel = names_.channel_of(name);
  if (!channel) return;  // the node channel
  // A shard link's answer pops its command; an sunsubscribe nobody asked
  // for means the node gave the slot away.
  bool asked = !link.shard;
  if (link.shard && !link.unanswered.empty() && link.unanswered.front().first == *channel &&
      link.unanswered.front().second == subscribed) {
    link.unanswered.pop_front();
    asked = true;
  }
  if (subscribed) {
    on_subscribed(link, *channel);
  } else {
    on_unsubscribed(link, *channel, asked);
  }
}

void RedisPubSub::on_subscribed(Link& link, const std::string& channel) {
  auto it = link.channels.find(channel);
  if (it == link.channels.end()) return;
  ChannelState& state = it->second;
  if (state.status != Status::subscribing) return;
  link.conn->watch_end(state.watch);
  state.sent = false;
  state.status = Status::active;
  state.placements = 0;
  state.epoch.clear();
  state.last_offset = 0;
  auto waiters = std::move(state.waiters);
  state.waiters.clear();
  if (state.refs == 0) {
    link.to_unsubscribe.push_back(channel);
    schedule_flush(link);
  }
  for (auto& ready : waiters) ready(EngineErrc::ok);
}

void RedisPubSub::on_unsubscribed(Link& link, const std::string& channel, bool asked) {
  auto it = link.channels.find(channel);
  if (it == link.channels.end()) return;
  ChannelState& state = it->second;
  if (!asked) {
    if (state.status != Status::active && state.status != Status::unsubscribing) return;
    // Its slot moved (failover, migration): publications from now on go to
    // the new owner, and some may have been missed meanwhile.
    const bool live = state.status == Status::active && state.refs > 0;
    evict(link, channel);
    if (live) emit_resubscribe(channel);
    return;
  }
  if (state.status != Status::unsubscribing) return;
  if (state.refs > 0) {  // subscribed again meanwhile
    state.status = Status::subscribing;
    state.sent = false;
    link.to_subscribe.push_back(channel);
    schedule_flush(link);
  } else {
    forget(link, channel);
  }
}

void RedisPubSub::on_pubsub_error(Link& link, std::string_view error) {
  if (stopped_ || link.unanswered.empty()) return;
  const auto [channel, subscribing] = link.unanswered.front();
  link.unanswered.pop_front();
  auto it = link.channels.find(channel);
  if (it == link.channels.end()) return;
  ChannelState& state = it->second;
  if (!subscribing) {  // SUNSUBSCRIBE refused: the node no longer has the slot, so no subscription either
    if (state.status == Status::unsubscribing) on_unsubscribed(link, channel, true);
    return;
  }
  if (state.status != Status::subscribing) return;
  link.conn->watch_end(state.watch);
  // MOVED (a stale map) or CLUSTERDOWN: place it again after a refresh, a
  // few times, before its waiters hear `unavailable`.
  if (++state.placements >= kMaxPlacements) {
    auto waiters = std::move(state.waiters);
    state.waiters.clear();
    state.placements = 0;
    for (auto& ready : waiters) ready(EngineErrc::unavailable);
    (void)error;
  }
  evict(link, channel);
}

void RedisPubSub::on_ready(Link& link) {
  if (stopped_) return;
  link.was_up = true;
  link.unanswered.clear();
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

// Fails waiters, tells live channels to resubscribe, and keeps (or,
// sharded, re-places) what is still wanted.
void RedisPubSub::on_down(Link& link) {
  link.node_subscribed = false;
  link.unanswered.clear();
  if (stopped_) return;
  std::vector<std::string> lost;
  std::vector<std::string> wanted;
  std::vector<std::function<void(EngineErrc)>> failed;
  for (auto it = link.channels.begin(); it != link.channels.end();) {
    ChannelState& state = it->second;
    const bool was_live = state.status == Status::active || state.status == Status::unsubscribing;
    if (was_live && state.refs > 0) lost.push_back(it->first);
    for (auto& ready : state.waiters) failed.push_back(std::move(ready));
    state.waiters.clear();
    if (state.refs == 0) {
      if (link.shard) home_.erase(it->first);
      it = link.channels.erase(it);
    } else {
      state.status = Status::idle;
      state.sent = false;
      state.epoch.clear();
      state.last_offset = 0;
      state.placements = 0;
      if (link.shard) wanted.push_back(it->first);
      ++it;
    }
  }
  // Sharded: the master may have gone for good; its slots' new owner is
  // known after a map refresh.
  for (const auto& channel : wanted) evict(link, channel);
  for (auto& ready : failed) ready(EngineErrc::unavailable);
  for (const auto& channel : lost) emit_resubscribe(channel);
}

}  // namespace duplex::engines::detail
