#include "bench_common.hpp"

#include "duplex/net/tls.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <sstream>

namespace duplex::cli::bench {

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * ns_per_s + static_cast<std::uint64_t>(ts.tv_nsec);
}

void sleep_until_ns(std::uint64_t deadline) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(deadline / ns_per_s);
  ts.tv_nsec = static_cast<long>(deadline % ns_per_s);
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

// ---- /proc --------------------------------------------------------------------------

namespace {
// The whole of a /proc file read from offset 0 (empty on error).
std::string read_proc_fd(int fd) {
  std::string out;
  if (fd < 0) return out;
  char buf[4096];
  off_t at = 0;
  for (;;) {
    const ssize_t n = ::pread(fd, buf, sizeof buf, at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    at += n;
  }
  return out;
}

double parse_cpu_seconds(const std::string& line) {
  // The command name (field 2) may hold spaces and parentheses: skip past the last ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(line.substr(close + 1));
  std::string field;
  // Fields 3.. follow; utime and stime are fields 14 and 15.
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15; ++i) {
    if (!(fields >> field)) return -1;
    if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
    if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
  }
  const long hz = sysconf(_SC_CLK_TCK);
  return static_cast<double>(utime + stime) / static_cast<double>(hz > 0 ? hz : 100);
}

long parse_rss_kib(const std::string& status) {
  const auto at = status.find("\nVmRSS:");
  if (at == std::string::npos) return -1;
  return std::strtol(status.c_str() + at + 7, nullptr, 10);
}

std::string proc_path(long pid, const char* file) {
  return (pid == 0 ? std::string("/proc/self/") : "/proc/" + std::to_string(pid) + "/") + file;
}
}  // namespace

ProcessWatch::ProcessWatch(long pid)
    : stat_fd_(::open(proc_path(pid, "stat").c_str(), O_RDONLY | O_CLOEXEC)),
      status_fd_(::open(proc_path(pid, "status").c_str(), O_RDONLY | O_CLOEXEC)) {}

ProcessWatch::~ProcessWatch() {
  if (stat_fd_ >= 0) ::close(stat_fd_);
  if (status_fd_ >= 0) ::close(status_fd_);
}

double ProcessWatch::cpu_seconds() const {
  const std::string text = read_proc_fd(stat_fd_);
  return text.empty() ? -1 : parse_cpu_seconds(text);
}

long ProcessWatch::rss_kib() const {
  const std::string text = read_proc_fd(status_fd_);
  return text.empty() ? -1 : parse_rss_kib(text);
}

double read_process_cpu_seconds(long pid) { return ProcessWatch(pid).cpu_seconds(); }

long read_process_rss_kib(long pid) { return ProcessWatch(pid).rss_kib(); }

std::uint64_t raise_open_file_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

double self_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// ---- formatting -------------------------------------------------------------------

std::string with_commas(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  const std::size_t lead = digits.size() % 3;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (i + 3 - lead) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string format_ms(std::uint64_t ns) {
  const double ms = static_cast<double>(ns) / 1e6;
  char buf[32];
  if (ms < 10) std::snprintf(buf, sizeof buf, "%.3f ms", ms);
  else if (ms < 100) std::snprintf(buf, sizeof buf, "%.2f ms", ms);
  else std::snprintf(buf, sizeof buf, "%.1f ms", ms);
  return buf;
}

std::string format_rate(double per_second) {
  if (!(per_second >= 0) || !std::isfinite(per_second)) return "-";
  if (per_second < 100) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", per_second);
    return buf;
  }
  return with_commas(static_cast<std::uint64_t>(std::llround(per_second)));
}

std::string format_bytes_rate(double per_second) {
  char buf[32];
  if (per_second >= 1e9) std::snprintf(buf, sizeof buf, "%.2f GB/s", per_second / 1e9);
  else if (per_second >= 1e6) std::snprintf(buf, sizeof buf, "%.2f MB/s", per_second / 1e6);
  else if (per_second >= 1e3) std::snprintf(buf, sizeof buf, "%.1f kB/s", per_second / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f B/s", per_second);
  return buf;
}

std::string format_kib(double kib) {
  char buf[32];
  if (std::fabs(kib) >= 10 * 1024) std::snprintf(buf, sizeof buf, "%.1f MiB", kib / 1024);
  else std::snprintf(buf, sizeof buf, "%.0f KiB", kib);
  return buf;
}

// ---- progress -----------------------------------------------------------------------

ProgressLine::ProgressLine(bool quiet) : quiet_(quiet), tty_(isatty(STDERR_FILENO) == 1) {}

ProgressLine::~ProgressLine() { done(); }

void ProgressLine::update(const std::string& text) {
  if (quiet_) return;
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", text.c_str());
    pending_ = true;
  } else {
    std::fprintf(stderr, "%s\n", text.c_str());
  }
  std::fflush(stderr);
}

void ProgressLine::done() {
  if (pending_) {
    std::fputc('\n', stderr);
    std::fflush(stderr);
    pending_ = false;
  }
}

std::string progress_prefix(double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "[%5.1fs] ", seconds);
  return buf;
}

// ---- live statistics --------------------------------------------------------------------

void LiveStats::maybe_publish(std::uint64_t now) {
  if (now - last_publish_ < 200'000'000ull) return;
  last_publish_ = now;
  std::lock_guard<std::mutex> lock(mu_);
  published_.merge(pending_);
  pending_.reset();
}

void LiveStats::collect(Histogram& into) {
  std::lock_guard<std::mutex> lock(mu_);
  into.merge(published_);
  published_.reset();
}

