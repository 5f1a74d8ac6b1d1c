#include "duplex/hub/hub.hpp"

#include <openssl/rand.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <unordered_set>

#include "duplex/hub/channel_pattern.hpp"
#include "duplex/net/loop_timer.hpp"
#include "support/json.hpp"

namespace duplex::hub {

namespace {

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::int64_t unix_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string random_hex(std::size_t bytes) {
  std::string raw(bytes, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes));
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::string_view namespace_of(std::string_view channel) {
  const auto colon = channel.find(':');
  return colon == std::string_view::npos ? std::string_view{} : channel.substr(0, colon);
}

// Personal channels: the users after the last '#', comma-separated.
bool is_personal(std::string_view channel) { return channel.find('#') != std::string_view::npos; }

bool personal_allows(std::string_view channel, std::string_view user) {
  if (user.empty()) return false;
  std::string_view users = channel.substr(channel.rfind('#') + 1);
  while (!users.empty()) {
    const auto comma = users.find(',');
    if (users.substr(0, comma) == user) return true;
    if (comma == std::string_view::npos) break;
    users.remove_prefix(comma + 1);
  }
  return false;
}

bool any_pattern_matches(const std::vector<std::string>& patterns, std::string_view channel) {
  for (const auto& p : patterns)
    if (channel_pattern_matches(p, channel)) return true;
  return false;
}

// Live messages held for a subscription while its recovery read is in flight.
constexpr std::size_t max_held_publications = 100'000;

// A publication of another epoch than the one a subscriber's offsets count
// in (both known): the channel's stream started again.
bool epoch_changed(const std::string& known, const std::string& arrived) {
  return !known.empty() && !arrived.empty() && known != arrived;
}
constexpr std::string_view epoch_reset_reason =
    "the channel's stream was reset (new epoch): resubscribe, and recovery says what was lost";

// Bytes a publication adds to a subscribe reply beyond its data and
// publisher (offset, time, keys, separators), rounded up.
constexpr std::size_t publication_overhead = 64;

}  // namespace

// ---- per-session state (its loop's thread only) -----------------------------

struct Subscription {
  std::string channel;
  Session* client = nullptr;
  const NamespaceOptions* options = nullptr;
  bool live = false;              // false while the position/recovery read is in flight
  bool in_presence = false;
  std::uint64_t last_offset = 0;  // the newest offset this subscriber has been sent
  // The channel's epoch its offsets belong to (the subscribe read's): a
  // publication of another epoch means the stream was reset under it.
  std::string epoch;
  struct Held {
    std::string epoch;
    PublicationPtr publication;
  };
  std::vector<Held> held;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Hub& hub, Shard& shard, Transport& transport) : hub_(hub), shard_(shard), transport_(&transport) {}

  Hub& hub_;
  Shard& shard_;
  Transport* transport_;  // null once closed
  bool closing = false;   // the disconnect push went out: nothing more is sent
  ClientInfo info;
  bool authenticated = false;
  bool refresh_asked = false;
  std::int64_t expires = 0;       // token exp (Unix seconds), 0: none
  std::int64_t auth_deadline = 0;
  std::vector<std::string> subscribe_patterns;
  std::vector<std::string> publish_patterns;
  std::vector<std::unique_ptr<Subscription>> subscriptions;
  // Publish rate: a token bucket.
  double tokens = 0;
  std::chrono::steady_clock::time_point refilled{};
  std::size_t violations = 0;

  // False once closing: async completions (history, publish results) and
  // fan-out skip it.
  bool alive() const { return transport_ != nullptr && !closing; }
  // A push for this session only.
  void send(std::string_view encoded) {
    if (alive()) transport_->write(encoded, 0);
  }
  // The answer to command `id`.
  void reply(std::uint64_t id, std::string_view encoded) {
    if (alive()) transport_->write(encoded, id);
  }
  void send_shared(const net::PreparedMessage& frame) {
    if (alive()) transport_->write_shared(frame);
  }
  Subscription* find(std::string_view channel) {
    for (auto& s : subscriptions)
      if (s->channel == channel) return s.get();
    return nullptr;
  }
  // False once `sub` was unsubscribed (or replaced by a resubscribe) meanwhile.
  bool owns(const Subscription* sub) const {
    for (auto& s : subscriptions)
      if (s.get() == sub) return true;
    return false;
  }
  // The disconnect push, then the transport's close; the session stays in the
  // shard until the transport reports Hub::closed (the Transport rule).
  void disconnect(std::uint16_t code, std::string_view reason) {
    if (!alive()) return;
    closing = true;
    transport_->write(hub_.codec_.push_disconnect(code, reason, should_reconnect(code)), 0);
    transport_->request_close(code, reason);
  }
  void error(std::uint64_t id, int code, std::string_view message) {
    hub_.counters_.errors.fetch_add(1, std::memory_order_relaxed);
    reply(id, hub_.codec_.reply_error(id, code, message));
  }
  void accept_claims(const TokenClaims& claims) {
    authenticated = true;
    info.user = claims.sub;
    info.info = claims.info;
    expires = claims.exp.value_or(0);
    refresh_asked = false;
    subscribe_patterns = claims.channels;
    publish_patterns = claims.publish;
  }
  ConnectedInfo connected_info() const {
    ConnectedInfo c;
    c.client = info.client;
    c.user = info.user;
    c.expires = expires;
    c.node = hub_.config_.node_name;
    const auto ping = std::chrono::duration_cast<std::chrono::seconds>(hub_.config_.server.timeouts.ping_interval);
    c.ping_seconds = ping.count() > 0 ? static_cast<int>(ping.count()) : 25;
    return c;
  }
  bool take_publish_token() {
    const auto now = std::chrono::steady_clock::now();
    const auto live = hub_.limits();
    const HubLimits& limits = *live;
    if (refilled.time_since_epoch().count() == 0) {
      tokens = limits.publish_burst;
    } else {
      const double elapsed = std::chrono::duration<double>(now - refilled).count();
      tokens = std::min(limits.publish_burst, tokens + elapsed * limits.publish_rate);
    }
    refilled = now;
    if (tokens < 1) return false;
    tokens -= 1;
    return true;
  }
};

