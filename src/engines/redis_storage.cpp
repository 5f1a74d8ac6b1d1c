#include "redis_storage.hpp"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <charconv>

#include "history_rules.hpp"
#include "jump_hash.hpp"
#include "redis_connection_options.hpp"
#include "redis_scripts.hpp"
#include "redis_wire.hpp"

namespace duplex::engines::detail {

namespace {

const char* script_body(std::size_t index) {
  static constexpr const char* kBodies[] = {redis_scripts::kPublish,        redis_scripts::kHistory,
                                            redis_scripts::kPresenceAdd,    redis_scripts::kPresenceRemove,
                                            redis_scripts::kLiveEntries,    redis_scripts::kNodeBeat};
  return kBodies[index];
}

std::string_view text(const redisReply* reply) {
  if (!reply || (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_STATUS &&
                 reply->type != REDIS_REPLY_ERROR)) {
    return {};
  }
  return {reply->str, reply->len};
}

std::uint64_t number(const redisReply* reply) {
  if (!reply) return 0;
  if (reply->type == REDIS_REPLY_INTEGER) return static_cast<std::uint64_t>(reply->integer);
  std::uint64_t value = 0;
  const auto view = text(reply);
  std::from_chars(view.data(), view.data() + view.size(), value);
  return value;
}

std::int64_t ms(std::chrono::seconds s) { return seconds_to_ms(s); }

}  // namespace

RedisStorage::RedisStorage(asio::io_context& io, RedisConfig config, ClockMs clock)
    : io_(io), config_(std::move(config)), names_(redis_channel_names(config_)), clock_(std::move(clock)), shas_(kScriptCount), presence_timer_(io) {
  // Every command connection loads the scripts before its first command.
  auto load_scripts = [this](RedisConnection& c, std::function<void(std::string)> finish) {
    auto remaining = std::make_shared<std::size_t>(kScriptCount);
    auto failed = std::make_shared<bool>(false);
    auto finish_shared = std::make_shared<std::function<void(std::string)>>(std::move(finish));
    for (std::size_t i = 0; i < kScriptCount; ++i) {
      c.handshake_command({"SCRIPT", "LOAD", script_body(i)}, [this, i, remaining, failed, finish_shared](
                                                          redisReply* reply, const std::string& error) {
        if (*failed) return;
        if (!reply || reply->type != REDIS_REPLY_STRING) {
          *failed = true;
          if (reply) (*finish_shared)("SCRIPT LOAD: " + std::string(text(reply)));
          (void)error;  // a lost connection already went down
          return;
        }
        shas_[i].assign(reply->str, reply->len);
        if (--*remaining == 0) (*finish_shared)("");
      });
    }
  };
  if (config_.cluster) {
    cluster_ = std::make_unique<RedisCluster>(io_, config_,
                                              [load_scripts](RedisConnection& c) { c.set_handshake(load_scripts); });
    return;
  }
  if (!config_.sentinels.empty()) sentinels_ = std::make_unique<RedisSentinels>(io_, config_);
  for (const auto& address : redis_targets(config_)) {
    RedisConnectionOptions options =
        redis_connection_options(config_, sentinels_ ? RedisConnectionOptions{} : parse_redis_address(address));
    options.require_master = sentinels_ != nullptr;
    options.db = config_.db;
    auto conn = std::make_unique<RedisConnection>(io_, std::move(options));
    if (sentinels_) follow_sentinels(*conn, *sentinels_);
    conn->set_handshake(load_scripts);
    shards_.push_back(std::move(conn));
  }
}

RedisStorage::~RedisStorage() { stop(); }

void RedisStorage::start() {
  if (sentinels_) sentinels_->start();
  if (cluster_) cluster_->start();
  for (auto& shard : shards_) shard->start();
  arm_presence_refresh();
}

void RedisStorage::stop() {
  if (stopped_) return;
  stopped_ = true;
  presence_timer_.cancel();
  for (auto& shard : shards_) shard->stop();
  if (cluster_) cluster_->stop();
  if (sentinels_) sentinels_->stop();
}

std::size_t RedisStorage::shard_of(const std::string& channel) const {
  if (cluster_) return cluster_key_slot(channel_key(channel, "meta"));
  return jump_hash(fnv1a64(channel), shards_.size());
}

std::size_t RedisStorage::shard_count() const {
  if (cluster_) return std::max<std::size_t>(cluster_->masters_known(), 1);
  return shards_.size();
}

bool RedisStorage::up(std::size_t shard) const {
  if (cluster_) return cluster_->masters_up() > 0;
  return shards_[shard]->up();
}

std::size_t RedisStorage::backends_up() const {
  if (cluster_) return cluster_->masters_up();
  return static_cast<std::size_t>(
      std::count_if(shards_.begin(), shards_.end(), [](const auto& shard) { return shard->up(); }));
}

std::uint64_t RedisStorage::reconnects() const {
  std::uint64_t total = cluster_ ? cluster_->reconnects() : 0;
  for (const auto& shard : shards_) total += shard->reconnects();
  return total;
}

std::string RedisStorage::channel_key(const std::string& channel, std::string_view kind) const {
  return names_.key(channel, kind);
}

const char* RedisStorage::publish_mode(bool redis_publish) const {
  if (!redis_publish) return "0";
  return names_.sharded ? "s" : "1";
}

std::string RedisStorage::idempotency_key(const std::string& channel, const std::string& key) const {
  // Without a key the script gets a placeholder it never touches (KEYS
  // must still name the channel's slot in a cluster).
  if (cluster_) return channel_key(channel, key.empty() ? "idem" : "idem:" + key);
  if (key.empty()) return config_.prefix + ":idem";
  return config_.prefix + ":idem:" + std::to_string(channel.size()) + ":" + channel + ":" + key;
}

std::string RedisStorage::registry_key(std::string_view kind) const {
  if (cluster_) return "{" + config_.prefix + "}:" + std::string(kind);
  return config_.prefix + ":" + std::string(kind);
}

RedisStorage::Route RedisStorage::route_of_registry() const {
  return cluster_ ? cluster_key_slot(registry_key("nodes")) : 0;
}

void RedisStorage::send(Route route, std::vector<std::string> args, RedisConnection::Callback callback) {
  if (cluster_) return cluster_->command(static_cast<std::uint16_t>(route), std::move(args), std::move(callback));
  shards_[route]->command(std::move(args), std::move(callback));
}

std::string RedisStorage::address_of(Route route) const {
  if (cluster_) return cluster_->address_of(static_cast<std::uint16_t>(route));
  return shards_[route]->address();
}

std::string RedisStorage::failure(const redisReply* reply, const std::string& error, Route route) const {
  if (!reply) {
    if (!error.empty()) return error;
    return cluster_ ? "redis " + address_of(route) + " unavailable" : shards_[route]->unavailable();
  }
  if (reply->type == REDIS_REPLY_ERROR) return "redis " + address_of(route) + " error: " + std::string(text(reply));
  return {};
}

void RedisStorage::run_script(Route shard, Script script, std::vector<std::string> keys,
                              std::vector<std::string> args, RedisConnection::Callback callback) {
  std::vector<std::string> argv;
  argv.reserve(3 + keys.size() + args.size());
  const bool by_sha = !shas_[script].empty();
  argv.emplace_back(by_sha ? "EVALSHA" : "EVAL");
  argv.emplace_back(by_sha ? shas_[script] : std::string(script_body(script)));
  argv.push_back(std::to_string(keys.size()));
  for (auto& key : keys) argv.push_back(std::move(key));
  for (auto& arg : args) argv.push_back(std::move(arg));
  if (!by_sha) return send(shard, std::move(argv), std::move(callback));
  // After a Redis restart (or SCRIPT FLUSH) the script may be unknown:
  // NOSCRIPT means nothing ran, so run it again by its body.
  auto retry = std::make_shared<std::vector<std::string>>(argv);
  send(shard, std::move(argv), [this, shard, script, retry, callback = std::move(callback)](
                                               redisReply* reply, const std::string& error) mutable {
    if (reply && reply->type == REDIS_REPLY_ERROR && text(reply).substr(0, 8) == "NOSCRIPT") {
      (*retry)[0] = "EVAL";
      (*retry)[1] = script_body(script);
      return send(shard, std::move(*retry), std::move(callback));
    }
    callback(reply, error);
  });
}

void RedisStorage::publish(PublishRequest request, bool redis_publish, std::function<void(Published)> done) {
  const std::int64_t now = now_ms();
  const Route shard = route_of_channel(request.channel);
  const std::string& channel = request.channel;
  const bool keyed = !request.idempotency_key.empty();
  std::vector<std::string> keys{channel_key(channel, "meta"), channel_key(channel, "hist"),
                                idempotency_key(channel, request.idempotency_key)};
  auto publication = std::make_shared<Publication>();
  publication->data = std::move(request.data);
  publication->publisher = std::move(request.publisher);
  publication->time_ms = now;
  std::vector<std::string> args{make_epoch(),
                                std::to_string(now),
                                std::to_string(request.history.size),
                                std::to_string(ms(request.history.ttl)),
                                std::to_string(ms(request.history.idempotency_window)),
                                std::to_string(config_.history_meta_ttl.count()),
                                publish_mode(redis_publish),
                                pubsub_channel(channel),
                                publication->publisher,
                                publication->data,
                                keyed ? "1" : "0"};
  run_script(shard, kPublish, std::move(keys), std::move(args),
             [this, shard, publication, done = std::move(done)](redisReply* reply, const std::string& error) {
               Published out;
               std::string why = failure(reply, error, shard);
               if (why.empty() && (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)) {
                 why = "redis " + address_of(shard) + ": unexpected reply to the publish script";
               }
               if (!why.empty()) {
                 count_error();
                 out.result.error = EngineErrc::unavailable;
                 out.result.message = why + "; not published";
                 if (done) done(std::move(out));
                 return;
               }
               out.epoch.assign(text(reply->element[0]));
               out.result.position = StreamPosition{out.epoch, number(reply->element[1])};
               out.result.duplicate = number(reply->element[2]) != 0;
               if (!out.result.duplicate) {
                 publication->offset = out.result.position.offset;
                 out.publication = publication;
               }
               if (config_.wait_replicas == 0) {
                 if (done) done(std::move(out));
                 return;
               }
               wait_for_replicas(shard, std::move(out), std::move(done));
             });
}

void RedisStorage::wait_for_replicas(Route shard, Published out, std::function<void(Published)> done) {
  // WAIT covers every write this connection made so far, so it is sent
  // after the script's reply (a NOSCRIPT retry may run the script later
  // than a pipelined WAIT).
  const std::size_t wanted = config_.wait_replicas;
  send(shard,
      {"WAIT", std::to_string(wanted), std::to_string(config_.wait_timeout.count())},
      [this, shard, wanted, out = std::move(out), done = std::move(done)](redisReply* reply,
                                                                          const std::string& error) mutable {
        std::string why = failure(reply, error, shard);
        if (why.empty() && reply->type != REDIS_REPLY_INTEGER) {
          why = "redis " + address_of(shard) + ": unexpected reply to WAIT";
        }
        if (why.empty() && static_cast<std::uint64_t>(std::max<long long>(reply->integer, 0)) < wanted) {
          why = "redis " + address_of(shard) + ": stored on the master but only " +
                std::to_string(reply->integer) + " of " + std::to_string(wanted) + " replicas confirmed it within " +
                std::to_string(config_.wait_timeout.count()) + "ms (wait_replicas)";
        }
        if (!why.empty()) {
          // Not acknowledged: a failover now could lose it. A retry with the
          // same idempotency key returns its position if it survived.
          count_error();
          Published failed;
          failed.result.error = EngineErrc::unavailable;
          failed.result.message = why + "; not acknowledged";
          if (done) done(std::move(failed));
          return;
        }
        if (done) done(std::move(out));
      });
}

void RedisStorage::history(HistoryRequest request, std::function<void(HistoryResult)> done) {
  const std::int64_t now = now_ms();
  const Route shard = route_of_channel(request.channel);
  std::vector<std::string> keys{channel_key(request.channel, "meta"), channel_key(request.channel, "hist")};
  std::vector<std::string> args{make_epoch(),
                                std::to_string(now),
                                std::to_string(ms(request.history.ttl)),
                                std::to_string(config_.history_meta_ttl.count()),
                                request.since ? request.since->epoch : std::string(),
                                request.since ? "1" : "0",
                                std::to_string(request.since ? request.since->offset : 0),
                                std::to_string(request.limit)};
  run_script(shard, kHistory, std::move(keys), std::move(args),
             [this, shard, request = std::move(request), done = std::move(done)](redisReply* reply,
                                                                                  const std::string& error) {
               HistoryResult result;
               std::string why = failure(reply, error, shard);
               if (why.empty() && (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
                                   reply->element[2]->type != REDIS_REPLY_ARRAY)) {
                 why = "redis " + address_of(shard) + ": unexpected reply to the history script";
               }
               if (!why.empty()) {
                 count_error();
                 result.error = EngineErrc::unavailable;
                 result.message = why;
                 if (done) done(std::move(result));
                 return;
               }
               result.top = StreamPosition{std::string(text(reply->element[0])), number(reply->element[1])};
               const redisReply* entries = reply->element[2];
               auto& out = result.publications;
               out.reserve(entries->elements);
               for (std::size_t i = 0; i < entries->elements; ++i) {
                 auto publication = redis_wire::decode_entry(text(entries->element[i]));
                 if (publication) out.push_back(std::make_shared<const Publication>(std::move(*publication)));
               }
               if (request.since) {
                 const bool answerable = since_is_answerable(*request.since, result.top.epoch, result.top.offset);
                 result.complete = answerable && covers_range(out, request.since->offset, result.top.offset);
               } else {
                 if (!request.reverse) std::reverse(out.begin(), out.end());  // the script gives newest first
                 result.complete = result.top.offset == 0 || out.size() == result.top.offset;
               }
               if (done) done(std::move(result));
             });
}

void RedisStorage::presence_add(const std::string& channel, const ClientInfo& client, bool announce,
                                bool redis_publish, std::function<void(bool)> done) {
  own_presence_[{channel, client.client}] = client;
  const std::int64_t now = now_ms();
  const std::int64_t ttl_ms = ms(config_.presence_ttl);
  std::vector<std::string> keys{channel_key(channel, "presence"), channel_key(channel, "presence_exp")};
  std::vector<std::string> args{client.client,
                                redis_wire::encode_client(client),
                                std::to_string(now),
                                std::to_string(now + ttl_ms),
                                std::to_string(std::max<std::int64_t>(config_.presence_ttl.count(), 1)),
                                publish_mode(announce && redis_publish),
                                pubsub_channel(channel),
                                redis_wire::encode_join(client)};
  const Route shard = route_of_channel(channel);
  run_script(shard, kPresenceAdd, std::move(keys), std::move(args),
             [this, shard, done = std::move(done)](redisReply* reply, const std::string& error) {
               const bool ok = failure(reply, error, shard).empty();
               if (!ok) count_error();
               if (done) done(ok && number(reply) == 1);
             });
}

void RedisStorage::presence_remove(const std::string& channel, const ClientInfo& client, bool announce,
                                   bool redis_publish, std::function<void(bool)> done) {
  own_presence_.erase({channel, client.client});
  std::vector<std::string> keys{channel_key(channel, "presence"), channel_key(channel, "presence_exp")};
  std::vector<std::string> args{client.client, publish_mode(announce && redis_publish), pubsub_channel(channel),
                                redis_wire::encode_leave(client)};
  const Route shard = route_of_channel(channel);
  run_script(shard, kPresenceRemove, std::move(keys), std::move(args),
             [this, shard, done = std::move(done)](redisReply* reply, const std::string& error) {
               const bool ok = failure(reply, error, shard).empty();
               if (!ok) count_error();
               if (done) done(ok && number(reply) == 1);
             });
}

void RedisStorage::presence(const std::string& channel, std::function<void(std::vector<ClientInfo>)> done) {
  const Route shard = route_of_channel(channel);
  run_script(shard, kLiveEntries,
             {channel_key(channel, "presence"), channel_key(channel, "presence_exp")},
             {std::to_string(now_ms())}, [this, shard, done = std::move(done)](redisReply* reply, const std::string& error) {
               std::vector<ClientInfo> entries;
               if (!failure(reply, error, shard).empty() || reply->type != REDIS_REPLY_ARRAY) {
                 count_error();
               } else {
                 for (std::size_t i = 1; i < reply->elements; i += 2) {
                   if (auto client = redis_wire::decode_client(text(reply->element[i]))) entries.push_back(std::move(*client));
                 }
                 std::sort(entries.begin(), entries.end(),
                           [](const ClientInfo& a, const ClientInfo& b) { return a.client < b.client; });
               }
               if (done) done(std::move(entries));
             });
}

void RedisStorage::arm_presence_refresh() {
  if (stopped_) return;
  const auto period = std::max<std::int64_t>(ms(config_.presence_ttl) / 3, 100);
  presence_timer_.expires_after(std::chrono::milliseconds(period));
  presence_timer_.async_wait([this](const asio::error_code& ec) {
    if (ec || stopped_) return;
    refresh_presence();
    arm_presence_refresh();
  });
}

void RedisStorage::refresh_presence() {
  // Re-adds quietly (an entry that expired while Redis was unreachable
  // comes back without a second join).
  const auto own = own_presence_;
  for (const auto& [key, client] : own) presence_add(key.first, client, false, false);
}

void RedisStorage::node_heartbeat(const NodeInfo& self) {
  const std::int64_t expires = now_ms() + ms(config_.node_ttl);
  run_script(route_of_registry(), kNodeBeat, {registry_key("nodes"), registry_key("nodes_exp")},
             {self.name, redis_wire::encode_node(self), std::to_string(expires)},
             [this](redisReply* reply, const std::string& error) {
               if (!failure(reply, error, route_of_registry()).empty()) count_error();
             });
}

void RedisStorage::nodes(std::function<void(std::vector<NodeInfo>)> done) {
  run_script(route_of_registry(), kLiveEntries, {registry_key("nodes"), registry_key("nodes_exp")}, {std::to_string(now_ms())},
             [this, done = std::move(done)](redisReply* reply, const std::string& error) {
               std::vector<NodeInfo> nodes;
               if (!failure(reply, error, route_of_registry()).empty() || reply->type != REDIS_REPLY_ARRAY) {
                 count_error();
               } else {
                 for (std::size_t i = 1; i < reply->elements; i += 2) {
                   if (auto node = redis_wire::decode_node(text(reply->element[i]))) nodes.push_back(std::move(*node));
                 }
                 std::sort(nodes.begin(), nodes.end(),
                           [](const NodeInfo& a, const NodeInfo& b) { return a.name < b.name; });
               }
               if (done) done(std::move(nodes));
             });
}

bool RedisStorage::publish_raw(const std::string& channel, std::string payload) {
  // In a cluster any master will do (PUBLISH reaches every node): the
  // registry's.
  if (stopped_ || (cluster_ ? cluster_->masters_up() == 0 : !shards_[0]->ready())) return false;
  send(route_of_registry(), {"PUBLISH", channel, std::move(payload)},
       [this](redisReply* reply, const std::string& error) {
         if (!failure(reply, error, route_of_registry()).empty()) count_error();
       });
  return true;
}

}  // namespace duplex::engines::detail
