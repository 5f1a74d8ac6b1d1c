#include "redis_cluster.hpp"

#include <hiredis/hiredis.h>

#include <algorithm>

#include <asio/post.hpp>

#include "redis_connection_options.hpp"
#include "redis_sentinels.hpp"

namespace duplex::engines::detail {

namespace {

std::string address_text(const RedisNodeAddress& address) {
  return address.host + ":" + std::to_string(address.port);
}

}  // namespace

RedisCluster::RedisCluster(asio::io_context& io, const RedisConfig& config, Setup setup)
    : io_(io),
      max_redirects_(static_cast<unsigned>(std::max<std::size_t>(config.cluster_max_redirects, 1))),
      backoff_min_(config.reconnect_min),
      backoff_max_(config.reconnect_max),
      setup_(std::move(setup)),
      refresh_timer_(io),
      backoff_(config.reconnect_min) {
  base_ = redis_connection_options(config);  // db 0: a cluster has only db 0
  owner_.fill(kNoOwner);
  applied_owner_.fill(kNoOwner);
  for (const auto& seed : config.addresses) {
    const RedisConnectionOptions parsed = parse_redis_address(seed);
    node(RedisNodeAddress{parsed.host, parsed.port});
  }
  seeds_ = nodes_.size();
}

RedisCluster::~RedisCluster() { stop(); }

RedisCluster::Node* RedisCluster::node(const RedisNodeAddress& address) {
  for (auto& existing : nodes_) {
    if (existing->address == address) return existing.get();
  }
  if (nodes_.size() >= seeds_ + kMaxClusterNodes && seeds_ > 0) return nullptr;
  auto made = std::make_unique<Node>();
  made->address = address;
  RedisConnectionOptions options = base_;
  options.host = address.host;
  options.port = address.port;
  made->conn = std::make_unique<RedisConnection>(io_, std::move(options));
  if (setup_) setup_(*made->conn);
  Node* raw = made.get();
  made->conn->set_on_down([this, raw](const std::string&) {
    // A master we route to is gone: the cluster may be failing it over.
    if (raw->master && !stopped_) request_refresh(backoff_min_);
  });
  {
    std::lock_guard lock(nodes_mutex_);
    nodes_.push_back(std::move(made));
  }
  if (started_ && !stopped_) raw->conn->start();
  return raw;
}

void RedisCluster::start() {
  if (started_) return;
  started_ = true;
  for (auto& n : nodes_) n->conn->start();
  refresh();
}

void RedisCluster::stop() {
  if (stopped_) return;
  stopped_ = true;
  refresh_timer_.cancel();
  for (const auto& timer : retry_timers_) timer->cancel();
  auto waiting = std::move(waiting_);
  waiting_.clear();
  for (auto& attempt : waiting) fail(attempt, "engine stopped");
  for (auto& n : nodes_) n->conn->stop();
}

std::string RedisCluster::address_of(std::uint16_t slot) const {
  const std::int32_t owner = owner_[slot];
  if (owner == kNoOwner) return label() + " (slot " + std::to_string(slot) + ": no master known)";
  return nodes_[static_cast<std::size_t>(owner)]->conn->address();
}

std::optional<RedisNodeAddress> RedisCluster::master_of(std::uint16_t slot) const {
  const std::int32_t owner = owner_[slot];
  if (owner == kNoOwner) return std::nullopt;
  return nodes_[static_cast<std::size_t>(owner)]->address;
}

std::size_t RedisCluster::masters_up() const {
  std::lock_guard lock(nodes_mutex_);
  return static_cast<std::size_t>(
      std::count_if(nodes_.begin(), nodes_.end(), [](const auto& n) { return n->master && n->conn->up(); }));
}

std::uint64_t RedisCluster::reconnects() const {
  std::lock_guard lock(nodes_mutex_);
  std::uint64_t total = 0;
  for (const auto& n : nodes_) total += n->conn->reconnects();
  return total;
}

bool RedisCluster::some_master_down() const {
  return std::any_of(nodes_.begin(), nodes_.end(), [](const auto& n) { return n->master && !n->conn->up(); });
}

void RedisCluster::locate_any(RedisConnection::Found found) {
  if (stopped_ || nodes_.empty()) return found("", 0, "engine stopped");
  // A master that is up, in turn; else the next node of any kind.
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    const Node& candidate = *nodes_[(next_locate_ + i) % nodes_.size()];
    if (candidate.master && candidate.conn->up()) {
      next_locate_ = (next_locate_ + i + 1) % nodes_.size();
      return found(candidate.address.host, candidate.address.port, "");
    }
  }
  const Node& any = *nodes_[next_locate_ % nodes_.size()];
  next_locate_ = (next_locate_ + 1) % nodes_.size();
  found(any.address.host, any.address.port, "");
}

