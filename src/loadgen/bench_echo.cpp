// duplex bench echo: round trips against an echo server. Every connection
// keeps --pipeline messages in flight (1: ping-pong); an echo's round trip is
// measured from the send time recorded for it (echoes come back in order).
// ws:// runs on the raw epoll engine by default; wss:// (or --engine net)
// runs on net::EventLoop + net::connect.
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
#include "duplex/net/url.hpp"

namespace duplex::cli::bench {

namespace {

struct EchoArgs {
  std::string url;
  unsigned connections = 100;
  std::size_t size = 32;
  bool binary = false;
  bool deflate = false;
  unsigned pipeline = 1;
  unsigned threads = 1;
  long server_pid = 0;
  std::string engine = "auto";
  std::string ca_file;
  bool insecure = false;
  TimingArgs timing;
  OutputArgs output;
};

enum Phase : int { connecting, running, closing, aborted };
constexpr std::size_t handshakes_in_flight = 64;  // per thread, while connecting

// What the workers and the main thread share.
struct Shared {
  explicit Shared(const EchoArgs& a) : args(a) {}
  const EchoArgs& args;
  std::string payload;
  protocol::Opcode kind = protocol::Opcode::text;
  std::atomic<int> phase{connecting};
  std::uint64_t warm_end = 0;  // written before phase becomes `running`
  std::uint64_t end = 0;
  std::atomic<unsigned> opened{0};
  std::atomic<unsigned> failed{0};
  std::atomic<unsigned> deflated{0};
  std::mutex mu;
  std::string first_error;
  void error(std::string_view e) {
    std::lock_guard<std::mutex> lock(mu);
    if (first_error.empty()) first_error = std::string(e);
  }
};

// One worker's results, read after it has been joined.
struct Tally {
  std::uint64_t received = 0;      // echoes received in the measured window
  std::uint64_t bytes = 0;         // their payload bytes
  std::uint64_t sent = 0;          // messages sent in the measured window
  std::uint64_t all_received = 0;  // echoes received, warm-up included
  std::uint64_t mismatches = 0;    // an echo that differs from what was sent
  std::uint64_t unexpected = 0;    // an echo with nothing in flight
  std::uint64_t dropped = 0;       // connections lost while running
  Histogram latency;

  void merge(const Tally& o) {
    received += o.received;
    bytes += o.bytes;
    sent += o.sent;
    all_received += o.all_received;
    mismatches += o.mismatches;
    unexpected += o.unexpected;
    dropped += o.dropped;
    latency.merge(o.latency);
  }
  std::uint64_t errors() const { return mismatches + unexpected + dropped; }
};

// The round-trip bookkeeping both engines share: per connection, a ring of
// the send times of its messages in flight.
class EchoCore {
 public:
  EchoCore(Shared& s, LiveStats& live, std::size_t connections)
      : s_(s), live_(live), window_(s.args.pipeline), times_(connections * window_), head_(connections), count_(connections) {}

  // A message left connection `i` at `now`.
  void sent(std::size_t i, std::uint64_t now) {
    times_[i * window_ + (head_[i] + count_[i]) % window_] = now;
    ++count_[i];
    if (now >= s_.warm_end && now < s_.end) ++tally.sent;
  }

  // An echo arrived on `i` at `now`. True if the next message should go out.
  bool received(std::size_t i, std::uint64_t now, std::string_view payload) {
    ++tally.all_received;
    if (payload.size() != s_.payload.size() || std::memcmp(payload.data(), s_.payload.data(), payload.size()) != 0)
      ++tally.mismatches;
    if (count_[i] == 0) {
      ++tally.unexpected;
      return false;
    }
    const std::uint64_t t = times_[i * window_ + head_[i]];
    head_[i] = (head_[i] + 1) % window_;
    --count_[i];
    const std::uint64_t rtt = now > t ? now - t : 0;
    live_.record(rtt);
    if (now >= s_.warm_end && now < s_.end) {
      ++tally.received;
      tally.bytes += payload.size();
      tally.latency.record(rtt);
    }
    return now < s_.end;
  }

  unsigned window() const { return window_; }

  void publish(std::uint64_t now) {
    live_.messages.store(tally.all_received, std::memory_order_relaxed);
    live_.errors.store(tally.errors(), std::memory_order_relaxed);
    live_.maybe_publish(now);
  }

  Tally tally;

