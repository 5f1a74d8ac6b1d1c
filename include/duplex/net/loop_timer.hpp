// A one-shot timer on an event loop: `fn` runs on the loop thread once the
// delay has passed (at the first turn after it). Every method is for the
// loop's thread only; the timer must not outlive its loop.
//
// Cancelling never runs `fn`, and never destroys it inside cancel() (or
// start(), which cancels what was pending): it is destroyed in a later task,
// so a handler that owns the object calling cancel() cannot free that object
// under it.
#pragma once
#include <map>

#include "duplex/net/event_loop.hpp"

namespace duplex::net {

class LoopTimer {
 public:
  explicit LoopTimer(EventLoop& loop) : loop_(&loop) {}
  ~LoopTimer();
  LoopTimer(const LoopTimer&) = delete;
  LoopTimer& operator=(const LoopTimer&) = delete;

  // Runs `fn` once `delay` has passed; a timer already pending is cancelled.
  void start(EventLoop::Clock::duration delay, Task fn);
  void cancel();
  bool pending() const { return pending_; }
  EventLoop& loop() const { return *loop_; }

 private:
  friend class EventLoop;
  EventLoop* loop_;
  std::multimap<EventLoop::Clock::time_point, LoopTimer*>::iterator at_;
  bool pending_ = false;
  Task fn_;
};

}  // namespace duplex::net
