// duplex bench fanout: publishers send timestamped messages at a fixed total
// rate; subscribers record publish-to-deliver latency and count deliveries
// against what the channels' subscriber counts say they should get.
//
// Raw fan-out runs against `duplex echo --broadcast`, which sends a message
// to every connection on the same request path: K channels are K paths
// (URL path + "/ch/0" ... "/ch/K-1"; the URL as given when K = 1).
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include "bench_common.hpp"
#include "bench_modes.hpp"
#include "bench_raw.hpp"
#include "duplex/net/url.hpp"

namespace duplex::cli::bench {

namespace {

struct FanoutArgs {
  std::string url;
  unsigned subscribers = 1000;
  unsigned channels = 1;
  unsigned publishers = 1;
  double rate = 1000;
  std::size_t size = 64;
  unsigned threads = 1;
  double drain = 2;
  long server_pid = 0;
  bool hub = false;
  std::string hub_namespace = "bench";
  TimingArgs timing;
  OutputArgs output;
};

enum Phase : int { connecting, running, closing, aborted };
constexpr std::size_t header_size = 16;  // 8-byte send time (CLOCK_MONOTONIC ns) + 8-byte sequence
constexpr std::size_t handshakes_in_flight = 128;  // per thread, while connecting
constexpr std::uint64_t publisher_tag = std::uint64_t{1} << 63;  // RawConnection::user of publisher connections

struct alignas(64) WindowCounter {
  std::atomic<std::uint64_t> value{0};
};

struct Shared {
  explicit Shared(const FanoutArgs& a) : args(a), sent_in_window(a.channels) {}
  const FanoutArgs& args;
  std::vector<RawTarget> channel_targets;      // one per channel
  std::vector<std::uint64_t> subscribers_on;   // per channel
  std::vector<WindowCounter> sent_in_window;   // per channel: messages published in the measured window
  std::atomic<int> phase{connecting};
  std::uint64_t warm_end = 0;  // written before phase becomes `running`
  std::uint64_t end = 0;
  std::atomic<unsigned> opened{0};
  std::atomic<unsigned> failed{0};
  std::mutex mu;
  std::string first_error;
  void error(std::string_view e) {
    std::lock_guard<std::mutex> lock(mu);
    if (first_error.empty()) first_error = std::string(e);
  }
  std::uint64_t expected() const {
    std::uint64_t n = 0;
    for (std::size_t c = 0; c < sent_in_window.size(); ++c)
      n += sent_in_window[c].value.load(std::memory_order_relaxed) * subscribers_on[c];
    return n;
  }
};

struct Tally {
  std::uint64_t received = 0;   // deliveries of messages published in the window
  std::uint64_t published = 0;  // messages published in the window
  std::uint64_t malformed = 0;  // deliveries too short to carry the header
  std::uint64_t dropped = 0;    // connections lost while running
  Histogram latency;
  void merge(const Tally& o) {
    received += o.received;
    published += o.published;
    malformed += o.malformed;
    dropped += o.dropped;
    latency.merge(o.latency);
  }
};

// One publisher: its own connections (one per channel it serves), paced
// evenly at rate/P, round-robin over its channels.
struct Publisher {
  std::vector<RawConnection*> conns;
  std::uint64_t interval_ns = 0;
  std::uint64_t next_ns = 0;
  std::uint64_t seq = 0;
  std::size_t rr = 0;
};

class Worker final : public RawHandler {
 public:
  Worker(Shared& s, LiveStats& live, WindowCounter& received, unsigned index, unsigned threads)
      : s_(s), live_(live), window_received_(received), index_(index), threads_(threads) {}

  const Tally& tally() const { return tally_; }

