// The Redis engine in Sentinel mode against real processes on loopback
// (redis_sentinel.hpp: a master, a replica, three sentinels): the master is
// found through the sentinels, a node that is not a master is refused, a
// sentinel's malformed answer is refused, a manual failover moves every
// connection, and a master killed under a publish load is replaced without
// losing an acknowledged publish (wait_replicas = 1: nothing is acknowledged
// on the promoted replica until it has a replica of its own).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "duplex/engines/redis_engine.hpp"
#include "engine_test_support.hpp"
#include "redis_sentinel.hpp"  // the test helper (tests/engines)
#include "redis_sentinels.hpp"    // the engine's (src/engines)

namespace {

using namespace duplex::engines;
using namespace duplex::test;
using namespace std::chrono_literals;

RedisEngineOptions sentinel_options(std::vector<std::string> sentinels, std::string master = RedisSentinelGroup::kMaster) {
  RedisEngineOptions options;
  options.config.addresses.clear();
  options.config.sentinels = std::move(sentinels);
  options.config.sentinel_master = std::move(master);
  options.config.prefix = "t";
  options.config.subscriber_connections = 1;
  options.config.connect_timeout = 500ms;
  options.config.command_timeout = 1500ms;
  options.config.reconnect_min = 50ms;
  options.config.reconnect_max = 300ms;
  return options;
}

std::string dead_address() { return "127.0.0.1:" + std::to_string(free_loopback_port()); }

// A fake sentinel: answers every command it reads (one read, one answer)
// with the same canned RESP reply. Stands in for a sentinel that lies or
// sends garbage.
class FakeSentinel {
 public:
  explicit FakeSentinel(std::string reply) : reply_(std::move(reply)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof addr;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listener_, 16) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &length) != 0)
      throw std::runtime_error("fake sentinel: bind failed");
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~FakeSentinel() {
    stop_ = true;
    thread_.join();
    for (int fd : clients_) ::close(fd);
    ::close(listener_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int queries() const { return queries_.load(); }

 private:
  void run() {
    while (!stop_) {
      std::vector<pollfd> fds{{listener_, POLLIN, 0}};
      for (int fd : clients_) fds.push_back({fd, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 50) <= 0) continue;
      if (fds[0].revents & POLLIN) clients_.push_back(::accept(listener_, nullptr, nullptr));
      for (std::size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
        char buf[4096];
        const ssize_t n = ::recv(fds[i].fd, buf, sizeof buf, 0);
        if (n <= 0) continue;
        if (std::string_view(buf, static_cast<std::size_t>(n)).find("get-master-addr-by-name") != std::string_view::npos)
          ++queries_;
        (void)::send(fds[i].fd, reply_.data(), reply_.size(), MSG_NOSIGNAL);
      }
    }
  }
  std::string reply_;
  int listener_ = -1;
  int port_ = 0;
  std::vector<int> clients_;
  std::atomic<bool> stop_{false};
  std::atomic<int> queries_{0};
  std::thread thread_;
};

std::string resp_address(const std::string& host, const std::string& port) {
  return "*2\r\n$" + std::to_string(host.size()) + "\r\n" + host + "\r\n$" + std::to_string(port.size()) + "\r\n" +
         port + "\r\n";
}

TEST(RedisSentinelParsing, SwitchMasterMessagesAreCheckedFieldByField) {
  using duplex::engines::detail::parse_switch_master;
  using duplex::engines::detail::RedisNodeAddress;
  EXPECT_EQ(parse_switch_master("mymaster 10.0.0.1 6379 10.0.0.2 6380", "mymaster"),
            (RedisNodeAddress{"10.0.0.2", 6380}));
  EXPECT_EQ(parse_switch_master("mymaster ::1 6379 ::2 6380", "mymaster"), (RedisNodeAddress{"::2", 6380}));
  EXPECT_FALSE(parse_switch_master("other 10.0.0.1 6379 10.0.0.2 6380", "mymaster")) << "another master";
  EXPECT_FALSE(parse_switch_master("mymaster 10.0.0.1 6379 10.0.0.2", "mymaster")) << "four fields";
  EXPECT_FALSE(parse_switch_master("mymaster 10.0.0.1 6379 10.0.0.2 6380 x", "mymaster")) << "six fields";
  EXPECT_FALSE(parse_switch_master("mymaster 10.0.0.1 6379 10.0.0.2 0", "mymaster")) << "port 0";
  EXPECT_FALSE(parse_switch_master("mymaster 10.0.0.1 6379 10.0.0.2 65536", "mymaster"));
  EXPECT_FALSE(parse_switch_master("mymaster 10.0.0.1 6379 10.0.0.2 +6380", "mymaster"));
  EXPECT_FALSE(parse_switch_master("mymaster 10.0.0.1 6379 10.0.0.2\n 6380", "mymaster"));
  EXPECT_FALSE(parse_switch_master("mymaster 10.0.0.1 6379 h/ost 6380", "mymaster"));
  EXPECT_FALSE(parse_switch_master("mymaster 10.0.0.1 6379  6380", "mymaster")) << "empty host";
  EXPECT_FALSE(parse_switch_master("mymaster 1 1 " + std::string(2000, 'a') + " 6380", "mymaster")) << "too long";
  EXPECT_FALSE(parse_switch_master("", "mymaster"));
}

TEST(RedisSentinel, FindsTheMasterThroughTheSentinelsInTurn) {
  RedisSentinelGroup group;
  // The first sentinel listed is not running: the next ones are asked.
  std::vector<std::string> sentinels{dead_address()};
  for (const auto& a : group.sentinel_addresses()) sentinels.push_back(a);
  Recorder recorder;  // outlives the engine, whose thread delivers to it
  RedisEngine engine(sentinel_options(sentinels));
  engine.set_deliver(recorder.callback());
  ASSERT_TRUE(wait_for([&] { return subscribe_sync(engine, "room") == EngineErrc::ok; }, 10s));
  for (int i = 1; i <= 3; ++i) {
    const PublishResult published = publish_sync(engine, message("room", std::to_string(i)));
    ASSERT_EQ(published.error, EngineErrc::ok) << published.message;
    EXPECT_EQ(published.position.offset, static_cast<std::uint64_t>(i));
  }
  EXPECT_EQ(offsets_of(history_sync(engine, newest("room", 10))), range(1, 3));
  ASSERT_TRUE(recorder.wait_until([&] { return recorder.offsets("room").size() == 3; }));
  EXPECT_EQ(group.master().query({"EXISTS", "t:meta:room"}), 1) << "written on the master";
  EXPECT_TRUE(wait_for([&] { return group.replica().query({"EXISTS", "t:meta:room"}) == 1; }, 5s)) << "and replicated";
  EXPECT_TRUE(wait_for([&] { return engine.healthy(); }, 5s));
  engine.stop();

  // A master name no sentinel monitors: nothing is known, nothing is acknowledged.
  RedisEngine unknown(sentinel_options(group.sentinel_addresses(), "nosuchmaster"));
  const PublishResult refused = publish_sync(unknown, message("room", "x"));
  EXPECT_EQ(refused.error, EngineErrc::unavailable);
  EXPECT_NE(refused.message.find("no sentinel names master \"nosuchmaster\""), std::string::npos) << refused.message;
  EXPECT_NE(refused.message.find("does not know the master"), std::string::npos) << refused.message;
  EXPECT_FALSE(unknown.healthy());
  unknown.stop();
}

TEST(RedisSentinel, ANodeThatIsNotAMasterIsNeverUsed) {
  RedisServer master;
  RedisServer replica({"--replicaof", "127.0.0.1", std::to_string(master.port())});
  // A sentinel that names the replica (stale, or lying).
  FakeSentinel stale(resp_address("127.0.0.1", std::to_string(replica.port())));
  RedisEngine engine(sentinel_options({stale.address()}));
  const PublishResult refused = publish_sync(engine, message("c", "1"));
  EXPECT_EQ(refused.error, EngineErrc::unavailable);
  EXPECT_NE(refused.message.find("127.0.0.1:" + std::to_string(replica.port()) + " is not a master (ROLE: slave)"),
            std::string::npos)
      << refused.message;
  EXPECT_EQ(subscribe_sync(engine, "c"), EngineErrc::unavailable);
  EXPECT_FALSE(engine.healthy());
  EXPECT_GE(stale.queries(), 1);
  engine.stop();
  EXPECT_EQ(master.query({"EXISTS", "t:meta:c"}), 0);
}

TEST(RedisSentinel, MalformedSentinelAnswersAreRefused) {
  const std::vector<std::string> garbage{
      resp_address("127.0.0.1", "99999"),                    // port out of range
      resp_address("127.0.0.1", "63x9"),                     // not a number
      resp_address("bad host\r\n", "6379"),                  // a host with spaces and line breaks
      resp_address(std::string(300, 'a'), "6379"),           // a host longer than any name
      "*3\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n$1\r\nx\r\n",  // three elements
      ":6379\r\n",                                           // not an array
  };
  for (const auto& reply : garbage) {
    SCOPED_TRACE(reply.substr(0, 40));
    FakeSentinel liar(reply);
    RedisEngine engine(sentinel_options({liar.address()}));
    const PublishResult refused = publish_sync(engine, message("c", "1"));
    EXPECT_EQ(refused.error, EngineErrc::unavailable);
    EXPECT_NE(refused.message.find("sentinel " + liar.address() + ": gave a malformed master address"),
              std::string::npos)
        << refused.message;
    engine.stop();
  }
}

TEST(RedisSentinel, AManualFailoverMovesTheCommandAndPubSubConnections) {
  RedisSentinelGroup group;
  Recorder recorder;  // outlives the engine, whose thread delivers to it
  RedisEngine engine(sentinel_options(group.sentinel_addresses()));
  engine.set_deliver(recorder.callback());
  ASSERT_TRUE(wait_for([&] { return subscribe_sync(engine, "room") == EngineErrc::ok; }, 10s));
  ASSERT_EQ(publish_sync(engine, message("room", "before")).error, EngineErrc::ok);
  EXPECT_EQ(redis_text(group.master().port(), {"PUBSUB", "NUMSUB", "t:ch:room"}), "t:ch:room 1");
  ASSERT_TRUE(wait_for([&] { return group.replica().query({"EXISTS", "t:meta:room"}) == 1; }, 5s));
  ASSERT_TRUE(redis_text(group.sentinel_port(0), {"SENTINEL", "FAILOVER", RedisSentinelGroup::kMaster}).has_value());
  ASSERT_TRUE(wait_for([&] { return group.promoted(); }, 20s)) << "the sentinels promoted the replica";
  // The old master is alive (now a replica): only +switch-master (or a
  // READONLY reply) tells the engine to move. The pub/sub connection moves too.
  ASSERT_TRUE(wait_for([&] { return redis_text(group.replica().port(), {"PUBSUB", "NUMSUB", "t:ch:room"}) == "t:ch:room 1"; }, 10s))
      << "the channel is subscribed on the new master";
  EXPECT_TRUE(wait_for([&] { return redis_text(group.master().port(), {"PUBSUB", "NUMSUB", "t:ch:room"}) == "t:ch:room 0"; }, 5s))
      << "and no longer on the old one";
  ASSERT_TRUE(wait_for([&] { return !recorder.of_kind(ChannelEvent::Kind::resubscribe).empty(); }, 5s))
      << "the move is reported: publications may have been missed meanwhile";
  PublishResult after;
  ASSERT_TRUE(wait_for([&] { return (after = publish_sync(engine, message("room", "after"))).error == EngineErrc::ok; }, 10s))
      << after.message;
  EXPECT_EQ(after.position.offset, 2u) << "the replica had offset 1";
  ASSERT_TRUE(recorder.wait_until([&] {
    const auto offsets = recorder.offsets("room");
    return !offsets.empty() && offsets.back() == 2;
  })) << "delivered from the new master";
  engine.stop();
}

TEST(RedisSentinel, AKilledMasterLosesNoAcknowledgedPublishWithWaitReplicas) {
  RedisSentinelGroup group;
  RedisEngineOptions options = sentinel_options(group.sentinel_addresses());
  options.config.wait_replicas = 1;
  options.config.wait_timeout = 500ms;
  Recorder recorder;  // outlives the engine, whose thread delivers to it
  RedisEngine engine(std::move(options));
  engine.set_deliver(recorder.callback());
  ASSERT_TRUE(wait_for([&] { return subscribe_sync(engine, "load") == EngineErrc::ok; }, 10s));

  std::mutex mutex;
  std::map<std::uint64_t, std::string> acknowledged;  // offset -> data
  std::vector<std::string> failures;
  std::string epoch;
  std::atomic<bool> stop{false};
  std::atomic<int> acks_after_failover{0};
  std::atomic<bool> failed_over{false};
  std::thread publisher([&] {
    for (int n = 1; !stop; ++n) {
      const std::string data = "{\"n\":" + std::to_string(n) + "}";
      const PublishResult result = publish_sync(engine, message("load", data, keep(100'000)));
      std::lock_guard lock(mutex);
      if (result.error == EngineErrc::ok) {
        acknowledged[result.position.offset] = data;
        if (epoch.empty()) epoch = result.position.epoch;
        EXPECT_EQ(result.position.epoch, epoch) << "the replica kept the channel's epoch";
        if (failed_over) ++acks_after_failover;
      } else {
        EXPECT_EQ(result.error, EngineErrc::unavailable);
        failures.push_back(result.message);
        std::this_thread::sleep_for(20ms);
      }
    }
  });
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lock(mutex);
    return acknowledged.size() >= 50;
  }, 10s));
  const bool promoted = group.kill_master_and_wait_for_failover(30s);
  failed_over = true;
  // The promoted replica has no replica of its own: nothing it stores can
  // be confirmed, so nothing is acknowledged until a replica is back.
  const bool refused_without_replica = wait_for([&] {
    std::lock_guard lock(mutex);
    return std::any_of(failures.begin(), failures.end(), [](const std::string& why) {
      return why.find("only 0 of 1 replicas confirmed it") != std::string::npos;
    });
  }, 10s);
  const int acks_without_replica = acks_after_failover;
  if (promoted) group.add_replica_of_promoted();
  const bool resumed = wait_for([&] { return acks_after_failover >= 50; }, 20s);
  stop = true;
  publisher.join();
  ASSERT_TRUE(promoted) << "the sentinels promoted the replica";
  EXPECT_TRUE(refused_without_replica) << "the new master's unconfirmed publishes were refused";
  EXPECT_EQ(acks_without_replica, 0);
  ASSERT_TRUE(resumed) << "publishes succeed on the promoted replica once it has a replica";

  std::lock_guard lock(mutex);
  EXPECT_FALSE(failures.empty()) << "publishes failed while no master was known";
  for (const auto& why : failures) {
    EXPECT_TRUE(why.ends_with("; not published") || why.ends_with("; not acknowledged")) << why;
  }
  const HistoryResult history = history_sync(engine, newest("load", 100'000, keep(100'000)));
  ASSERT_EQ(history.error, EngineErrc::ok) << history.message;
  EXPECT_EQ(history.top.epoch, epoch);
  std::map<std::uint64_t, std::string> stored;
  for (const auto& p : history.publications) stored[p->offset] = p->data;
  for (const auto& [offset, data] : acknowledged) {
    const auto it = stored.find(offset);
    ASSERT_NE(it, stored.end()) << "acknowledged offset " << offset << " is lost";
    EXPECT_EQ(it->second, data) << "offset " << offset << " holds another publication";
  }
  EXPECT_EQ(group.replica().query({"EXISTS", "t:meta:load"}), 1) << "served by the promoted replica";
  EXPECT_FALSE(recorder.of_kind(ChannelEvent::Kind::resubscribe).empty()) << "the subscriber was told to resubscribe";
  engine.stop();
}

}  // namespace
