// A throwaway Redis Cluster for tests: six redis-servers (RedisServer:
// append-only, fsync always) with --cluster-enabled on free loopback
// ports, each with its own temp dir and cluster bus port, joined by
// `redis-cli --cluster create ... --cluster-replicas 1` into three masters
// with a replica each; cluster-node-timeout 1 s, so a killed master is
// replaced within a few seconds. Every process is killed when the object
// goes.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "redis_sentinel.hpp"  // redis_text, eventually
#include "redis_server.hpp"
#include "test_server_process.hpp"

namespace duplex::test {

class RedisClusterGroup {
 public:
  // One node's line of CLUSTER NODES.
  struct NodeLine {
    int port = 0;
    bool master = false;
    bool failed = false;  // "fail" (or "fail?") in its flags
    std::string id;
    std::string master_id;  // a replica's master
  };

  RedisClusterGroup() : dir_("duplex-cluster-") {
    for (int i = 0; i < 6; ++i) {
      nodes_.push_back(std::make_unique<RedisServer>(std::vector<std::string>{
          "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
          "--cluster-port", std::to_string(free_loopback_port())}));
    }
    std::string command = "redis-cli --cluster create";
    for (const auto& node : nodes_) command += " " + node->address();
    command += " --cluster-replicas 1 --cluster-yes > " + dir_.path() + "/create.log 2>&1";
    if (std::system(command.c_str()) != 0) throw std::runtime_error("redis-cli --cluster create failed: " + command);
    if (!wait_healthy(std::chrono::seconds(20)))
      throw std::runtime_error("the cluster did not reach cluster_state:ok with 3 masters and 3 replicas within 20s");
  }

  std::vector<std::string> addresses() const {
    std::vector<std::string> out;
    for (const auto& node : nodes_) out.push_back(node->address());
    return out;
  }
  RedisServer& node(int port) {
    for (auto& n : nodes_) {
      if (n->port() == port) return *n;
    }
    throw std::runtime_error("no cluster node on port " + std::to_string(port));
  }

  // CLUSTER NODES as seen by the first running node.
  std::vector<NodeLine> topology() const {
    for (const auto& n : nodes_) {
      if (!n->running()) continue;
      const auto text = redis_text(n->port(), {"CLUSTER", "NODES"});
      if (text) return parse_nodes(*text);
    }
    return {};
  }
  std::vector<int> master_ports() const {
    std::vector<int> out;
    for (const auto& line : topology()) {
      if (line.master && !line.failed) out.push_back(line.port);
    }
    return out;
  }
  // The replica of the master on `port` (0: none).
  int replica_of(int port) const {
    const auto lines = topology();
    std::string id;
    for (const auto& line : lines) {
      if (line.port == port) id = line.id;
    }
    for (const auto& line : lines) {
      if (!line.master && !line.failed && !id.empty() && line.master_id == id) return line.port;
    }
    return 0;
  }
  // The port of the master serving `slot` (CLUSTER NODES of a running node).
  int owner_of(int slot) const {
    for (const auto& line : slot_lines()) {
      if (slot >= line.first && slot <= line.last) return line.port;
    }
    return 0;
  }
  int keyslot(const std::string& key) const {
    return std::stoi(redis_text(nodes_.front()->port(), {"CLUSTER", "KEYSLOT", key}).value_or("-1"));
  }

  // cluster_state:ok on every running node, 3 masters without failure
  // flags, each with a replica that is up, every running node agreeing.
  bool healthy() const {
    for (const auto& n : nodes_) {
      if (!n->running()) continue;
      const auto info = redis_text(n->port(), {"CLUSTER", "INFO"});
      if (!info || info->find("cluster_state:ok") == std::string::npos) return false;
    }
    const auto masters = master_ports();
    if (masters.size() != 3) return false;
    for (int port : masters) {
      if (replica_of(port) == 0) return false;
    }
    return true;
  }
  bool wait_healthy(std::chrono::milliseconds limit) const {
    return eventually([&] { return healthy(); }, limit);
  }
  // Every running node says cluster_state:ok and names 3 masters that are
  // not failed (a replica may be missing).
  bool serving() const {
    for (const auto& n : nodes_) {
      if (!n->running()) continue;
      const auto info = redis_text(n->port(), {"CLUSTER", "INFO"});
      if (!info || info->find("cluster_state:ok") == std::string::npos) return false;
    }
    return master_ports().size() == 3;
  }

