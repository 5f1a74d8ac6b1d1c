#include "duplex/net/options.hpp"

#include <stdexcept>
#include <string>

namespace duplex::net {

namespace {
void check_bound(const char* name, std::size_t value) {
  if (value > max_size_option)
    throw std::invalid_argument(std::string(name) + " = " + std::to_string(value) + " is over its upper bound of " +
                                std::to_string(max_size_option) + " bytes (1 GiB)");
}
}  // namespace

const char* to_string(IoBackend io) {
  switch (io) {
    case IoBackend::automatic: return "auto";
    case IoBackend::epoll: return "epoll";
    case IoBackend::io_uring: return "io_uring";
  }
  return "?";
}

std::string RingBuffers::count_rule() {
  return "a power of two from " + std::to_string(min_count) + " to " + std::to_string(max_count);
}

std::optional<IoBackend> parse_io_backend(std::string_view name) {
  if (name == "auto") return IoBackend::automatic;
  if (name == "epoll") return IoBackend::epoll;
  if (name == "io_uring") return IoBackend::io_uring;
  return std::nullopt;
}

void check_size_options(std::size_t max_send_buffer, const protocol::Limits& websocket,
                        const protocol::HttpLimits& http) {
  check_bound("max_send_buffer", max_send_buffer);
  check_bound("websocket.max_frame_size", websocket.max_frame_size);
  check_bound("websocket.max_message_size", websocket.max_message_size);
  check_bound("http.max_body_bytes", http.max_body_bytes);
  check_bound("http.max_head_bytes", http.max_head_bytes);
}

}  // namespace duplex::net