struct Shard {
  Shard(Hub& h, net::EventLoop& l) : hub(h), loop(l), timer(l) {}
  Hub& hub;
  net::EventLoop& loop;
  net::LoopTimer timer;  // every second: auth and token deadlines; stats and heartbeat on the first shard
  std::unordered_map<std::string, std::vector<Subscription*>> channels;
  std::unordered_map<Session*, std::shared_ptr<Session>> clients;
  std::unordered_multimap<std::string, Session*> users;
  bool stopping = false;

  void add(Subscription* s) {
    auto& list = channels[s->channel];
    list.push_back(s);
    hub.namespace_counters(s->options).subscriptions.fetch_add(1, std::memory_order_relaxed);
    hub.channel_added(s->channel);
  }
  void remove(Subscription* s) {
    auto it = channels.find(s->channel);
    if (it == channels.end()) return;
    auto& list = it->second;
    list.erase(std::remove(list.begin(), list.end(), s), list.end());
    hub.namespace_counters(s->options).subscriptions.fetch_sub(1, std::memory_order_relaxed);
    if (list.empty()) channels.erase(it);
    hub.channel_removed(s->channel);
  }

  // What the engine delivered, waiting for this loop's next turn. Events that
  // pile up while the loop is busy go out together: each subscriber gets all
  // of a channel's pending frames back to back, which the loop's cork turns
  // into one write (a loop that falls behind catches up by batching instead
  // of one send per message per subscriber).
  struct PendingEvent {
    std::string channel;
    std::string epoch;           // the publication's
    PublicationPtr publication;  // null: a control push (join/leave)
    std::shared_ptr<net::PreparedMessage> frame;
    std::chrono::steady_clock::time_point handed_over;
  };
  std::mutex pending_mutex;
  std::vector<PendingEvent> pending;  // at most limits.max_pending_deliveries
  // Channels with events that did not fit in `pending` (one entry per
  // channel, however many events): told to resubscribe at the next drain.
  std::unordered_set<std::string> overflowed;
  bool drain_posted = false;
  std::atomic<std::size_t> pending_depth{0};  // pending.size(), for /metrics

  // Any thread (the engine's). A loop that stalls does not grow `pending`
  // past the limit: the events that do not fit are dropped, and their
  // channels' subscribers on this loop resubscribe with recovery, which
  // reads what they missed from history (recovered:false where history
  // cannot cover it: never a silent gap). Resubscribing rather than
  // disconnecting: a stalled loop is not its sessions' fault (a slow reader
  // is cut off by max_send_buffer), and only the channels that overflowed
  // are touched.
  void enqueue(PendingEvent event) {
    bool post;
    {
      std::lock_guard lock(pending_mutex);
      if (pending.size() < hub.config_.limits.max_pending_deliveries) {
        pending.push_back(std::move(event));
        pending_depth.store(pending.size(), std::memory_order_relaxed);
      } else {
        overflowed.insert(event.channel);
        hub.counters_.deliveries_overflowed.fetch_add(1, std::memory_order_relaxed);
      }
      post = !drain_posted;
      drain_posted = true;
    }
    if (post) loop.post([this] { drain(); });
  }

  void drain() {
    std::vector<PendingEvent> batch;
    std::unordered_set<std::string> lost;
    {
      std::lock_guard lock(pending_mutex);
      batch.swap(pending);
      lost.swap(overflowed);
      drain_posted = false;
      pending_depth.store(0, std::memory_order_relaxed);
    }
    // Grouped by channel, each channel's events in their order.
    std::vector<std::pair<const std::string*, std::vector<const PendingEvent*>>> groups;
    std::unordered_map<std::string_view, std::size_t> index;
    for (const auto& e : batch) {
      auto [it, fresh] = index.emplace(e.channel, groups.size());
      if (fresh) groups.push_back({&e.channel, {}});
      groups[it->second].second.push_back(&e);
    }
    for (const auto& [channel, events] : groups) deliver(*channel, events);
    // After what was queued before the overflow: the subscribers recover
    // from the last offset they were sent.
    for (const auto& channel : lost)
      resubscribe_all(channel, "this server fell behind on this channel: resubscribe to recover");
  }

