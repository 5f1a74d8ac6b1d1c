// Scale-out tests: real redis-server, nats-server, haproxy and `duplex serve`
// processes on loopback, configured from the example deployment's templates
// (examples/cluster/*.in), so the tests run the configurations the docs show.
#pragma once
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <cstdlib>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../engines/test_server_process.hpp"

namespace cluster_test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

inline const char* secret = "cluster-test-secret-0123456789";
inline const char* api_key = "cluster-test-api-key";

inline fs::path repo_root() { return fs::path(DUPLEX_SOURCE_DIR); }

// A port nobody listens on right now (the kernel's pick, released at once).
inline std::uint16_t free_port() { return static_cast<std::uint16_t>(duplex::test::free_loopback_port()); }

inline bool port_open(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// One HTTP/1.1 request on a fresh connection; returns the whole response ("" on failure).
inline std::string http(std::uint16_t port, const std::string& method, const std::string& path,
                        const std::string& body = {}, const std::string& key = {}) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return {};
  }
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  if (!key.empty()) req += "X-API-Key: " + key + "\r\n";
  if (!body.empty() || method == "POST")
    req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return {};
  }
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return out;
}

inline int http_status(const std::string& response) {
  if (response.size() < 12 || response.compare(0, 5, "HTTP/") != 0) return 0;
  return std::atoi(response.c_str() + 9);
}