  void run() {
    RawOptions options;
    engine_ = std::make_unique<RawEngine>(*this, options);
    payload_.assign(s_.args.size, 'x');
    plan();
    connect_all();
    while (s_.phase.load(std::memory_order_acquire) == connecting) {
      engine_->poll(5'000'000);
      publish_stats(now_ns());
    }
    if (s_.phase.load(std::memory_order_acquire) == running) {
      // Stagger the publishers of all threads across one interval.
      const unsigned p_total = s_.args.publishers;
      for (std::size_t k = 0; k < publishers_.size(); ++k) {
        Publisher& p = publishers_[k];
        p.interval_ns = static_cast<std::uint64_t>(1e9 * p_total / s_.args.rate);
        const std::uint64_t global = publisher_ids_[k];
        p.next_ns = s_.warm_end - seconds_to_ns(s_.args.timing.warmup) + p.interval_ns * global / p_total;
      }
      while (s_.phase.load(std::memory_order_relaxed) == running) {
        std::uint64_t now = now_ns();
        std::uint64_t next_due = now + 50'000'000;
        if (now < s_.end) {
          for (auto& p : publishers_) {
            while (p.next_ns <= now && p.next_ns < s_.end) {
              publish(p);
              p.next_ns += p.interval_ns;
            }
            next_due = std::min(next_due, p.next_ns);
          }
          engine_->flush_all();
        }
        now = now_ns();
        engine_->poll(next_due > now ? next_due - now : 0);
        publish_stats(now_ns());
      }
    }
    closing_ = true;
    publish_stats(now_ns());
    engine_->close_all(now_ns() + 2 * ns_per_s);
    engine_.reset();
  }

 private:
  // Which connections this thread owns: subscriber i if i % T == index,
  // publisher p if p % T == index.
  void plan() {
    const unsigned K = s_.args.channels, P = s_.args.publishers;
    for (unsigned i = index_; i < s_.args.subscribers; i += threads_) sub_channels_.push_back(i % K);
    for (unsigned p = index_; p < P; p += threads_) {
      publishers_.emplace_back();
      publisher_ids_.push_back(p);
      std::vector<unsigned> channels;
      if (K >= P) {
        for (unsigned c = p; c < K; c += P) channels.push_back(c);
      } else {
        channels.push_back(p % K);
      }
      pub_channels_.push_back(std::move(channels));
    }
  }

  void connect_all() {
    struct Pending {
      unsigned channel;
      std::uint64_t user;
    };
    std::vector<Pending> todo;
    for (unsigned c : sub_channels_) todo.push_back({c, todo.size()});
    for (std::size_t k = 0; k < pub_channels_.size(); ++k)
      for (unsigned c : pub_channels_[k]) todo.push_back({c, publisher_tag | k});
    std::size_t started = 0;
    std::uint64_t last_check = now_ns();
    while (s_.phase.load(std::memory_order_acquire) == connecting && (started < todo.size() || engine_->pending_count())) {
      while (started < todo.size() && engine_->pending_count() < handshakes_in_flight) {
        const Pending& t = todo[started++];
        int err = 0;
        RawConnection* c = engine_->connect(s_.channel_targets[t.channel], nullptr, err);
        if (!c) {
          s_.error(std::string("cannot connect: ") + std::strerror(err));
          s_.failed.fetch_add(1);
          continue;
        }
        c->tag = t.channel;
        c->user = t.user;
        all_.push_back(c);
        if (t.user & publisher_tag) publishers_[t.user & ~publisher_tag].conns.push_back(c);
      }
      engine_->poll(5'000'000);
      const std::uint64_t now = now_ns();
      if (now - last_check > 100'000'000) {
        last_check = now;
        engine_->expire(now);
      }
    }
  }