 private:
  Shared& s_;
  LiveStats& live_;
  unsigned window_;
  std::vector<std::uint64_t> times_;
  std::vector<std::uint32_t> head_;
  std::vector<std::uint32_t> count_;
};

class Worker {
 public:
  virtual ~Worker() = default;
  virtual void run() = 0;
  virtual const Tally& tally() const = 0;
};

// ---- the raw epoll engine --------------------------------------------------------

class RawWorker final : public Worker, public RawHandler {
 public:
  RawWorker(Shared& s, LiveStats& live, const RawTarget& target, unsigned count)
      : s_(s), live_(live), target_(target), count_(count), core_(s, live, count) {}

  const Tally& tally() const override { return core_.tally; }

  void run() override {
    RawOptions options;
    options.deflate = s_.args.deflate;
    engine_ = std::make_unique<RawEngine>(*this, options);
    connect_all();
    while (s_.phase.load(std::memory_order_acquire) == connecting) {
      engine_->poll(5'000'000);
      core_.publish(now_ns());
    }
    if (s_.phase.load(std::memory_order_acquire) == running) {
      std::uint64_t now = now_ns();
      for (RawConnection* c : conns_) {
        if (!c->is_open()) continue;
        for (unsigned w = 0; w < core_.window(); ++w) {
          c->send(s_.kind, s_.payload);
          core_.sent(c->user, now);
        }
      }
      while (s_.phase.load(std::memory_order_relaxed) == running) {
        now = now_ns();
        if (now >= s_.end) break;
        engine_->poll(std::min<std::uint64_t>(s_.end - now, 50'000'000));
        core_.publish(now);
      }
    }
    closing_ = true;
    core_.publish(now_ns());
    engine_->close_all(now_ns() + 2 * ns_per_s);
    engine_.reset();
  }

 private:
  void connect_all() {
    std::size_t started = 0;
    std::uint64_t last_check = now_ns();
    while (s_.phase.load(std::memory_order_acquire) == connecting && (started < count_ || engine_->pending_count())) {
      while (started < count_ && engine_->pending_count() < handshakes_in_flight) {
        ++started;
        int err = 0;
        RawConnection* c = engine_->connect(target_, nullptr, err);
        if (!c) {
          s_.error(std::string("cannot connect: ") + std::strerror(err));
          s_.failed.fetch_add(1);
          continue;
        }
        c->user = conns_.size();
        conns_.push_back(c);
      }
      engine_->poll(5'000'000);
      const std::uint64_t now = now_ns();
      if (now - last_check > 100'000'000) {
        last_check = now;
        engine_->expire(now);
      }
    }
  }

  void on_open(RawConnection& c) override {
    live_.open.fetch_add(1, std::memory_order_relaxed);
    if (c.compression_enabled()) s_.deflated.fetch_add(1);
    s_.opened.fetch_add(1);
  }

  void on_message(RawConnection& c, protocol::Opcode, std::string_view payload) override {
    const std::uint64_t now = engine_->read_time();
    if (core_.received(c.user, now, payload)) {
      c.send(s_.kind, s_.payload);
      core_.sent(c.user, now);
    }
  }

  void on_closed(RawConnection& c, bool opened, bool clean, std::string_view error) override {
    if (opened) live_.open.fetch_sub(1, std::memory_order_relaxed);
    if (closing_) return;
    std::string why =
        clean ? "the server closed the connection (" + std::to_string(c.peer_close_code()) + ")" : std::string(error);
    if (!opened) {
      s_.error(why);
      s_.failed.fetch_add(1);
    } else if (s_.phase.load(std::memory_order_acquire) == connecting) {
      s_.error(why);
      s_.opened.fetch_sub(1);
      s_.failed.fetch_add(1);
    } else {
      s_.error("connection lost: " + why);
      ++core_.tally.dropped;
    }
  }

  Shared& s_;
  LiveStats& live_;
  const RawTarget& target_;
  std::size_t count_;
  EchoCore core_;
  std::unique_ptr<RawEngine> engine_;
  std::vector<RawConnection*> conns_;
  bool closing_ = false;
};

// ---- net::EventLoop + net::connect ------------------------------------------------

class NetWorker final : public Worker {
 public:
  NetWorker(Shared& s, LiveStats& live, unsigned count) : s_(s), live_(live), count_(count), core_(s, live, count) {}

  const Tally& tally() const override { return core_.tally; }

