// What the throwaway test servers (redis_server.hpp, nats_server.hpp) share:
// a free loopback port, a temp dir removed at the end, and a child process
// that never outlives the test process, started, signalled and waited for.
#pragma once
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "../common/exec_argv.hpp"

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

// The last `lines` lines of a server's log file, for a failure message
// ("" when it cannot be read).
inline std::string log_tail(const std::string& path, std::size_t lines = 20) {
  std::ifstream in(path);
  std::vector<std::string> kept;
  for (std::string line; std::getline(in, line);) {
    kept.push_back(std::move(line));
    if (kept.size() > lines) kept.erase(kept.begin());
  }
  std::string text;
  for (const auto& line : kept) text += "\n  " + line;
  return text;
}

// A fresh directory under the system temp dir, named `prefix` + six random
// characters, removed with everything in it when the object goes.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "duplex-engines-") {
    std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "XXXXXX")).string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// One server process at a time: spawn() forks and execs args[0] from PATH
// (the child gets SIGKILL when the test process dies); the object does not
// stop it on its own, its owner does (signal_and_wait).
class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool running() const { return pid_ > 0; }

  // `quiet`: stdout and stderr go to /dev/null.
  void spawn(std::vector<std::string> args, bool quiet) { spawn(std::move(args), std::string(quiet ? "/dev/null" : "")); }

  // stdout and stderr appended to `output` (a file; empty: inherited).
  void spawn(std::vector<std::string> args, const std::string& output) {
    const ExecArgv argv(std::move(args));
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test process
      if (::getppid() != parent) ::_exit(1);
      if (!output.empty()) {
        const int fd = ::open(output.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
          ::dup2(fd, STDOUT_FILENO);
          ::dup2(fd, STDERR_FILENO);
        }
      }
      ::execvp(argv.file(), argv.argv());
      ::_exit(127);
    }
  }

  // Sends `sig` if the child runs (no wait).
  void signal(int sig) const {
    if (pid_ > 0) ::kill(pid_, sig);
  }

  // Sends `sig` and reaps the child; returns its wait status (-1: not running).
  int signal_and_wait(int sig) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

  // Like signal_and_wait, but SIGKILLs the child if it has not exited within `timeout`.
  int signal_and_wait_within(int sig, std::chrono::milliseconds timeout) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pid_ = -1;
    return status;
  }

  // Polls `ready` every 20 ms for up to 10 s. Throws "<name> exited at start
  // (port N)" when the child ends first, and "<name> <timeout_message>" when
  // time runs out (after a SIGKILL when `kill_on_timeout`).
  void wait_ready(const std::function<bool()>& ready, const std::string& name, int port,
                  const std::string& timeout_message, bool kill_on_timeout) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (ready()) return;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error(name + " exited at start (port " + std::to_string(port) + ")");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (kill_on_timeout) signal_and_wait(SIGKILL);
    throw std::runtime_error(name + " " + timeout_message);
  }

 private:
  pid_t pid_ = -1;
};

}  // namespace duplex::test
