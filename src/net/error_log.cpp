#include "duplex/net/error_log.hpp"

#include <cstdio>
#include <mutex>
#include <string>

namespace duplex::net {

namespace {
std::mutex& log_mutex() {
  static std::mutex m;
  return m;
}
ErrorLog& installed() {
  static ErrorLog log;
  return log;
}
}  // namespace

void set_error_log(ErrorLog log) {
  std::lock_guard lock(log_mutex());
  installed() = std::move(log);
}

void log_error(std::string_view message) {
  ErrorLog log;
  {
    std::lock_guard lock(log_mutex());
    log = installed();
  }
  if (log) {
    log(message);
    return;
  }
  std::fprintf(stderr, "duplex: %.*s\n", static_cast<int>(message.size()), message.data());
}

}  // namespace duplex::net
