// What a new user meets first on the command line: a port in use, a missing
// file, a server that is not there. Each runs the `duplex` binary and checks
// its exit code and what it says.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "serve_process.hpp"

using namespace hub_test;

namespace {

struct Outcome {
  int exit_code = -1;  // -1: still running at the deadline (then killed)
  std::string output;  // stdout and stderr together
};

// Runs `argv` (argv[0] looked up in PATH) with `input` on stdin (then EOF),
// waits at most `timeout`. A process still running then is killed and
// reported as -1.
Outcome run_program(std::vector<std::string> argv, std::chrono::milliseconds timeout = 5000ms,
                    const std::string& input = "") {
  int out[2], in[2];
  if (::pipe(out) != 0 || ::pipe(in) != 0) throw std::runtime_error("pipe");
  const duplex::test::ExecArgv exec_argv(std::move(argv));
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    ::close(in[1]);
    ::close(out[0]);
    ::execvp(exec_argv.file(), exec_argv.argv());
    std::_Exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  if (!input.empty()) (void)!::write(in[1], input.data(), input.size());
  ::close(in[1]);
  Outcome outcome;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buffer[4096];
    const ssize_t n = ::read(out[0], buffer, sizeof buffer);
    if (n <= 0) break;  // EOF: the process closed its output (it is exiting)
    if (outcome.output.size() < (1u << 20)) outcome.output.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  int status = 0;
  for (;;) {
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return outcome;
    }
    if (std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(10ms);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return outcome;
}

Outcome run_duplex(std::vector<std::string> args, std::chrono::milliseconds timeout = 5000ms,
                   const std::string& input = "") {
  args.insert(args.begin(), DUPLEX_BINARY);
  return run_program(std::move(args), timeout, input);
}

std::filesystem::path scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("duplex-cli-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path) << text;
  return path.string();
}

std::string memory_config(const std::filesystem::path& dir) {
  return write_file(dir / "duplex.toml", "[engine]\ntype = \"memory\"\n[auth]\nallow_anonymous = true\n");
}

// `duplex echo --listen 127.0.0.1:0 ARGS...` in the background: the port from
// its "listening on" line. Killed at the end.
class EchoProcess {
 public:
  explicit EchoProcess(std::vector<std::string> args) {
    int out[2];
    if (::pipe(out) != 0) throw std::runtime_error("pipe");
    std::vector<std::string> all = {DUPLEX_BINARY, "echo", "--threads", "2"};
    all.insert(all.end(), args.begin(), args.end());
    const duplex::test::ExecArgv argv(std::move(all));
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::close(out[0]);
      ::execv(argv.file(), argv.argv());
      std::_Exit(127);
    }
    ::close(out[1]);
    char c;
    while (line_.find('\n') == std::string::npos && ::read(out[0], &c, 1) == 1) line_ += c;
    ::close(out[0]);
    const auto at = line_.find("ws://127.0.0.1:");
    if (at != std::string::npos) port_ = static_cast<std::uint16_t>(std::stoi(line_.substr(at + 15)));
  }
  ~EchoProcess() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  std::uint16_t port() const { return port_; }
  const std::string& line() const { return line_; }

 private:
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
  std::string line_;
};

}  // namespace

// A second server on an address a duplex process holds must not start and
// silently take half the connections: it exits non-zero, naming the address.
TEST(CliPortInUse, SecondServeOnTheSameAddressExitsNamingIt) {
  const auto dir = scratch_dir("serve-twice");
  const std::string config = memory_config(dir);
  ServeProcess first(config, (dir / "first.log").string());
  const std::string address = "127.0.0.1:" + std::to_string(first.port());
  const Outcome second = run_duplex({"serve", "--config", config, "--listen", address, "--threads", "2"});
  EXPECT_NE(second.exit_code, 0) << second.output;
  EXPECT_NE(second.exit_code, -1) << "still running: " << second.output;
  EXPECT_NE(second.output.find(address), std::string::npos) << second.output;
  EXPECT_NE(second.output.find("Address already in use"), std::string::npos) << second.output;
  EXPECT_EQ(second.output.find("listening"), std::string::npos) << second.output;
  EXPECT_TRUE(first.running());
}

