#include "io_ring.hpp"

#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <stdexcept>

namespace duplex::net::detail {

std::unique_ptr<IoRing> IoRing::open(const RingBuffers& buffers, std::string& why_not) {
  // See the header: the ring's creator is a thread that ends here.
  std::unique_ptr<IoRing> ring;
  std::exception_ptr error;
  std::thread creator([&] {
    try {
      ring = open_on_this_thread(buffers, why_not);
    } catch (...) {
      error = std::current_exception();
    }
  });
  creator.join();
  if (error) std::rethrow_exception(error);
  return ring;
}

std::unique_ptr<IoRing> IoRing::open_on_this_thread(const RingBuffers& buffers, std::string& why_not) {
  if (!buffers.count_valid())
    throw std::invalid_argument("io_uring: the receive buffer count must be " + RingBuffers::count_rule() +
                                ", not " + std::to_string(buffers.count));
  if (!buffers.size_valid())
    throw std::invalid_argument("io_uring: the receive buffer size must be " +
                                std::to_string(RingBuffers::min_size >> 10) + "KiB.." +
                                std::to_string(RingBuffers::max_size >> 20) + "MiB, not " +
                                std::to_string(buffers.size) + " bytes");
  std::unique_ptr<IoRing> r(new IoRing);
  r->layout_ = buffers;
  io_uring_params params{};
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE |
                 IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_R_DISABLED;
  params.cq_entries = entries * 4;
  int rc = io_uring_queue_init_params(entries, &r->ring_, &params);
  if (rc < 0) {
    why_not = std::string("io_uring_setup: ") + std::strerror(-rc);
    return nullptr;
  }
  r->ring_ready_ = true;
  if (!(params.features & IORING_FEAT_NODROP)) {
    why_not = "io_uring: this kernel may drop completions (no IORING_FEAT_NODROP)";
    return nullptr;
  }
  // The provided-buffer ring: liburing 2.3 has no io_uring_setup_buf_ring, so
  // map it and register it by hand (what that helper does).
  r->buf_ring_bytes_ = sizeof(io_uring_buf) * buffers.count;
  void* mem = ::mmap(nullptr, r->buf_ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) {
    why_not = std::string("io_uring: mmap of the buffer ring: ") + std::strerror(errno);
    return nullptr;
  }
  r->buf_ring_ = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_ring_init(r->buf_ring_);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uintptr_t>(mem);
  reg.ring_entries = buffers.count;
  reg.bgid = buffer_group;
  rc = io_uring_register_buf_ring(&r->ring_, &reg, 0);
  if (rc < 0) {
    why_not = std::string("io_uring_register_buf_ring: ") + std::strerror(-rc);
    return nullptr;
  }
  // Pages of the buffers are touched only when the kernel first fills them.
  r->buffers_.reset(new std::uint8_t[std::size_t{buffers.count} * buffers.size]);
  const int mask = io_uring_buf_ring_mask(buffers.count);
  for (unsigned i = 0; i < buffers.count; ++i)
    io_uring_buf_ring_add(r->buf_ring_, r->buffer_at(i), r->buffer_bytes(), static_cast<unsigned short>(i), mask,
                          static_cast<int>(i));
  io_uring_buf_ring_advance(r->buf_ring_, static_cast<int>(buffers.count));
  // A sparse registered-file table with a slot per possible descriptor
  // (the open-file limit, at most 65,536: 8 bytes each in the kernel).
  // Without one (an old kernel, no memory) descriptors are looked up per request.
  rlimit files{};
  const unsigned slots = ::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < 65536
                             ? static_cast<unsigned>(files.rlim_cur)
                             : 65536u;
  if (io_uring_register_files_sparse(&r->ring_, slots) == 0) r->file_slots_ = slots;
  return r;
}

IoRing::~IoRing() {
  if (ring_ready_) io_uring_queue_exit(&ring_);  // cancels what is still in flight
  if (buf_ring_) ::munmap(buf_ring_, buf_ring_bytes_);
}

void IoRing::enable_for_this_thread() {
  if (enabled_) {
    if (submitter_ != std::this_thread::get_id())
      throw std::logic_error("io_uring event loop: turns run on another thread than its first (run or poll it from one thread)");
    return;
  }
  // liburing 2.3 declares io_uring_enable_rings but does not export it.
  if (::syscall(__NR_io_uring_register, ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0) < 0)
    throw std::runtime_error(std::string("io_uring: enabling the ring: ") + std::strerror(errno));
  enabled_ = true;
  submitter_ = std::this_thread::get_id();
}

io_uring_sqe* IoRing::next_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (!sqe) {
    // A full submission queue goes to the kernel now; the turn's wait submits the rest.
    submit();
    sqe = io_uring_get_sqe(&ring_);
    if (!sqe) throw std::runtime_error("io_uring: no submission queue entry after a submit");
  }
  ++in_flight_;
  return sqe;
}