template <class Predicate>
bool wait_until(Predicate done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// Fills a template's @KEY@ placeholders.
inline std::string render(const fs::path& template_path, const std::map<std::string, std::string>& values) {
  std::ifstream in(template_path);
  if (!in) throw std::runtime_error("cannot read " + template_path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  for (const auto& [key, value] : values) {
    const std::string placeholder = "@" + key + "@";
    for (auto at = text.find(placeholder); at != std::string::npos; at = text.find(placeholder, at + value.size()))
      text.replace(at, placeholder.size(), value);
  }
  std::smatch left;
  if (std::regex_search(text, left, std::regex("@[A-Z_0-9]+@")))
    throw std::runtime_error(template_path.string() + ": unfilled " + left.str());
  return text;
}

inline void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// A child process with stdout and stderr in a log file, that can be
// restarted with the same command; killed when destroyed (and when the test
// process dies).
class Child {
 public:
  Child() = default;
  Child(std::vector<std::string> argv, const fs::path& log) { start(std::move(argv), log); }
  ~Child() { stop(SIGKILL); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  void start(std::vector<std::string> argv, const fs::path& log) {
    stop(SIGKILL);
    argv_ = std::move(argv);
    log_ = log;
    process_.spawn(argv_, log_.string());
  }
  void restart() { start(argv_, log_); }
  // Sends `sig` and waits for the exit; returns the wait status (-1 if not running).
  int stop(int sig) { return process_.signal_and_wait(sig); }
  // Like stop(), but gives up waiting after `timeout` and kills.
  int stop_within(int sig, std::chrono::milliseconds timeout) { return process_.signal_and_wait_within(sig, timeout); }
  std::string log_text() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  std::vector<std::string> argv_;
  fs::path log_;
  duplex::test::ChildProcess process_;
};

// Redis, 3 duplex nodes and haproxy in front of them, from examples/cluster.
class Cluster {
 public:
  // engine: "redis", "nats" (NATS + Redis) or "jetstream" (NATS with
  // JetStream alone: no redis-server runs).
  explicit Cluster(std::string engine, std::size_t nodes = 3) : engine_(std::move(engine)) {
    dir_ = fs::temp_directory_path() / ("duplex-cluster-" + std::to_string(::getpid()) + "-" + engine_);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    redis_port_ = free_port();
    if (engine_ != "jetstream") {
      write_file(dir_ / "redis.conf", render(repo_root() / "examples/cluster/redis.conf.in",
                                             {{"REDIS_PORT", std::to_string(redis_port_)}, {"DIR", dir_.string()}}));
      redis_.start({"redis-server", (dir_ / "redis.conf").string()}, dir_ / "redis.stdout");
      if (!wait_until([&] { return port_open(redis_port_); }, 10s)) throw std::runtime_error("redis-server did not start");
    }
    if (engine_ == "nats" || engine_ == "jetstream") {
      nats_port_ = free_port();
      std::vector<std::string> args{"nats-server", "-a", "127.0.0.1", "-p", std::to_string(nats_port_)};
      if (engine_ == "jetstream") args.insert(args.end(), {"-js", "-sd", (dir_ / "jetstream").string()});
      nats_.start(args, dir_ / "nats.log");
      if (!wait_until([&] { return port_open(nats_port_); }, 10s)) throw std::runtime_error("nats-server did not start");
    }
    for (std::size_t i = 0; i < nodes; ++i) ports_.push_back(free_port());
    nodes_.resize(nodes);
    for (std::size_t i = 0; i < nodes; ++i) start_node(i);
    for (std::size_t i = 0; i < nodes; ++i)
      if (!wait_until([&] { return http_status(http(ports_[i], "GET", "/readyz")) == 200; }, 15s))
        throw std::runtime_error("node " + std::to_string(i + 1) + " not ready:\n" + nodes_[i]->log_text());
  }
  ~Cluster() {
    haproxy_.stop(SIGKILL);
    for (auto& n : nodes_)
      if (n) n->stop(SIGKILL);
    nats_.stop(SIGKILL);
    redis_.stop(SIGKILL);
    if (!testing_keep_dir()) fs::remove_all(dir_);
  }

  void start_haproxy() {
    haproxy_port_ = free_port();
    write_file(dir_ / "haproxy.cfg",
               render(repo_root() / "examples/cluster/haproxy.cfg.in",
                      {{"LISTEN_PORT", std::to_string(haproxy_port_)}, {"PORT1", std::to_string(ports_.at(0))},
                       {"PORT2", std::to_string(ports_.at(1))}, {"PORT3", std::to_string(ports_.at(2))}}));
    haproxy_.start({"haproxy", "-db", "-f", (dir_ / "haproxy.cfg").string()}, dir_ / "haproxy.log");
    if (!wait_until([&] { return http_status(http(haproxy_port_, "GET", "/readyz")) == 200; }, 10s))
      throw std::runtime_error("haproxy did not start:\n" + haproxy_.log_text());
  }

  void start_node(std::size_t i) {
    const std::string name = "n" + std::to_string(i + 1);
    const auto config = dir_ / (name + ".toml");
    write_file(config, render(repo_root() / "examples/cluster/node.toml.in",
                              {{"NODE", name},
                               {"PORT", std::to_string(ports_[i])},
                               {"BROKER", engine_ == "redis" ? "redis" : "nats"},
                               {"HISTORY", engine_ == "jetstream" ? "jetstream" : "redis"},
                               {"REDIS_PORT", std::to_string(redis_port_)},
                               {"NATS_PORT", std::to_string(nats_port_ ? nats_port_ : 4222)},
                               {"SECRET", secret},
                               {"API_KEY", api_key}}));
    nodes_[i] = std::make_unique<Child>(
        std::vector<std::string>{DUPLEX_BINARY, "serve", "--config", config.string(), "--log-level", "warn"},
        dir_ / (name + ".log"));
  }

  Child& node(std::size_t i) { return *nodes_.at(i); }
  Child& redis() { return redis_; }
  std::uint16_t port(std::size_t i) const { return ports_.at(i); }
  std::uint16_t haproxy_port() const { return haproxy_port_; }
  std::uint16_t redis_port() const { return redis_port_; }
  std::string ws_url(std::uint16_t port) const {
    return "ws://127.0.0.1:" + std::to_string(port) + "/connection/websocket";
  }
  const fs::path& dir() const { return dir_; }

 private:
  static bool testing_keep_dir() { return std::getenv("DUPLEX_KEEP_CLUSTER_DIR") != nullptr; }

  std::string engine_;
  fs::path dir_;
  Child redis_, nats_, haproxy_;
  std::vector<std::unique_ptr<Child>> nodes_;
  std::vector<std::uint16_t> ports_;
  std::uint16_t redis_port_ = 0, nats_port_ = 0, haproxy_port_ = 0;
};

}  // namespace cluster_test
