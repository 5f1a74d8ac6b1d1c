// duplex bench: what every mode shares — the clock, /proc readings of the
// server, the progress line, live per-thread statistics and the result
// report (aligned table or one JSON object).
#pragma once
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "histogram.hpp"

namespace duplex::cli::bench {

using duplex::bench::Histogram;

// CLOCK_MONOTONIC in nanoseconds: the same clock as std::chrono::steady_clock
// on Linux, and machine-wide, so timestamps compare across processes.
std::uint64_t now_ns();
void sleep_until_ns(std::uint64_t deadline);

inline constexpr std::uint64_t ns_per_s = 1'000'000'000ull;
inline std::uint64_t seconds_to_ns(double s) { return static_cast<std::uint64_t>(s * 1e9); }

// ---- the server process (/proc) ------------------------------------------------

// utime + stime of every thread of `pid`, in seconds; negative if unreadable.
double read_process_cpu_seconds(long pid);
// VmRSS of `pid` in KiB; negative if unreadable.
long read_process_rss_kib(long pid);

// Keeps /proc/PID/stat and /proc/PID/status open and re-reads them, so that
// sampling still works once this process has used up its file descriptors.
class ProcessWatch;

// CPU seconds used over the measured window by the server (when watched) and
// by this generator, and the server's RSS at the window's end.
class CpuWindow {
 public:
  CpuWindow(const ProcessWatch& server, bool watch_server) : server_(server), watch_server_(watch_server) {}
  void begin();
  void end();
  bool begun() const { return begun_; }
  double server_cpu() const { return server_after_ - server_before_; }
  double self_cpu() const { return self_after_ - self_before_; }
  long server_rss() const { return server_rss_; }

 private:
  const ProcessWatch& server_;
  bool watch_server_;
  bool begun_ = false;
  double server_before_ = -1, server_after_ = -1, self_before_ = 0, self_after_ = 0;
  long server_rss_ = -1;
};

class ProcessWatch {
 public:
  explicit ProcessWatch(long pid);  // 0: this process
  ~ProcessWatch();
  ProcessWatch(const ProcessWatch&) = delete;
  ProcessWatch& operator=(const ProcessWatch&) = delete;
  bool ok() const { return stat_fd_ >= 0 && status_fd_ >= 0; }
  double cpu_seconds() const;  // negative if unreadable (the process is gone)
  long rss_kib() const;        // negative if unreadable

 private:
  int stat_fd_ = -1;
  int status_fd_ = -1;
};

// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
std::uint64_t raise_open_file_limit();
// CPU seconds this process has used (all threads).
double self_cpu_seconds();

// ---- formatting ---------------------------------------------------------------

std::string with_commas(std::uint64_t n);
std::string format_ms(std::uint64_t ns);           // "0.412 ms", "12.3 ms"
std::string format_rate(double per_second);        // "152,341"
std::string format_bytes_rate(double per_second);  // "4.87 MB/s"
std::string format_kib(double kib);                // "12.4 MiB" / "812 KiB"

// ---- progress line (stderr) -----------------------------------------------------

class ProgressLine {
 public:
  explicit ProgressLine(bool quiet);
  ~ProgressLine();
  // Replaces the line on a terminal; prints one line per update otherwise.
  void update(const std::string& text);
  // Ends the line (before the result or an error message).
  void done();

 private:
  bool quiet_;
  bool tty_;
  bool pending_ = false;
};

// "[  3.0s] "
std::string progress_prefix(double seconds);

// ---- live statistics shared between a worker thread and the main thread ----------

// Counters the worker bumps with relaxed atomics, and a latency histogram it
// publishes every ~200 ms for the progress line.
struct alignas(64) LiveStats {
  std::atomic<std::uint64_t> messages{0};  // received, including the warm-up (for the progress rate)
  std::atomic<std::uint64_t> open{0};      // connections currently open
  std::atomic<std::uint64_t> errors{0};

  // Worker side: record into `pending`, then publish() now and then.
  void record(std::uint64_t latency_ns) { pending_.record(latency_ns); }
  void maybe_publish(std::uint64_t now);
  // Main side: merges what was published since the last call into `into`.
  void collect(Histogram& into);

 private:
  Histogram pending_;          // worker only
  std::uint64_t last_publish_ = 0;
  std::mutex mu_;
  Histogram published_;        // guarded by mu_
};

// Sums the counters and merges the published histograms of every worker.
struct LiveTotals {
  std::uint64_t messages = 0, open = 0, errors = 0;
  Histogram interval;
};
void collect_live(std::vector<std::unique_ptr<LiveStats>>& live, LiveTotals& out);

// ---- result report ----------------------------------------------------------------

// Rows of (JSON key, table label, value); printed either as an aligned table
// (stdout) or as one JSON object with the same keys (stdout).
class Report {
 public:
  explicit Report(std::string title) : title_(std::move(title)) {}
  void text(std::string key, std::string label, std::string value);
  void integer(std::string key, std::string label, std::uint64_t value, std::string unit = {});
  void number(std::string key, std::string label, double value, int decimals, std::string unit = {});
  // A rate: the table shows it with thousands separators.
  void rate(std::string key, std::string label, double value, std::string unit = {});
  // A latency, in milliseconds with three decimals (key should end in _ms).
  void millis(std::string key, std::string label, std::uint64_t ns);
  void boolean(std::string key, std::string label, bool value);
  // Anything else: the JSON text and the table text given as they are.
  void raw(std::string key, std::string label, std::string json, std::string shown);
  // Text-only note under the table (not in JSON).
  void note(std::string text) { notes_.push_back(std::move(text)); }
  // p50/p90/p99/p99.9/max (+ mean) with keys prefix_p50_ms, ...
  void latencies(const std::string& key_prefix, const std::string& label_prefix, const Histogram& h,
                 bool with_p90 = true);

  void print(bool json) const;

 private:
  struct Row {
    std::string key, label, json, shown;
  };
  std::string title_;
  std::vector<Row> rows_;
  std::vector<std::string> notes_;
};

std::string json_escape(std::string_view s);

// The server rows every mode with --server-pid reports: its CPU seconds and
// use over `seconds`, `work` per server-CPU-second (under `per_cpu_key`),
// and its RSS.
void add_server_rows(Report& report, long pid, double cpu_seconds, long rss_kib, double seconds, std::uint64_t work,
                     const std::string& per_cpu_key, const std::string& per_cpu_label);
// Generator (this process) CPU seconds and use over `seconds`.
void add_generator_rows(Report& report, double cpu_seconds, double seconds, unsigned threads);

// wss:// modes: loads the client TLS settings once up front, so a bad
// --ca-file fails now (message on stderr, prefixed by `mode`) rather than once
// per connection.
bool check_client_tls(const char* mode, const std::string& ca_file, bool insecure);

}  // namespace duplex::cli::bench