bool IoRing::register_file(int fd) {
  if (fd < 0 || static_cast<unsigned>(fd) >= file_slots_) return false;
  return io_uring_register_files_update(&ring_, static_cast<unsigned>(fd), &fd, 1) == 1;
}

void IoRing::release_file(int fd) {
  int none = -1;
  io_uring_register_files_update(&ring_, static_cast<unsigned>(fd), &none, 1);
}

void IoRing::recv_multishot(int fd, std::uint64_t tag, bool registered) {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT | (registered ? IOSQE_FIXED_FILE : 0);
  sqe->buf_group = buffer_group;
  io_uring_sqe_set_data64(sqe, tag);
}

IoRing::Ticket IoRing::send(int fd, const char* data, std::size_t size, std::uint64_t tag, bool registered) {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_send(sqe, fd, data, size, MSG_WAITALL | MSG_NOSIGNAL);
  if (registered) sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, tag);
  return Ticket{sqe, submissions_};
}

bool IoRing::retract(const Ticket& ticket) {
  // Until io_uring_submit publishes the queue's tail the kernel has not read
  // the entry, so it may be rewritten in place.
  if (!ticket.entry || ticket.submission != submissions_) return false;
  io_uring_prep_nop(ticket.entry);
  io_uring_sqe_set_data64(ticket.entry, static_cast<std::uint64_t>(Op::ignored));
  return true;
}

void IoRing::accept_multishot(int fd, std::uint64_t tag) {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_multishot_accept(sqe, fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, tag);
}

void IoRing::cancel(std::uint64_t tag) {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_cancel64(sqe, tag, IORING_ASYNC_CANCEL_ALL);
  io_uring_sqe_set_data64(sqe, static_cast<std::uint64_t>(Op::ignored));
}

void IoRing::cancel_all_and_wait(const std::function<void(std::uint64_t, int, std::uint32_t)>& fn) {
  if (in_flight_ == 0 || !enabled_ || submitter_ != std::this_thread::get_id()) return;
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
  io_uring_sqe_set_data64(sqe, static_cast<std::uint64_t>(Op::ignored));
  for (int round = 0; round < 100 && in_flight_ > 0; ++round) {
    submit_and_wait(10);
    drain(fn);
  }
}

void IoRing::poll_in(int fd, std::uint64_t tag) {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_poll_add(sqe, fd, POLLIN);
  io_uring_sqe_set_data64(sqe, tag);
}

void IoRing::submit_and_wait(int timeout_ms) {
  enable_for_this_thread();
  ++submissions_;
  if (timeout_ms < 0) {
    io_uring_submit_and_wait(&ring_, 1);
    return;
  }
  if (timeout_ms == 0) {
    io_uring_submit_and_get_events(&ring_);
    return;
  }
  __kernel_timespec ts{};
  ts.tv_sec = timeout_ms / 1000;
  ts.tv_nsec = static_cast<long long>(timeout_ms % 1000) * 1'000'000;
  io_uring_cqe* cqe = nullptr;
  io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);  // -ETIME: the deadline came first
}

void IoRing::submit() {
  enable_for_this_thread();
  ++submissions_;
  io_uring_submit(&ring_);
}

void IoRing::recycle(std::uint32_t cqe_flags) {
  const auto bid = static_cast<unsigned short>(cqe_flags >> IORING_CQE_BUFFER_SHIFT);
  io_uring_buf_ring_add(buf_ring_, buffer_at(bid), buffer_bytes(), bid, io_uring_buf_ring_mask(layout_.count), 0);
  io_uring_buf_ring_advance(buf_ring_, 1);
}

}  // namespace duplex::net::detail
