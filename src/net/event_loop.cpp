#include "duplex/net/event_loop.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <system_error>

#include "duplex/net/connection.hpp"
#include "duplex/net/error_log.hpp"
#include "duplex/net/loop_timer.hpp"
#include "io_ring.hpp"
#include "loop_tls_bio.hpp"

namespace duplex::net {

namespace {
// Few loops live at a time: a vector searched under the mutex.
// Never destroyed: a resolver thread may still look a loop up while the
// process exits.
std::vector<EventLoop*>& live_loops() {
  static auto* loops = new std::vector<EventLoop*>;
  return *loops;
}
std::atomic<std::uint32_t> next_loop_id{1};

// automatic, resolved by the environment: DUPLEX_IO=epoll|io_uring|auto.
// Without it (or with auto), io_uring where the kernel allows it, else epoll.
IoBackend resolve_automatic() {
  const char* env = std::getenv("DUPLEX_IO");
  if (!env || !*env) return IoBackend::automatic;
  const auto io = parse_io_backend(env);
  if (!io) throw std::invalid_argument(std::string("DUPLEX_IO=") + env + ": expected auto, epoll or io_uring");
  return *io;
}

using detail::IoRing;
}  // namespace

std::mutex& EventLoop::live_mutex() {
  static auto* m = new std::mutex;  // never destroyed, as live_loops()
  return *m;
}

EventLoop* EventLoop::live(std::uint32_t id) {
  for (EventLoop* loop : live_loops())
    if (loop->id_ == id) return loop;
  return nullptr;
}

EventLoop::EventLoop(std::size_t read_buffer_size, IoBackend io, RingBuffers ring_buffers)
    : read_buffer_(new std::uint8_t[read_buffer_size]),
      read_buffer_size_(read_buffer_size),
      epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)),
      id_(next_loop_id.fetch_add(1, std::memory_order_relaxed)) {
  if (epoll_fd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  wake_.fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_.fd < 0 || !watch(wake_.fd, &wake_, EPOLLIN)) {
    const int error = errno;
    if (wake_.fd >= 0) ::close(wake_.fd);
    ::close(epoll_fd_);
    throw std::system_error(error, std::generic_category(), "eventfd");
  }
  if (io == IoBackend::automatic) io = resolve_automatic();
  if (io != IoBackend::epoll) {
    std::string why_not;
    ring_ = IoRing::open(ring_buffers, why_not);
    if (!ring_) {
      if (io == IoBackend::io_uring) {
        ::close(wake_.fd);
        ::close(epoll_fd_);
        throw std::runtime_error("io_uring is not available here: " + why_not);
      }
      io_fallback_reason_ = why_not;
    }
  }
  std::lock_guard lock(live_mutex());
  live_loops().push_back(this);
}

EventLoop::~EventLoop() {
  {
    // From now on a reference dropped elsewhere destroys its connection in
    // place: nothing of this loop is left for it to touch.
    std::lock_guard lock(live_mutex());
    auto& loops = live_loops();
    loops.erase(std::remove(loops.begin(), loops.end(), this), loops.end());
  }
  // The kernel lets go of every buffer it may still read or fill before
  // anything is freed.
  // A connection that ended with a request still in the ring (a TLS peer's
  // close_notify ends it before its receive does) is kept alive by that
  // request: its last completion lets it go, here as in a turn.
  if (ring_)
    ring_->cancel_all_and_wait([](std::uint64_t data, int result, std::uint32_t flags) {
      auto* connection = reinterpret_cast<Connection*>(static_cast<std::uintptr_t>(data & ~IoRing::op_mask));
      const auto op = static_cast<IoRing::Op>(data & IoRing::op_mask);
      if ((op != IoRing::Op::recv && op != IoRing::Op::send) || !connection->ended()) return;  // abandon() below
      auto last = op == IoRing::Op::recv ? connection->on_ring_recv(result, flags) : connection->on_ring_send(result);
    });
  // Off the loop's thread nothing was drained: closing the ring ends its
  // requests (the kernel lets go of their buffers as it closes), so the ended
  // connections they held are released, before anything else is freed.
  if (!awaiting_ring_.empty()) {
    ring_.reset();
    auto held = std::move(awaiting_ring_);
    awaiting_ring_.clear();
    for (Connection* c : held) auto last = c->release_after_ring_closed();
  }
  // Connections still open keep themselves alive; release them (no callbacks).
  for (auto& c : connections()) c->abandon();
  for (auto& c : reap_list_) c->abandon();
  reap_list_.clear();
  // Tasks never run now: destroying them may destroy connections, in place.
  std::vector<Task>().swap(tasks_);
  {
    std::vector<Task> remote;
    {
      std::lock_guard lock(remote_mutex_);
      remote.swap(remote_tasks_);
    }
  }
  for (auto& [due, timer] : timers_) timer->pending_ = false;
  timers_.clear();
  ring_.reset();
  ::close(wake_.fd);
  ::close(epoll_fd_);
}