  void publish(Publisher& p) {
    if (p.conns.empty()) return;
    RawConnection* c = p.conns[p.rr++ % p.conns.size()];
    if (!c->is_open()) return;
    const std::uint64_t now = now_ns();
    const std::uint64_t seq = ++p.seq;
    if (s_.args.hub) {
      // A duplex.v1 publish whose data is a JSON string "t<send ns>.<seq>xxx…" of --size bytes.
      hub_command_.assign("{\"type\":\"publish\",\"id\":");
      hub_command_ += std::to_string(seq);
      hub_command_ += ",\"channel\":\"";
      hub_command_ += s_.args.hub_namespace;
      hub_command_ += ':';
      hub_command_ += std::to_string(c->tag);
      hub_command_ += "\",\"data\":\"t";
      const std::size_t data_start = hub_command_.size() - 1;
      hub_command_ += std::to_string(now);
      hub_command_ += '.';
      hub_command_ += std::to_string(seq);
      while (hub_command_.size() - data_start < s_.args.size) hub_command_ += 'x';
      hub_command_ += "\"}";
      c->send(protocol::Opcode::text, hub_command_);
    } else {
      std::memcpy(payload_.data(), &now, 8);
      std::memcpy(payload_.data() + 8, &seq, 8);
      c->send(protocol::Opcode::binary, payload_);
    }
    if (now >= s_.warm_end && now < s_.end) {
      s_.sent_in_window[c->tag].value.fetch_add(1, std::memory_order_relaxed);
      ++tally_.published;
    }
  }

  void on_open(RawConnection& c) override {
    live_.open.fetch_add(1, std::memory_order_relaxed);
    s_.opened.fetch_add(1);
    if (!s_.args.hub) return;
    // Without a token in the URL the first command must authenticate
    // (anonymous); with one, a second authenticate is answered with an error
    // that we ignore. Subscribers then subscribe to their channel.
    c.send(protocol::Opcode::text, "{\"type\":\"authenticate\",\"id\":1}");
    if (c.user & publisher_tag) return;
    c.send(protocol::Opcode::text, "{\"type\":\"subscribe\",\"id\":2,\"channel\":\"" + s_.args.hub_namespace + ":" +
                                       std::to_string(c.tag) + "\"}");
  }

  // The send time from a hub `message` push ("data":"t<ns>.<seq>…"); 0 if
  // the frame is something else (a reply, a join).
  static std::uint64_t hub_sent_at(std::string_view payload) {
    if (payload.find("\"type\":\"message\"") == std::string_view::npos) return 0;
    const auto at = payload.find("\"data\":\"t");
    if (at == std::string_view::npos) return 0;
    std::uint64_t v = 0;
    for (std::size_t i = at + 9; i < payload.size() && payload[i] >= '0' && payload[i] <= '9'; ++i)
      v = v * 10 + static_cast<std::uint64_t>(payload[i] - '0');
    return v;
  }

  void on_message(RawConnection& c, protocol::Opcode, std::string_view payload) override {
    if (c.user & publisher_tag) return;  // the broadcast includes the sender: not a delivery
    std::uint64_t sent_at = 0;
    if (s_.args.hub) {
      sent_at = hub_sent_at(payload);
      if (sent_at == 0) return;  // a reply or another push
    } else {
      if (payload.size() < header_size) {
        ++tally_.malformed;
        return;
      }
      std::memcpy(&sent_at, payload.data(), 8);
    }
    const std::uint64_t now = engine_->read_time();
    const std::uint64_t latency = now > sent_at ? now - sent_at : 0;
    ++all_received_;
    live_.record(latency);
    if (sent_at >= s_.warm_end && sent_at < s_.end) {
      ++tally_.received;
      tally_.latency.record(latency);
    }
  }

  void on_closed(RawConnection& c, bool opened, bool clean, std::string_view error) override {
    if (opened) live_.open.fetch_sub(1, std::memory_order_relaxed);
    if (closing_) return;
    const std::string why =
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
      ++tally_.dropped;
    }
  }

  void publish_stats(std::uint64_t now) {
    live_.messages.store(all_received_, std::memory_order_relaxed);
    live_.errors.store(tally_.dropped + tally_.malformed, std::memory_order_relaxed);
    window_received_.value.store(tally_.received, std::memory_order_relaxed);
    live_.maybe_publish(now);
  }