TEST(CliPortInUse, SecondEchoOnTheSameAddressExitsNamingIt) {
  EchoProcess first({"--listen", "127.0.0.1:0"});
  ASSERT_NE(first.port(), 0) << first.line();
  const std::string address = "127.0.0.1:" + std::to_string(first.port());
  const Outcome second = run_duplex({"echo", "--listen", address});
  EXPECT_NE(second.exit_code, 0) << second.output;
  EXPECT_NE(second.exit_code, -1) << "still running: " << second.output;
  EXPECT_NE(second.output.find(address), std::string::npos) << second.output;
  EXPECT_NE(second.output.find("Address already in use"), std::string::npos) << second.output;
}

// Even a process that asks to share cannot join one that did not.
TEST(CliPortInUse, ReusePortCannotJoinAServerThatDidNotAskForIt) {
  EchoProcess first({"--listen", "127.0.0.1:0"});
  ASSERT_NE(first.port(), 0) << first.line();
  const std::string address = "127.0.0.1:" + std::to_string(first.port());
  const Outcome second = run_duplex({"echo", "--reuse-port", "--listen", address});
  EXPECT_NE(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find(address), std::string::npos) << second.output;
}

// Sharing a port on purpose (the 100k-connection runs): both ask, both listen.
TEST(CliPortInUse, ProcessesThatAllPassReusePortShareIt) {
  EchoProcess first({"--reuse-port", "--listen", "127.0.0.1:0"});
  ASSERT_NE(first.port(), 0) << first.line();
  EchoProcess second({"--reuse-port", "--listen", "127.0.0.1:" + std::to_string(first.port())});
  EXPECT_EQ(second.port(), first.port()) << second.line();
}

TEST(CliPortInUse, AnAddressThisMachineDoesNotHaveIsNamed) {
  // 192.0.2.0/24 is TEST-NET-1: never assigned to an interface.
  const Outcome outcome = run_duplex({"echo", "--listen", "192.0.2.1:9"});
  EXPECT_NE(outcome.exit_code, 0) << outcome.output;
  EXPECT_NE(outcome.output.find("192.0.2.1:9"), std::string::npos) << outcome.output;
  EXPECT_NE(outcome.output.find("Cannot assign requested address"), std::string::npos) << outcome.output;
}

// README: `make run PORT=9000`. `make -n` prints the commands without running
// them (nor the build they depend on).
TEST(CliMakeRun, PortAndHostChooseTheListenAddress) {
  const Outcome plain = run_program({"make", "-n", "-C", DUPLEX_SOURCE_DIR, "run", "BUILD=/nonexistent-build"});
  EXPECT_NE(plain.output.find("serve --config config/demo.toml --listen 127.0.0.1:8080\n"), std::string::npos)
      << plain.output;
  const Outcome other = run_program({"make", "-n", "-C", DUPLEX_SOURCE_DIR, "run", "PORT=9000", "HOST=0.0.0.0",
                                     "BUILD=/nonexistent-build"});
  EXPECT_EQ(other.exit_code, 0) << other.output;
  EXPECT_NE(other.output.find("serve --config config/demo.toml --listen 0.0.0.0:9000\n"), std::string::npos)
      << other.output;
}

// `make deb` is listed by `make help` and packs the BUILD it is given
// (scripts/deb; tests/package/deb.sh builds and installs the package).
TEST(CliMakeDeb, HelpListsItAndItPacksTheGivenBuild) {
  const Outcome help = run_program({"make", "-s", "-C", DUPLEX_SOURCE_DIR, "help"});
  EXPECT_EQ(help.exit_code, 0) << help.output;
  EXPECT_NE(help.output.find("make deb "), std::string::npos) << help.output;
  const Outcome deb = run_program({"make", "-n", "-C", DUPLEX_SOURCE_DIR, "deb", "BUILD=/nonexistent-build"});
  EXPECT_EQ(deb.exit_code, 0) << deb.output;
  EXPECT_NE(deb.output.find("scripts/deb /nonexistent-build\n"), std::string::npos) << deb.output;
}