  void deliver(const std::string& channel, const std::vector<const PendingEvent*>& events) {
    auto it = channels.find(channel);
    if (it == channels.end()) return;
    std::uint64_t sent = 0;
    const NamespaceOptions* ns = it->second.empty() ? nullptr : it->second.front()->options;
    // Subscribers whose offsets another epoch made meaningless: told after the loop.
    std::vector<std::shared_ptr<Session>> reset;
    // Copy: the list must not change under the loop even if a transport broke
    // the Transport rule and reported a session closed from inside a write.
    for (Subscription* s : std::vector<Subscription*>(it->second)) {
      if (!s->client->alive()) continue;
      // A session told to go (too many held messages, a slow transport)
      // stops receiving at once: alive() is false from its disconnect on.
      const std::shared_ptr<Session> client = s->client->shared_from_this();
      for (const PendingEvent* e : events) {
        if (!e->publication) {
          if (s->live) s->client->send_shared(*e->frame);
        } else if (!s->live) {
          if (s->held.size() >= max_held_publications) {
            s->client->disconnect(disconnect_code::slow, "too many messages while recovering");
          } else {
            s->held.push_back({e->epoch, e->publication});
          }
        } else if (epoch_changed(s->epoch, e->epoch)) {
          // Offsets restarted (Redis lost the channel's metadata: expiry,
          // FLUSHALL, eviction, a failover): comparing them with this
          // subscriber's would drop messages silently.
          reset.push_back(client);
          break;
        } else if (e->publication->offset > s->last_offset) {  // else already sent (recovered)
          if (s->epoch.empty()) s->epoch = e->epoch;
          s->last_offset = e->publication->offset;
          s->client->send_shared(*e->frame);
          ++sent;
        }
        if (!client->alive()) break;
      }
    }
    if (!reset.empty())
      hub.counters_.resubscribes.fetch_add(hub.unsubscribe_and_tell(reset, channel, unsubscribe_code::resubscribe, epoch_reset_reason),
                                           std::memory_order_relaxed);
    hub.counters_.pushes.fetch_add(sent, std::memory_order_relaxed);
    if (sent == 0) return;
    hub.namespace_counters(ns).pushes.fetch_add(sent, std::memory_order_relaxed);
    const auto now = std::chrono::steady_clock::now();
    for (const PendingEvent* e : events) {
      if (!e->publication) continue;
      hub.counters_.fanout_latency.record(static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(now - e->handed_over).count()));
    }
  }

  // Every subscriber of `channel` on this loop is told to resubscribe with
  // recovery (unsubscribe push 2500), which fills what it missed from history.
  void resubscribe_all(const std::string& channel, std::string_view reason) {
    auto it = channels.find(channel);
    if (it == channels.end()) return;
    std::vector<std::shared_ptr<Session>> targets;
    for (Subscription* sub : it->second) targets.push_back(sub->client->shared_from_this());
    const std::size_t told = hub.unsubscribe_and_tell(targets, channel, unsubscribe_code::resubscribe, reason);
    hub.counters_.resubscribes.fetch_add(told, std::memory_order_relaxed);
  }

  void tick() {
    const std::int64_t now = unix_now();
    const auto refresh_before = hub.config_.auth.refresh_before.count();
    std::vector<std::shared_ptr<Session>> expired, unauthenticated;
    for (auto& [ptr, client] : clients) {
      if (!client->authenticated) {
        if (client->auth_deadline && now >= client->auth_deadline) unauthenticated.push_back(client);
        continue;
      }
      if (client->expires == 0) continue;
      if (now >= client->expires) {
        expired.push_back(client);
      } else if (!client->refresh_asked && client->expires - now <= refresh_before) {
        client->refresh_asked = true;
        client->send(hub.codec_.push_refresh(client->expires));
      }
    }
    for (auto& c : unauthenticated) c->disconnect(disconnect_code::auth_timeout, "no authenticate command in time");
    for (auto& c : expired) c->disconnect(disconnect_code::token_expired, "token expired");
  }

  void arm_timer() {
    if (stopping) return;
    timer.start(std::chrono::seconds(1), [this] {
      if (stopping) return;
      tick();
      if (&loop == &hub.shards_.front()->loop) {
        hub.publish_stats();
        // The node registry: a heartbeat every 2 s (and one at start).
        const auto now = std::chrono::steady_clock::now();
        if (now - hub.last_heartbeat_ >= std::chrono::milliseconds(1950)) hub.heartbeat();
      }
      arm_timer();
    });
  }
};

// ---- Hub ---------------------------------------------------------------------

Hub::Hub(HubConfig config, std::unique_ptr<engines::Engine> engine, TokenVerifier verifier,
         std::vector<net::EventLoop*> loops)
    : config_(std::move(config)),
      engine_(std::move(engine)),
      verifier_(std::make_shared<const TokenVerifier>(std::move(verifier))),
      live_limits_(std::make_shared<const HubLimits>(config_.limits)),
      allowed_origins_(std::make_shared<const std::vector<std::string>>(config_.auth.allowed_origins)),
      codec_(json_codec(config_.limits.max_json_depth)) {
  started_ms_ = unix_now_ms();
  // Per-namespace counters: "" (defaults) and each configured namespace.
  counters_.namespaces.push_back(std::make_unique<NamespaceCounters>());
  namespace_counters_[&config_.namespace_defaults] = counters_.namespaces.back().get();
  for (const auto& [name, options] : config_.namespaces) {
    counters_.namespaces.push_back(std::make_unique<NamespaceCounters>());
    counters_.namespaces.back()->name = name;
    namespace_counters_[&options] = counters_.namespaces.back().get();
  }
  if (config_.node_name.empty()) {
    char host[128] = {};
    ::gethostname(host, sizeof host - 1);
    config_.node_name = std::string(host) + "-" + std::to_string(::getpid());
  }
  client_prefix_ = random_hex(4);
  for (auto* loop : loops) shards_.push_back(std::make_unique<Shard>(*this, *loop));
  engine_->set_deliver([this](const engines::ChannelEvent& event) { on_engine_event(event); });
  engine_->set_node_name(config_.node_name);
}

Hub::~Hub() { stop(); }

void Hub::start() {
  heartbeat();
  for (auto& shard : shards_) {
    Shard* s = shard.get();
    s->loop.post([s] { s->arm_timer(); });
  }
}

void Hub::stop() {
  if (stopped_.exchange(true)) return;
  for (auto& shard : shards_) shard->stopping = true;
  engine_->stop();
}

Shard& Hub::shard_of(net::EventLoop& loop) {
  for (auto& s : shards_)
    if (&s->loop == &loop) return *s;
  return *shards_.front();
}

TokenError Hub::verify_token(std::string_view token, TokenClaims& claims) const {
  return verifier_.load(std::memory_order_acquire)->verify(token, unix_now(), claims);
}

void Hub::reload(TokenVerifier verifier, const HubLimits& limits, std::vector<std::string> allowed_origins) {
  allowed_origins_.store(std::make_shared<const std::vector<std::string>>(std::move(allowed_origins)), std::memory_order_release);
  verifier_.store(std::make_shared<const TokenVerifier>(std::move(verifier)), std::memory_order_release);
  auto next = std::make_shared<HubLimits>(*live_limits_.load(std::memory_order_acquire));
  next->publish_rate = limits.publish_rate;
  next->publish_burst = limits.publish_burst;
  next->rate_violations_before_disconnect = limits.rate_violations_before_disconnect;
  next->max_subscriptions = limits.max_subscriptions;
  live_limits_.store(std::move(next), std::memory_order_release);
}