  Shared& s_;
  LiveStats& live_;
  WindowCounter& window_received_;
  unsigned index_, threads_;
  std::unique_ptr<RawEngine> engine_;
  std::vector<unsigned> sub_channels_;
  std::vector<std::vector<unsigned>> pub_channels_;
  std::vector<Publisher> publishers_;
  std::vector<unsigned> publisher_ids_;
  std::vector<RawConnection*> all_;
  std::string payload_;
  std::string hub_command_;
  std::uint64_t all_received_ = 0;
  Tally tally_;
  bool closing_ = false;
};

// URL path + "/ch/i", keeping any query after it.
std::string channel_target(const std::string& target, unsigned i) {
  const auto q = target.find('?');
  std::string path = target.substr(0, q);
  const std::string query = q == std::string::npos ? "" : target.substr(q);
  while (!path.empty() && path.back() == '/') path.pop_back();
  return path + "/ch/" + std::to_string(i) + query;
}

// Long on purpose: one benchmark run top to bottom (checks, subscribing,
// publishing, the measured window, the report), each phase reading the
// counters of the one before.
int run_fanout(const FanoutArgs& args) {
  if (args.size < header_size) {
    std::fprintf(stderr, "duplex bench fanout: --size must be at least %zu (timestamp + sequence)\n", header_size);
    return exit_usage;
  }
  const auto bench_target = open_bench_target("fanout", args.url, "raw");
  if (!bench_target) return exit_usage;
  const RawTarget& base = bench_target->raw;
  if (args.server_pid > 0 && read_process_cpu_seconds(args.server_pid) < 0) {
    std::fprintf(stderr, "duplex bench fanout: cannot read /proc/%ld/stat (--server-pid)\n", args.server_pid);
    return exit_usage;
  }
  ProcessWatch server(args.server_pid > 0 ? args.server_pid : 0);
  Shared s(args);
  const unsigned K = args.channels;
  s.subscribers_on.assign(K, 0);
  for (unsigned i = 0; i < args.subscribers; ++i) ++s.subscribers_on[i % K];
  for (unsigned c = 0; c < K; ++c) {
    RawTarget t = base;
    if (K > 1 && !args.hub) t.path = channel_target(base.path, c);  // the hub names channels in commands
    s.channel_targets.push_back(std::move(t));
  }
  const unsigned publisher_conns = args.publishers <= K ? K : args.publishers;
  const unsigned total_conns = args.subscribers + publisher_conns;
  const std::uint64_t fd_limit = raise_open_file_limit();
  if (total_conns + 32 > fd_limit) {
    std::fprintf(stderr,
                 "duplex bench fanout: %u connections need more file descriptors than the limit (%llu); "
                 "split the subscribers over several processes\n",
                 total_conns, static_cast<unsigned long long>(fd_limit));
    return exit_usage;
  }

  const unsigned threads = std::max(1u, std::min(args.threads, total_conns));
  std::vector<std::unique_ptr<LiveStats>> live;
  std::vector<WindowCounter> window_received(threads);
  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned t = 0; t < threads; ++t) {
    live.push_back(std::make_unique<LiveStats>());
    workers.push_back(std::make_unique<Worker>(s, *live.back(), window_received[t], t, threads));
  }
  ProgressLine progress(args.output.quiet);
  const std::uint64_t t0 = now_ns();
  std::vector<std::thread> pool;
  for (auto& w : workers) pool.emplace_back([&w] { w->run(); });
  auto join_all = [&] {
    for (auto& th : pool) th.join();
  };

