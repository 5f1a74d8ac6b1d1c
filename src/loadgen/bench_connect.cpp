// duplex bench connect: handshake rate. N connections in total, C in flight,
// each opened (TCP, TLS for wss://, upgrade) and closed with the close
// handshake right after it opens; a slot is free again once the server has
// closed TCP. Latency is connect() to open: TCP + TLS + HTTP upgrade.
// ws:// runs on the raw epoll engine by default, wss:// on net::connect.
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
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

struct ConnectArgs {
  std::string url;
  unsigned connections = 1000;
  unsigned concurrency = 50;
  unsigned threads = 1;
  std::string ca_file;
  bool insecure = false;
  bool deflate = false;
  long server_pid = 0;
  std::string engine = "auto";
  OutputArgs output;
};

struct Shared {
  explicit Shared(const ConnectArgs& a) : args(a) {}
  const ConnectArgs& args;
  std::atomic<unsigned> claimed{0};  // connections started, across threads
  std::atomic<unsigned> opened{0};
  std::atomic<unsigned> failed{0};
  std::atomic<unsigned> finished{0};  // opened and closed again, or failed
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::string first_error;
  void error(std::string_view e) {
    std::lock_guard<std::mutex> lock(mu);
    if (first_error.empty()) first_error = std::string(e);
  }
};

class Worker {
 public:
  virtual ~Worker() = default;
  virtual void run() = 0;
  const Histogram& latency() const { return latency_; }
  std::uint64_t unclean() const { return unclean_; }

 protected:
  Histogram latency_;
  std::uint64_t unclean_ = 0;
};

// ws:// on the raw epoll engine (reaps closed connections as it goes).
class RawWorker final : public Worker, public RawHandler {
 public:
  RawWorker(Shared& s, LiveStats& live, unsigned concurrency, const RawTarget& target)
      : s_(s), live_(live), concurrency_(concurrency), target_(target) {}

  void run() override {
    RawOptions options;
    options.deflate = s_.args.deflate;
    engine_ = std::make_unique<RawEngine>(*this, options, 64u << 10);
    launch_more();
    std::uint64_t last_reap = now_ns();
    while (in_flight_ > 0) {
      engine_->poll(20'000'000);
      const std::uint64_t now = now_ns();
      live_.maybe_publish(now);
      if (now - last_reap > 100'000'000) {
        last_reap = now;
        engine_->expire(now);
        engine_->reap();
      }
      if (s_.stop.load(std::memory_order_relaxed)) break;
    }
    engine_.reset();
  }

 private:
  void launch_more() {
    while (in_flight_ < concurrency_ && !s_.stop.load(std::memory_order_relaxed)) {
      const unsigned n = s_.claimed.fetch_add(1);
      if (n >= s_.args.connections) {
        s_.claimed.fetch_sub(1);
        break;
      }
      int err = 0;
      if (!engine_->connect(target_, nullptr, err)) {
        s_.error(std::string("cannot connect: ") + std::strerror(err));
        s_.failed.fetch_add(1);
        s_.finished.fetch_add(1);
        live_.errors.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      ++in_flight_;
    }
  }

  void on_open(RawConnection& c) override {
    const std::uint64_t now = now_ns();
    const std::uint64_t latency = now > c.started_ns ? now - c.started_ns : 0;
    latency_.record(latency);
    live_.record(latency);
    live_.messages.fetch_add(1, std::memory_order_relaxed);
    live_.open.fetch_add(1, std::memory_order_relaxed);
    s_.opened.fetch_add(1);
    c.close();
  }

  void on_closed(RawConnection&, bool opened, bool clean, std::string_view error) override {
    if (opened) {
      live_.open.fetch_sub(1, std::memory_order_relaxed);
      if (!clean) {
        ++unclean_;
        s_.error(error);
      }
    } else {
      s_.error(error);
      s_.failed.fetch_add(1);
      live_.errors.fetch_add(1, std::memory_order_relaxed);
    }
    --in_flight_;
    s_.finished.fetch_add(1);
    launch_more();
  }

  Shared& s_;
  LiveStats& live_;
  unsigned concurrency_;
  const RawTarget& target_;
  std::unique_ptr<RawEngine> engine_;
  unsigned in_flight_ = 0;
};

// net::EventLoop + net::connect (ws:// and wss://).
class NetWorker final : public Worker {
 public:
  NetWorker(Shared& s, LiveStats& live, unsigned concurrency) : s_(s), live_(live), concurrency_(concurrency) {}