bool EventLoop::watch(int fd, Connection* c) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = reinterpret_cast<std::uintptr_t>(c);
  return ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) == 0;
}

// Connections are at least 8-byte aligned: bit 0 of the epoll data tells
// another watcher from a connection.
bool EventLoop::watch(int fd, FdWatcher* w, std::uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = reinterpret_cast<std::uintptr_t>(w) | 1u;
  return ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) == 0;
}

void EventLoop::unwatch(int fd) { ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr); }

void EventLoop::Wake::on_events(std::uint32_t) {
  std::uint64_t count;
  while (::read(fd, &count, sizeof count) > 0) {
  }
}

namespace {
template <typename Fn>
void guarded(const char* what, Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    log_error(std::string("event loop: ") + what + " threw: " + e.what());
  } catch (...) {
    log_error(std::string("event loop: ") + what + " threw a non-standard exception");
  }
}
}  // namespace

void EventLoop::dispatch(std::uint32_t events, std::uint64_t data) {
  if (data & 1u)
    reinterpret_cast<FdWatcher*>(static_cast<std::uintptr_t>(data & ~std::uint64_t{1}))->on_events(events);
  else
    reinterpret_cast<Connection*>(static_cast<std::uintptr_t>(data))->on_events(events);
}

int EventLoop::wait_timeout(Clock::time_point now) const {
  if (!tasks_.empty() || stop_.load(std::memory_order_relaxed)) return 0;
  Clock::time_point due = next_tick_;
  if (!timers_.empty()) due = std::min(due, timers_.begin()->first);
  if (due <= now) return 0;
  // Rounded up: waking a little late is harmless, early would spin.
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(due - now).count();
  return static_cast<int>(std::min<std::int64_t>(ms, 1000));
}

std::size_t EventLoop::wait_epoll(int timeout_ms) {
  constexpr int batch = 256;
  epoll_event events[batch];
  const int n = ::epoll_wait(epoll_fd_, events, batch, timeout_ms);
  for (int i = 0; i < n; ++i) guarded("an event handler", [&] { dispatch(events[i].events, events[i].data.u64); });
  return n > 0 ? static_cast<std::size_t>(n) : 0;
}

// One io_uring_enter: the requests this turn prepared (sends, receives,
// cancels) go in, and it sleeps until a completion or the timeout.
std::size_t EventLoop::wait_ring(int timeout_ms) {
  if (!epoll_polled_) {
    ring_->poll_in(epoll_fd_, IoRing::tag(nullptr, IoRing::Op::epoll));
    epoll_polled_ = true;
  }
  ring_->submit_and_wait(timeout_ms);
  // Sends complete before anything else of the batch, as epoll reports a
  // socket writable before readable: a connection that drained hears it
  // (on_drain) before it reads what came with it (a close, say).
  completions_.clear();
  ring_->drain([this](std::uint64_t data, int result, std::uint32_t flags) {
    completions_.push_back({data, result, flags});
  });
  for (const Completion& c : completions_)
    if ((c.data & IoRing::op_mask) == static_cast<std::uint64_t>(IoRing::Op::send))
      guarded("an event handler", [&] { complete(c.data, c.result, c.flags); });
  for (const Completion& c : completions_)
    if ((c.data & IoRing::op_mask) != static_cast<std::uint64_t>(IoRing::Op::send))
      guarded("an event handler", [&] { complete(c.data, c.result, c.flags); });
  return completions_.size();
}