NamespaceCounters& Hub::namespace_counters(const NamespaceOptions* options) {
  auto it = namespace_counters_.find(options);
  return it != namespace_counters_.end() ? *it->second : *counters_.namespaces.front();
}

engines::NodeInfo Hub::node_info() const {
  engines::NodeInfo n;
  n.name = config_.node_name;
  n.started_ms = started_ms_;
  n.updated_ms = unix_now_ms();
  n.connections = counters_.connections.load(std::memory_order_relaxed);
  n.subscriptions = counters_.subscriptions.load(std::memory_order_relaxed);
  n.channels = channel_count();
  n.publications_in = counters_.publications.load(std::memory_order_relaxed);
  n.pushes_out = counters_.pushes.load(std::memory_order_relaxed);
  return n;
}

void Hub::heartbeat() {
  last_heartbeat_ = std::chrono::steady_clock::now();
  engine_->node_heartbeat(node_info());
}

engines::HistoryOptions Hub::history_options(const NamespaceOptions& ns) const {
  engines::HistoryOptions h;
  h.size = std::min(ns.history_size, config_.limits.max_history_size);
  h.ttl = ns.history_ttl;
  h.idempotency_window = config_.limits.idempotency_window;
  return h;
}

std::string Hub::check_channel(std::string_view channel, const NamespaceOptions** options) const {
  if (channel.empty()) return "empty channel name";
  if (channel.size() > config_.limits.max_channel_length) return "channel name too long";
  for (char c : channel)
    if (c <= 0x20 || c >= 0x7f) return "channel names are printable ASCII without spaces";
  const std::string_view ns = namespace_of(channel);
  if (!ns.empty() && config_.namespaces_strict && !config_.namespaces.count(std::string(ns)))
    return "unknown namespace \"" + std::string(ns) + "\"";
  *options = &config_.options_for(ns);
  return {};
}

void Hub::channel_added(const std::string& channel) {
  std::lock_guard lock(channels_mutex_);
  ++channel_counts_[channel];
}

void Hub::channel_removed(const std::string& channel) {
  {
    std::lock_guard lock(channels_mutex_);
    auto it = channel_counts_.find(channel);
    if (it != channel_counts_.end() && --it->second == 0) channel_counts_.erase(it);
  }
  // One node_unsubscribe per subscriber, matching Hub::subscribe's node_subscribe.
  engine_->node_unsubscribe(channel);
}

std::size_t Hub::pending_deliveries() const {
  std::size_t total = 0;
  for (const auto& shard : shards_) total += shard->pending_depth.load(std::memory_order_relaxed);
  return total;
}

std::size_t Hub::channel_count() const {
  std::lock_guard lock(channels_mutex_);
  return channel_counts_.size();
}

std::vector<std::pair<std::string, std::size_t>> Hub::api_channels() const {
  std::lock_guard lock(channels_mutex_);
  std::vector<std::pair<std::string, std::size_t>> out(channel_counts_.begin(), channel_counts_.end());
  std::sort(out.begin(), out.end());
  return out;
}

void Hub::on_engine_event(const engines::ChannelEvent& event) {
  if (event.kind == engines::ChannelEvent::Kind::resubscribe) {
    // The node may have missed publications: every local subscriber
    // resubscribes with recovery, which fills the gap from history.
    for (auto& shard : shards_) {
      Shard* s = shard.get();
      s->loop.post([s, channel = event.channel] {
        s->resubscribe_all(channel, "the server lost track of this channel: resubscribe to recover");
      });
    }
    return;
  }
  // Encoded once; the same frame goes to every subscriber on every loop.
  std::string encoded;
  if (event.kind == engines::ChannelEvent::Kind::publication)
    encoded = codec_.push_message(event.channel, event.epoch, *event.publication);
  else
    encoded = codec_.push_join_leave(event.kind == engines::ChannelEvent::Kind::join, event.channel, event.client);
  auto frame = std::make_shared<net::PreparedMessage>(protocol::Opcode::text, encoded);
  const auto handed_over = std::chrono::steady_clock::now();
  const PublicationPtr publication =
      event.kind == engines::ChannelEvent::Kind::publication ? event.publication : PublicationPtr{};
  for (auto& shard : shards_) shard->enqueue(Shard::PendingEvent{event.channel, event.epoch, publication, frame, handed_over});
}

bool Hub::allows_origin(std::string_view origin, std::string_view host) const {
  return origin_allowed(*allowed_origins_.load(std::memory_order_acquire), origin, host);
}

Admission Hub::admit(const SessionRequest& request) const {
  Admission a;
  if (draining_.load(std::memory_order_relaxed)) {
    a.status = 503;
    a.reason = "server shutting down";
    return a;
  }
  if (!allows_origin(request.origin, request.host)) {
    a.status = 403;
    a.reason = "origin not allowed";
    return a;
  }
  if (request.token.empty()) return a;  // authenticates with its first command
  a.claims = std::make_unique<TokenClaims>();
  if (const TokenError err = verify_token(request.token, *a.claims); err != TokenError::none) {
    a.claims.reset();
    a.status = 401;
    a.reason = "invalid token: " + std::string(to_string(err));
  }
  return a;
}

std::shared_ptr<Session> Hub::open(net::EventLoop& loop, Transport& transport, const Admission& admission) {
  const TokenClaims* claims = admission.claims.get();
  Shard& shard = shard_of(loop);
  auto client = std::make_shared<Session>(*this, shard, transport);
  client->info.client = client_prefix_ + random_hex(4) + std::to_string(next_client_.fetch_add(1));
  shard.clients.emplace(client.get(), client);
  counters_.connections.fetch_add(1, std::memory_order_relaxed);
  counters_.connections_total.fetch_add(1, std::memory_order_relaxed);
  if (claims) {
    client->accept_claims(*claims);
    shard.users.emplace(client->info.user, client.get());
    client->send(codec_.push_connected(client->connected_info()));
  } else {
    client->auth_deadline = unix_now() + std::max<std::int64_t>(1, config_.auth.auth_timeout.count());
  }
  return client;
}

