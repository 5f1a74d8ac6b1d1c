// Several `duplex serve` nodes on Redis (and on NATS + Redis), with real
// servers on loopback: every subscriber on every node gets every acknowledged
// publication exactly once, in offset order — also when a node is killed,
// when Redis restarts and when a node is stopped with SIGTERM.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <iterator>
#include <deque>
#include <mutex>
#include <set>

#include "../hub/transport_client.hpp"
#include "cluster_fixture.hpp"
#include "duplex/client/hub_client.hpp"
#include "duplex/hub/token.hpp"

using namespace cluster_test;
using namespace duplex;

namespace {

std::string token_for(const std::string& user) {
  hub::TokenClaims c;
  c.sub = user;
  c.exp = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count() +
          3600;
  return hub::sign_token_hs256(hub::make_claims_json(c), secret);
}

std::uint64_t id_in(const std::string& data) {
  const auto at = data.find("\"id\":");
  return at == std::string::npos ? 0 : std::stoull(data.substr(at + 5));
}

client::HubClientOptions options_for(const std::string& url, const std::string& user) {
  client::HubClientOptions o;
  o.url = url;
  o.token = token_for(user);
  o.backoff_base = std::chrono::milliseconds(50);
  o.backoff_cap = std::chrono::milliseconds(1000);
  o.command_timeout = std::chrono::milliseconds(5000);
  o.max_queued_publishes = 100'000;
  return o;
}

// A client subscribed to some channels that checks what it receives: offsets
// per channel strictly one after the other, no id twice.
class Subscriber {
 public:
  Subscriber(const std::string& url, const std::string& user, std::vector<std::string> channels)
      : channels_(std::move(channels)), client_(options_for(url, user)) {
    client::StateHandlers state;
    state.on_connected = [this](const client::ConnectedEvent& e) {
      std::lock_guard lock(mutex_);
      nodes_.push_back(e.node);
    };
    state.on_disconnected = [this](const client::DisconnectedEvent& e) {
      std::lock_guard lock(mutex_);
      close_codes_.push_back(e.code);
    };
    client_.set_state_handlers(std::move(state));
    for (const auto& ch : channels_) {
      client::SubscriptionHandlers h;
      h.on_message = [this](const client::Message& m) { on_message(m); };
      h.on_subscribed = [this](const client::SubscribedEvent& e) {
        std::lock_guard lock(mutex_);
        ++subscribed_;
        recovered_ += e.recovering && e.recovered;
        if (e.recovering && !e.recovered) problems_.push_back(e.channel + ": not recovered");
      };
      h.on_gap = [this](const client::GapEvent& e) {
        std::lock_guard lock(mutex_);
        problems_.push_back(e.channel + ": gap after offset " + std::to_string(e.last_seen.offset));
      };
      h.on_unsubscribed = [this](const client::UnsubscribedEvent& e) {
        std::lock_guard lock(mutex_);
        problems_.push_back(e.channel + ": unsubscribed " + std::to_string(e.code) + " " + e.reason);
      };
      client_.subscribe(ch, std::move(h));
    }
    client_.connect();
  }

  std::size_t subscribed() const {
    std::lock_guard lock(mutex_);
    return subscribed_;
  }
  // Resubscribes that recovered what was missed (after a reconnect or a 2500 unsubscribe push).
  std::size_t recoveries() const {
    std::lock_guard lock(mutex_);
    return recovered_;
  }
  std::size_t received(const std::string& channel) const {
    std::lock_guard lock(mutex_);
    auto it = ids_.find(channel);
    return it == ids_.end() ? 0 : it->second.size();
  }
  std::vector<std::string> problems() const {
    std::lock_guard lock(mutex_);
    return problems_;
  }
  std::set<std::uint64_t> ids(const std::string& channel) const {
    std::lock_guard lock(mutex_);
    auto it = ids_.find(channel);
    return it == ids_.end() ? std::set<std::uint64_t>{} : it->second;
  }
  std::uint64_t last_offset(const std::string& channel) const {
    std::lock_guard lock(mutex_);
    auto it = last_.find(channel);
    return it == last_.end() ? 0 : it->second;
  }
  std::vector<std::string> nodes() const {
    std::lock_guard lock(mutex_);
    return nodes_;
  }
  std::vector<std::uint16_t> close_codes() const {
    std::lock_guard lock(mutex_);
    return close_codes_;
  }
  const std::vector<std::string>& channels() const { return channels_; }

