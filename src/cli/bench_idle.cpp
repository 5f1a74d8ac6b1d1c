// duplex bench idle: memory per idle connection. Opens N connections (at a
// bounded concurrency) spread over source addresses 127.0.0.1 .. 127.0.0.A,
// holds them until the server's RSS settles, and reports (after - before) / N.
// Runs on the raw engine: net::connect cannot bind a source address.
#include <arpa/inet.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <memory>

#include "bench_common.hpp"
#include "bench_modes.hpp"
#include "bench_raw.hpp"
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
  OutputArgs output;
};

class Idle final : public RawHandler {
 public:
  std::uint64_t opened = 0, failed = 0, lost = 0;
  std::string first_error;
  bool closing = false;

 private:
  void on_open(RawConnection&) override { ++opened; }
  void on_closed(RawConnection&, bool was_open, bool clean, std::string_view error) override {
    if (closing) return;
    const std::string why = clean ? "the server closed the connection" : std::string(error);
    if (first_error.empty()) first_error = why;
    if (was_open) ++lost;
    else ++failed;
  }
};

int run_idle(const IdleArgs& args) {
  if (args.server_pid <= 0) {
    std::fprintf(stderr, "duplex bench idle: --server-pid is required (the figure is the server's memory)\n");
    return exit_usage;
  }
  const auto bench_target = open_bench_target("idle", args.url, "raw");
  if (!bench_target) return exit_usage;
  const RawTarget& target = bench_target->raw;
  if (args.source_addresses > 1 && target.addr.ss_family != AF_INET) {
    std::fprintf(stderr, "duplex bench idle: --source-addresses needs an IPv4 server address\n");
    return exit_usage;
  }
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
  std::vector<sockaddr_in> sources;
  for (unsigned a = 0; a < args.source_addresses; ++a) {
    sockaddr_in src{};
    src.sin_family = AF_INET;
    src.sin_port = 0;
    src.sin_addr.s_addr = htonl((127u << 24) | (a + 1));
    sources.push_back(src);
  }

  Idle idle;
  RawEngine engine(idle, RawOptions{}, 64u << 10);
  const long self_rss_before = self.rss_kib();
  ProgressLine progress(args.output.quiet);
  const std::uint64_t start = now_ns();
  std::uint64_t next_progress = start + ns_per_s, last_check = start;
  std::string stop_reason;
  unsigned started = 0;
  auto progress_line = [&](std::uint64_t now, const std::string& what) {
    progress.update(progress_prefix(static_cast<double>(now - start) / 1e9) + what + "  open " +
                    with_commas(engine.open_count()) + "/" + with_commas(args.connections) + "  server RSS " +
                    format_kib(static_cast<double>(server.rss_kib())));
  };

  // Open them all, at most --concurrency handshakes at a time.
  while ((started < args.connections && stop_reason.empty()) || engine.pending_count() > 0) {
    while (started < args.connections && stop_reason.empty() && engine.pending_count() < args.concurrency) {
      const sockaddr_in* source = args.source_addresses > 1 ? &sources[started % sources.size()] : nullptr;
      int err = 0;
      if (!engine.connect(target, source, err)) {
        if (err == EMFILE || err == ENFILE) {
          stop_reason = std::string("socket(): ") + std::strerror(err) + " after " + with_commas(engine.live_count()) +
                        " connections (open-file limit " + with_commas(fd_limit) + ")";
        } else if (err == EADDRNOTAVAIL || err == EADDRINUSE) {
          stop_reason = std::string("out of source ports: ") + std::strerror(err) + " after " +
                        with_commas(engine.live_count()) + " connections; add --source-addresses";
        } else {
          stop_reason = std::string("cannot connect: ") + std::strerror(err);
        }
        break;
      }
      ++started;
    }
    engine.poll(10'000'000);
    const std::uint64_t now = now_ns();
    if (now - last_check > 200'000'000) {
      last_check = now;
      engine.expire(now);
    }
    if (now >= next_progress) {
      next_progress += ns_per_s;
      progress_line(now, "opening " + with_commas(started));
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
    engine.poll(50'000'000);  // answers the server's pings, notices drops
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
  const std::size_t held = engine.open_count();
  idle.closing = true;
  progress_line(now_ns(), "closing");
  engine.close_all(now_ns() + 10 * ns_per_s);
  progress.done();

  const double delta = server_gone ? std::nan("") : static_cast<double>(rss_after - rss_before);
  Report report("duplex bench idle " + args.url);
  report.text("mode", "mode", "idle");
  report.text("url", "url", args.url);
  report.integer("connections_requested", "connections requested", args.connections);
  report.integer("connections_opened", "connections opened", idle.opened);
  report.integer("connections_held", "connections held at the end", held);
  report.integer("failed", "failed to open", idle.failed);
  report.integer("lost", "lost while held", idle.lost);
  report.integer("source_addresses", "source addresses", args.source_addresses);
  report.number("open_s", "time to open", open_seconds, 2, "s");
  report.rate("opens_per_sec", "opens/s", open_seconds > 0 ? static_cast<double>(idle.opened) / open_seconds : 0.0);
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
  if (!idle.first_error.empty()) report.note("first error: " + idle.first_error);
  report.note("(server memory = (RSS after - RSS before) / connections held; user space only, kernel socket buffers "
              "are not in RSS)");
  report.print(args.output.json);
  if (!stop_reason.empty()) std::fprintf(stderr, "duplex bench idle: stopped opening: %s\n", stop_reason.c_str());
  const bool all = idle.opened == args.connections && idle.lost == 0 && !server_gone;
  if (idle.opened == 0) {
    std::fprintf(stderr, "duplex bench idle: no connection could be opened: %s\n",
                 idle.first_error.empty() ? stop_reason.c_str() : idle.first_error.c_str());
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
      "keeps memory it once used, so a server that held connections before reads too low.");
  cmd->add_option("url", args->url, "ws:// URL of the server")->required();
  cmd->add_option("-c,--connections", args->connections, "Connections to open and hold")->capture_default_str()->check(CLI::Range(1u, 10'000'000u));
  cmd->add_option("--source-addresses", args->source_addresses,
                  "Bind connections round-robin to 127.0.0.1 .. 127.0.0.A before connecting")
      ->capture_default_str()
      ->check(CLI::Range(1u, 254u));
  cmd->add_option("--concurrency", args->concurrency, "Handshakes in flight while opening")->capture_default_str()->check(CLI::Range(1u, 100'000u));
  cmd->add_option("--server-pid", args->server_pid, "Server process whose RSS is measured (required)");
  cmd->add_option("--hold", args->hold, "Seconds to hold the connections open before the RSS may count as settled")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  cmd->add_option("--settle-timeout", args->settle_timeout, "Extra seconds to wait for the RSS to settle after --hold")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  add_output_options(cmd, args->output);
  return [args] { return run_idle(*args); };
}

}  // namespace duplex::cli::bench
