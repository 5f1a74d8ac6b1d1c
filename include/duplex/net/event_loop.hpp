// One event loop per thread: an Asio io_context, the loop's own epoll set for
// connection sockets, its shared read buffer, its timer wheel and its
// end-of-turn flush list.
//
// Connection sockets are raw non-blocking fds registered once, edge-triggered,
// in the loop's epoll set; Asio watches that one epoll fd. An idle connection
// therefore costs no Asio reactor state and no pending operation object, and
// a readiness event costs no handler allocation.
#pragma once
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "duplex/net/options.hpp"
#include "duplex/net/timer_wheel.hpp"

namespace duplex::net {

class Connection;

class EventLoop {
 public:
  static constexpr Millis tick{100};

  explicit EventLoop(std::size_t read_buffer_size = 512u << 10);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  asio::io_context& io() { return io_; }
  // Runs until stop() (or until there is no work and no connection). An
  // exception out of a posted handler is logged (net::log_error) and the
  // loop goes on: it never leaves the loop thread.
  void run();
  // Thread-safe.
  void stop();
  // Thread-safe: runs `fn` on this loop's thread.
  void post(std::function<void()> fn);
  bool running_in_this_thread() const;

  // The loop's shared read buffer: every connection reads into it, so an idle
  // connection owns no read buffer at all.
  std::uint8_t* read_buffer() { return read_buffer_.get(); }
  std::size_t read_buffer_size() const { return read_buffer_size_; }

  TimerWheel& timers() { return wheel_; }
  // Converts a duration to a deadline in ticks from now (rounded up).
  std::uint64_t deadline_after(Millis d) const;

  // Cork: a connection that queued bytes outside its own read handler asks
  // for one flush at the end of this loop turn.
  void schedule_flush(Connection* c);

  // The cork: frames for one connection at a time are built here and written
  // straight to its socket at the end of the turn; only bytes the kernel
  // refuses are copied to that connection's own backlog.
  std::string& cork_for(Connection* c);

  // Connections currently on this loop.
  std::size_t connection_count() const { return connection_count_; }
  // Every connection on this loop that has not finished (loop thread only).
  std::vector<std::shared_ptr<Connection>> connections();

  // Registers a connection's socket (EPOLLIN|EPOLLOUT|EPOLLRDHUP, edge-triggered).
  bool watch(int fd, Connection* c);
  void unwatch(int fd);

  // A finished connection is reaped (its closing callback, then its loop
  // resources) by a handler of its own posted for this turn: never inside the
  // call that ended it, and after every event already being dispatched.
  void schedule_reap(std::shared_ptr<Connection> c);
  // Where an ended connection's late output goes: nowhere (loop thread only).
  std::string& discard_buffer();

  // Unique for the life of the process (never reused), so a connection
  // outliving its loop cannot reach another loop at the same address.
  std::uint32_t id() const { return id_; }
  // The loops alive now: what a reference dropped on another thread uses to
  // reach its connection's loop. `live(id)` is the loop with that id, or null
  // once it is being destroyed; call it with `live_mutex()` held, which also
  // keeps the loop from being destroyed until it is released.
  static std::mutex& live_mutex();
  static EventLoop* live(std::uint32_t id);

 private:
  friend class Connection;
  void start_ticking();
  void run_flushes();
  void run_reaps();
  void arm_epoll();
  void poll_epoll();

  // Declared before io_ so they outlive it: destroying io_ destroys pending
  // handlers, which may hold the last reference to a connection.
  TimerWheel wheel_;
  std::size_t connection_count_ = 0;
  std::unique_ptr<std::uint8_t[]> read_buffer_;
  std::size_t read_buffer_size_;
  asio::io_context io_{1};
  asio::steady_timer tick_timer_;
  int epoll_fd_ = -1;
  asio::posix::stream_descriptor epoll_watch_;
  bool epoll_armed_ = false;
  std::vector<std::weak_ptr<Connection>> flush_list_;
  std::vector<std::shared_ptr<Connection>> reap_list_;  // after io_: destroyed before it
  std::string cork_;
  std::string discard_;
  Connection* corked_ = nullptr;
  std::uint32_t id_;
  bool flush_posted_ = false;
  bool reap_posted_ = false;
  bool ticking_ = false;
};

}  // namespace duplex::net
