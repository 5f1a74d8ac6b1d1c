// duplex bench: the built-in load generator (echo, fanout, connect, idle).
#include <cstdio>
#include <memory>

#include "loadgen/bench_modes.hpp"
#include "commands.hpp"

namespace duplex::cli {

std::function<int()> add_bench_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "Load generator: echo round trips, fan-out latency, handshake rate, idle memory per connection.\n"
      "Results go to stdout (a table, or one JSON object with --json); a live progress line to stderr.\n"
      "Exit status: 0 ok, 1 errors or losses, 2 bad usage or connect failure.");
  cmd->require_subcommand(1);
  auto echo = bench::add_echo_mode(*cmd);
  auto fanout = bench::add_fanout_mode(*cmd);
  auto connect = bench::add_connect_mode(*cmd);
  auto idle = bench::add_idle_mode(*cmd);
  return [cmd, echo, fanout, connect, idle]() -> int {
    if (cmd->got_subcommand("echo")) return echo();
    if (cmd->got_subcommand("fanout")) return fanout();
    if (cmd->got_subcommand("connect")) return connect();
    if (cmd->got_subcommand("idle")) return idle();
    return bench::exit_usage;
  };
}

}  // namespace duplex::cli
