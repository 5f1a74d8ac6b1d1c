#include "duplex/net/event_loop.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <system_error>

#include "duplex/net/connection.hpp"
#include "duplex/net/error_log.hpp"

namespace duplex::net {

namespace {
// Few loops live at a time: a vector searched under the mutex.
std::vector<EventLoop*>& live_loops() {
  static std::vector<EventLoop*> loops;
  return loops;
}
std::atomic<std::uint32_t> next_loop_id{1};
}  // namespace

std::mutex& EventLoop::live_mutex() {
  static std::mutex m;
  return m;
}

EventLoop* EventLoop::live(std::uint32_t id) {
  for (EventLoop* loop : live_loops())
    if (loop->id_ == id) return loop;
  return nullptr;
}

EventLoop::EventLoop(std::size_t read_buffer_size)
    : read_buffer_(new std::uint8_t[read_buffer_size]),
      read_buffer_size_(read_buffer_size),
      tick_timer_(io_),
      epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)),
      epoll_watch_(io_),
      id_(next_loop_id.fetch_add(1, std::memory_order_relaxed)) {
  if (epoll_fd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  epoll_watch_.assign(::dup(epoll_fd_));  // Asio owns (and closes) its duplicate
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
  // Connections still open keep themselves alive; release them (no callbacks).
  for (auto& c : connections()) c->abandon();
  for (auto& c : reap_list_) c->abandon();
  reap_list_.clear();
  asio::error_code ec;
  epoll_watch_.close(ec);
  ::close(epoll_fd_);
}

bool EventLoop::watch(int fd, Connection* c) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = c;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) return false;
  arm_epoll();
  return true;
}

void EventLoop::unwatch(int fd) { ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr); }

void EventLoop::arm_epoll() {
  if (epoll_armed_) return;
  epoll_armed_ = true;
  epoll_watch_.async_wait(asio::posix::stream_descriptor::wait_read, [this](const asio::error_code& ec) {
    epoll_armed_ = false;
    if (ec) return;
    poll_epoll();
  });
}

void EventLoop::poll_epoll() {
  constexpr int batch = 256;
  epoll_event events[batch];
  const int n = ::epoll_wait(epoll_fd_, events, batch, 0);
  for (int i = 0; i < n; ++i) static_cast<Connection*>(events[i].data.ptr)->on_events(events[i].events);
  if (n == batch) {
    // More may be ready; the outer edge will not fire again for them.
    asio::post(io_, [this] { poll_epoll(); });
  } else {
    arm_epoll();
  }
}

void EventLoop::run() {
  auto guard = asio::make_work_guard(io_);
  start_ticking();
  for (;;) {
    try {
      io_.run();
      break;
    } catch (const std::exception& e) {
      log_error(std::string("event loop: a handler threw: ") + e.what());
    } catch (...) {
      log_error("event loop: a handler threw a non-standard exception");
    }
  }
  tick_timer_.cancel();
  ticking_ = false;
  io_.restart();
}

void EventLoop::stop() { io_.stop(); }

void EventLoop::post(std::function<void()> fn) { asio::post(io_, std::move(fn)); }

bool EventLoop::running_in_this_thread() const {
  return const_cast<asio::io_context&>(io_).get_executor().running_in_this_thread();
}

std::uint64_t EventLoop::deadline_after(Millis d) const {
  const auto ticks = (d.count() + tick.count() - 1) / tick.count();
  return wheel_.now() + static_cast<std::uint64_t>(ticks < 1 ? 1 : ticks);
}

void EventLoop::start_ticking() {
  if (ticking_) return;
  ticking_ = true;
  tick_timer_.expires_after(tick);
  tick_timer_.async_wait([this](const asio::error_code& ec) {
    if (ec) {
      ticking_ = false;
      return;
    }
    wheel_.advance([](TimerNode* node) { static_cast<Connection*>(node)->on_timer(); });
    ticking_ = false;
    start_ticking();
  });
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

std::string& EventLoop::discard_buffer() {
  discard_.clear();
  if (discard_.capacity() > (64u << 10)) std::string().swap(discard_);
  return discard_;
}

void EventLoop::schedule_reap(std::shared_ptr<Connection> c) {
  reap_list_.push_back(std::move(c));
  if (!reap_posted_) {
    reap_posted_ = true;
    asio::post(io_, [this] { run_reaps(); });
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
    asio::post(io_, [this] { run_flushes(); });
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

}  // namespace duplex::net
