// duplex bench idle: memory per idle connection. Opens N connections (at a
// bounded concurrency) spread over source addresses 127.0.0.1 .. 127.0.0.A,
// holds them until the server's RSS settles, and reports (after - before) / N.
// ws:// runs on the raw engine (it can bind source addresses); wss:// (or
// --engine net) on net::connect in a thread of its own, one source address.
#include <arpa/inet.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "duplex/net/loop_timer.hpp"
#include "bench_common.hpp"
#include "bench_modes.hpp"
#include "bench_raw.hpp"
#include "duplex/duplex.hpp"
#include "duplex/net/tls.hpp"
#include "duplex/net/url.hpp"

namespace duplex::cli::bench {

namespace {

struct IdleArgs {
  std::string url;
  unsigned connections = 10'000;
  unsigned source_addresses = 1;
  unsigned concurrency = 200;
  long server_pid = 0;
  double hold = 5;
  double settle_timeout = 20;
  std::string ca_file;
  bool insecure = false;
  std::string engine = "auto";
  OutputArgs output;
};

// What the measurement needs from a client engine.
class IdleDriver {
 public:
  virtual ~IdleDriver() = default;
  // Opening: starts connections up to `connections` (at most `concurrency`
  // handshakes at a time) and handles events for up to `timeout_ns`. False
  // once every connection has opened or failed, or opening had to stop.
  virtual bool open_step(std::uint64_t timeout_ns) = 0;
  // Holding: keeps the connections alive (pings) for about `timeout_ns`.
  virtual void hold_step(std::uint64_t timeout_ns) = 0;
  // Closes every connection (close handshake), dropping the rest at `deadline`.
  virtual void close_all(std::uint64_t deadline) = 0;
  virtual std::uint64_t started() const = 0;
  virtual std::uint64_t opened() const = 0;
  virtual std::uint64_t failed() const = 0;
  virtual std::uint64_t lost() const = 0;
  virtual std::size_t open_count() const = 0;
  virtual std::string first_error() const = 0;
  std::string stop_reason;  // why opening stopped early (empty: it did not)
};

// ws:// on the raw epoll engine, in this thread.
class RawIdle final : public IdleDriver, private RawHandler {
 public:
  RawIdle(const IdleArgs& args, const RawTarget& target, std::uint64_t fd_limit)
      : args_(args), target_(target), fd_limit_(fd_limit), engine_(*this, RawOptions{}, 64u << 10) {
    for (unsigned a = 0; a < args.source_addresses; ++a) {
      sockaddr_in src{};
      src.sin_family = AF_INET;
      src.sin_port = 0;
      src.sin_addr.s_addr = htonl((127u << 24) | (a + 1));
      sources_.push_back(src);
    }
  }

  bool open_step(std::uint64_t timeout_ns) override {
    if (!((started_ < args_.connections && stop_reason.empty()) || engine_.pending_count() > 0)) return false;
    while (started_ < args_.connections && stop_reason.empty() && engine_.pending_count() < args_.concurrency) {
      const sockaddr_in* source = args_.source_addresses > 1 ? &sources_[started_ % sources_.size()] : nullptr;
      int err = 0;
      if (!engine_.connect(target_, source, err)) {
        if (err == EMFILE || err == ENFILE) {
          stop_reason = std::string("socket(): ") + std::strerror(err) + " after " +
                        with_commas(engine_.live_count()) + " connections (open-file limit " +
                        with_commas(fd_limit_) + ")";
        } else if (err == EADDRNOTAVAIL || err == EADDRINUSE) {
          stop_reason = std::string("out of source ports: ") + std::strerror(err) + " after " +
                        with_commas(engine_.live_count()) + " connections; add --source-addresses";
        } else {
          stop_reason = std::string("cannot connect: ") + std::strerror(err);
        }
        break;
      }
      ++started_;
    }
    engine_.poll(timeout_ns);
    const std::uint64_t now = now_ns();
    if (now - last_check_ > 200'000'000) {
      last_check_ = now;
      engine_.expire(now);
    }
    return true;
  }
  void hold_step(std::uint64_t timeout_ns) override { engine_.poll(timeout_ns); }  // answers pings, notices drops
  void close_all(std::uint64_t deadline) override {
    closing_ = true;
    engine_.close_all(deadline);
  }
  std::uint64_t started() const override { return started_; }
  std::uint64_t opened() const override { return opened_; }
  std::uint64_t failed() const override { return failed_; }
  std::uint64_t lost() const override { return lost_; }
  std::size_t open_count() const override { return engine_.open_count(); }
  std::string first_error() const override { return first_error_; }

