// The backend HTTP API (/api/<method>, docs/OPERATIONS.md): what the
// application's own server calls to publish, broadcast, read presence and
// history, disconnect or unsubscribe a user, and list channels and nodes.
// Every request needs the API key (api.key).
#pragma once
#include <simdjson.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/hub/config.hpp"
#include "duplex/net/connection.hpp"
#include "duplex/net/handlers.hpp"
#include "duplex/protocol/http_head.hpp"

namespace duplex::hub {
class Hub;
}

namespace duplex::transport {

class HttpApi {
 public:
  // The configuration in force (reloaded on SIGHUP), asked per request.
  using ConfigSource = std::function<std::shared_ptr<const hub::HubConfig>()>;

  HttpApi(hub::Hub& hub, ConfigSource config) : hub_(hub), config_(std::move(config)) {}

  // `r.path` starts with "/api/"; `headers` (CORS) go on every answer. An
  // answer that waits for the engine is sent from the connection's loop.
  void handle(net::Connection& c, const net::HttpRequest& r, std::vector<protocol::HttpHeader> headers);

 private:
  // One POST /api/<method>: its connection, JSON body and response headers.
  struct Call {
    net::Connection& c;
    simdjson::dom::element body;
    std::vector<protocol::HttpHeader> headers;
    void bad(std::string_view why) const;           // 400 with error 107 and `why`
    std::optional<std::string_view> channel() const;  // "channel", if a string
  };
  // One function per method; each answers now or from the engine's completion.
  void nodes(net::Connection& c, std::vector<protocol::HttpHeader> headers);
  void publish(Call& call);
  void broadcast(Call& call);
  void presence(Call& call);
  void history(Call& call);
  void disconnect(Call& call);
  void unsubscribe(Call& call);
  void channels(Call& call);
  void info(Call& call);

  hub::Hub& hub_;
  ConfigSource config_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

// {"error":{"code":..,"message":..}}: the API's error body (and /demo/token's).
std::string api_error_json(int code, std::string_view message);

}  // namespace duplex::transport
