// A throwaway redis-server for tests: 127.0.0.1 on a free port, its own
// temp dir (append-only file, fsync always), stopped and removed when the
// object goes (also when a test fails). It can be killed, paused (SIGSTOP)
// and restarted on the same port and dir.
#pragma once
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace duplex::test {

inline int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t length = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
    ::close(fd);
    throw std::runtime_error("bind failed");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

class RedisServer {
 public:
  // `extra`: more redis-server arguments, e.g. {"--requirepass", "secret"}
  // (then set password() for query()).
  explicit RedisServer(std::vector<std::string> extra = {}) : port_(free_loopback_port()), extra_(std::move(extra)) {
    std::string pattern = (std::filesystem::temp_directory_path() / "duplex-redis-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
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
  ~RedisServer() {
    kill();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  bool running() const { return pid_ > 0; }
  void set_password(std::string password) { password_ = std::move(password); }

  void start() {
    if (pid_ > 0) return;
    const std::string port = std::to_string(port_);
    std::vector<std::string> args{"redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "yes", "--appendfsync", "always", "--dir", dir_,
                                  "--daemonize", "no", "--loglevel", "warning", "--logfile", dir_ + "/redis.log"};
    args.insert(args.end(), extra_.begin(), extra_.end());
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test process
      if (::getppid() != parent) ::_exit(1);
      std::vector<char*> argv;
      for (auto& arg : args) argv.push_back(arg.data());
      argv.push_back(nullptr);
      ::execvp("redis-server", argv.data());
      ::_exit(127);
    }
    wait_ready();
  }

  // SIGTERM and wait (Redis finishes its append-only file).
  void stop() { signal_and_wait(SIGTERM); }
  // SIGKILL and wait: a crash.
  void kill() {
    if (pid_ > 0) ::kill(pid_, SIGCONT);
    signal_and_wait(SIGKILL);
  }
  void pause() {
    if (pid_ > 0) ::kill(pid_, SIGSTOP);
  }
  void resume() {
    if (pid_ > 0) ::kill(pid_, SIGCONT);
  }
  void restart() {
    stop();
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
  void signal_and_wait(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  void wait_ready() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      timeval timeout{0, 200'000};
      redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, timeout);
      if (c && !c->err) {
        auto* reply = static_cast<redisReply*>(redisCommand(c, "PING"));
        // NOAUTH is an answer too: the server is up.
        const bool pong = reply && (reply->type == REDIS_REPLY_STATUS || reply->type == REDIS_REPLY_ERROR);
        if (reply) freeReplyObject(reply);
        redisFree(c);
        if (pong) return;
      } else if (c) {
        redisFree(c);
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("redis-server exited at start (port " + std::to_string(port_) + ")");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    signal_and_wait(SIGKILL);
    throw std::runtime_error("redis-server did not answer PING within 10s");
  }

  int port_;
  std::vector<std::string> extra_;
  std::string password_;
  std::string dir_;
  pid_t pid_ = -1;
};

}  // namespace duplex::test