void RedisCluster::command(std::uint16_t slot, std::vector<std::string> args, RedisConnection::Callback callback) {
  auto attempt = std::make_shared<Attempt>();
  attempt->slot = slot;
  attempt->args = std::move(args);
  attempt->callback = std::move(callback);
  route(std::move(attempt));
}

std::int32_t RedisCluster::index_of(const Node* target) const {
  const auto it = std::find_if(nodes_.begin(), nodes_.end(), [target](const auto& n) { return n.get() == target; });
  return static_cast<std::int32_t>(it - nodes_.begin());
}

void RedisCluster::give_up(Attempt& attempt, const std::string& why) {
  if (attempt.callback) attempt.callback(nullptr, "redis cluster: slot " + std::to_string(attempt.slot) + why);
}

void RedisCluster::fail(const std::shared_ptr<Attempt>& attempt, const std::string& why) {
  if (!attempt->callback) return;
  asio::post(io_, [callback = std::move(attempt->callback), why] { callback(nullptr, why); });
}

void RedisCluster::route(std::shared_ptr<Attempt> attempt) {
  if (stopped_) return fail(attempt, "engine stopped");
  const std::int32_t owner = owner_[attempt->slot];
  if (owner == kNoOwner) {
    waiting_.push_back(std::move(attempt));
    request_refresh(std::chrono::milliseconds(0));
    return;
  }
  send(*nodes_[static_cast<std::size_t>(owner)], std::move(attempt), false);
}

void RedisCluster::send(Node& target, std::shared_ptr<Attempt> attempt, bool asking) {
  // ASKING holds for the next command of this connection only; pipelined
  // right before it, nothing else can come in between.
  if (asking) target.conn->command({"ASKING"}, {});
  // A copy: a redirection sends the same arguments again.
  std::vector<std::string> args = attempt->args;
  Node* node_ptr = &target;
  target.conn->command(std::move(args), [this, node_ptr, attempt](redisReply* reply, const std::string& error) {
    if (!reply) {
      if (node_ptr->master && !stopped_) request_refresh(backoff_min_);
      if (attempt->callback) attempt->callback(nullptr, error);
      return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
      const std::string_view text(reply->str, reply->len);
      if (const auto redirect = parse_cluster_redirect(text)) {
        if (++attempt->redirects > max_redirects_) {
          return give_up(*attempt, " redirected more than " + std::to_string(max_redirects_) +
                                       " times (cluster_max_redirects), last: " + std::string(text.substr(0, 300)));
        }
        Node* to = node(redirect->to);
        if (!to) return give_up(*attempt, ": a redirection names more nodes than a cluster may have");
        if (redirect->ask) return send(*to, attempt, true);
        // MOVED: this slot has a new owner now; the others probably moved
        // with it (a failover, a resharding), so the whole map is asked for.
        owner_[redirect->slot] = index_of(to);
        {
          std::lock_guard lock(nodes_mutex_);
          to->master = true;
        }
        request_refresh(std::chrono::milliseconds(0));
        return send(*to, attempt, false);
      }
      if (text.starts_with("TRYAGAIN")) {
        // A multi-key command during a slot's migration, keys split between
        // the two nodes: nothing ran; it can succeed once the keys moved.
        if (++attempt->redirects > max_redirects_) {
          return give_up(*attempt, " still migrating after " + std::to_string(max_redirects_) +
                                       " tries (cluster_max_redirects): " + std::string(text.substr(0, 300)));
        }
        auto timer = std::make_shared<asio::steady_timer>(io_, backoff_min_);
        retry_timers_.insert(timer);
        timer->async_wait([this, timer, attempt](const asio::error_code&) {
          retry_timers_.erase(timer);
          route(attempt);  // after stop(): fails it
        });
        return;
      }
      if (text.starts_with("CLUSTERDOWN")) request_refresh(backoff_min_);
    }
    if (attempt->callback) attempt->callback(reply, {});
  });
}

