// `duplex serve` (or another `duplex` subcommand) as a child process, for the
// hub tests that need the binary (durability after kill -9, SIGTERM, SIGHUP
// reload, the memory of a server under attack).
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../common/exec_argv.hpp"

namespace hub_test {

using namespace std::chrono_literals;

// A `duplex` subcommand in a child process that prints its URL
// ("...://127.0.0.1:PORT") on the first line of stdout: the port from that
// line, its log (stderr) in `log_path`. Killed at the end (also when a test
// fails).
class DuplexProcess {
 public:
  DuplexProcess(std::vector<std::string> args, const std::string& log_path) : log_path_(log_path) {
    int out[2];
    if (::pipe(out) != 0) throw std::runtime_error("pipe");
    std::vector<std::string> all = {DUPLEX_BINARY};
    all.insert(all.end(), args.begin(), args.end());
    const duplex::test::ExecArgv argv(std::move(all));
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(log, 2);
      ::close(out[0]);
      ::execv(argv.file(), argv.argv());
      std::_Exit(127);
    }
    ::close(out[1]);
    std::string text;
    char c;
    while (text.find('\n') == std::string::npos && ::read(out[0], &c, 1) == 1) text += c;
    ::close(out[0]);
    const auto at = text.find("://127.0.0.1:");
    if (at == std::string::npos) {
      stop(SIGKILL);
      throw std::runtime_error("duplex " + (args.empty() ? std::string() : args[0]) + " did not start: " + text + log());
    }
    port_ = static_cast<std::uint16_t>(std::stoi(text.substr(at + 13)));
  }
  ~DuplexProcess() { stop(SIGKILL); }
  DuplexProcess(const DuplexProcess&) = delete;
  DuplexProcess& operator=(const DuplexProcess&) = delete;

  std::uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  void signal(int sig) { ::kill(pid_, sig); }
  bool running() const { return pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0; }
  std::string log() const {
    std::ifstream in(log_path_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  // Waits until the log holds `text` `count` times.
  bool wait_log(const std::string& text, std::size_t count = 1, std::chrono::milliseconds timeout = 5000ms) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const std::string l = log();
      std::size_t n = 0;
      for (auto p = l.find(text); p != std::string::npos; p = l.find(text, p + 1)) ++n;
      if (n >= count) return true;
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(20ms);
    }
  }
  int stop(int sig) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  std::string log_path_;
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

// `duplex serve --config FILE --listen 127.0.0.1:0`; `args` go after the
// config (e.g. --log-level).
class ServeProcess : public DuplexProcess {
 public:
  ServeProcess(const std::string& config_path, const std::string& log_path,
               std::vector<std::string> args = {"--threads", "2", "--log-level", "info"})
      : DuplexProcess(serve_args(config_path, std::move(args)), log_path) {}

 private:
  static std::vector<std::string> serve_args(const std::string& config_path, std::vector<std::string> args) {
    std::vector<std::string> all = {"serve", "--config", config_path, "--listen", "127.0.0.1:0"};
    all.insert(all.end(), args.begin(), args.end());
    return all;
  }
};

}  // namespace hub_test