// `duplex --version` and `duplex <command> --version` (the Debian package's
// test runs `duplex serve --version`) print the same line and exit 0.
TEST(CliVersion, EveryCommandPrintsTheVersion) {
  const Outcome top = run_duplex({"--version"});
  EXPECT_EQ(top.exit_code, 0) << top.output;
  ASSERT_EQ(top.output.rfind("duplex ", 0), 0u) << top.output;
  ASSERT_TRUE(std::isdigit(static_cast<unsigned char>(top.output[7]))) << top.output;
  for (const char* command : {"serve", "echo", "connect", "bench", "token"}) {
    const Outcome sub = run_duplex({command, "--version"});
    EXPECT_EQ(sub.exit_code, 0) << command << ": " << sub.output;
    EXPECT_EQ(sub.output, top.output) << command;
  }
}

// The examples in `duplex connect --help` are copied as they are: the port
// `make run` and `duplex serve` use, and the hub's WebSocket path.
TEST(CliHelp, ConnectExamplesUseTheServePortAndPath) {
  const Outcome help = run_duplex({"connect", "--help"});
  EXPECT_EQ(help.exit_code, 0) << help.output;
  std::size_t examples = 0;
  for (auto at = help.output.find("--hub ws://"); at != std::string::npos; at = help.output.find("--hub ws://", at + 1)) {
    ++examples;
    const std::string url = help.output.substr(at + 6, help.output.find(' ', at + 6) - at - 6);
    EXPECT_EQ(url, "ws://127.0.0.1:8080/connection/websocket");
  }
  EXPECT_EQ(examples, 2u) << help.output;
}

namespace {

// The line of `text` that starts with `prefix` after leading blanks ("" if none).
std::string line_starting(const std::string& text, const std::string& prefix) {
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    const auto first = line.find_first_not_of(' ');
    if (first != std::string::npos && line.compare(first, prefix.size(), prefix) == 0) return line;
    start = end + 1;
  }
  return "";
}

}  // namespace

// `bench idle` cannot run without --server-pid: the usage line and the
// option's help say so, and leaving it out is refused before connecting.
TEST(CliHelp, BenchIdleShowsAndEnforcesTheRequiredServerPid) {
  const Outcome help = run_duplex({"bench", "idle", "--help"});
  EXPECT_EQ(help.exit_code, 0) << help.output;
  const std::string usage = line_starting(help.output, "Usage:");
  EXPECT_NE(usage.find("--server-pid PID"), std::string::npos) << usage;
  const std::string option = line_starting(help.output, "--server-pid");
  EXPECT_NE(option.find("REQUIRED"), std::string::npos) << help.output;

  // A usage error exits 2, as before CLI11 enforced it.
  const Outcome missing = run_duplex({"bench", "idle", "ws://127.0.0.1:1/"});
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_NE(missing.output.find("--server-pid is required"), std::string::npos) << missing.output;
  const Outcome zero = run_duplex({"bench", "idle", "ws://127.0.0.1:1/", "--server-pid", "0"});
  EXPECT_EQ(zero.exit_code, 2) << zero.output;
  EXPECT_NE(zero.output.find("--server-pid: not a process id: 0"), std::string::npos) << zero.output;
}

// `echo --deflate` takes an optional MODE; left out, deflate is off, and the
// help shows that as the default (not the value of a bare --deflate).
// Every usage error CLI11 finds exits 2 (the systemd unit does not restart
// after 2), --help and --version exit 0.
TEST(CliHelp, UsageErrorsExit2) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"serve", "--no-such-option"}, {"token"}, {"echo", "--deflate", "sometimes"}, {}}) {
    const Outcome outcome = run_duplex(args);
    EXPECT_EQ(outcome.exit_code, 2) << outcome.output;
  }
  EXPECT_EQ(run_duplex({"token", "--help"}).exit_code, 0);
}

TEST(CliHelp, EchoDeflateShowsOffAsTheDefault) {
  const Outcome help = run_duplex({"echo", "--help"});
  EXPECT_EQ(help.exit_code, 0) << help.output;
  const std::string option = line_starting(help.output, "--deflate ");
  ASSERT_FALSE(option.empty()) << help.output;
  EXPECT_EQ(option.find("=dedicated"), std::string::npos) << option;
  EXPECT_NE(option.find("=off"), std::string::npos) << option;
  EXPECT_NE(help.output.find("off (the default: --deflate omitted)"), std::string::npos) << help.output;
}