  // CLUSTER FAILOVER on the replica of the master on `port`; returns the
  // promoted replica's port once every running node sees it as a master
  // (0 after `limit`). Redis aborts a manual failover whose replica does not
  // catch up with the paused master within 5 s ("Manual failover timed
  // out", likely under load on a busy machine), so the request is repeated
  // every 7 s, as an operator would.
  int manual_failover(int port, std::chrono::milliseconds limit) {
    const int replica = replica_of(port);
    if (replica == 0) return 0;
    const auto until = std::chrono::steady_clock::now() + limit;
    auto promoted = [&] {
      const auto role = redis_text(replica, {"ROLE"}).value_or("");
      if (role.rfind("master", 0) != 0) return false;
      for (const auto& line : topology()) {
        if (line.port == replica && !line.master) return false;
      }
      return serving();
    };
    while (std::chrono::steady_clock::now() < until) {
      const auto info = redis_text(replica, {"INFO", "replication"}).value_or("");
      if (info.find("master_link_status:up") != std::string::npos) redis_text(replica, {"CLUSTER", "FAILOVER"});
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (eventually(promoted, std::min<std::chrono::milliseconds>(left, std::chrono::seconds(7)))) return replica;
    }
    return promoted() ? replica : 0;
  }
  // The last lines of the log of the node on `port` (for a failure message).
  std::string log_of(int port) { return node(port).log(); }
  // SIGKILL the master on `port`; returns its replica's port once the
  // cluster promoted it and serves every slot again (0 after `limit`).
  int kill_master(int port, std::chrono::milliseconds limit) {
    const int replica = replica_of(port);
    node(port).kill();
    const bool done = eventually(
        [&] { return replica != 0 && redis_text(replica, {"ROLE"}).value_or("").rfind("master", 0) == 0 && serving(); },
        limit);
    return done ? replica : 0;
  }

 private:
  struct SlotLine {
    int port = 0;
    int first = 0;
    int last = 0;
  };
  std::vector<SlotLine> slot_lines() const {
    std::vector<SlotLine> out;
    for (const auto& n : nodes_) {
      if (!n->running()) continue;
      const auto text = redis_text(n->port(), {"CLUSTER", "NODES"});
      if (!text) continue;
      std::istringstream lines(*text);
      std::string line;
      while (std::getline(lines, line)) {
        std::istringstream fields(line);
        std::vector<std::string> f;
        std::string field;
        while (fields >> field) f.push_back(field);
        if (f.size() < 9 || f[2].find("master") == std::string::npos) continue;
        const int port = port_of(f[1]);
        for (std::size_t i = 8; i < f.size(); ++i) {
          if (f[i].front() == '[') continue;  // a slot being migrated
          const auto dash = f[i].find('-');
          const int first = std::stoi(f[i].substr(0, dash));
          const int last = dash == std::string::npos ? first : std::stoi(f[i].substr(dash + 1));
          out.push_back({port, first, last});
        }
      }
      break;
    }
    return out;
  }
  static int port_of(const std::string& address) {
    // "127.0.0.1:7000@17000"
    const auto colon = address.rfind(':');
    const auto at = address.find('@');
    return std::stoi(address.substr(colon + 1, at == std::string::npos ? std::string::npos : at - colon - 1));
  }
  static std::vector<NodeLine> parse_nodes(const std::string& text) {
    std::vector<NodeLine> out;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
      std::istringstream fields(line);
      std::vector<std::string> f;
      std::string field;
      while (fields >> field) f.push_back(field);
      if (f.size() < 8) continue;
      NodeLine node;
      node.id = f[0];
      node.port = port_of(f[1]);
      node.master = f[2].find("master") != std::string::npos;
      node.failed = f[2].find("fail") != std::string::npos;
      node.master_id = f[3];
      out.push_back(node);
    }
    return out;
  }

  TempDir dir_;
  std::vector<std::unique_ptr<RedisServer>> nodes_;
};

}  // namespace duplex::test
