// Connecting to ws:// and wss:// servers.
#pragma once
#include <memory>
#include <string_view>

#include "duplex/net/connection.hpp"
#include "duplex/net/event_loop.hpp"
#include "duplex/net/handlers.hpp"
#include "duplex/net/options.hpp"

namespace duplex::net {

// Starts connecting on `loop` (resolve, TCP, TLS, upgrade). handlers.on_open
// runs on success, handlers.on_error on any failure before that. Call from
// the loop's thread or before loop.run().
inline std::shared_ptr<Connection> connect(EventLoop& loop, std::string_view url, const ClientOptions& options,
                                           Handlers handlers) {
  return Connection::connect(loop, url, options, std::move(handlers));
}

}  // namespace duplex::net