void EventLoop::complete(std::uint64_t data, int result, std::uint32_t flags) {
  auto* connection = reinterpret_cast<Connection*>(static_cast<std::uintptr_t>(data & ~IoRing::op_mask));
  switch (static_cast<IoRing::Op>(data & IoRing::op_mask)) {
    case IoRing::Op::epoll:
      // Sockets still on readiness: what epoll has now, without waiting.
      epoll_polled_ = false;
      wait_epoll(0);
      break;
    case IoRing::Op::recv: {
      auto last = connection->on_ring_recv(result, flags);
      break;  // `last` (if any) frees the connection here, outside its own code
    }
    case IoRing::Op::send: {
      auto last = connection->on_ring_send(result);
      break;
    }
    case IoRing::Op::handler:
      reinterpret_cast<detail::RingHandler*>(static_cast<std::uintptr_t>(data & ~IoRing::op_mask))
          ->on_ring_completion(result, flags);
      break;
    case IoRing::Op::ignored:
      break;
  }
}

std::size_t EventLoop::run_turn(bool may_sleep) {
  const int timeout = may_sleep ? wait_timeout(Clock::now()) : 0;
  std::size_t handled = ring_ ? wait_ring(timeout) : wait_epoll(timeout);
  const Clock::time_point now = Clock::now();
  if (now >= next_tick_) {
    // One wheel tick per turn at most; a late turn catches up on the next ones.
    next_tick_ += tick;
    if (next_tick_ < now) next_tick_ = now + tick;
    guarded("a connection timer", [&] { wheel_.advance([](TimerNode* node) { static_cast<Connection*>(node)->on_timer(); }); });
  }
  if (!timers_.empty() && timers_.begin()->first <= now) handled += run_timers(now);
  {
    std::lock_guard lock(remote_mutex_);
    if (!remote_tasks_.empty()) {
      if (tasks_.empty()) {
        tasks_.swap(remote_tasks_);
      } else {
        for (auto& t : remote_tasks_) tasks_.push_back(std::move(t));
        remote_tasks_.clear();
      }
    }
  }
  return handled + run_tasks();
}

std::size_t EventLoop::run_timers(Clock::time_point now) {
  std::size_t ran = 0;
  // Only the timers due now: one a handler starts for "now" waits for the next turn.
  while (!timers_.empty() && timers_.begin()->first <= now) {
    LoopTimer* t = timers_.begin()->second;
    timers_.erase(timers_.begin());
    t->pending_ = false;
    Task fn = std::move(t->fn_);
    guarded("a timer", [&] { fn(); });  // may destroy or restart t
    ++ran;
  }
  return ran;
}

std::size_t EventLoop::run_tasks() {
  // The tasks queued so far; those they post run next turn, after its events.
  std::vector<Task> list;
  list.swap(tasks_);
  const std::size_t ran = list.size();
  for (auto& queued : list) {
    // Its captures die right after it runs, before the next task.
    Task t = std::move(queued);
    guarded("a posted task", [&] { t(); });
  }
  list.clear();
  if (tasks_.empty()) tasks_.swap(list);  // keep the allocation
  return ran;
}

void EventLoop::run() {
  thread_.store(std::this_thread::get_id());
  next_tick_ = Clock::now() + tick;
  while (!stop_.load(std::memory_order_acquire)) run_turn(true);
  stop_.store(false);
  thread_.store(std::thread::id());
}

std::size_t EventLoop::poll() {
  const std::thread::id before = thread_.load();
  thread_.store(std::this_thread::get_id());
  if (next_tick_ == Clock::time_point{}) next_tick_ = Clock::now() + tick;
  const std::size_t handled = run_turn(false);
  thread_.store(before);
  return handled;
}

