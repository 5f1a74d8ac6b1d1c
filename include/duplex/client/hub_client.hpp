// The C++ hub client: HubSession driven over duplex's WebSocket client
// (subprotocol duplex.v1), with a reconnect timer (exponential backoff, full
// jitter), an application-level heartbeat and thread-safe methods.
//
//   client::HubClientOptions options;
//   options.url = "ws://127.0.0.1:8080/connection/websocket";
//   options.token = jwt;
//   client::HubClient hub(options);               // runs its own loop thread
//   hub.subscribe("chat:general", {.on_message = [](const client::Message& m) { ... }});
//   hub.publish("chat:general", R"({"text":"hi"})");
//   hub.connect();
//
// Every public method may be called from any thread: it is posted to the
// loop. Callbacks (state, subscription, command results) run on the loop
// thread. Publishes made while disconnected wait (bounded) and go out after
// the reconnect with the idempotency key they got when made.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "duplex/client/hub_session.hpp"
#include "duplex/client/hub_types.hpp"
#include "duplex/net/event_loop.hpp"
#include "duplex/net/options.hpp"

namespace duplex::client {

struct HubClientOptions {
  std::string url;            // ws:// or wss://, e.g. ws://host:8080/connection/websocket
  std::string token;          // JWT sent in `authenticate`; empty = anonymous
  // Used instead of `token` when set: called on the loop thread at every
  // connect and on the server's `refresh` push.
  TokenProvider token_provider;
  Millis backoff_base{500};   // reconnect delay = random(0, min(cap, base * 2^attempt))
  Millis backoff_cap{20'000};
  Millis command_timeout{10'000};
  Millis ping_timeout{10'000};  // reconnect if no frame arrives within the server's ping period + this
  std::size_t max_queued_publishes = 1000;  // waiting for a connection; the oldest fails when over
  std::size_t max_data_bytes = 64u << 10;   // match the server's limits.max_data_bytes
  std::size_t max_message_size = 16u << 20; // largest frame accepted from the server
  net::TlsOptions tls;                      // wss://: ca_file, verify_peer, client certificate
  std::vector<protocol::HttpHeader> headers;  // extra upgrade request headers
  std::string origin;
};

class HubClient {
 public:
  // Runs its own event loop on a thread of its own. Do not destroy it from
  // one of its own callbacks (the destructor joins that thread).
  explicit HubClient(HubClientOptions options);
  // Runs on `loop`, which the caller runs. Destroy the client on that
  // loop's thread, or after the loop has stopped.
  HubClient(net::EventLoop& loop, HubClientOptions options);
  ~HubClient();
  HubClient(const HubClient&) = delete;
  HubClient& operator=(const HubClient&) = delete;

  // Set before connect() (or from a callback).
  void set_state_handlers(StateHandlers handlers);

  // Starts connecting (and keeps reconnecting). After close(), connects again.
  void connect();
  // Stops: closes the connection, no reconnect; pending commands fail with `closed`.
  void close();

  // Immediate errors (invalid channel or data) are returned; everything
  // else arrives through the handlers and callbacks.
  std::optional<Error> subscribe(std::string channel, SubscriptionHandlers handlers, SubscribeOptions options = {});
  void unsubscribe(std::string channel);
  std::optional<Error> publish(std::string channel, std::string data, PublishCallback done = {},
                               PublishOptions options = {});
  std::optional<Error> presence(std::string channel, PresenceCallback done);
  std::optional<Error> history(std::string channel, HistoryOptions options, HistoryCallback done);

  ConnectionState state() const { return state_->load(); }
  net::EventLoop& loop() { return *loop_; }

  // Kills the socket abruptly, as a network failure would (code 1006): the
  // client reconnects and recovers. For tests and chaos drills.
  void drop_connection_for_test();

 private:
  class Driver;
  void start(HubClientOptions options);

  std::unique_ptr<net::EventLoop> own_loop_;
  net::EventLoop* loop_;
  std::shared_ptr<std::atomic<ConnectionState>> state_;
  std::shared_ptr<Driver> driver_;
  std::size_t max_data_bytes_;
  std::thread thread_;
};

}  // namespace duplex::client