void Hub::disconnect(Session& client, std::uint16_t code, std::string_view reason) {
  client.disconnect(code, reason);
}

void Hub::closed(Session& client) {
  if (!client.transport_) return;
  client.transport_ = nullptr;
  Shard& shard = client.shard_;
  for (auto& sub : client.subscriptions) {
    shard.remove(sub.get());
    if (sub->in_presence)
      engine_->presence_remove(sub->channel, client.info, sub->options && sub->options->join_leave);
  }
  counters_.subscriptions.fetch_sub(client.subscriptions.size(), std::memory_order_relaxed);
  client.subscriptions.clear();
  if (client.authenticated) {
    auto range = shard.users.equal_range(client.info.user);
    for (auto it = range.first; it != range.second; ++it) {
      if (it->second == &client) {
        shard.users.erase(it);
        break;
      }
    }
  }
  counters_.connections.fetch_sub(1, std::memory_order_relaxed);
  shard.clients.erase(&client);  // may destroy `client`
}

// ---- commands ------------------------------------------------------------------

namespace {

// A way back to a session from an engine callback on any thread: the
// session may be gone by then.
struct SessionRef {
  std::weak_ptr<Session> weak;
  net::EventLoop* loop;
  template <typename Fn>
  void post(Fn fn) const {
    loop->post([weak = weak, fn = std::move(fn)]() mutable {
      if (auto c = weak.lock(); c && c->alive()) fn(*c);
    });
  }
};

SessionRef ref_of(Session& c) { return SessionRef{c.weak_from_this(), &c.shard_.loop}; }

}  // namespace

// Long on purpose: the one dispatcher of every command: size and decode
// checks, authentication, then one case per command type.
void Hub::command(Session& client, std::string_view frame) {
  // Nothing in a command ends the session (the Transport rule), and this
  // keeps it allocated even if something did.
  const std::shared_ptr<Session> keep = client.shared_from_this();
  if (!client.alive()) return;  // closing: the disconnect push was the last word
  counters_.commands.fetch_add(1, std::memory_order_relaxed);
  if (frame.size() > config_.limits.max_command_bytes) {
    client.disconnect(disconnect_code::too_large, "command too large");
    return;
  }
  Command cmd;
  std::string why;
  switch (codec_.decode(frame, cmd, why)) {
    case DecodeStatus::malformed:
      client.disconnect(disconnect_code::bad_request, "malformed command: " + why);
      return;
    case DecodeStatus::bad_request:
      client.error(cmd.id, error_code::bad_request, why);
      return;
    case DecodeStatus::ok:
      break;
  }
  const std::uint64_t id = cmd.id;

  if (cmd.type == CommandType::authenticate) {
    if (client.authenticated) return client.error(id, error_code::bad_request, "already authenticated");
    if (cmd.token.empty()) {
      if (!config_.auth.allow_anonymous) return client.error(id, error_code::unauthorized, "a token is required");
      client.authenticated = true;
    } else {
      TokenClaims claims;
      const TokenError err = verify_token(cmd.token, claims);
      if (err == TokenError::expired) {
        client.error(id, error_code::token_expired, "token expired");
        return;
      }
      if (err != TokenError::none) {
        client.error(id, error_code::unauthorized, std::string("invalid token: ") + std::string(to_string(err)));
        client.disconnect(disconnect_code::invalid_token, "invalid token");
        return;
      }
      client.accept_claims(claims);
    }
    client.auth_deadline = 0;
    client.shard_.users.emplace(client.info.user, &client);
    client.reply(id, codec_.reply_connected(id, client.connected_info()));
    return;
  }
  if (cmd.type == CommandType::ping) return client.reply(id, codec_.reply_empty(id));
  if (!client.authenticated) return client.error(id, error_code::unauthorized, "authenticate first");

  switch (cmd.type) {
    case CommandType::refresh: {
      TokenClaims claims;
      const TokenError err = verify_token(cmd.token, claims);
      if (err == TokenError::expired) return client.error(id, error_code::token_expired, "token expired");
      if (err != TokenError::none)
        return client.error(id, error_code::unauthorized, std::string("invalid token: ") + std::string(to_string(err)));
      if (claims.sub != client.info.user)
        return client.error(id, error_code::unauthorized, "the new token is for another user");
      client.expires = claims.exp.value_or(0);
      client.refresh_asked = false;
      client.subscribe_patterns = claims.channels;
      client.publish_patterns = claims.publish;
      client.reply(id, codec_.reply_refresh(id, client.expires));
      return;
    }
    case CommandType::subscribe:
      return subscribe(client, std::move(cmd));
    case CommandType::unsubscribe: {
      if (!unsubscribe(client, cmd.channel)) return client.error(id, error_code::not_subscribed, "not subscribed");
      client.reply(id, codec_.reply_empty(id));
      return;
    }
    case CommandType::publish:
      return publish(client, std::move(cmd));
    case CommandType::presence: {
      Subscription* sub = client.find(cmd.channel);
      if (!sub) return client.error(id, error_code::not_subscribed, "subscribe to the channel first");
      if (!sub->options->presence) return client.error(id, error_code::not_available, "presence is off in this namespace");
      engine_->presence(cmd.channel, [this, ref = ref_of(client), id](std::vector<ClientInfo> clients) {
        ref.post([this, id, clients = std::move(clients)](Session& c) { c.reply(id, codec_.reply_presence(id, clients)); });
      });
      return;
    }
    case CommandType::history: {
      Subscription* sub = client.find(cmd.channel);
      if (!sub) return client.error(id, error_code::not_subscribed, "subscribe to the channel first");
      if (sub->options->history_size == 0)
        return client.error(id, error_code::not_available, "history is off in this namespace");
      engines::HistoryRequest req;
      req.channel = cmd.channel;
      req.history = history_options(*sub->options);
      req.limit = cmd.has_limit ? std::min<std::uint64_t>(cmd.limit, req.history.size) : req.history.size;
      req.reverse = cmd.reverse;
      if (cmd.has_since) req.since = StreamPosition{cmd.since_epoch, cmd.since_offset};
      const bool has_since = cmd.has_since;
      const std::string since_epoch = cmd.since_epoch;
      engine_->history(std::move(req), [this, ref = ref_of(client), id, has_since, since_epoch](engines::HistoryResult r) {
        ref.post([this, id, has_since, since_epoch, r = std::move(r)](Session& c) {
          if (r.error != engines::EngineErrc::ok) return c.error(id, error_code::unavailable, r.message);
          if (has_since && since_epoch != r.top.epoch)
            return c.error(id, error_code::epoch_mismatch, "history epoch changed");
          c.reply(id, codec_.reply_history(id, r.top, r.publications));
        });
      });
      return;
    }
    default:
      return client.error(id, error_code::unknown_command, "unknown command type");
  }
}