 private:
  void on_message(const client::Message& m) {
    std::lock_guard lock(mutex_);
    std::uint64_t& last = last_[m.channel];
    if (last != 0 && m.offset != last + 1)
      problems_.push_back(m.channel + ": offset " + std::to_string(m.offset) + " after " + std::to_string(last));
    last = m.offset;
    if (!ids_[m.channel].insert(id_in(m.data)).second)
      problems_.push_back(m.channel + ": id " + std::to_string(id_in(m.data)) + " twice");
  }

  std::vector<std::string> channels_;
  mutable std::mutex mutex_;
  std::size_t subscribed_ = 0;
  std::size_t recovered_ = 0;
  std::map<std::string, std::uint64_t> last_;
  std::map<std::string, std::set<std::uint64_t>> ids_;
  std::vector<std::string> problems_;
  std::vector<std::string> nodes_;
  std::vector<std::uint16_t> close_codes_;
  // Last: destroyed first, so its thread stops before the state its callbacks touch.
  client::HubClient client_;
};

// Publishes {"id":N} messages through HubClients; a publish that fails is
// retried with the same idempotency key until it is acknowledged, so every
// id ends up in its channel exactly once.
class Publisher {
 public:
  Publisher(const std::vector<std::string>& urls, std::vector<std::string> channels) : channels_(std::move(channels)) {
    for (std::size_t i = 0; i < urls.size(); ++i) {
      clients_.push_back(std::make_unique<client::HubClient>(options_for(urls[i], "publisher" + std::to_string(i))));
      clients_.back()->connect();
    }
  }

  // Publishes ids next+1 .. next+count, spread over clients and channels.
  void publish(std::uint64_t count) {
    for (std::uint64_t n = 0; n < count; ++n) send(++next_id_, 0);
  }
  std::uint64_t published() const { return next_id_; }

  // Re-sends failed publishes (after a short pause); call from the test thread.
  void retry_failed() {
    std::deque<std::pair<std::uint64_t, unsigned>> again;
    {
      std::lock_guard lock(mutex_);
      again.swap(failed_);
    }
    for (auto [id, attempt] : again) send(id, attempt + 1);
  }

  std::size_t acked() const {
    std::lock_guard lock(mutex_);
    return acked_.size();
  }
  std::size_t failures() const { return failures_.load(); }
  // The acknowledged ids of `channel`.
  std::set<std::uint64_t> acked_ids(const std::string& channel) const {
    std::lock_guard lock(mutex_);
    std::set<std::uint64_t> out;
    for (const auto& [id, ch] : acked_)
      if (ch == channel) out.insert(id);
    return out;
  }
  std::string channel_of(std::uint64_t id) const { return channels_[id % channels_.size()]; }

 private:
  void send(std::uint64_t id, unsigned attempt) {
    const std::string channel = channel_of(id);
    client::PublishOptions po;
    po.idempotency_key = "k" + std::to_string(id);
    auto& client = *clients_[(id + attempt) % clients_.size()];
    client.publish(channel, "{\"id\":" + std::to_string(id) + "}",
                   [this, id, attempt, channel](const client::Outcome<client::PublishResult>& r) {
                     std::lock_guard lock(mutex_);
                     if (r.ok()) {
                       acked_[id] = channel;
                     } else {
                       ++failures_;
                       failed_.emplace_back(id, attempt);
                     }
                   },
                   po);
  }

