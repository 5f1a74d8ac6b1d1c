// The io_uring half of an event loop (EventLoop's io_uring backend): one
// ring per loop, a provided-buffer ring its multishot receives fill, and the
// submission queue every send of a turn joins, so a whole turn (the sends
// of the last one, the wait, the completions) costs one io_uring_enter.
//
// Loop thread only. The ring is set up SINGLE_ISSUER | DEFER_TASKRUN: the
// kernel does a request's completion work only inside our own enter call,
// never by interrupting the loop thread. It is created disabled and enabled
// by the first thread that waits on it (a server builds its loops on one
// thread and runs each on its own): only that thread may submit from then on.
// It is created on a short-lived thread of its own, never on the caller's:
// the kernel counts a ring's creator among its users and interrupts every
// user when it tears the ring down (a blocking recv with a timeout there
// fails with EINTR), and the thread that builds loops is the application's.
#pragma once
#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "duplex/net/options.hpp"

namespace duplex::net::detail {

// What a completion tagged Op::handler goes to: the owner of a request
// that is neither a connection's receive nor its send (a listening
// socket's multishot accept). It must outlive its requests' completions
// while the loop runs.
class RingHandler {
 public:
  virtual void on_ring_completion(int result, std::uint32_t flags) = 0;

 protected:
  ~RingHandler() = default;
};

class IoRing {
 public:
  // What a completion is for: the low bits of its user_data (the rest is a
  // pointer at least 8-byte aligned, or nothing).
  enum class Op : std::uint8_t { ignored = 0, epoll = 1, recv = 2, send = 3, handler = 4 };
  static constexpr std::uint64_t op_mask = 7;
  // The user_data of a request of `op` for `owner` (null for the loop's own).
  static std::uint64_t tag(const void* owner, Op op) {
    return reinterpret_cast<std::uintptr_t>(owner) | static_cast<std::uint64_t>(op);
  }

  static constexpr unsigned entries = 4096;  // submission queue; the completion queue is 4× as large

  // A ring, or null with `why_not` set (no io_uring in this kernel, disabled
  // by sysctl kernel.io_uring_disabled, refused by a seccomp filter, out of
  // locked memory, or a kernel without provided-buffer rings).
  static std::unique_ptr<IoRing> open(const RingBuffers& buffers, std::string& why_not);
  ~IoRing();
  IoRing(const IoRing&) = delete;
  IoRing& operator=(const IoRing&) = delete;

  // Puts `fd` in the ring's registered-file table (slot = fd), so its
  // requests skip the kernel's per-request file lookup; false if there is
  // no table or no slot (its requests then name the fd as usual). A
  // registered file stays open until release_file: call it before close().
  bool register_file(int fd);
  void release_file(int fd);

  // Multishot receive on `fd` into the provided buffers; every completion
  // carries `tag` (a pointer with Op::recv in its low bits). `registered`:
  // register_file(fd) returned true.
  void recv_multishot(int fd, std::uint64_t tag, bool registered);
  // A prepared request the kernel has not seen yet, until the next submit.
  struct Ticket {
    io_uring_sqe* entry = nullptr;
    std::uint64_t submission = 0;
  };
  // A send of exactly `size` bytes (MSG_WAITALL: the kernel finishes a short
  // write itself); `data` must stay put until its completion.
  Ticket send(int fd, const char* data, std::size_t size, std::uint64_t tag, bool registered);
  // Takes back a request not submitted yet (it becomes a no-op whose
  // completion is ignored); false once the kernel has it.
  bool retract(const Ticket& ticket);
  // Cancels every request carrying `tag` (their completions still come).
  void cancel(std::uint64_t tag);
  // Cancels every request and waits (at most about a second) until the
  // kernel has let go of them all; their completions go to `fn` (user_data,
  // res, flags). For the loop's end, before the buffers those requests name
  // are freed.
  void cancel_all_and_wait(const std::function<void(std::uint64_t, int, std::uint32_t)>& fn);
  // A one-shot readiness poll (POLLIN) of `fd`.
  void poll_in(int fd, std::uint64_t tag);
  // Multishot accept on the listening socket `fd`: one completion per
  // connection, its result the new socket (non-blocking, close-on-exec) or
  // -errno; a completion without IORING_CQE_F_MORE was the last.
  void accept_multishot(int fd, std::uint64_t tag);

  // Makes the calling thread the ring's one submitter (once; the first wait
  // calls it). Throws std::logic_error when another thread already is.
  void enable_for_this_thread();

  // Submits what was prepared and waits for one completion or `timeout_ms`
  // (0: no wait, -1: no limit). One system call.
  void submit_and_wait(int timeout_ms);
  // Submits what was prepared (a full submission queue, or the end of the loop).
  void submit();

  // Runs fn(user_data, res, flags) for every completion ready now; returns the count.
  template <typename Fn>
  std::size_t drain(Fn&& fn) {
    std::size_t n = 0;
    for (;;) {
      io_uring_cqe* cqe = nullptr;
      if (io_uring_peek_cqe(&ring_, &cqe) != 0 || !cqe) break;
      const std::uint64_t data = cqe->user_data;
      const std::int32_t res = cqe->res;
      const std::uint32_t flags = cqe->flags;
      io_uring_cqe_seen(&ring_, cqe);  // before fn: it may prepare requests (and a full queue submits)
      if (!(flags & IORING_CQE_F_MORE)) --in_flight_;  // the request's last completion
      fn(data, res, flags);
      ++n;
    }
    return n;
  }

  // The receive buffer a completion names (IORING_CQE_F_BUFFER in flags).
  std::uint8_t* buffer(std::uint32_t cqe_flags) const { return buffer_at(cqe_flags >> IORING_CQE_BUFFER_SHIFT); }
  // Gives a receive buffer back to the kernel once its bytes are consumed.
  void recycle(std::uint32_t cqe_flags);

  // Requests submitted whose last completion has not come yet.
  std::size_t in_flight() const { return in_flight_; }

 private:
  IoRing() = default;
  // open's work, on the calling thread.
  static std::unique_ptr<IoRing> open_on_this_thread(const RingBuffers& buffers, std::string& why_not);
  io_uring_sqe* next_sqe();
  std::uint8_t* buffer_at(unsigned id) const { return buffers_.get() + std::size_t{id} * layout_.size; }
  unsigned buffer_bytes() const { return static_cast<unsigned>(layout_.size); }  // max_size fits

  io_uring ring_{};
  bool ring_ready_ = false;
  bool enabled_ = false;
  std::thread::id submitter_;
  RingBuffers layout_;
  io_uring_buf_ring* buf_ring_ = nullptr;
  std::size_t buf_ring_bytes_ = 0;
  std::unique_ptr<std::uint8_t[]> buffers_;
  std::size_t in_flight_ = 0;
  unsigned file_slots_ = 0;  // registered-file table size (0: none)
  std::uint64_t submissions_ = 0;  // submits so far: a Ticket of an older one is the kernel's
  static constexpr int buffer_group = 0;
};

}  // namespace duplex::net::detail
