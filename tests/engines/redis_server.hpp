// A throwaway redis-server for tests: 127.0.0.1 on a free port, its own
// temp dir (append-only file, fsync always), stopped and removed when the
// object goes (also when a test fails). It can be killed, paused (SIGSTOP)
// and restarted on the same port and dir.
#pragma once
#include <hiredis/hiredis.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "test_server_process.hpp"

namespace duplex::test {

class RedisServer {
 public:
  // `extra`: more redis-server arguments, e.g. {"--requirepass", "secret"}
  // (then set password() for query()).
  explicit RedisServer(std::vector<std::string> extra = {})
      : port_(free_loopback_port()), extra_(std::move(extra)), dir_("duplex-redis-") {
    // Another process may take the free port before redis-server binds it.
    for (int attempt = 0;; ++attempt) {
      try {
        start();
        return;
      } catch (const std::runtime_error&) {
        if (attempt == 4) throw;
        port_ = free_loopback_port();
      }
    }
  }
  ~RedisServer() { kill(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  bool running() const { return process_.running(); }
  void set_password(std::string password) { password_ = std::move(password); }

  void start() {
    if (process_.running()) return;
    const std::string port = std::to_string(port_);
    const std::string& dir = dir_.path();
    std::vector<std::string> args{"redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "yes", "--appendfsync", "always", "--dir", dir,
                                  "--daemonize", "no", "--loglevel", "warning", "--logfile", dir + "/redis.log"};
    args.insert(args.end(), extra_.begin(), extra_.end());
    process_.spawn(std::move(args), false);
    try {
      process_.wait_ready([this] { return answers_ping(); }, "redis-server", port_, "did not answer PING within 10s",
                          true);
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(e.what() + std::string("; its log:") + log_tail(dir + "/redis.log"));
    }
  }

  // SIGTERM and wait (Redis finishes its append-only file).
  void stop() { process_.signal_and_wait(SIGTERM); }
  // SIGKILL and wait: a crash.
  void kill() {
    process_.signal(SIGCONT);
    process_.signal_and_wait(SIGKILL);
  }
  void pause() { process_.signal(SIGSTOP); }
  // The last lines of its log file (loglevel warning), for failure messages.
  std::string log() const { return log_tail(dir_.path() + "/redis.log"); }
  void resume() { process_.signal(SIGCONT); }
  void restart() {
    stop();
    start();
  }
  // A crash that loses the data: SIGKILL, its files gone (the log kept), start.
  void restart_empty() {
    kill();
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path()))
      if (entry.path().filename() != "redis.log") std::filesystem::remove_all(entry.path());
    start();
  }

  // A synchronous command for checks (e.g. "KEYS *"); returns the reply's
  // integer, or the number of elements of an array reply.
  long long query(const std::vector<std::string>& args, int db = 0) const {
    redisContext* c = redisConnect("127.0.0.1", port_);
    if (!c || c->err) {
      if (c) redisFree(c);
      throw std::runtime_error("cannot connect to the test redis-server");
    }
    if (!password_.empty()) freeReplyObject(redisCommand(c, "AUTH %s", password_.c_str()));
    if (db != 0) freeReplyObject(redisCommand(c, "SELECT %d", db));
    std::vector<const char*> argv;
    std::vector<std::size_t> lengths;
    for (const auto& arg : args) {
      argv.push_back(arg.data());
      lengths.push_back(arg.size());
    }
    auto* reply = static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lengths.data()));
    long long value = -1;
    if (reply) {
      if (reply->type == REDIS_REPLY_INTEGER) value = reply->integer;
      if (reply->type == REDIS_REPLY_ARRAY) value = static_cast<long long>(reply->elements);
      freeReplyObject(reply);
    }
    redisFree(c);
    return value;
  }

 private:
  bool answers_ping() const {
    timeval timeout{0, 200'000};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, timeout);
    if (!c) return false;
    bool pong = false;
    if (!c->err && redisSetTimeout(c, timeout) == REDIS_OK) {  // a reply that never comes must not hang the wait
      auto* reply = static_cast<redisReply*>(redisCommand(c, "PING"));
      // NOAUTH is an answer too: the server is up.
      pong = reply && (reply->type == REDIS_REPLY_STATUS || reply->type == REDIS_REPLY_ERROR);
      if (reply) freeReplyObject(reply);
    }
    redisFree(c);
    return pong;
  }

  int port_;
  std::vector<std::string> extra_;
  std::string password_;
  TempDir dir_;
  ChildProcess process_;
};

}  // namespace duplex::test