  std::vector<std::string> channels_;
  std::uint64_t next_id_ = 0;
  mutable std::mutex mutex_;
  std::map<std::uint64_t, std::string> acked_;
  std::deque<std::pair<std::uint64_t, unsigned>> failed_;
  std::atomic<std::size_t> failures_{0};
  // Last: destroyed first, so their threads stop before the state their callbacks touch.
  std::vector<std::unique_ptr<client::HubClient>> clients_;
};

const std::vector<std::string> channels = {"chat:a", "chat:b", "chat:c", "chat:d"};

std::vector<std::unique_ptr<Subscriber>> subscribe_all(const std::vector<std::string>& urls, std::size_t count) {
  std::vector<std::unique_ptr<Subscriber>> subs;
  for (std::size_t i = 0; i < count; ++i)
    subs.push_back(std::make_unique<Subscriber>(urls[i % urls.size()], "u" + std::to_string(i), channels));
  const bool ok = wait_until(
      [&] {
        for (auto& s : subs)
          if (s->subscribed() < channels.size()) return false;
        return true;
      },
      20s);
  if (!ok) throw std::runtime_error("subscribers did not subscribe");
  return subs;
}

// Publishes `total` messages at about `rate` per second; `at_fraction` of the
// way through, runs `fault` once. Then retries failures until all are acked.
void publish_with_fault(Publisher& pub, std::uint64_t total, double rate, double at_fraction,
                        const std::function<void()>& fault, std::chrono::seconds settle = 60s) {
  const auto start = std::chrono::steady_clock::now();
  const std::uint64_t batch = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(rate / 50));
  bool faulted = !fault;
  while (pub.published() < total) {
    pub.publish(std::min(batch, total - pub.published()));
    if (!faulted && pub.published() >= static_cast<std::uint64_t>(static_cast<double>(total) * at_fraction)) {
      fault();
      faulted = true;
    }
    pub.retry_failed();
    const auto due = start + std::chrono::microseconds(static_cast<std::int64_t>(
                                 static_cast<double>(pub.published()) / rate * 1e6));
    std::this_thread::sleep_until(due);
  }
  const auto deadline = std::chrono::steady_clock::now() + settle;
  while (pub.acked() < total && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(200ms);
    pub.retry_failed();
  }
  ASSERT_EQ(pub.acked(), total) << "publishes not acknowledged within " << settle.count() << " s";
}

// Every subscriber has every acknowledged id of every channel, and nothing else.
void expect_everyone_has_everything(const std::vector<std::unique_ptr<Subscriber>>& subs, const Publisher& pub,
                                    std::chrono::seconds within = 30s) {
  std::map<std::string, std::set<std::uint64_t>> expected;
  for (const auto& ch : channels) expected[ch] = pub.acked_ids(ch);
  wait_until(
      [&] {
        for (auto& s : subs)
          for (const auto& ch : channels)
            if (s->received(ch) < expected[ch].size()) return false;
        return true;
      },
      within);
  for (std::size_t i = 0; i < subs.size(); ++i) {
    const auto& s = *subs[i];
    for (const auto& ch : channels) {
      const auto got = s.ids(ch);
      std::vector<std::uint64_t> missing, extra;
      std::set_difference(expected[ch].begin(), expected[ch].end(), got.begin(), got.end(), std::back_inserter(missing));
      std::set_difference(got.begin(), got.end(), expected[ch].begin(), expected[ch].end(), std::back_inserter(extra));
      EXPECT_TRUE(missing.empty()) << "subscriber " << i << " " << ch << ": " << missing.size() << " of "
                                   << expected[ch].size() << " missing, first " << missing.front();
      EXPECT_TRUE(extra.empty()) << "subscriber " << i << " " << ch << ": unexpected id " << extra.front();
      EXPECT_EQ(s.last_offset(ch), expected[ch].size()) << "subscriber " << i << " " << ch;
    }
    const auto problems = s.problems();
    EXPECT_TRUE(problems.empty()) << "subscriber " << i << ": " << problems.size() << " problems, first: "
                                  << problems.front();
  }
}

