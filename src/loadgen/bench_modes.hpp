// duplex bench's modes: each registers itself under `bench` and returns the
// function that runs it (the process exit status: 0 ok, 1 errors or losses,
// 2 bad usage or connect failure).
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

namespace duplex::cli::bench {

std::function<int()> add_echo_mode(CLI::App& bench);
std::function<int()> add_fanout_mode(CLI::App& bench);
std::function<int()> add_connect_mode(CLI::App& bench);
std::function<int()> add_idle_mode(CLI::App& bench);

// Exit statuses.
inline constexpr int exit_ok = 0;
inline constexpr int exit_errors = 1;
inline constexpr int exit_usage = 2;

// Options every mode has.
struct OutputArgs {
  bool json = false;
  bool quiet = false;
};
inline void add_output_options(CLI::App* cmd, OutputArgs& out) {
  cmd->add_flag("--json", out.json, "Print one JSON object on stdout instead of the result table");
  cmd->add_flag("-q,--quiet", out.quiet, "No progress line on stderr");
}

// --duration / --warmup for the timed modes.
struct TimingArgs {
  double duration = 10;
  double warmup = 1;
};
inline void add_timing_options(CLI::App* cmd, TimingArgs& t) {
  cmd->add_option("--duration", t.duration, "Measured seconds (after the warm-up)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 86400.0));
  cmd->add_option("--warmup", t.warmup, "Warm-up seconds, excluded from the statistics")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
}

}  // namespace duplex::cli::bench