// The receive ring's layout is a flag of echo, as it is a key of serve's
// config; a layout the ring cannot take exits 2 naming the flag and the value.
TEST(CliEcho, ARingLayoutOutOfRangeExits2NamingTheFlag) {
  const Outcome count = run_duplex({"echo", "--listen", "127.0.0.1:0", "--io-uring-buffers", "24"});
  EXPECT_EQ(count.exit_code, 2) << count.output;
  EXPECT_NE(count.output.find("--io-uring-buffers 24: must be a power of two from 16 to 32768"), std::string::npos)
      << count.output;
  const Outcome size = run_duplex({"echo", "--listen", "127.0.0.1:0", "--io-uring-buffer-size", "2MiB"});
  EXPECT_EQ(size.exit_code, 2) << size.output;
  EXPECT_NE(size.output.find("--io-uring-buffer-size 2MiB: must be between 1024 and 1048576 bytes"),
            std::string::npos)
      << size.output;
}

TEST(CliEcho, ARingLayoutInRangeServes) {
  EchoProcess echo({"--listen", "127.0.0.1:0", "--io-uring-buffers", "16", "--io-uring-buffer-size", "64KiB"});
  EXPECT_NE(echo.port(), 0) << echo.line();
}

// The start-up line says how many loops run, not the "0 = one per core" it was given.
TEST(CliServeStart, LogsTheNumberOfLoopsRunning) {
  const auto dir = scratch_dir("loops");
  const std::string config = memory_config(dir);
  {
    ServeProcess two(config, (dir / "two.log").string(), {"--threads", "2", "--log-level", "info"});
    ASSERT_TRUE(two.wait_log("duplex serve listening")) << two.log();
    EXPECT_NE(two.log().find(" threads=2"), std::string::npos) << two.log();
  }
  ServeProcess per_core(config, (dir / "per-core.log").string(), {"--threads", "0", "--log-level", "info"});
  ASSERT_TRUE(per_core.wait_log("duplex serve listening")) << per_core.log();
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  EXPECT_NE(per_core.log().find(" threads=" + std::to_string(cores)), std::string::npos) << per_core.log();
}

TEST(CliServeStart, WarnsWhenNoClientCanAuthenticateAndWhenTheApiIsOff) {
  const auto dir = scratch_dir("warnings");
  const std::string locked = write_file(dir / "locked.toml", "[engine]\ntype = \"memory\"\n");
  {
    ServeProcess serve(locked, (dir / "locked.log").string());
    ASSERT_TRUE(serve.wait_log("duplex serve listening")) << serve.log();
    EXPECT_NE(serve.log().find("no client can connect"), std::string::npos) << serve.log();
    EXPECT_NE(serve.log().find("the HTTP API is off"), std::string::npos) << serve.log();
  }
  const std::string open = write_file(dir / "open.toml",
                                      "[engine]\ntype = \"memory\"\n[auth]\nhmac_secret = \"s\"\n[api]\nkey = \"k\"\n");
  ServeProcess serve(open, (dir / "open.log").string());
  ASSERT_TRUE(serve.wait_log("duplex serve listening")) << serve.log();
  EXPECT_EQ(serve.log().find("no client can connect"), std::string::npos) << serve.log();
  EXPECT_EQ(serve.log().find("the HTTP API is off"), std::string::npos) << serve.log();
}

TEST(CliServeStart, AMissingConfigFileExits2NamingIt) {
  const std::string missing = (scratch_dir("no-config") / "nope.toml").string();
  const Outcome outcome = run_duplex({"serve", "--config", missing, "--listen", "127.0.0.1:0"});
  EXPECT_EQ(outcome.exit_code, 2) << outcome.output;
  EXPECT_NE(outcome.output.find(missing), std::string::npos) << outcome.output;
  EXPECT_NE(outcome.output.find("No such file"), std::string::npos) << outcome.output;
}