 private:
  void on_open(RawConnection&) override { ++opened_; }
  void on_closed(RawConnection&, bool was_open, bool clean, std::string_view error) override {
    if (closing_) return;
    const std::string why = clean ? "the server closed the connection" : std::string(error);
    if (first_error_.empty()) first_error_ = why;
    if (was_open) ++lost_;
    else ++failed_;
  }

  const IdleArgs& args_;
  const RawTarget& target_;
  std::uint64_t fd_limit_;
  RawEngine engine_;
  std::vector<sockaddr_in> sources_;
  std::uint64_t started_ = 0, opened_ = 0, failed_ = 0, lost_ = 0;
  std::uint64_t last_check_ = now_ns();
  std::string first_error_;
  bool closing_ = false;
};

// ws:// and wss:// on net::connect: a net::EventLoop in a thread of its own
// (it answers the server's pings by itself); this thread only watches.
class NetIdle final : public IdleDriver {
 public:
  explicit NetIdle(const IdleArgs& args) : args_(args) {
    options_.timeouts.ping_interval = net::Millis{0};
    options_.tls.ca_file = args.ca_file;
    options_.tls.verify_peer = !args.insecure;
    handlers_.on_open = [this](net::Connection&) {
      opened_.fetch_add(1, std::memory_order_relaxed);
      open_.fetch_add(1, std::memory_order_relaxed);
      --in_flight_;
      launch_more();
    };
    handlers_.on_error = [this](std::string_view error) {
      set_error(error);
      failed_.fetch_add(1, std::memory_order_relaxed);
      --in_flight_;
      launch_more();
    };
    handlers_.on_close = [this](net::Connection&, std::uint16_t code, std::string_view reason) {
      open_.fetch_sub(1, std::memory_order_relaxed);
      if (closing_.load(std::memory_order_relaxed)) return;
      set_error("the server closed the connection (" + std::to_string(code) + " " + std::string(reason) + ")");
      lost_.fetch_add(1, std::memory_order_relaxed);
    };
    thread_ = std::thread([this] { run(); });
  }
  ~NetIdle() override {
    close_all(now_ns() + 10 * ns_per_s);
  }

  bool open_step(std::uint64_t timeout_ns) override {
    if (opened_.load() + failed_.load() >= args_.connections || done_.load()) return false;
    sleep_until_ns(now_ns() + timeout_ns);
    return true;
  }
  void hold_step(std::uint64_t timeout_ns) override { sleep_until_ns(now_ns() + timeout_ns); }
  void close_all(std::uint64_t deadline) override {
    if (!thread_.joinable()) return;
    close_deadline_.store(deadline);
    closing_.store(true);
    thread_.join();
  }
  std::uint64_t started() const override { return started_.load(); }
  std::uint64_t opened() const override { return opened_.load(); }
  std::uint64_t failed() const override { return failed_.load(); }
  std::uint64_t lost() const override { return lost_.load(); }
  std::size_t open_count() const override { return open_.load(); }
  std::string first_error() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return first_error_;
  }

 private:
  void run() {
    net::EventLoop loop;
    loop_ = &loop;
    timer_ = std::make_unique<net::LoopTimer>(loop);
    launch_more();
    tick();
    loop.run();
    timer_.reset();
    loop_ = nullptr;
    done_.store(true);
  }

