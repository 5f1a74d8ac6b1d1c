// `duplex serve` as a library: the hub on the WebSocket server, with its HTTP
// routes (demo page and duplex.js, the backend API, health). Glue between
// net/ (sockets) and hub/ (channels): hub/ never sees a socket.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "duplex/hub/config.hpp"
#include "duplex/hub/hub.hpp"
#include "duplex/net/server.hpp"

namespace duplex::transport {

// The directory served at / (the demo pages, duplex.js) and why that one.
struct WebRoot {
  std::string dir;
  std::string source;  // "web.root" (the config key or --web-root), "install prefix" or "build tree"
};
// `configured` (web.root) when set; else <directory of the executable>/
// ../share/duplex/web when it exists (the installed layout: cmake --install,
// the Debian package); else the web/ directory of the build tree the binary
// was built in (a developer build: links to the source tree's files).
WebRoot resolve_web_root(const std::string& configured);

class HubServer {
 public:
  // Opens the engine and loads keys; throws std::runtime_error with a clear
  // message on bad configuration.
  explicit HubServer(hub::HubConfig config);
  ~HubServer();
  HubServer(const HubServer&) = delete;
  HubServer& operator=(const HubServer&) = delete;

  // Binds (config.server.port 0 picks a free port) and runs the loops on
  // background threads.
  void start();
  // Binds and runs the loops on the calling thread until shutdown.
  void run();
  // Thread-safe, graceful: every client gets the disconnect push and close
  // 1001, pending publishes are made durable, then the loops stop (within
  // `deadline`).
  void shutdown(net::Millis deadline = net::Millis{5000});
  // After start(): blocks until the loops have stopped (after shutdown()).
  void wait();
  // Immediate stop (tests).
  void stop();

  // SIGHUP: applies the parts of `next` that can change while running (TLS
  // certificate, key, min_version and ciphers for new handshakes; log level
  // and format; token keys; auth.allowed_origins; api.key; web.cors_origins,
  // web.demo_tokens, web.demo_token_ttl; limits.publish_rate, publish_burst,
  // rate_violations_before_disconnect, max_subscriptions). All or nothing:
  // throws std::runtime_error (nothing changed) when `next` is invalid or a
  // file (certificate, key, public key) cannot be used. Thread-safe.
  struct ReloadResult {
    std::vector<std::string> applied;        // settings that changed and are now in force
    std::vector<std::string> needs_restart;  // settings that changed but keep their old value until a restart
  };
  ReloadResult reload(hub::HubConfig next);
  // The configuration in force now (reloadable parts as of the last reload).
  std::shared_ptr<const hub::HubConfig> live_config() const { return live_.load(std::memory_order_acquire); }

  std::uint16_t port() const { return server_->port(); }
  // Event loops actually running (server.threads, or one per core when 0).
  std::size_t loop_count() const { return server_->loops().size(); }
  // The loops' backend (server.io resolved), and why io_uring was not taken when auto fell back.
  net::IoBackend io() const { return server_->loops().front()->io(); }
  std::string io_fallback_reason() const { return server_->loops().front()->io_fallback_reason(); }
  hub::Hub& hub() { return *hub_; }
  // Event loop `index` (< loop_count()); tests post work to it.
  net::EventLoop& loop(std::size_t index) { return *server_->loops().at(index); }
  // Where / and /duplex.js are served from (resolve_web_root at construction).
  const WebRoot& web_root() const { return web_root_; }

 private:
  struct Routes;
  struct SessionRegistry;
  hub::HubConfig config_;  // as at start
  WebRoot web_root_;
  std::atomic<std::shared_ptr<const hub::HubConfig>> live_;
  std::mutex reload_mutex_;
  std::shared_ptr<SessionRegistry> sessions_;
  std::unique_ptr<net::Server> server_;
  std::unique_ptr<hub::Hub> hub_;
  std::unique_ptr<Routes> routes_;
  std::thread thread_;
  bool stopped_ = false;
};

}  // namespace duplex::transport