// A recovery goes out in the subscribe reply, one message: if it would take
// more than half of server.max_send_buffer the session would be closed as a
// slow consumer (1008) and its reconnect would ask for the same again, for
// ever. Such a recovery is refused instead (`recovered: false`): the client
// reloads from history, which it reads in pages.
bool Hub::fits_in_one_reply(const std::vector<PublicationPtr>& publications) const {
  const std::size_t budget = config_.server.max_send_buffer / 2;
  std::size_t bytes = 0;
  for (const auto& p : publications) {
    bytes += p->data.size() + p->publisher.size() + publication_overhead;
    if (bytes > budget) return false;
  }
  return true;
}

// Long on purpose: the subscribe sequence (permission, limits, registration
// before the history read, recovery) happens in this order, each step marked
// by its comment.
void Hub::subscribe(Session& client, Command cmd) {
  const std::uint64_t id = cmd.id;
  const NamespaceOptions* ns = nullptr;
  if (std::string why = check_channel(cmd.channel, &ns); !why.empty())
    return client.error(id, error_code::unknown_channel, why);
  if (client.find(cmd.channel)) return client.error(id, error_code::already_subscribed, "already subscribed");
  if (client.subscriptions.size() >= limits()->max_subscriptions)
    return client.error(id, error_code::limit_exceeded, "too many subscriptions on this connection");
  {
    std::lock_guard lock(channels_mutex_);
    if (!channel_counts_.count(cmd.channel) && channel_counts_.size() >= config_.limits.max_channels)
      return client.error(id, error_code::limit_exceeded, "too many channels on this node");
  }
  // Permission: personal channels only for their users; otherwise the
  // namespace, the token's channel patterns, or a subscribe token.
  bool allowed = false;
  const bool anonymous = client.info.user.empty();
  if (is_personal(cmd.channel)) {
    allowed = personal_allows(cmd.channel, client.info.user);
  } else if (anonymous && !ns->allow_anonymous) {
    allowed = false;
  } else if (ns->allow_subscribe || any_pattern_matches(client.subscribe_patterns, cmd.channel)) {
    allowed = true;
  }
  if (!allowed && !cmd.token.empty() && !anonymous) {
    TokenClaims grant;
    const TokenError err = verify_token(cmd.token, grant);
    if (err == TokenError::expired) return client.error(id, error_code::token_expired, "subscribe token expired");
    allowed = err == TokenError::none && grant.channel == cmd.channel && grant.sub == client.info.user;
  }
  if (!allowed) return client.error(id, error_code::permission_denied, "permission denied");

  auto owned = std::make_unique<Subscription>();
  Subscription* sub = owned.get();
  sub->channel = cmd.channel;
  sub->client = &client;
  sub->options = ns;
  client.subscriptions.push_back(std::move(owned));
  // Registered before the read: whatever is delivered from now on is held,
  // and whatever was delivered before is in what the read returns.
  client.shard_.add(sub);
  counters_.subscriptions.fetch_add(1, std::memory_order_relaxed);

  engines::HistoryRequest req;
  req.channel = cmd.channel;
  req.history = history_options(*ns);
  const bool recover = cmd.recover;
  const bool can_recover = recover && ns->recovery && req.history.size > 0;
  if (can_recover) {
    req.since = StreamPosition{cmd.epoch, cmd.offset};
    req.limit = req.history.size;
  }
  // The history read waits until the node receives the channel's live
  // stream (scale-out engines subscribe the node first): a publication
  // accepted between the read and the node subscription would be lost.
  engine_->node_subscribe(cmd.channel, [this, ref = ref_of(client), sub, id, recover, can_recover,
                                        since_offset = cmd.offset, req = std::move(req)](engines::EngineErrc e) mutable {
    if (e != engines::EngineErrc::ok) {
      ref.post([this, sub, id](Session& c) {
        if (!c.owns(sub)) return;
        unsubscribe(c, sub->channel);
        c.error(id, error_code::unavailable, "engine unavailable: cannot subscribe now, retry");
      });
      return;
    }
    engine_->history(std::move(req), [this, ref = std::move(ref), sub, id, recover, can_recover,
                                      since_offset](engines::HistoryResult r) {
      ref.post([this, sub, id, recover, can_recover, since_offset, r = std::move(r)](Session& c) {
        if (!c.owns(sub)) return;  // unsubscribed (or resubscribed) while the read was in flight
        if (r.error != engines::EngineErrc::ok) {
          unsubscribe(c, sub->channel);
          return c.error(id, error_code::unavailable, r.message.empty() ? "engine unavailable" : r.message);
        }
        SubscribeResult result;
        result.channel = sub->channel;
        result.position = r.top;
        result.recoverable = sub->options->recovery && sub->options->history_size > 0;
        result.recover_requested = recover;
        std::uint64_t start = r.top.offset;
        if (can_recover && r.complete && fits_in_one_reply(r.publications)) {
          result.recovered = true;
          result.publications = r.publications;
          if (!r.publications.empty()) start = std::max(start, r.publications.back()->offset);
        } else if (recover && since_offset == r.top.offset && !r.top.epoch.empty() && r.complete) {
          result.recovered = true;
        }
        sub->last_offset = start;
        sub->epoch = r.top.epoch;
        sub->live = true;
        c.reply(id, codec_.reply_subscribe(id, result));
        // Live messages held during the read, merged by offset: nothing twice, no gap.
        std::vector<Subscription::Held> held = std::move(sub->held);
        sub->held.clear();
        for (const auto& [epoch, p] : held) {
          if (epoch_changed(sub->epoch, epoch)) {
            // Reset after the read: the reply's position is stale already.
            counters_.resubscribes.fetch_add(unsubscribe_and_tell({c.shared_from_this()}, sub->channel,
                                                                  unsubscribe_code::resubscribe, epoch_reset_reason),
                                             std::memory_order_relaxed);
            return;
          }
          if (p->offset <= sub->last_offset || !c.alive()) continue;
          sub->last_offset = p->offset;
          c.send(codec_.push_message(sub->channel, r.top.epoch, *p));
          counters_.pushes.fetch_add(1, std::memory_order_relaxed);
          namespace_counters(sub->options).pushes.fetch_add(1, std::memory_order_relaxed);
        }
        if (sub->options->presence && c.alive()) {
          sub->in_presence = true;
          engine_->presence_add(sub->channel, c.info, sub->options->join_leave);
        }
      });
    });
  });
}