  void launch_more() {
    if (closing_.load(std::memory_order_relaxed)) return;
    while (in_flight_ < args_.concurrency && started_.load(std::memory_order_relaxed) < args_.connections) {
      started_.fetch_add(1, std::memory_order_relaxed);
      ++in_flight_;
      net::connect(*loop_, args_.url, options_, handlers_);
    }
  }

  void tick() {
    if (closing_.load()) {
      if (!close_started_) {
        close_started_ = true;
        for (auto& c : loop_->connections()) c->close();
      }
      if (loop_->connection_count() == 0 || now_ns() >= close_deadline_.load()) {
        loop_->stop();
        return;
      }
    }
    timer_->start(std::chrono::milliseconds(20), [this] { tick(); });
  }

  void set_error(std::string_view e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (first_error_.empty()) first_error_ = std::string(e);
  }

  const IdleArgs& args_;
  net::ClientOptions options_;
  net::Handlers handlers_;
  net::EventLoop* loop_ = nullptr;
  std::unique_ptr<net::LoopTimer> timer_;
  unsigned in_flight_ = 0;  // loop thread only
  bool close_started_ = false;  // loop thread only
  std::atomic<std::uint64_t> started_{0}, opened_{0}, failed_{0}, lost_{0}, open_{0};
  std::atomic<std::uint64_t> close_deadline_{0};
  std::atomic<bool> closing_{false}, done_{false};
  mutable std::mutex mu_;
  std::string first_error_;
  std::thread thread_;
};

// Long on purpose: one benchmark run top to bottom (checks, opening, holding
// until the RSS settles, the report), each phase reading the counters of the
// one before.
int run_idle(const IdleArgs& args) {
  const auto bench_target = open_bench_target("idle", args.url, args.engine);
  if (!bench_target) return exit_usage;
  const std::string& engine = bench_target->engine;
  const RawTarget& target = bench_target->raw;
  if (args.source_addresses > 1 && engine != "raw") {
    std::fprintf(stderr, "duplex bench idle: --source-addresses needs the raw engine (ws://; net::connect cannot bind "
                         "a source address)\n");
    return exit_usage;
  }
  if (args.source_addresses > 1 && target.addr.ss_family != AF_INET) {
    std::fprintf(stderr, "duplex bench idle: --source-addresses needs an IPv4 server address\n");
    return exit_usage;
  }
  if (bench_target->url.secure && !check_client_tls("idle", args.ca_file, args.insecure)) return exit_usage;
  ProcessWatch server(args.server_pid), self(0);
  const long rss_before = server.rss_kib();
  if (rss_before < 0) {
    std::fprintf(stderr, "duplex bench idle: cannot read /proc/%ld/status (--server-pid)\n", args.server_pid);
    return exit_usage;
  }
  const std::uint64_t fd_limit = raise_open_file_limit();
  if (args.connections + 16 > fd_limit) {
    std::fprintf(stderr,
                 "duplex bench idle: warning: %s connections will not fit under the open-file limit of %s "
                 "(about %s per process); run several processes\n",
                 with_commas(args.connections).c_str(), with_commas(fd_limit).c_str(),
                 with_commas(fd_limit > 16 ? fd_limit - 16 : 0).c_str());
  }

  const long self_rss_before = self.rss_kib();
  std::unique_ptr<IdleDriver> driver;
  if (engine == "raw")
    driver = std::make_unique<RawIdle>(args, target, fd_limit);
  else
    driver = std::make_unique<NetIdle>(args);
  ProgressLine progress(args.output.quiet);
  const std::uint64_t start = now_ns();
  std::uint64_t next_progress = start + ns_per_s;
  auto progress_line = [&](std::uint64_t now, const std::string& what) {
    progress.update(progress_prefix(static_cast<double>(now - start) / 1e9) + what + "  open " +
                    with_commas(driver->open_count()) + "/" + with_commas(args.connections) + "  server RSS " +
                    format_kib(static_cast<double>(server.rss_kib())));
  };

  // Open them all, at most --concurrency handshakes at a time.
  while (driver->open_step(10'000'000)) {
    const std::uint64_t now = now_ns();
    if (now >= next_progress) {
      next_progress += ns_per_s;
      progress_line(now, "opening " + with_commas(driver->started()));
    }
  }
  const std::uint64_t opened_at = now_ns();
  const double open_seconds = static_cast<double>(opened_at - start) / 1e9;

  // Hold: at least --hold seconds, then until the server's RSS is stable
  // (two readings a second apart within 0.5%), or --settle-timeout.
  const std::uint64_t hold_end = opened_at + seconds_to_ns(args.hold);
  const std::uint64_t settle_deadline = hold_end + seconds_to_ns(args.settle_timeout);
  long rss_prev = server.rss_kib();
  std::uint64_t next_sample = now_ns() + ns_per_s;
  bool settled = false, server_gone = rss_prev < 0;
  long rss_after = rss_prev;
  for (;;) {
    driver->hold_step(50'000'000);
    const std::uint64_t now = now_ns();
    if (now >= next_sample) {
      next_sample += ns_per_s;
      rss_after = server.rss_kib();
      if (rss_after < 0) {
        server_gone = true;
        break;
      }
      const bool stable = std::labs(rss_after - rss_prev) <= std::max<long>(rss_prev / 200, 64);
      rss_prev = rss_after;
      if (now >= hold_end && stable) {
        settled = true;
        break;
      }
      if (now >= settle_deadline) break;
    }
    if (now >= next_progress) {
      next_progress += ns_per_s;
      progress_line(now, "holding");
    }
  }
  const long self_rss_after = self.rss_kib();
  const std::size_t held = driver->open_count();
  const std::uint64_t opened = driver->opened(), failed = driver->failed(), lost = driver->lost();
  const std::string first_error = driver->first_error();
  const std::string stop_reason = driver->stop_reason;
  progress_line(now_ns(), "closing");
  driver->close_all(now_ns() + 10 * ns_per_s);
  progress.done();

  const double delta = server_gone ? std::nan("") : static_cast<double>(rss_after - rss_before);
  Report report("duplex bench idle " + args.url);
  report.text("mode", "mode", "idle");
  report.text("url", "url", args.url);
  report.text("engine", "engine", engine);
  report.boolean("tls", "TLS", bench_target->url.secure);
  report.integer("connections_requested", "connections requested", args.connections);
  report.integer("connections_opened", "connections opened", opened);
  report.integer("connections_held", "connections held at the end", held);
  report.integer("failed", "failed to open", failed);
  report.integer("lost", "lost while held", lost);
  report.integer("source_addresses", "source addresses", args.source_addresses);
  report.number("open_s", "time to open", open_seconds, 2, "s");
  report.rate("opens_per_sec", "opens/s", open_seconds > 0 ? static_cast<double>(opened) / open_seconds : 0.0);
  report.integer("server_pid", "server pid", static_cast<std::uint64_t>(args.server_pid));
  report.raw("server_rss_before_kib", "server RSS before", std::to_string(rss_before),
             format_kib(static_cast<double>(rss_before)));
  report.raw("server_rss_after_kib", "server RSS after", std::to_string(rss_after),
             format_kib(static_cast<double>(rss_after)));
  report.boolean("settled", "RSS settled", settled);
  report.number("server_kib_per_connection", "server memory per connection",
                held ? delta / static_cast<double>(held) : 0.0, 2, "KiB");
  report.number("generator_kib_per_connection", "generator memory per connection",
                held ? static_cast<double>(self_rss_after - self_rss_before) / static_cast<double>(held) : 0.0, 2,
                "KiB");
  if (server_gone) report.note("the server process went away (no RSS to read)");
  if (!stop_reason.empty()) report.note("stopped opening: " + stop_reason);
  if (!first_error.empty()) report.note("first error: " + first_error);
  report.note("(server memory = (RSS after - RSS before) / connections held; user space only, kernel socket buffers "
              "are not in RSS)");
  report.print(args.output.json);
  if (!stop_reason.empty()) std::fprintf(stderr, "duplex bench idle: stopped opening: %s\n", stop_reason.c_str());
  const bool all = opened == args.connections && lost == 0 && !server_gone;
  if (opened == 0) {
    std::fprintf(stderr, "duplex bench idle: no connection could be opened: %s\n",
                 first_error.empty() ? stop_reason.c_str() : first_error.c_str());
    return exit_usage;
  }
  return all ? exit_ok : exit_errors;
}

}  // namespace