  void run() override {
    net::EventLoop loop;
    loop_ = &loop;
    options_.deflate = s_.args.deflate;
    options_.timeouts.ping_interval = net::Millis{0};
    options_.tls.ca_file = s_.args.ca_file;
    options_.tls.verify_peer = !s_.args.insecure;
    handlers_.on_open = [this](net::Connection& c) {
      const auto started = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(c.user_data));
      const std::uint64_t now = now_ns();
      const std::uint64_t latency = now > started ? now - started : 0;
      latency_.record(latency);
      live_.record(latency);
      live_.messages.fetch_add(1, std::memory_order_relaxed);
      live_.open.fetch_add(1, std::memory_order_relaxed);
      s_.opened.fetch_add(1);
      c.close();
    };
    handlers_.on_close = [this](net::Connection&, std::uint16_t code, std::string_view reason) {
      live_.open.fetch_sub(1, std::memory_order_relaxed);
      if (code != protocol::close_code::normal) {
        ++unclean_;
        s_.error("close " + std::to_string(code) + " " + std::string(reason));
      }
      done_one();
    };
    handlers_.on_error = [this](std::string_view error) {
      s_.error(error);
      s_.failed.fetch_add(1);
      live_.errors.fetch_add(1, std::memory_order_relaxed);
      done_one();
    };
    timer_ = std::make_unique<net::LoopTimer>(loop);
    launch_more();
    tick();
    loop.run();
    timer_.reset();
  }

 private:
  void done_one() {
    --in_flight_;
    s_.finished.fetch_add(1);
    launch_more();
  }

  void launch_more() {
    while (in_flight_ < concurrency_ && !s_.stop.load(std::memory_order_relaxed)) {
      const unsigned n = s_.claimed.fetch_add(1);
      if (n >= s_.args.connections) {
        s_.claimed.fetch_sub(1);
        break;
      }
      ++in_flight_;
      const std::uint64_t started = now_ns();
      auto c = net::connect(*loop_, s_.args.url, options_, handlers_);
      c->user_data = reinterpret_cast<void*>(static_cast<std::uintptr_t>(started));
    }
    if (in_flight_ == 0) loop_->stop();
  }

  void tick() {
    live_.maybe_publish(now_ns());
    if (s_.stop.load(std::memory_order_relaxed) && in_flight_ == 0) {
      loop_->stop();
      return;
    }
    timer_->start(std::chrono::milliseconds(50), [this] { tick(); });
  }

  Shared& s_;
  LiveStats& live_;
  unsigned concurrency_;
  net::EventLoop* loop_ = nullptr;
  net::ClientOptions options_;
  net::Handlers handlers_;
  std::unique_ptr<net::LoopTimer> timer_;
  unsigned in_flight_ = 0;
};