void Hub::publish(Session& client, Command cmd) {
  const std::uint64_t id = cmd.id;
  const NamespaceOptions* ns = nullptr;
  if (std::string why = check_channel(cmd.channel, &ns); !why.empty())
    return client.error(id, error_code::unknown_channel, why);
  const bool anonymous = client.info.user.empty();
  bool allowed;
  if (anonymous && !ns->allow_anonymous)
    allowed = false;
  else if (is_personal(cmd.channel))
    allowed = (ns->allow_publish && personal_allows(cmd.channel, client.info.user)) ||
              any_pattern_matches(client.publish_patterns, cmd.channel);
  else
    allowed = ns->allow_publish || any_pattern_matches(client.publish_patterns, cmd.channel);
  if (!allowed) return client.error(id, error_code::permission_denied, "publishing is not allowed in this channel");
  if (cmd.data.size() > config_.limits.max_data_bytes)
    return client.error(id, error_code::limit_exceeded, "data too large");
  if (cmd.idempotency_key.size() > config_.limits.max_idempotency_key)
    return client.error(id, error_code::limit_exceeded, "idempotency_key too long");
  if (!client.take_publish_token()) {
    if (++client.violations > limits()->rate_violations_before_disconnect) {
      client.disconnect(disconnect_code::rate_limited, "publish rate limit exceeded");
      return;
    }
    return client.error(id, error_code::too_many_requests, "publish rate limit exceeded");
  }
  engines::PublishRequest req;
  req.channel = std::move(cmd.channel);
  req.data = std::move(cmd.data);
  req.publisher = publisher_json(client.info);
  req.idempotency_key = std::move(cmd.idempotency_key);
  req.history = history_options(*ns);
  engine_->publish(std::move(req), [this, ref = ref_of(client), id, ns](engines::PublishResult r) {
    if (r.error == engines::EngineErrc::ok && !r.duplicate) {
      counters_.publications.fetch_add(1, std::memory_order_relaxed);
      namespace_counters(ns).publications.fetch_add(1, std::memory_order_relaxed);
    }
    ref.post([this, id, r = std::move(r)](Session& c) {
      if (r.error != engines::EngineErrc::ok)
        return c.error(id, error_code::unavailable, r.message.empty() ? "engine unavailable: not published" : r.message);
      c.reply(id, codec_.reply_publish(id, r.position, r.duplicate));
    });
  });
}

// ---- backend API -----------------------------------------------------------------

void Hub::api_publish(std::string channel, std::string data, std::string idempotency_key,
                      std::function<void(ApiError, StreamPosition, bool)> done) {
  const NamespaceOptions* ns = nullptr;
  if (std::string why = check_channel(channel, &ns); !why.empty())
    return done(ApiError{error_code::unknown_channel, why}, {}, false);
  if (data.size() > config_.limits.max_data_bytes)
    return done(ApiError{error_code::limit_exceeded, "data too large"}, {}, false);
  if (idempotency_key.size() > config_.limits.max_idempotency_key)
    return done(ApiError{error_code::limit_exceeded, "idempotency_key too long"}, {}, false);
  engines::PublishRequest req;
  req.channel = std::move(channel);
  req.data = std::move(data);
  req.idempotency_key = std::move(idempotency_key);
  req.history = history_options(*ns);
  engine_->publish(std::move(req), [this, ns, done = std::move(done)](engines::PublishResult r) {
    if (r.error != engines::EngineErrc::ok)
      return done(ApiError{error_code::unavailable, r.message.empty() ? "engine unavailable" : r.message}, {}, false);
    if (!r.duplicate) {
      counters_.publications.fetch_add(1, std::memory_order_relaxed);
      namespace_counters(ns).publications.fetch_add(1, std::memory_order_relaxed);
    }
    done(ApiError{}, r.position, r.duplicate);
  });
}