  void run() override {
    net::EventLoop loop;
    loop_ = &loop;
    options_.deflate = s_.args.deflate;
    options_.timeouts.ping_interval = net::Millis{0};
    options_.tls.ca_file = s_.args.ca_file;
    options_.tls.verify_peer = !s_.args.insecure;
    handlers_.on_open = [this](net::Connection& c) {
      --in_flight_;
      live_.open.fetch_add(1, std::memory_order_relaxed);
      if (c.compression_enabled()) s_.deflated.fetch_add(1);
      s_.opened.fetch_add(1);
      launch_more();
    };
    handlers_.on_error = [this](std::string_view error) {
      --in_flight_;
      s_.error(error);
      s_.failed.fetch_add(1);
      launch_more();
    };
    handlers_.on_message = [this](net::Connection& c, protocol::Opcode, std::string_view payload) {
      const std::uint64_t now = now_ns();
      const auto i = reinterpret_cast<std::uintptr_t>(c.user_data);
      if (core_.received(i, now, payload)) {
        c.send(s_.payload, s_.kind);
        core_.sent(i, now);
      }
    };
    handlers_.on_close = [this](net::Connection&, std::uint16_t code, std::string_view reason) {
      live_.open.fetch_sub(1, std::memory_order_relaxed);
      ++closed_;
      if (closing_) return;
      const std::string why = "closed (" + std::to_string(code) + " " + std::string(reason) + ")";
      if (s_.phase.load(std::memory_order_acquire) == connecting) {
        s_.error(why);
        s_.opened.fetch_sub(1);
        s_.failed.fetch_add(1);
      } else {
        s_.error("connection lost: " + why);
        ++core_.tally.dropped;
      }
    };
    timer_ = std::make_unique<net::LoopTimer>(loop);
    launch_more();
    tick();
    loop.run();
    timer_.reset();
    conns_.clear();
  }

 private:
  void launch_more() {
    while (started_ < count_ && in_flight_ < handshakes_in_flight && !closing_) {
      auto c = net::connect(*loop_, s_.args.url, options_, handlers_);
      c->user_data = reinterpret_cast<void*>(static_cast<std::uintptr_t>(started_));
      conns_.push_back(std::move(c));
      ++started_;
      ++in_flight_;
    }
  }

  void tick() {
    const std::uint64_t now = now_ns();
    core_.publish(now);
    const int phase = s_.phase.load(std::memory_order_acquire);
    if (phase == running && !sending_ && now < s_.end) {
      sending_ = true;
      for (auto& c : conns_) {
        if (!c->is_open()) continue;
        const auto i = reinterpret_cast<std::uintptr_t>(c->user_data);
        for (unsigned w = 0; w < core_.window(); ++w) {
          c->send(s_.payload, s_.kind);
          core_.sent(i, now);
        }
      }
    }
    if (!closing_ && (phase == aborted || phase == closing || (phase == running && now >= s_.end))) {
      closing_ = true;
      close_deadline_ = now + 2 * ns_per_s;
      for (auto& c : conns_) {
        if (c->is_open()) c->close();
        else if (c->phase() != net::Connection::Phase::closed) c->terminate();
      }
    }
    if (closing_) {
      bool all_closed = true;
      for (auto& c : conns_) all_closed = all_closed && c->phase() == net::Connection::Phase::closed;
      if (all_closed || now >= close_deadline_) {
        for (auto& c : conns_) c->terminate();
        loop_->stop();
        return;
      }
    }
    // Wake often while connecting or closing, or precisely at the end.
    std::uint64_t next = 5'000'000;
    if (phase == running && !closing_) next = std::min<std::uint64_t>(s_.end > now ? s_.end - now : 0, 100'000'000);
    timer_->start(std::chrono::nanoseconds(next), [this] { tick(); });
  }