void RedisCluster::request_refresh(std::chrono::milliseconds delay) {
  if (stopped_ || !started_ || refresh_scheduled_) return;
  refresh_scheduled_ = true;
  refresh_timer_.expires_after(delay);
  refresh_timer_.async_wait([this](const asio::error_code& ec) {
    refresh_scheduled_ = false;
    if (ec || stopped_) return;
    refresh();
  });
}

void RedisCluster::refresh() {
  if (stopped_) return;
  if (refreshing_) {
    refresh_again_ = true;
    return;
  }
  refreshing_ = true;
  // Connected nodes first (they answer at once), then the others in order.
  std::vector<std::size_t> candidates;
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i]->conn->ready()) candidates.push_back(i);
  }
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (!nodes_[i]->conn->ready()) candidates.push_back(i);
  }
  ask_for_slots(std::move(candidates), 0, std::make_shared<std::string>());
}

void RedisCluster::ask_for_slots(std::vector<std::size_t> candidates, std::size_t index,
                                 std::shared_ptr<std::string> errors) {
  if (stopped_) return;
  if (index == candidates.size()) return refresh_failed("no node answered CLUSTER SLOTS: " + *errors);
  Node& asked = *nodes_[candidates[index]];
  asked.conn->command({"CLUSTER", "SLOTS"}, [this, candidates = std::move(candidates), index, errors, &asked](
                                                redisReply* reply, const std::string& error) mutable {
    if (stopped_) return;
    std::string why = error;
    std::optional<std::vector<SlotRange>> ranges;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
      why = std::string(reply->str, std::min<std::size_t>(reply->len, 200));
    } else if (reply) {
      ranges = parse_cluster_slots(reply, asked.address, why);
      if (ranges && ranges->empty()) {
        ranges.reset();
        why = "CLUSTER SLOTS names no slot (the cluster is not set up)";
      }
    }
    if (!ranges) {
      *errors += (errors->empty() ? "" : "; ") + address_text(asked.address) + ": " + why;
      return ask_for_slots(std::move(candidates), index + 1, errors);
    }
    apply(*ranges);
  });
}

bool RedisCluster::is_master(const RedisNodeAddress& address) const {
  return std::any_of(nodes_.begin(), nodes_.end(), [&](const auto& n) { return n->master && n->address == address; });
}

void RedisCluster::apply(const std::vector<SlotRange>& ranges) {
  refreshes_.fetch_add(1, std::memory_order_relaxed);
  ++map_version_;
  owner_.fill(kNoOwner);
  std::vector<bool> is_master;
  for (const auto& range : ranges) {
    Node* master = node(range.master);
    if (!master) continue;
    const std::int32_t index = index_of(master);
    if (is_master.size() < nodes_.size()) is_master.resize(nodes_.size(), false);
    is_master[static_cast<std::size_t>(index)] = true;
    std::fill(owner_.begin() + range.first, owner_.begin() + range.last + 1, index);
  }
  is_master.resize(nodes_.size(), false);
  {
    std::lock_guard lock(nodes_mutex_);
    for (std::size_t i = 0; i < nodes_.size(); ++i) nodes_[i]->master = is_master[i];
  }
  masters_known_.store(static_cast<std::size_t>(std::count(is_master.begin(), is_master.end(), true)),
                       std::memory_order_relaxed);
  refreshing_ = false;
  auto waiting = std::move(waiting_);
  waiting_.clear();
  for (auto& attempt : waiting) {
    if (owner_[attempt->slot] == kNoOwner) {
      fail(attempt, "redis cluster: no master serves slot " + std::to_string(attempt->slot));
    } else {
      route(std::move(attempt));
    }
  }
  if (refresh_again_ || some_master_down()) {
    // A master we route to is down: ask again until the cluster names its
    // replacement (a failover takes about cluster-node-timeout).
    refresh_again_ = false;
    request_refresh(some_master_down() ? backoff_ : std::chrono::milliseconds(0));
    backoff_ = std::min(backoff_ * 2, backoff_max_);
  } else {
    backoff_ = backoff_min_;
  }
  if (owner_ != applied_owner_) {
    applied_owner_ = owner_;
    if (on_map_change_) on_map_change_();
  }
}

void RedisCluster::refresh_failed(const std::string& why) {
  refreshing_ = false;
  auto waiting = std::move(waiting_);
  waiting_.clear();
  for (auto& attempt : waiting) fail(attempt, "redis cluster: " + why);
  refresh_again_ = false;
  request_refresh(backoff_);
  backoff_ = std::min(backoff_ * 2, backoff_max_);
}

}  // namespace duplex::engines::detail
