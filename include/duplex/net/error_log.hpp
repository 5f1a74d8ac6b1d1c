// Where the network layer reports what it cannot return to any caller: a
// handler that threw, an exception out of a loop's handler. Default: one
// line on stderr. The hub server points it at its structured log.
#pragma once
#include <functional>
#include <string_view>

namespace duplex::net {

using ErrorLog = std::function<void(std::string_view message)>;

// Thread-safe; an empty function restores the default.
void set_error_log(ErrorLog log);
// Thread-safe.
void log_error(std::string_view message);

}  // namespace duplex::net