  Shared& s_;
  LiveStats& live_;
  std::size_t count_;
  EchoCore core_;
  net::EventLoop* loop_ = nullptr;
  net::ClientOptions options_;
  net::Handlers handlers_;
  std::unique_ptr<net::LoopTimer> timer_;
  std::vector<std::shared_ptr<net::Connection>> conns_;
  std::size_t started_ = 0;
  std::size_t in_flight_ = 0;
  std::size_t closed_ = 0;
  std::uint64_t close_deadline_ = 0;
  bool sending_ = false;
  bool closing_ = false;
};

// Printable, mildly compressible filler (valid UTF-8 for text messages).
std::string make_payload(std::size_t size) {
  static constexpr std::string_view words = "duplex websocket echo benchmark payload lorem ipsum dolor sit amet ";
  std::string p(size, ' ');
  std::uint32_t x = 2463534242u;
  for (std::size_t i = 0; i < size;) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    const std::size_t start = x % words.size();
    for (std::size_t j = start; j < words.size() && i < size; ++j) p[i++] = words[j];
  }
  return p;
}

// Long on purpose: one benchmark run top to bottom (checks, connecting, warm-
// up, the measured window, the report), each phase reading the counters of the
// one before.
int run_echo(const EchoArgs& args) {
  const auto bench_target = open_bench_target("echo", args.url, args.engine);
  if (!bench_target) return exit_usage;
  const std::string& engine = bench_target->engine;
  const RawTarget& target = bench_target->raw;
  if (args.server_pid > 0 && read_process_cpu_seconds(args.server_pid) < 0) {
    std::fprintf(stderr, "duplex bench echo: cannot read /proc/%ld/stat (--server-pid)\n", args.server_pid);
    return exit_usage;
  }
  ProcessWatch server(args.server_pid > 0 ? args.server_pid : 0);
  const std::uint64_t fd_limit = raise_open_file_limit();
  if (args.connections + 32 > fd_limit) {
    std::fprintf(stderr, "duplex bench echo: %u connections need more file descriptors than the limit (%llu)\n",
                 args.connections, static_cast<unsigned long long>(fd_limit));
    return exit_usage;
  }

  Shared s(args);
  s.payload = make_payload(args.size);
  s.kind = args.binary ? protocol::Opcode::binary : protocol::Opcode::text;
  const unsigned threads = std::max(1u, std::min(args.threads, args.connections));
  std::vector<std::unique_ptr<LiveStats>> live;
  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned t = 0; t < threads; ++t) {
    live.push_back(std::make_unique<LiveStats>());
    const unsigned count = args.connections / threads + (t < args.connections % threads ? 1 : 0);
    if (engine == "raw")
      workers.push_back(std::make_unique<RawWorker>(s, *live.back(), target, count));
    else
      workers.push_back(std::make_unique<NetWorker>(s, *live.back(), count));
  }
  ProgressLine progress(args.output.quiet);
  const std::uint64_t t0 = now_ns();
  std::vector<std::thread> pool;
  for (auto& w : workers) pool.emplace_back([&w] { w->run(); });
  auto join_all = [&] {
    for (auto& th : pool) th.join();
  };

  // Open every connection before the clock starts.
  std::uint64_t next_progress = t0 + ns_per_s;
  while (s.opened.load() + s.failed.load() < args.connections) {
    sleep_until_ns(std::min(next_progress, now_ns() + 20'000'000));
    const std::uint64_t now = now_ns();
    if (now >= next_progress) {
      next_progress += ns_per_s;
      progress.update(progress_prefix(static_cast<double>(now - t0) / 1e9) + "connecting " +
                      with_commas(s.opened.load()) + "/" + with_commas(args.connections));
    }
  }
  if (s.failed.load() > 0) {
    s.phase.store(aborted, std::memory_order_release);
    join_all();
    progress.done();
    std::fprintf(stderr, "duplex bench echo: %u of %u connections failed: %s\n", s.failed.load(), args.connections,
                 s.first_error.c_str());
    return exit_usage;
  }

  // The run: warm-up, then the measured window.
  const std::uint64_t start = now_ns();
  s.warm_end = start + seconds_to_ns(args.timing.warmup);
  s.end = s.warm_end + seconds_to_ns(args.timing.duration);
  CpuWindow window(server, args.server_pid > 0);
  if (args.timing.warmup <= 0) window.begin();
  s.phase.store(running, std::memory_order_release);

  next_progress = start + ns_per_s;
  std::uint64_t last_messages = 0, last_time = start;
  LiveTotals totals;
  Histogram progress_hist;
  for (;;) {
    std::uint64_t wake = std::min(next_progress, s.end);
    if (!window.begun()) wake = std::min(wake, s.warm_end);
    sleep_until_ns(wake);
    const std::uint64_t now = now_ns();
    if (!window.begun() && now >= s.warm_end) window.begin();
    if (now >= s.end) {
      window.end();
      break;
    }
    if (now >= next_progress) {
      next_progress += ns_per_s;
      collect_live(live, totals);
      const double dt = static_cast<double>(now - last_time) / 1e9;
      const double rate = static_cast<double>(totals.messages - last_messages) / dt;
      last_messages = totals.messages;
      last_time = now;
      std::string line = progress_prefix(static_cast<double>(now - start) / 1e9) + format_rate(rate) + " msg/s  p50 " +
                         format_ms(totals.interval.percentile(50)) + "  p99 " +
                         format_ms(totals.interval.percentile(99)) + "  conns " + with_commas(totals.open) + "/" +
                         with_commas(args.connections);
      if (totals.errors) line += "  errors " + with_commas(totals.errors);
      if (now < s.warm_end) line += "  (warm-up)";
      progress.update(line);
    }
  }
  s.phase.store(closing, std::memory_order_release);
  join_all();
  progress.done();