void collect_live(std::vector<std::unique_ptr<LiveStats>>& live, LiveTotals& out) {
  out.messages = out.open = out.errors = 0;
  out.interval.reset();
  for (auto& l : live) {
    out.messages += l->messages.load(std::memory_order_relaxed);
    out.open += l->open.load(std::memory_order_relaxed);
    out.errors += l->errors.load(std::memory_order_relaxed);
    l->collect(out.interval);
  }
}

// ---- report --------------------------------------------------------------------------------

std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  for (char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(ch)));
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out;
}

namespace {
std::string json_number(double v, int decimals) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}
std::string with_unit(std::string value, const std::string& unit) {
  if (!unit.empty()) value += " " + unit;
  return value;
}
}  // namespace

void Report::text(std::string key, std::string label, std::string value) {
  rows_.push_back({std::move(key), std::move(label), "\"" + json_escape(value) + "\"", value});
}

void Report::integer(std::string key, std::string label, std::uint64_t value, std::string unit) {
  rows_.push_back({std::move(key), std::move(label), std::to_string(value), with_unit(with_commas(value), unit)});
}

void Report::number(std::string key, std::string label, double value, int decimals, std::string unit) {
  const std::string shown = std::isfinite(value) ? json_number(value, decimals) : std::string("-");
  rows_.push_back({std::move(key), std::move(label), json_number(value, decimals), with_unit(shown, unit)});
}

void Report::rate(std::string key, std::string label, double value, std::string unit) {
  rows_.push_back({std::move(key), std::move(label), json_number(value, 1), with_unit(format_rate(value), unit)});
}

void Report::millis(std::string key, std::string label, std::uint64_t ns) {
  rows_.push_back({std::move(key), std::move(label), json_number(static_cast<double>(ns) / 1e6, 4), format_ms(ns)});
}

void Report::boolean(std::string key, std::string label, bool value) {
  rows_.push_back({std::move(key), std::move(label), value ? "true" : "false", value ? "yes" : "no"});
}

void Report::raw(std::string key, std::string label, std::string json, std::string shown) {
  rows_.push_back({std::move(key), std::move(label), std::move(json), std::move(shown)});
}

void Report::latencies(const std::string& key_prefix, const std::string& label_prefix, const Histogram& h,
                       bool with_p90) {
  millis(key_prefix + "_p50_ms", label_prefix + " p50", h.percentile(50));
  if (with_p90) millis(key_prefix + "_p90_ms", label_prefix + " p90", h.percentile(90));
  millis(key_prefix + "_p99_ms", label_prefix + " p99", h.percentile(99));
  millis(key_prefix + "_p999_ms", label_prefix + " p99.9", h.percentile(99.9));
  millis(key_prefix + "_max_ms", label_prefix + " max", h.max());
  millis(key_prefix + "_mean_ms", label_prefix + " mean", static_cast<std::uint64_t>(h.mean()));
}

void Report::print(bool json) const {
  if (json) {
    std::string out = "{";
    for (std::size_t i = 0; i < rows_.size(); ++i) {
      if (i) out += ", ";
      out += "\"" + json_escape(rows_[i].key) + "\": " + rows_[i].json;
    }
    out += "}\n";
    std::fputs(out.c_str(), stdout);
  } else {
    std::size_t width = 0;
    for (const auto& r : rows_) width = std::max(width, r.label.size());
    std::printf("%s\n", title_.c_str());
    for (const auto& r : rows_)
      std::printf("  %-*s  %s\n", static_cast<int>(width), r.label.c_str(), r.shown.c_str());
    for (const auto& n : notes_) std::printf("  %s\n", n.c_str());
  }
  std::fflush(stdout);
}

void add_server_rows(Report& report, long pid, double cpu_seconds, long rss_kib, double seconds, std::uint64_t work,
                     const std::string& per_cpu_key, const std::string& per_cpu_label) {
  report.integer("server_pid", "server pid", static_cast<std::uint64_t>(pid));
  report.number("server_cpu_s", "server CPU", cpu_seconds, 2, "s");
  report.number("server_cpu_percent", "server CPU use", 100.0 * cpu_seconds / seconds, 0, "% of a core");
  report.rate(per_cpu_key, per_cpu_label, cpu_seconds > 0 ? static_cast<double>(work) / cpu_seconds : 0.0);
  report.raw("server_rss_kib", "server RSS", std::to_string(rss_kib), format_kib(static_cast<double>(rss_kib)));
}

void add_generator_rows(Report& report, double cpu_seconds, double seconds, unsigned threads) {
  const double percent = 100.0 * cpu_seconds / seconds;
  report.number("generator_cpu_s", "generator CPU", cpu_seconds, 2, "s");
  report.number("generator_cpu_percent", "generator CPU use", percent, 0,
                "% of a core (" + std::to_string(threads) + " thread" + (threads > 1 ? "s)" : ")"));
  const bool saturated = percent >= 90.0 * threads;
  report.boolean("generator_saturated", "generator CPU-bound", saturated);
  if (saturated)
    report.note("warning: the generator used all of its " + std::to_string(threads) +
                " thread(s): the figures may be its limit, not the server's (add --threads or a core)");
}

void CpuWindow::begin() {
  if (watch_server_) server_before_ = server_.cpu_seconds();
  self_before_ = self_cpu_seconds();
  begun_ = true;
}

void CpuWindow::end() {
  if (watch_server_) {
    server_after_ = server_.cpu_seconds();
    server_rss_ = server_.rss_kib();
  }
  self_after_ = self_cpu_seconds();
}

bool check_client_tls(const char* mode, const std::string& ca_file, bool insecure) {
  try {
    net::TlsOptions tls;
    tls.ca_file = ca_file;
    tls.verify_peer = !insecure;
    net::TlsContext::client(tls);
    return true;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "duplex bench %s: %s\n", mode, e.what());
    return false;
  }
}

}  // namespace duplex::cli::bench