void fan_out_test(const std::string& engine) {
  Cluster cluster(engine);
  std::vector<std::string> node_urls;
  for (std::size_t i = 0; i < 3; ++i) node_urls.push_back(cluster.ws_url(cluster.port(i)));
  auto subs = subscribe_all(node_urls, 9);  // 3 per node
  Publisher pub(node_urls, channels);       // one publisher connection per node
  publish_with_fault(pub, 10'000, 5'000, 1.0, {});
  EXPECT_EQ(pub.failures(), 0u);
  expect_everyone_has_everything(subs, pub);
  // Each node served its own subscribers: the messages crossed nodes.
  std::set<std::string> nodes;
  for (auto& s : subs)
    for (const auto& n : s->nodes()) nodes.insert(n);
  EXPECT_EQ(nodes, (std::set<std::string>{"n1", "n2", "n3"}));
  // The registry: any node lists all three, with their connections.
  const std::string listed = http(cluster.port(0), "GET", "/api/nodes", "", api_key);
  EXPECT_EQ(http_status(listed), 200) << listed;
  for (const char* name : {"\"name\":\"n1\"", "\"name\":\"n2\"", "\"name\":\"n3\""})
    EXPECT_NE(listed.find(name), std::string::npos) << name << " missing in " << listed;
  EXPECT_EQ(http_status(http(cluster.port(0), "GET", "/api/nodes")), 401) << "the registry needs the API key";
}

}  // namespace

TEST(ClusterRedis, TenThousandMessagesThroughThreeNodesReachEverySubscriberInOrder) { fan_out_test("redis"); }

TEST(ClusterNats, TenThousandMessagesThroughThreeNodesReachEverySubscriberInOrder) { fan_out_test("nats"); }

// NATS alone: history, presence and the registry on JetStream, no Redis.
TEST(ClusterJetStream, TenThousandMessagesThroughThreeNodesReachEverySubscriberInOrder) { fan_out_test("jetstream"); }

// The faults every composition must survive (docs/ENGINES.md, "Faults by
// composition"): the engine named by the parameter, as examples/cluster
// writes it (broker and history).
class ClusterFaults : public ::testing::TestWithParam<std::string> {};

TEST_P(ClusterFaults, Kill9ANodeMidStreamItsClientsMoveAndRecoverWithoutLoss) {
  Cluster cluster(GetParam());
  cluster.start_haproxy();
  const std::string via_haproxy = cluster.ws_url(cluster.haproxy_port());
  auto subs = subscribe_all({via_haproxy}, 9);
  std::size_t on_n2 = 0;
  for (auto& s : subs) on_n2 += s->nodes().back() == "n2";
  ASSERT_GT(on_n2, 0u) << "round robin should put subscribers on n2";
  Publisher pub({via_haproxy, via_haproxy}, channels);
  publish_with_fault(pub, 3'000, 1'000, 0.3, [&] { cluster.node(1).stop(SIGKILL); });
  expect_everyone_has_everything(subs, pub);
  std::size_t moved = 0;
  for (auto& s : subs) {
    moved += s->nodes().size() > 1;
    if (s->nodes().size() > 1) {
      EXPECT_GE(s->recoveries(), channels.size());
    }
  }
  EXPECT_EQ(moved, on_n2) << "exactly the clients of the killed node reconnected";
  for (auto& s : subs) EXPECT_NE(s->nodes().back(), "n2");
}

// The compositions that keep their history in Redis (JetStream's server
// restarts: JetStreamNodes.* in tests/engines).
class ClusterRedisFaults : public ::testing::TestWithParam<std::string> {};

TEST_P(ClusterRedisFaults, RedisRestartMidStreamLosesNoAcknowledgedMessage) {
  Cluster cluster(GetParam());
  std::vector<std::string> node_urls;
  for (std::size_t i = 0; i < 3; ++i) node_urls.push_back(cluster.ws_url(cluster.port(i)));
  auto subs = subscribe_all(node_urls, 6);
  Publisher pub(node_urls, channels);
  publish_with_fault(pub, 3'000, 1'000, 0.4, [&] {
    // kill -9: with appendfsync always every acknowledged publish is on disk.
    cluster.redis().stop(SIGKILL);
    std::this_thread::sleep_for(700ms);
    cluster.redis().restart();
  });
  EXPECT_GT(pub.failures(), 0u) << "publishes during the outage must fail, not be acknowledged";
  expect_everyone_has_everything(subs, pub, 45s);
  if (GetParam() == "redis") {
    // Every node lost its pub/sub connections: every subscription was told
    // to resubscribe and recovered from history.
    for (auto& s : subs) {
      EXPECT_GE(s->recoveries(), channels.size());
    }
  }
  // On NATS the fan-out never stopped and Redis came back with its data: no
  // offset was skipped, so nobody needed telling (and everyone has everything).
}