// Long on purpose: one benchmark run top to bottom (checks, connecting, the
// measured window, the report), each phase reading the counters of the one
// before.
int run_connect(const ConnectArgs& args) {
  const auto bench_target = open_bench_target("connect", args.url, args.engine);
  if (!bench_target) return exit_usage;
  const net::WsUrl* url = &bench_target->url;
  const std::string& engine = bench_target->engine;
  const RawTarget& target = bench_target->raw;
  if (url->secure && !check_client_tls("connect", args.ca_file, args.insecure)) return exit_usage;
  if (args.server_pid > 0 && read_process_cpu_seconds(args.server_pid) < 0) {
    std::fprintf(stderr, "duplex bench connect: cannot read /proc/%ld/stat (--server-pid)\n", args.server_pid);
    return exit_usage;
  }
  ProcessWatch server(args.server_pid > 0 ? args.server_pid : 0);
  const std::uint64_t fd_limit = raise_open_file_limit();
  const unsigned concurrency = std::min(args.concurrency, args.connections);
  if (concurrency + 32 > fd_limit) {
    std::fprintf(stderr, "duplex bench connect: --concurrency %u is over the open-file limit (%llu)\n", concurrency,
                 static_cast<unsigned long long>(fd_limit));
    return exit_usage;
  }
  const unsigned threads = std::max(1u, std::min(args.threads, concurrency));

  Shared s(args);
  std::vector<std::unique_ptr<LiveStats>> live;
  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned t = 0; t < threads; ++t) {
    live.push_back(std::make_unique<LiveStats>());
    const unsigned c = concurrency / threads + (t < concurrency % threads ? 1 : 0);
    if (engine == "raw")
      workers.push_back(std::make_unique<RawWorker>(s, *live.back(), c, target));
    else
      workers.push_back(std::make_unique<NetWorker>(s, *live.back(), c));
  }
  ProgressLine progress(args.output.quiet);
  CpuWindow window(server, args.server_pid > 0);
  window.begin();
  const std::uint64_t start = now_ns();
  std::vector<std::thread> pool;
  for (auto& w : workers) pool.emplace_back([&w] { w->run(); });

  std::uint64_t next_progress = start + ns_per_s;
  std::uint64_t last_opened = 0, last_time = start;
  LiveTotals totals;
  while (s.finished.load() < args.connections) {
    sleep_until_ns(std::min(next_progress, now_ns() + 10'000'000));
    const std::uint64_t now = now_ns();
    if (now >= next_progress) {
      next_progress += ns_per_s;
      collect_live(live, totals);
      const double dt = static_cast<double>(now - last_time) / 1e9;
      const double rate = static_cast<double>(totals.messages - last_opened) / dt;
      last_opened = totals.messages;
      last_time = now;
      std::string line = progress_prefix(static_cast<double>(now - start) / 1e9) + format_rate(rate) +
                         " handshakes/s  p50 " + format_ms(totals.interval.percentile(50)) + "  p99 " +
                         format_ms(totals.interval.percentile(99)) + "  done " + with_commas(s.finished.load()) + "/" +
                         with_commas(args.connections);
      if (totals.errors) line += "  errors " + with_commas(totals.errors);
      progress.update(line);
    }
  }
  const std::uint64_t end = now_ns();
  window.end();
  s.stop.store(true);
  for (auto& th : pool) th.join();
  progress.done();

  Histogram latency;
  std::uint64_t unclean = 0;
  for (auto& w : workers) {
    latency.merge(w->latency());
    unclean += w->unclean();
  }
  const double seconds = static_cast<double>(end - start) / 1e9;
  const std::uint64_t opened = s.opened.load();
  Report report("duplex bench connect " + args.url);
  report.text("mode", "mode", "connect");
  report.text("url", "url", args.url);
  report.text("engine", "engine", engine);
  report.boolean("tls", "TLS", url->secure);
  if (url->secure) report.boolean("verify_peer", "certificate verified", !args.insecure);
  report.boolean("deflate", "deflate offered", args.deflate);
  report.integer("connections", "connections", args.connections);
  report.integer("concurrency", "in flight", concurrency);
  report.integer("threads", "generator threads", threads);
  report.number("elapsed_s", "elapsed", seconds, 2, "s");
  report.integer("handshakes", "handshakes completed", opened);
  report.integer("failed", "failed", s.failed.load());
  report.integer("unclean_closes", "unclean closes", unclean);
  report.rate("handshakes_per_sec", "handshakes/s", static_cast<double>(opened) / seconds);
  report.latencies("handshake", "connect+handshake", latency);
  add_generator_rows(report, window.self_cpu(), seconds, threads);
  if (args.server_pid > 0)
    add_server_rows(report, args.server_pid, window.server_cpu(), window.server_rss(), seconds, opened,
                    "handshakes_per_server_cpu_s", "handshakes per server-CPU-second");
  if (!s.first_error.empty()) report.note("first error: " + s.first_error);
  report.print(args.output.json);
  if (!s.first_error.empty() && args.output.json)
    std::fprintf(stderr, "duplex bench connect: first error: %s\n", s.first_error.c_str());
  if (opened == 0) {
    std::fprintf(stderr, "duplex bench connect: no connection could be opened: %s\n", s.first_error.c_str());
    return exit_usage;
  }
  return (s.failed.load() || unclean) ? exit_errors : exit_ok;
}

}  // namespace

std::function<int()> add_connect_mode(CLI::App& bench) {
  auto args = std::make_shared<ConnectArgs>();
  CLI::App* cmd = bench.add_subcommand(
      "connect",
      "Handshake rate: opens --connections in total, --concurrency at a time (TCP, TLS for wss://,\n"
      "HTTP upgrade), closing each with the close handshake as soon as it opens. Reports handshakes/s\n"
      "and connect+handshake latency percentiles.");
  cmd->add_option("url", args->url, "ws:// or wss:// URL")->required();
  cmd->add_option("-c,--connections", args->connections, "Connections in total")->capture_default_str()->check(CLI::Range(1u, 100'000'000u));
  cmd->add_option("--concurrency", args->concurrency, "Connections in flight at once")->capture_default_str()->check(CLI::Range(1u, 100'000u));
  cmd->add_option("-t,--threads", args->threads, "Generator threads, one event loop each (the concurrency is split)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 256u));
  cmd->add_option("--ca-file", args->ca_file, "PEM CA bundle to verify the wss:// server with");
  cmd->add_flag("--insecure", args->insecure, "Do not verify the wss:// server certificate (testing only)");
  cmd->add_flag("--deflate", args->deflate, "Offer permessage-deflate");
  cmd->add_option("--server-pid", args->server_pid, "Server process to read CPU time and RSS of (/proc/PID)");
  cmd->add_option("--engine", args->engine,
                  "Client engine: raw (epoll on the protocol core, ws:// only), net (net::connect, also wss://), "
                  "auto (raw for ws://, net for wss://)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "raw", "net"}));
  add_output_options(cmd, args->output);
  return [args] { return run_connect(*args); };
}

}  // namespace duplex::cli::bench