  std::uint64_t next_progress = t0 + ns_per_s;
  while (s.opened.load() + s.failed.load() < total_conns) {
    sleep_until_ns(std::min(next_progress, now_ns() + 20'000'000));
    const std::uint64_t now = now_ns();
    if (now >= next_progress) {
      next_progress += ns_per_s;
      progress.update(progress_prefix(static_cast<double>(now - t0) / 1e9) + "connecting " +
                      with_commas(s.opened.load()) + "/" + with_commas(total_conns));
    }
  }
  if (s.failed.load() > 0) {
    s.phase.store(aborted, std::memory_order_release);
    join_all();
    progress.done();
    std::fprintf(stderr, "duplex bench fanout: %u of %u connections failed: %s\n", s.failed.load(), total_conns,
                 s.first_error.c_str());
    return exit_usage;
  }

  const std::uint64_t start = now_ns();
  s.warm_end = start + seconds_to_ns(args.timing.warmup);
  s.end = s.warm_end + seconds_to_ns(args.timing.duration);
  CpuWindow window(server, args.server_pid > 0);
  if (args.timing.warmup <= 0) window.begin();
  s.phase.store(running, std::memory_order_release);

  auto received_in_window = [&] {
    std::uint64_t n = 0;
    for (auto& w : window_received) n += w.value.load(std::memory_order_relaxed);
    return n;
  };
  next_progress = start + ns_per_s;
  std::uint64_t last_messages = 0, last_time = start;
  LiveTotals totals;
  const std::uint64_t drain_deadline = s.end + seconds_to_ns(args.drain);
  bool ended = false;
  for (;;) {
    std::uint64_t wake = std::min(next_progress, ended ? now_ns() + 20'000'000 : s.end);
    if (!window.begun()) wake = std::min(wake, s.warm_end);
    sleep_until_ns(wake);
    const std::uint64_t now = now_ns();
    if (!window.begun() && now >= s.warm_end) window.begin();
    if (!ended && now >= s.end) {
      ended = true;
      window.end();
    }
    // After the window: wait for the deliveries still in flight (or the drain time).
    if (ended && (received_in_window() >= s.expected() || now >= drain_deadline)) break;
    if (now >= next_progress) {
      next_progress += ns_per_s;
      collect_live(live, totals);
      const double dt = static_cast<double>(now - last_time) / 1e9;
      const double rate = static_cast<double>(totals.messages - last_messages) / dt;
      last_messages = totals.messages;
      last_time = now;
      std::string line = progress_prefix(static_cast<double>(now - start) / 1e9) + format_rate(rate) +
                         " deliveries/s  p50 " + format_ms(totals.interval.percentile(50)) + "  p99 " +
                         format_ms(totals.interval.percentile(99)) + "  conns " + with_commas(totals.open) + "/" +
                         with_commas(total_conns);
      if (totals.errors) line += "  errors " + with_commas(totals.errors);
      if (now < s.warm_end) line += "  (warm-up)";
      if (ended) line += "  (draining)";
      progress.update(line);
    }
  }
  s.phase.store(closing, std::memory_order_release);
  join_all();
  progress.done();

