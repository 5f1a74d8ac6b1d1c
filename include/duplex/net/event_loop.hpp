// One event loop per thread: its own epoll set for every socket of the loop
// (connections, listening sockets, the wake-up eventfd), its shared read
// buffer, its timer wheel, its one-shot timers and its end-of-turn task list.
//
// A turn is one epoll_wait: it sleeps until a socket is ready, a task is
// posted from another thread (eventfd) or the next deadline (the wheel's tick
// or the earliest LoopTimer) comes, then dispatches the ready sockets, the
// due timers and the tasks, in that order. Sockets are registered once,
// edge-triggered: an idle connection costs no loop state beyond its epoll
// entry, and a readiness event costs no allocation and no further system call.
#pragma once
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "duplex/net/options.hpp"
#include "duplex/net/task.hpp"
#include "duplex/net/timer_wheel.hpp"

namespace duplex::net {

class Connection;
class LoopTimer;
namespace detail {
class IoRing;
class LoopTlsBio;
}

// Something other than a connection with a socket in a loop's epoll set (a
// listening socket, the wake-up eventfd): on_events runs on the loop thread.
class FdWatcher {
 public:
  virtual void on_events(std::uint32_t events) = 0;

 protected:
  ~FdWatcher() = default;
};

class EventLoop {
 public:
  static constexpr Millis tick{100};

  // `io`: automatic takes io_uring where it works here (see IoBackend);
  // io_uring asked for explicitly and unavailable throws std::runtime_error
  // saying why. `ring_buffers` (io_uring only): a count that is not a power
  // of two or sizes out of their ranges throw std::invalid_argument.
  explicit EventLoop(std::size_t read_buffer_size = 512u << 10, IoBackend io = IoBackend::automatic,
                     RingBuffers ring_buffers = {});
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  using Clock = std::chrono::steady_clock;

  // Runs turns until stop(). An exception out of a task, a timer or an event
  // handler is logged (net::log_error) and the loop goes on: it never leaves
  // the loop thread. A stop() before run() makes run() return at once.
  void run();
  // Runs one turn on the calling thread without sleeping: what is ready now.
  // The number of socket events, timers and tasks it handled (0: quiet). For
  // tests and fuzzers that drive a loop by hand; never while run() runs.
  std::size_t poll();
  // Thread-safe.
  void stop();
  // Thread-safe: runs `fn` on this loop's thread, later (never inside this
  // call), after the events and tasks already queued. From the loop thread
  // it costs no lock and no system call.
  void post(Task fn);
  bool running_in_this_thread() const;

  // The backend this loop runs on (never automatic), and when automatic
  // chose epoll, why io_uring was not taken (empty otherwise).
  IoBackend io() const { return ring_ ? IoBackend::io_uring : IoBackend::epoll; }
  const std::string& io_fallback_reason() const { return io_fallback_reason_; }

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
  // Registers another socket for `events` (EPOLLET to make it edge-triggered).
  bool watch(int fd, FdWatcher* w, std::uint32_t events);
  void unwatch(int fd);

  // A finished connection is reaped (its closing callback, then its loop
  // resources) by a handler of its own posted for this turn: never inside the
  // call that ended it, and after every event already being dispatched.
  void schedule_reap(std::shared_ptr<Connection> c);
  // Where an ended connection's late output goes: nowhere (loop thread only).
  std::string& discard_buffer();
  // The BIO this loop's TLS connections share (made on first use).
  detail::LoopTlsBio& tls_bio();

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
  friend class LoopTimer;
  friend class Server;  // its listening sockets' multishot accepts use the ring
  struct Wake final : FdWatcher {
    int fd = -1;
    void on_events(std::uint32_t) override;
  };
  std::size_t run_turn(bool may_sleep);
  std::size_t wait_epoll(int timeout_ms);
  std::size_t wait_ring(int timeout_ms);
  void complete(std::uint64_t data, int result, std::uint32_t flags);
  void dispatch(std::uint32_t events, std::uint64_t data);
  std::size_t run_timers(Clock::time_point now);
  std::size_t run_tasks();
  void run_flushes();
  void run_reaps();
  int wait_timeout(Clock::time_point now) const;

  // Declared before the task lists so they outlive them: destroying a task
  // may drop the last reference to a connection.
  TimerWheel wheel_;
  std::size_t connection_count_ = 0;
  std::unique_ptr<std::uint8_t[]> read_buffer_;
  std::size_t read_buffer_size_;
  int epoll_fd_ = -1;
  // io_uring backend (null: epoll). The epoll set stays for the wake-up
  // eventfd and connections still in a handshake (plain or TLS): the ring polls
  // the epoll descriptor itself. Listening sockets are multishot accepts.
  std::unique_ptr<detail::IoRing> ring_;
  std::string io_fallback_reason_;
  bool epoll_polled_ = false;  // the ring holds a poll of epoll_fd_
  struct Completion {
    std::uint64_t data;
    int result;
    std::uint32_t flags;
  };
  std::vector<Completion> completions_;  // one turn's, reused
  Wake wake_;
  Clock::time_point next_tick_;
  std::multimap<Clock::time_point, LoopTimer*> timers_;
  std::vector<std::weak_ptr<Connection>> flush_list_;
  std::string cork_;
  std::string discard_;
  // io_uring, TLS: the ciphertext of one SSL call, handed to the ring as a
  // send (no copy) or appended behind the send in flight.
  std::string tls_out_;
  std::unique_ptr<detail::LoopTlsBio> tls_bio_;
  Connection* corked_ = nullptr;
  std::uint32_t id_;
  bool flush_posted_ = false;
  bool reap_posted_ = false;
  std::atomic<bool> stop_{false};
  std::atomic<std::thread::id> thread_{};  // the thread in run(), or none
  // Tasks from this thread (no lock), and from others (under the mutex; the
  // first one into an empty list wakes the loop through the eventfd).
  std::vector<Task> tasks_;
  std::mutex remote_mutex_;
  std::vector<Task> remote_tasks_;
  std::vector<std::shared_ptr<Connection>> reap_list_;
  // Ended connections that only their ring requests still keep alive (their
  // self_ until the last completion): the destructor releases them when it
  // cannot wait for those completions (off the loop's thread, the ring has
  // one issuer).
  std::unordered_set<Connection*> awaiting_ring_;
};

}  // namespace duplex::net