  Tally total;
  for (auto& w : workers) total.merge(w->tally());
  const double seconds = args.timing.duration;
  Report report("duplex bench echo " + args.url);
  report.text("mode", "mode", "echo");
  report.text("url", "url", args.url);
  report.text("engine", "engine", engine);
  report.integer("connections", "connections", args.connections);
  report.integer("message_size", "message size", args.size, "B");
  report.text("message_type", "message type", args.binary ? "binary" : "text");
  report.boolean("deflate", "deflate offered", args.deflate);
  if (args.deflate) report.integer("deflate_negotiated", "deflate negotiated", s.deflated.load(), "connections");
  report.integer("pipeline", "pipeline (in flight/conn)", args.pipeline);
  report.integer("threads", "generator threads", threads);
  report.number("warmup_s", "warm-up", args.timing.warmup, 1, "s");
  report.number("duration_s", "measured", seconds, 1, "s");
  report.integer("messages", "echoes received", total.received);
  report.integer("sent", "messages sent", total.sent);
  report.rate("msgs_per_sec", "msgs/s", static_cast<double>(total.received) / seconds);
  const double bytes_per_sec = static_cast<double>(total.bytes) / seconds;
  report.raw("bytes_per_sec", "bytes/s (echoed payload)", std::to_string(static_cast<std::uint64_t>(bytes_per_sec)),
             format_bytes_rate(bytes_per_sec));
  report.latencies("rtt", "round trip", total.latency);
  report.integer("errors", "errors", total.errors());
  if (total.errors()) {
    report.integer("errors_dropped", "  connections lost", total.dropped);
    report.integer("errors_mismatch", "  wrong echoes", total.mismatches);
    report.integer("errors_unexpected", "  unexpected echoes", total.unexpected);
  }
  add_generator_rows(report, window.self_cpu(), seconds, threads);
  if (args.server_pid > 0)
    add_server_rows(report, args.server_pid, window.server_cpu(), window.server_rss(), seconds, total.received,
                    "msgs_per_server_cpu_s", "msgs per server-CPU-second");
  if (!s.first_error.empty()) report.note("first error: " + s.first_error);
  report.print(args.output.json);
  if (!s.first_error.empty() && args.output.json)
    std::fprintf(stderr, "duplex bench echo: first error: %s\n", s.first_error.c_str());
  return total.errors() ? exit_errors : exit_ok;
}

}  // namespace

std::function<int()> add_echo_mode(CLI::App& bench) {
  auto args = std::make_shared<EchoArgs>();
  CLI::App* cmd = bench.add_subcommand(
      "echo",
      "Round trips against an echo server (duplex echo): msgs/s, bytes/s, round-trip latency.\n"
      "Each connection keeps --pipeline messages in flight. With --server-pid, also the server's CPU\n"
      "seconds in the measured window, msgs per server-CPU-second (the fair comparison) and its RSS.\n"
      "For clean figures pin the server and the generator to different cores (taskset -c).");
  cmd->add_option("url", args->url, "ws:// (or wss://) URL of the echo server")->required();
  cmd->add_option("-c,--connections", args->connections, "Connections")->capture_default_str()->check(CLI::Range(1u, 1'000'000u));
  cmd->add_option("-s,--size", args->size, "Message size in bytes")->capture_default_str()->check(CLI::Range(std::size_t{0}, std::size_t{16u << 20}));
  cmd->add_flag("--binary", args->binary, "Send binary messages (default text)");
  cmd->add_flag("--deflate", args->deflate, "Offer permessage-deflate");
  cmd->add_option("-p,--pipeline", args->pipeline, "Messages in flight per connection (1 = ping-pong)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 65536u));
  add_timing_options(cmd, args->timing);
  cmd->add_option("-t,--threads", args->threads, "Generator threads, one event loop each")->capture_default_str()->check(CLI::Range(1u, 256u));
  cmd->add_option("--server-pid", args->server_pid, "Server process to read CPU time and RSS of (/proc/PID)");
  cmd->add_option("--engine", args->engine,
                  "Client engine: raw (epoll on the protocol core, ws:// only), net (net::connect, also wss://), "
                  "auto (raw for ws://, net for wss://)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "raw", "net"}));
  cmd->add_option("--ca-file", args->ca_file, "PEM CA bundle to verify a wss:// server with");
  cmd->add_flag("--insecure", args->insecure, "Do not verify the wss:// server certificate");
  add_output_options(cmd, args->output);
  return [args] { return run_echo(*args); };
}

}  // namespace duplex::cli::bench
