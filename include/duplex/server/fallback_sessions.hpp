// Hub sessions for clients whose proxies block the WebSocket Upgrade:
// Server-Sent Events (stream down, POST up) and long-polling. Each session is
// a hub::Transport on the loop of the request that opened it; later
// requests may arrive on any loop, so every state change is posted to the
// session's loop and sessions are found through a mutex-protected map.
// Events are numbered and kept in a byte-bounded ring so a dropped SSE stream
// or a lost poll response resumes without loss (docs/PROTOCOL.md, "Fallback
// transports"). Replies to POSTed commands travel in the POST's response;
// pushes travel on the stream or the poll.
//
// No sticky sessions: a session id ends with its node's name
// (`<hex>.<node>`), and a command POST or a poll for a session of another
// node is forwarded to that node through the engine (send_to_node) and
// answered from there; an SSE stream resumed on another node is relayed
// (the owning node sends its chunks as node messages).
#pragma once
#include <atomic>
#include <chrono>
#include <functional>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "duplex/hub/hub.hpp"
#include "duplex/net/connection.hpp"
#include "duplex/net/handlers.hpp"

namespace duplex::transport {

struct FallbackLimits {
  std::size_t max_buffer_bytes = 1u << 20;  // events kept per session (server.max_send_buffer)
  std::size_t max_buffer_events = 10000;
  std::size_t max_sessions = 10000;
  std::size_t max_commands_per_request = 100;
  std::chrono::milliseconds sse_heartbeat{15000};
  std::chrono::milliseconds sse_grace{30000};   // a dropped stream may resume this long
  std::chrono::milliseconds poll_wait{25000};   // a poll with nothing to return waits this long
  std::chrono::milliseconds poll_idle{60000};   // a poll session without polls expires
  // A command POST is answered with its commands' replies; a reply slower than
  // this goes out on the stream / next poll instead (the response lists its id).
  std::chrono::milliseconds post_reply_timeout{5000};
};

class FallbackSession;

class FallbackSessions {
 public:
  FallbackSessions(hub::Hub& hub, FallbackLimits limits);
  ~FallbackSessions();
  FallbackSessions(const FallbackSessions&) = delete;
  FallbackSessions& operator=(const FallbackSessions&) = delete;

  // Serves /connection/sse... and /connection/poll...; false for other paths.
  // `cors` are the response headers the CORS policy allows for this request.
  bool handle(net::Connection& c, const net::HttpRequest& r, const std::vector<protocol::HttpHeader>& cors);

  std::size_t session_count() const;
  // Graceful shutdown, after Hub::drain: until every long-poll session whose
  // client was not waiting has collected its disconnect push with its next
  // poll, or `deadline` passes (any thread but a loop's).
  void wait_for_goodbyes(std::chrono::steady_clock::time_point deadline) const;
  // Requests for sessions of other nodes that this node forwarded (no sticky sessions).
  std::uint64_t forwarded_count() const {
    std::lock_guard lock(forward_mutex_);
    return next_forward_ - 1;
  }

 private:
  friend class FallbackSession;
  void open_sse(net::Connection& c, const net::HttpRequest& r, const std::vector<protocol::HttpHeader>& cors);
  void open_poll(net::Connection& c, const net::HttpRequest& r, const std::vector<protocol::HttpHeader>& cors);
  using Responder = std::function<void(int status, std::string body)>;
  void commands(net::Connection& c, std::shared_ptr<FallbackSession> s, std::string_view body,
                const std::vector<protocol::HttpHeader>& cors);
  std::string split_commands(std::string_view body, std::vector<std::string>& lines, int& status) const;
  void run_commands(std::shared_ptr<FallbackSession> s, std::vector<std::string> lines, Responder responder);
  std::shared_ptr<FallbackSession> find(std::string_view id) const;
  // ---- sessions of other nodes ----
  struct Forwarded;
  struct NodeLink;
  // The node that owns session `id` if it is not this one, else empty.
  std::string remote_owner(std::string_view id) const;
  void forward(net::Connection& c, const std::string& node, std::string request, const std::vector<protocol::HttpHeader>& cors,
               std::chrono::milliseconds timeout, std::string session = {});
  void on_node_message(std::string_view payload);
  Responder node_responder(std::string node, std::uint64_t request) const;
  void forget(const std::string& id);
  std::string new_id();

  hub::Hub& hub_;
  FallbackLimits limits_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<FallbackSession>> sessions_;
  mutable std::mutex forward_mutex_;
  std::uint64_t next_forward_ = 1;  // also: 1 + requests forwarded so far
  std::unordered_map<std::uint64_t, std::shared_ptr<Forwarded>> forwarded_;
  std::shared_ptr<NodeLink> link_;  // the engine's handler reaches this object through it
  std::atomic<std::size_t> goodbyes_owed_{0};  // see wait_for_goodbyes
};

}  // namespace duplex::transport