  Tally total;
  for (auto& w : workers) total.merge(w->tally());
  const std::uint64_t expected = s.expected();
  const std::uint64_t lost = expected > total.received ? expected - total.received : 0;
  const std::uint64_t extra = total.received > expected ? total.received - expected : 0;
  const double seconds = args.timing.duration;
  Report report("duplex bench fanout " + args.url);
  report.text("mode", "mode", "fanout");
  report.text("url", "url", args.url);
  report.integer("subscribers", "subscribers", args.subscribers);
  report.integer("channels", "channels", K);
  report.integer("publishers", "publishers", args.publishers);
  report.integer("publisher_connections", "publisher connections", publisher_conns);
  report.rate("rate_target", "publish rate (set)", args.rate, "msg/s");
  report.rate("rate_actual", "publish rate (achieved)", static_cast<double>(total.published) / seconds, "msg/s");
  report.integer("message_size", "message size", args.size, "B");
  report.integer("threads", "generator threads", threads);
  report.number("warmup_s", "warm-up", args.timing.warmup, 1, "s");
  report.number("duration_s", "measured", seconds, 1, "s");
  report.integer("published", "messages published", total.published);
  report.integer("deliveries_expected", "deliveries expected", expected);
  report.integer("deliveries_received", "deliveries received", total.received);
  report.integer("deliveries_lost", "deliveries lost (by end of drain)", lost);
  report.number("loss_percent", "loss", expected ? 100.0 * static_cast<double>(lost) / static_cast<double>(expected) : 0.0,
                4, "%");
  if (extra) report.integer("deliveries_extra", "deliveries beyond expected", extra);
  report.rate("deliveries_per_sec", "deliveries/s", static_cast<double>(total.received) / seconds);
  report.latencies("latency", "publish->deliver", total.latency);
  report.integer("errors", "errors", total.dropped + total.malformed);
  add_generator_rows(report, window.self_cpu(), seconds, threads);
  if (args.server_pid > 0)
    add_server_rows(report, args.server_pid, window.server_cpu(), window.server_rss(), seconds,
                    total.received, "deliveries_per_server_cpu_s", "deliveries per server-CPU-second");
  if (!s.first_error.empty()) report.note("first error: " + s.first_error);
  report.print(args.output.json);
  if (!s.first_error.empty() && args.output.json)
    std::fprintf(stderr, "duplex bench fanout: first error: %s\n", s.first_error.c_str());
  return (lost || extra || total.dropped || total.malformed) ? exit_errors : exit_ok;
}

}  // namespace

std::function<int()> add_fanout_mode(CLI::App& bench) {
  auto args = std::make_shared<FanoutArgs>();
  CLI::App* cmd = bench.add_subcommand(
      "fanout",
      "Fan-out: P publishers send timestamped messages at --rate in total, N subscribers record\n"
      "publish->deliver latency; reports deliveries/s, expected vs received deliveries (loss) and\n"
      "latency percentiles. Raw fan-out targets `duplex echo --broadcast` (a message goes to every\n"
      "connection on the same path): with --channels K > 1 connections go to URL path + /ch/0 .. /ch/K-1,\n"
      "subscriber i on channel i % K; each publisher serves its share of the channels round-robin.");
  cmd->add_option("url", args->url, "ws:// URL of the broadcast server")->required();
  cmd->add_option("-n,--subscribers", args->subscribers, "Subscriber connections")->capture_default_str()->check(CLI::Range(1u, 1'000'000u));
  cmd->add_option("-k,--channels", args->channels, "Channels (paths)")->capture_default_str()->check(CLI::Range(1u, 100'000u));
  cmd->add_option("-P,--publishers", args->publishers, "Publishers, each on its own connection(s)")->capture_default_str()->check(CLI::Range(1u, 10'000u));
  cmd->add_option("-r,--rate", args->rate, "Messages per second published, in total (evenly paced)")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 1e7));
  cmd->add_option("-s,--size", args->size,
                  "Message size in bytes (at least 16: send time in CLOCK_MONOTONIC ns + sequence)")
      ->capture_default_str();
  add_timing_options(cmd, args->timing);
  cmd->add_option("--drain", args->drain, "Seconds to wait after the window for deliveries still in flight")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 600.0));
  cmd->add_option("-t,--threads", args->threads, "Generator threads, one event loop each")->capture_default_str()->check(CLI::Range(1u, 256u));
  cmd->add_option("--server-pid", args->server_pid, "Server process to read CPU time and RSS of (/proc/PID)");
  cmd->add_flag("--hub", args->hub,
                "Fan-out through a duplex serve hub (URL ws://HOST:PORT/connection/websocket[?token=T]): "
                "subscribers subscribe to NAMESPACE:i, publishers publish JSON; the hub must allow the namespace "
                "for the generator (anonymous or the token's user) and a publish rate above --rate/--publishers");
  cmd->add_option("--hub-namespace", args->hub_namespace, "Hub mode: channel namespace")->capture_default_str();
  add_output_options(cmd, args->output);
  return [args] { return run_fanout(*args); };
}

}  // namespace duplex::cli::bench