void EventLoop::stop() {
  stop_.store(true, std::memory_order_release);
  const std::uint64_t one = 1;
  [[maybe_unused]] const auto n = ::write(wake_.fd, &one, sizeof one);
}

void EventLoop::post(Task fn) {
  if (running_in_this_thread()) {
    tasks_.push_back(std::move(fn));
    return;
  }
  bool was_empty;
  {
    std::lock_guard lock(remote_mutex_);
    was_empty = remote_tasks_.empty();
    remote_tasks_.push_back(std::move(fn));
  }
  if (was_empty) {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wake_.fd, &one, sizeof one);
  }
}

bool EventLoop::running_in_this_thread() const { return thread_.load(std::memory_order_relaxed) == std::this_thread::get_id(); }

std::uint64_t EventLoop::deadline_after(Millis d) const {
  const auto ticks = (d.count() + tick.count() - 1) / tick.count();
  return wheel_.now() + static_cast<std::uint64_t>(ticks < 1 ? 1 : ticks);
}

std::vector<std::shared_ptr<Connection>> EventLoop::connections() {
  // Every unfinished connection stays linked in the wheel (see
  // Connection::reschedule_timer), so the wheel doubles as the registry.
  std::vector<std::shared_ptr<Connection>> all;
  wheel_.for_each([&](TimerNode* n) { all.push_back(static_cast<Connection*>(n)->shared_from_this()); });
  return all;
}

std::string& EventLoop::cork_for(Connection* c) {
  if (corked_ != c) {
    if (corked_) corked_->uncork();
    // Whatever is here belongs to nobody now: never hand it to `c`.
    cork_.clear();
    corked_ = c;
  }
  return cork_;
}

detail::LoopTlsBio& EventLoop::tls_bio() {
  if (!tls_bio_) tls_bio_ = std::make_unique<detail::LoopTlsBio>();
  return *tls_bio_;
}

std::string& EventLoop::discard_buffer() {
  discard_.clear();
  if (discard_.capacity() > (64u << 10)) std::string().swap(discard_);
  return discard_;
}

void EventLoop::schedule_reap(std::shared_ptr<Connection> c) {
  reap_list_.push_back(std::move(c));
  if (!reap_posted_) {
    reap_posted_ = true;
    post([this] { run_reaps(); });
  }
}

void EventLoop::run_reaps() {
  reap_posted_ = false;
  // A closing callback may end further connections: they join the list and
  // are reaped by the next posted run, not during this loop.
  std::vector<std::shared_ptr<Connection>> list;
  list.swap(reap_list_);
  for (auto& c : list) c->reap();
}

void EventLoop::schedule_flush(Connection* c) {
  flush_list_.push_back(c->weak_from_this());
  if (!flush_posted_) {
    flush_posted_ = true;
    // Runs after the handlers already queued in this turn: every frame queued
    // meanwhile leaves in one write per connection.
    post([this] { run_flushes(); });
  }
}

void EventLoop::run_flushes() {
  flush_posted_ = false;
  std::vector<std::weak_ptr<Connection>> list;
  list.swap(flush_list_);
  for (auto& w : list)
    if (auto c = w.lock()) c->flush();
  if (flush_list_.capacity() < list.capacity()) {
    list.clear();
    flush_list_.swap(list);  // keep the larger allocation for the next turn
  }
}

// ---- LoopTimer ----------------------------------------------------------------

LoopTimer::~LoopTimer() {
  if (pending_) loop_->timers_.erase(at_);
}

void LoopTimer::start(EventLoop::Clock::duration delay, Task fn) {
  cancel();
  fn_ = std::move(fn);
  at_ = loop_->timers_.emplace(EventLoop::Clock::now() + delay, this);
  pending_ = true;
}

void LoopTimer::cancel() {
  if (!pending_) return;
  loop_->timers_.erase(at_);
  pending_ = false;
  loop_->post([doomed = std::move(fn_)] {});  // destroyed after the caller returns
}

}  // namespace duplex::net