std::function<int()> add_idle_mode(CLI::App& bench) {
  auto args = std::make_shared<IdleArgs>();
  CLI::App* cmd = bench.add_subcommand(
      "idle",
      "Memory per idle connection: samples the server's RSS (/proc/PID/status VmRSS), opens\n"
      "--connections (at --concurrency handshakes at a time, spread over --source-addresses),\n"
      "holds them until the server's RSS settles, reports (after - before) / N, then closes them.\n"
      "Limits: the open-file limit here is 20,000 per process (hard; the soft limit is raised to it),\n"
      "so one `duplex bench idle` holds about 19,900 connections: run several processes for more.\n"
      "Each source address has about 28,000 ephemeral ports (ip_local_port_range) towards one server\n"
      "port: use --source-addresses A to spread connections over 127.0.0.1 .. 127.0.0.A.\n"
      "The server has the same open-file limit. Measure a freshly started server: its allocator\n"
      "keeps memory it once used, so a server that held connections before reads too low.\n"
      "wss:// runs on net::connect (--engine net) in a thread of its own, from one source address\n"
      "(about 28,000 connections at most); use --insecure for a self-signed certificate.");
  cmd->add_option("url", args->url, "ws:// or wss:// URL of the server")->required();
  cmd->add_option("-c,--connections", args->connections, "Connections to open and hold")->capture_default_str()->check(CLI::Range(1u, 10'000'000u));
  cmd->add_option("--source-addresses", args->source_addresses,
                  "Bind connections round-robin to 127.0.0.1 .. 127.0.0.A before connecting")
      ->capture_default_str()
      ->check(CLI::Range(1u, 254u));
  cmd->add_option("--concurrency", args->concurrency, "Handshakes in flight while opening")->capture_default_str()->check(CLI::Range(1u, 100'000u));
  // Required by CLI11 itself, so the usage line, the help and the behaviour agree.
  cmd->add_option("--server-pid", args->server_pid, "Server process whose RSS is measured: the figure is the server's memory")
      ->required()
      ->type_name("PID")
      ->check(CLI::Validator(
          [](std::string& value) {
            char* end = nullptr;
            const long pid = std::strtol(value.c_str(), &end, 10);
            return end != value.c_str() && *end == '\0' && pid > 0 ? std::string() : "not a process id: " + value;
          },
          ""));
  cmd->add_option("--hold", args->hold, "Seconds to hold the connections open before the RSS may count as settled")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  cmd->add_option("--settle-timeout", args->settle_timeout, "Extra seconds to wait for the RSS to settle after --hold")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  cmd->add_option("--ca-file", args->ca_file, "PEM CA bundle to verify a wss:// server with");
  cmd->add_flag("--insecure", args->insecure, "Do not verify the wss:// server certificate (testing only)");
  cmd->add_option("--engine", args->engine,
                  "Client engine: raw (epoll on the protocol core, ws:// only, can bind --source-addresses), "
                  "net (net::connect, also wss://), auto (raw for ws://, net for wss://)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "raw", "net"}));
  add_output_options(cmd, args->output);
  return [args] { return run_idle(*args); };
}

}  // namespace duplex::cli::bench