TEST_P(ClusterFaults, SigtermANodeItsClientsGet1001AndMoveWithoutLoss) {
  Cluster cluster(GetParam());
  cluster.start_haproxy();
  const std::string via_haproxy = cluster.ws_url(cluster.haproxy_port());
  auto subs = subscribe_all({via_haproxy}, 9);
  Publisher pub({via_haproxy, via_haproxy}, channels);
  int status = -1;
  std::thread stopper;  // the graceful shutdown takes a moment: publishing goes on meanwhile
  publish_with_fault(pub, 3'000, 1'000, 0.3,
                     [&] { stopper = std::thread([&] { status = cluster.node(2).stop_within(SIGTERM, 15s); }); });
  stopper.join();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "SIGTERM: exit 0, status " << status;
  expect_everyone_has_everything(subs, pub);
  std::size_t told = 0;
  for (auto& s : subs) {
    const auto codes = s->close_codes();
    if (std::find(codes.begin(), codes.end(), 1001) != codes.end()) {
      ++told;
      EXPECT_NE(s->nodes().back(), "n3");
    }
  }
  EXPECT_GT(told, 0u) << "the clients of the stopped node were told 1001";
}

INSTANTIATE_TEST_SUITE_P(Engines, ClusterFaults, ::testing::Values("redis", "nats", "jetstream"),
                         [](const auto& info) { return info.param; });
INSTANTIATE_TEST_SUITE_P(Engines, ClusterRedisFaults, ::testing::Values("redis", "nats"),
                         [](const auto& info) { return info.param; });

// SSE and long-polling through haproxy's round robin, no sticky sessions: the
// stream, the polls and the command POSTs land on different nodes and are
// forwarded to the session's node through Redis.
TEST(ClusterRedis, FallbacksThroughHaproxyNeedNoStickySessions) {
  Cluster cluster("redis");
  cluster.start_haproxy();
  auto forwarded = [&] {
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < 3; ++i) {
      const std::string m = http(cluster.port(i), "GET", "/metrics");
      const auto at = m.find("\nduplex_fallback_forwarded_total ");
      if (at != std::string::npos) total += std::stoull(m.substr(at + 33));
    }
    return total;
  };
  for (auto t : {hub_test::Transport::sse, hub_test::Transport::longpoll}) {
    const std::string channel = std::string("chat:fallback-") + hub_test::transport_name(t);
    const std::uint64_t forwarded_before = forwarded();
    auto c = hub_test::make_transport_client(t, cluster.haproxy_port());
    ASSERT_EQ(c->open(token_for("fallback-user"), hub_test::TokenIn::query), 200);
    c->next("connected");
    auto sub = c->call(1, R"({"type":"subscribe","id":1,"channel":")" + channel + R"("})");
    ASSERT_FALSE(sub->has("/error")) << sub->text;
    // Publishes from the client itself (POSTs through haproxy) and from the API of every node.
    for (int i = 1; i <= 30; ++i) {
      const std::uint64_t id = 100 + static_cast<std::uint64_t>(i);
      auto r = c->call(id, R"({"type":"publish","id":)" + std::to_string(id) + R"(,"channel":")" + channel +
                               R"(","data":{"id":)" + std::to_string(i) + "}}");
      ASSERT_FALSE(r->has("/error")) << r->text;
      const std::string api = http(cluster.port(static_cast<std::size_t>(i) % 3), "POST", "/api/publish",
                                   R"({"channel":")" + channel + R"(","data":{"id":)" + std::to_string(1000 + i) + "}}",
                                   api_key);
      ASSERT_EQ(http_status(api), 200) << api;
    }
    for (std::uint64_t offset = 1; offset <= 60; ++offset)
      ASSERT_EQ(c->next("message", 10'000ms)->u64("offset"), offset) << hub_test::transport_name(t);
    EXPECT_FALSE(c->has("message", 200ms)) << "nothing twice";
    EXPECT_GT(forwarded() - forwarded_before, 10u)
        << hub_test::transport_name(t) << ": round robin should have sent requests to other nodes than the session's";
  }
}
