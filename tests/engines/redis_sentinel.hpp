// A throwaway Redis Sentinel deployment for tests: a master and a replica
// (RedisServer: append-only, fsync always) and three sentinels monitoring
// them as "mymaster" (quorum 2, down-after 1 s, failover-timeout 3 s, so a
// killed master is replaced within seconds), each on a free loopback port
// with its own temp dir; every process is killed when the object goes.
// After a failover a spare replica can be added to the promoted node.
#pragma once
#include <hiredis/hiredis.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "redis_server.hpp"
#include "test_server_process.hpp"

namespace duplex::test {

// One synchronous command to 127.0.0.1:port (1 s timeouts); the reply's
// text: a string or status, an integer in decimal, an array's elements
// (strings and integers) joined by ' ', "" for nil; nullopt when the
// server is unreachable or answers with an error.
inline std::optional<std::string> redis_text(int port, const std::vector<std::string>& args) {
  timeval timeout{1, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, timeout);
  if (!c || c->err) {
    if (c) redisFree(c);
    return std::nullopt;
  }
  redisSetTimeout(c, timeout);
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  for (const auto& arg : args) {
    argv.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  auto* reply = static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lengths.data()));
  std::optional<std::string> out;
  auto one = [](const redisReply* r) {
    if (r->type == REDIS_REPLY_INTEGER) return std::to_string(r->integer);
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) return std::string(r->str, r->len);
    return std::string();
  };
  if (reply && reply->type != REDIS_REPLY_ERROR) {
    if (reply->type == REDIS_REPLY_ARRAY) {
      std::string joined;
      for (std::size_t i = 0; i < reply->elements; ++i) joined += (i ? " " : "") + one(reply->element[i]);
      out = joined;
    } else {
      out = one(reply);
    }
  }
  if (reply) freeReplyObject(reply);
  redisFree(c);
  return out;
}

inline bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return condition();
}

// One `redis-server --sentinel` process with a config file of its own (a
// sentinel rewrites it).
class RedisSentinel {
 public:
  // `extra_config`: more sentinel.conf lines (e.g. TLS settings).
  RedisSentinel(const std::string& master_name, int master_port, const std::string& extra_config = "",
                int quorum = 2)
      : port_(free_loopback_port()), dir_("duplex-sentinel-") {
    const std::string config = dir_.path() + "/sentinel.conf";
    {
      std::ofstream out(config);
      out << "port " << port_ << "\nbind 127.0.0.1\ndaemonize no\ndir " << dir_.path() << "\nlogfile "
          << dir_.path() << "/sentinel.log\n"
          << extra_config << "sentinel monitor " << master_name << " 127.0.0.1 " << master_port << " " << quorum
          << "\n"
          << "sentinel down-after-milliseconds " << master_name << " 1000\n"
          << "sentinel failover-timeout " << master_name << " 3000\n"
          << "sentinel parallel-syncs " << master_name << " 1\n";
    }
    process_.spawn({"redis-server", config, "--sentinel"}, false);
    process_.wait_ready([this] { return redis_text(port_, {"PING"}).has_value(); }, "redis sentinel", port_,
                        "did not answer PING within 10s", true);
  }
  ~RedisSentinel() { process_.signal_and_wait(SIGKILL); }
  RedisSentinel(const RedisSentinel&) = delete;
  RedisSentinel& operator=(const RedisSentinel&) = delete;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int port_;
  TempDir dir_;
  ChildProcess process_;
};

class RedisSentinelGroup {
 public:
  static constexpr const char* kMaster = "mymaster";

  RedisSentinelGroup()
      : master_(std::make_unique<RedisServer>()),
        replica_(std::make_unique<RedisServer>(std::vector<std::string>{"--replicaof", "127.0.0.1",
                                                                        std::to_string(master_->port())})) {
    if (!eventually([&] { return info_has(replica_->port(), "master_link_status:up"); }, std::chrono::seconds(10)))
      throw std::runtime_error("the replica did not sync with the master within 10s");
    for (int i = 0; i < 3; ++i) sentinels_.push_back(std::make_unique<RedisSentinel>(kMaster, master_->port()));
    // Failover needs every sentinel to know the replica and the other sentinels.
    const bool known = eventually(
        [&] {
          for (const auto& s : sentinels_) {
            if (count(s->port(), {"SENTINEL", "replicas", kMaster}) != 1) return false;
            if (count(s->port(), {"SENTINEL", "sentinels", kMaster}) != 2) return false;
          }
          return true;
        },
        std::chrono::seconds(20));
    if (!known) throw std::runtime_error("the sentinels did not discover the replica and each other within 20s");
  }

  RedisServer& master() { return *master_; }
  RedisServer& replica() { return *replica_; }
  std::vector<std::string> sentinel_addresses() const {
    std::vector<std::string> out;
    for (const auto& s : sentinels_) out.push_back(s->address());
    return out;
  }
  int sentinel_port(std::size_t i) const { return sentinels_.at(i)->port(); }
  // SIGKILL the master; returns once every sentinel names the replica
  // (false after `limit`).
  bool kill_master_and_wait_for_failover(std::chrono::milliseconds limit) {
    master_->kill();
    return eventually([&] { return promoted(); }, limit);
  }
  // A new replica of the promoted one (the operator replacing the lost
  // node): with wait_replicas = 1 and one replica, publishes need it.
  void add_replica_of_promoted() {
    spare_ = std::make_unique<RedisServer>(
        std::vector<std::string>{"--replicaof", "127.0.0.1", std::to_string(replica_->port())});
    if (!eventually([&] { return info_has(spare_->port(), "master_link_status:up"); }, std::chrono::seconds(10)))
      throw std::runtime_error("the new replica did not sync within 10s");
  }
  bool promoted() const {
    for (const auto& s : sentinels_) {
      const auto reply = redis_text(s->port(), {"SENTINEL", "get-master-addr-by-name", kMaster});
      if (!reply || *reply != "127.0.0.1 " + std::to_string(replica_->port())) return false;
    }
    return redis_text(replica_->port(), {"ROLE"}).value_or("").rfind("master", 0) == 0;
  }

 private:
  static bool info_has(int port, const std::string& line) {
    const auto info = redis_text(port, {"INFO", "replication"});
    return info && info->find(line) != std::string::npos;
  }
  static long count(int port, const std::vector<std::string>& args) {
    timeval timeout{1, 0};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port, timeout);
    if (!c || c->err) {
      if (c) redisFree(c);
      return -1;
    }
    std::vector<const char*> argv;
    for (const auto& arg : args) argv.push_back(arg.c_str());
    auto* reply = static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), nullptr));
    const long n = reply && reply->type == REDIS_REPLY_ARRAY ? static_cast<long>(reply->elements) : -1;
    if (reply) freeReplyObject(reply);
    redisFree(c);
    return n;
  }

  // Declared in start order; destroyed sentinels first.
  std::unique_ptr<RedisServer> master_;
  std::unique_ptr<RedisServer> replica_;
  std::vector<std::unique_ptr<RedisSentinel>> sentinels_;
  std::unique_ptr<RedisServer> spare_;
};

}  // namespace duplex::test