void Hub::api_history(std::string channel, std::size_t limit, std::optional<StreamPosition> since, bool reverse,
                      std::function<void(ApiError, engines::HistoryResult)> done) {
  const NamespaceOptions* ns = nullptr;
  if (std::string why = check_channel(channel, &ns); !why.empty())
    return done(ApiError{error_code::unknown_channel, why}, {});
  if (ns->history_size == 0) return done(ApiError{error_code::not_available, "history is off in this namespace"}, {});
  engines::HistoryRequest req;
  req.channel = std::move(channel);
  req.history = history_options(*ns);
  req.limit = std::min(limit, req.history.size);
  req.since = std::move(since);
  req.reverse = reverse;
  engine_->history(std::move(req), [done = std::move(done)](engines::HistoryResult r) {
    if (r.error != engines::EngineErrc::ok) return done(ApiError{error_code::unavailable, r.message}, {});
    done(ApiError{}, std::move(r));
  });
}

void Hub::api_presence(std::string channel, std::function<void(ApiError, std::vector<ClientInfo>)> done) {
  const NamespaceOptions* ns = nullptr;
  if (std::string why = check_channel(channel, &ns); !why.empty())
    return done(ApiError{error_code::unknown_channel, why}, {});
  if (!ns->presence) return done(ApiError{error_code::not_available, "presence is off in this namespace"}, {});
  engine_->presence(channel, [done = std::move(done)](std::vector<ClientInfo> clients) { done(ApiError{}, std::move(clients)); });
}

bool Hub::unsubscribe(Session& client, std::string_view channel) {
  Subscription* sub = client.find(channel);
  if (!sub) return false;
  client.shard_.remove(sub);
  if (sub->in_presence) engine_->presence_remove(sub->channel, client.info, sub->options->join_leave);
  std::erase_if(client.subscriptions, [sub](const auto& s) { return s.get() == sub; });
  counters_.subscriptions.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

void Hub::api_unsubscribe(std::string user, std::string channel) {
  for (auto& shard : shards_) {
    Shard* s = shard.get();
    s->loop.post([this, s, user, channel] {
      std::vector<std::shared_ptr<Session>> targets;
      auto range = s->users.equal_range(user);
      for (auto it = range.first; it != range.second; ++it) targets.push_back(it->second->shared_from_this());
      unsubscribe_and_tell(targets, channel, unsubscribe_code::server, "unsubscribed by the server");
    });
  }
}

std::size_t Hub::unsubscribe_and_tell(const std::vector<std::shared_ptr<Session>>& clients, const std::string& channel,
                                      int code, std::string_view reason) {
  std::size_t told = 0;
  for (const auto& c : clients) {
    if (!c->alive() || !unsubscribe(*c, channel)) continue;
    c->send(codec_.push_unsubscribe(channel, code, reason));
    ++told;
  }
  return told;
}

void Hub::api_disconnect(std::string user, std::uint16_t code, std::string reason) {
  for (auto& shard : shards_) {
    Shard* s = shard.get();
    s->loop.post([s, user, code, reason] {
      std::vector<std::shared_ptr<Session>> targets;
      auto range = s->users.equal_range(user);
      for (auto it = range.first; it != range.second; ++it) targets.push_back(it->second->shared_from_this());
      for (auto& c : targets) c->disconnect(code, reason);
    });
  }
}

void Hub::drain(std::uint16_t code, std::string reason, std::chrono::milliseconds wait) {
  struct Countdown {
    std::mutex mutex;
    std::condition_variable done;
    std::size_t left;
  };
  draining_.store(true, std::memory_order_relaxed);
  auto countdown = std::make_shared<Countdown>();
  countdown->left = shards_.size();
  for (auto& shard : shards_) {
    Shard* s = shard.get();
    s->loop.post([s, code, reason, countdown] {
      // Copies: a session's transport may report closed while this runs.
      std::vector<std::shared_ptr<Session>> sessions;
      sessions.reserve(s->clients.size());
      for (auto& [ptr, session] : s->clients) sessions.push_back(session);
      for (auto& session : sessions) session->disconnect(code, reason);
      std::lock_guard lock(countdown->mutex);
      if (--countdown->left == 0) countdown->done.notify_all();
    });
  }
  for (auto& shard : shards_)
    if (shard->loop.running_in_this_thread()) return;  // waiting here would block what it waits for
  std::unique_lock lock(countdown->mutex);
  countdown->done.wait_for(lock, wait, [&] { return countdown->left == 0; });
}

void Hub::publish_stats() {
  if (config_.stats_interval.count() <= 0 || !config_.namespaces.count("stats")) return;
  static thread_local std::chrono::steady_clock::time_point last{};
  static thread_local std::uint64_t last_in = 0, last_out = 0, last_pub = 0;
  const auto now = std::chrono::steady_clock::now();
  if (last.time_since_epoch().count() != 0 && now - last < config_.stats_interval - std::chrono::milliseconds(50)) return;
  const double seconds = last.time_since_epoch().count() == 0 ? 1.0 : std::chrono::duration<double>(now - last).count();
  last = now;
  // The stats channel's own pushes are not traffic: without this a dashboard
  // would watch itself (one message out per viewer per interval).
  const std::uint64_t own_pushes = namespace_counters(&config_.options_for("stats")).pushes.load();
  const std::uint64_t in = counters_.commands.load(), out = counters_.pushes.load() - own_pushes,
                      pub = counters_.publications.load();
  char data[256];
  std::snprintf(data, sizeof data,
                "{\"connections\":%llu,\"messages_in\":%.1f,\"messages_out\":%.1f,\"publications\":%.1f,\"time\":%lld}",
                static_cast<unsigned long long>(counters_.connections.load()), static_cast<double>(in - last_in) / seconds,
                static_cast<double>(out - last_out) / seconds, static_cast<double>(pub - last_pub) / seconds,
                static_cast<long long>(unix_now_ms()));
  last_in = in;
  last_out = out;
  last_pub = pub;
  engines::PublishRequest req;
  req.channel = "stats:node";
  req.data = data;
  req.history = history_options(config_.options_for("stats"));
  engine_->publish(std::move(req), [](engines::PublishResult) {});
}

}  // namespace duplex::hub