// The operator needs the key to fix and the file it names, not OpenSSL's
// "error:80000002:system library::No such file or directory" chain.
TEST(CliServeStart, AMissingTlsFileNamesTheKeyAndTheFile) {
  const auto dir = scratch_dir("no-tls");
  const std::string cert = (dir / "missing.crt").string();
  const std::string key = (dir / "missing.key").string();
  const std::string config = write_file(dir / "tls.toml", "[engine]\ntype = \"memory\"\n[server.tls]\ncert_file = \"" +
                                                              cert + "\"\nkey_file = \"" + key + "\"\n");
  const Outcome outcome = run_duplex({"serve", "--config", config, "--listen", "127.0.0.1:0"});
  EXPECT_EQ(outcome.exit_code, 2) << outcome.output;
  EXPECT_NE(outcome.output.find("server.tls.cert_file = \"" + cert + "\": cannot read it: No such file"),
            std::string::npos)
      << outcome.output;
  EXPECT_NE(outcome.output.find("server.tls.key_file = \"" + key + "\""), std::string::npos) << outcome.output;
  EXPECT_EQ(outcome.output.find("error:"), std::string::npos) << outcome.output;
  EXPECT_EQ(outcome.output.find("system library"), std::string::npos) << outcome.output;
}

// A readable file that OpenSSL cannot use is refused when the config loads,
// named by its key, with no raw OpenSSL error chain and no pass phrase
// prompt: not a certificate, not a key, a key of another certificate.
TEST(CliServeStart, AnUnusableTlsFileNamesTheKeyAndWhy) {
  const auto dir = scratch_dir("bad-tls");
  const std::string garbage = write_file(dir / "garbage.pem", "hello, not a PEM file\n");
  std::string certs[2], keys[2];
  for (int i = 0; i < 2; ++i) {
    certs[i] = (dir / ("c" + std::to_string(i) + ".crt")).string();
    keys[i] = (dir / ("k" + std::to_string(i) + ".key")).string();
    const std::string cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
                            "-subj /CN=localhost -keyout '" + keys[i] + "' -out '" + certs[i] + "' >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  const std::string encrypted = (dir / "encrypted.key").string();
  const std::string encrypt = "openssl pkey -in '" + keys[0] + "' -aes256 -passout pass:secret -out '" + encrypted + "' 2>/dev/null";
  ASSERT_EQ(std::system(encrypt.c_str()), 0) << encrypt;
  struct Case {
    std::string cert, key, expected;
  } cases[] = {
      {garbage, keys[0], "server.tls.cert_file = \"" + garbage + "\": not a usable certificate: no PEM certificate"},
      {certs[0], garbage, "server.tls.key_file = \"" + garbage + "\": not a usable private key: no PEM private key"},
      {certs[0], encrypted, "server.tls.key_file = \"" + encrypted + "\": not a usable private key: it is encrypted"},
      {certs[0], keys[1], "server.tls.key_file = \"" + keys[1] + "\": not a usable private key: it does not match the certificate"},
  };
  for (const Case& c : cases) {
    const std::string config = write_file(dir / "tls.toml", "[engine]\ntype = \"memory\"\n[server.tls]\ncert_file = \"" +
                                                                c.cert + "\"\nkey_file = \"" + c.key + "\"\n");
    const Outcome outcome = run_duplex({"serve", "--config", config, "--listen", "127.0.0.1:0"});
    EXPECT_EQ(outcome.exit_code, 2) << outcome.output;
    EXPECT_NE(outcome.output.find(c.expected), std::string::npos) << outcome.output;
    EXPECT_EQ(outcome.output.find("error:"), std::string::npos) << outcome.output;
  }
  // The matching pair is accepted.
  const std::string good = write_file(dir / "good.toml", "[engine]\ntype = \"memory\"\n[server.tls]\ncert_file = \"" +
                                                             certs[1] + "\"\nkey_file = \"" + keys[1] + "\"\n");
  ServeProcess serve(good, (dir / "good.log").string());
  EXPECT_TRUE(serve.wait_log("duplex serve listening")) << serve.log();
}

// The Redis engine's TLS files are checked the same way, named by their keys.
TEST(CliServeStart, AnUnusableRedisTlsFileNamesTheKeyAndWhy) {
  const auto dir = scratch_dir("bad-redis-tls");
  const std::string garbage = write_file(dir / "garbage.pem", "hello, not a PEM file\n");
  std::string certs[2], keys[2];
  for (int i = 0; i < 2; ++i) {
    certs[i] = (dir / ("c" + std::to_string(i) + ".crt")).string();
    keys[i] = (dir / ("k" + std::to_string(i) + ".key")).string();
    const std::string cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
                            "-subj /CN=client -keyout '" + keys[i] + "' -out '" + certs[i] + "' >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  const std::string missing = (dir / "missing.pem").string();
  struct Case {
    std::string settings, expected;
  } cases[] = {
      {"tls_ca = \"" + garbage + "\"\n",
       "engine.redis.tls_ca = \"" + garbage + "\": not a usable CA bundle: no PEM certificate"},
      {"tls_ca = \"" + missing + "\"\n", "engine.redis.tls_ca = \"" + missing + "\": cannot read it"},
      {"tls_cert = \"" + garbage + "\"\ntls_key = \"" + keys[0] + "\"\n",
       "engine.redis.tls_cert = \"" + garbage + "\": not a usable certificate: no PEM certificate"},
      {"tls_cert = \"" + certs[0] + "\"\ntls_key = \"" + keys[1] + "\"\n",
       "engine.redis.tls_key = \"" + keys[1] + "\": not a usable private key: it does not match the certificate"},
      {"tls_cert = \"" + certs[0] + "\"\n", "[engine.redis] tls_cert is set but tls_key is not"},
  };
  for (const Case& c : cases) {
    const std::string config = write_file(dir / "redis-tls.toml", "[engine]\ntype = \"redis\"\n[engine.redis]\ntls = true\n" +
                                                                      c.settings);
    const Outcome outcome = run_duplex({"serve", "--config", config, "--listen", "127.0.0.1:0"});
    EXPECT_EQ(outcome.exit_code, 2) << outcome.output;
    EXPECT_NE(outcome.output.find(c.expected), std::string::npos) << outcome.output;
    EXPECT_EQ(outcome.output.find("error:"), std::string::npos) << outcome.output;
  }
}

namespace {

// A loopback port nobody listens on (bound, read, closed: free again).
std::uint16_t unused_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

std::string open_hub_config(const std::filesystem::path& dir) {
  return write_file(dir / "open.toml",
                    "[engine]\ntype = \"memory\"\n[auth]\nallow_anonymous = true\n"
                    "[namespace_defaults]\nallow_anonymous = true\nallow_publish = true\nhistory_size = 10\n");
}

}  // namespace

// README: `duplex connect` exits 2 when it could not connect; --hub too,
// instead of retrying for ever against a wrong address.
TEST(CliConnectHub, ExitsTwoWhenTheFirstConnectionFails) {
  const std::string url = "ws://127.0.0.1:" + std::to_string(unused_port()) + "/connection/websocket";
  const Outcome outcome = run_duplex({"connect", "--hub", url, "--subscribe", "chat:x"}, 10'000ms);
  EXPECT_EQ(outcome.exit_code, 2) << outcome.output;
  EXPECT_NE(outcome.output.find("cannot connect to " + url), std::string::npos) << outcome.output;
}

// With --publish, the end of stdin ends the command once the publishes are
// acknowledged, with or without --subscribe.
TEST(CliConnectHub, EndOfStdinEndsPublishingWithOrWithoutSubscribe) {
  const auto dir = scratch_dir("connect-eof");
  ServeProcess serve(open_hub_config(dir), (dir / "serve.log").string());
  const std::string url = "ws://127.0.0.1:" + std::to_string(serve.port()) + "/connection/websocket";
  const Outcome alone = run_duplex({"connect", "--hub", url, "--publish", "chat:eof"}, 10'000ms, "one\n");
  EXPECT_EQ(alone.exit_code, 0) << alone.output;
  const Outcome with_subscribe =
      run_duplex({"connect", "--hub", url, "--subscribe", "chat:eof", "--publish", "chat:eof"}, 10'000ms, "two\n");
  EXPECT_EQ(with_subscribe.exit_code, 0) << with_subscribe.output;
  // Both publishes went out: "one" as a JSON string, then "two".
  const Outcome history = run_duplex({"connect", "--hub", url, "--history", "chat:eof"}, 10'000ms);
  EXPECT_EQ(history.exit_code, 0) << history.output;
  EXPECT_NE(history.output.find(R"({"channel":"chat:eof","offset":1,"data":"one"})"), std::string::npos)
      << history.output;
  EXPECT_NE(history.output.find(R"({"channel":"chat:eof","offset":2,"data":"two"})"), std::string::npos)
      << history.output;
}
