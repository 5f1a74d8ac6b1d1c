// A coarse hashed timer wheel: O(1) schedule/cancel, one tick timer per loop
// instead of a timer object per connection.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>

namespace duplex::net {

// Embedded in whatever owns a deadline (intrusive: no allocation).
struct TimerNode {
  TimerNode* prev = nullptr;
  TimerNode* next = nullptr;
  // In ticks, modulo 2^32 (compared wrap-safe): 32 bits leave tail padding
  // that a Connection fills with a member of its own (idle memory).
  std::uint32_t deadline = 0;
  bool linked() const { return prev != nullptr; }
};

class TimerWheel {
 public:
  static constexpr std::size_t slot_count = 1024;  // power of two
  // The farthest a deadline can be from now: deadlines are kept modulo 2^32
  // and compared wrap-safe. schedule() brings a later one in to this.
  static constexpr std::uint64_t max_ticks_ahead = 0x7FFFFFFF;

  TimerWheel();
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  std::uint64_t now() const { return now_; }
  // (Re)schedules `node` to expire at tick `deadline` (at least the next
  // tick, at most max_ticks_ahead from now).
  void schedule(TimerNode* node, std::uint64_t deadline);
  static void cancel(TimerNode* node);

  // Calls f(node) for every scheduled node (the callback must not schedule or cancel).
  template <typename F>
  void for_each(F&& f) {
    for (auto& head : slots_)
      for (TimerNode* n = head.next; n != &head; n = n->next) f(n);
  }

  // Advances one tick and calls on_expire(node) for every node now due. A
  // callback may schedule or cancel any node, including others due now.
  template <typename OnExpire>
  void advance(OnExpire&& on_expire) {
    ++now_;
    TimerNode& head = slots_[now_ & (slot_count - 1)];
    TimerNode due;  // local list of expired nodes
    due.prev = due.next = &due;
    for (TimerNode* n = head.next; n != &head;) {
      TimerNode* next = n->next;
      if (static_cast<std::int32_t>(n->deadline - static_cast<std::uint32_t>(now_)) <= 0) {
        unlink(n);
        link_after(&due, n);
      }
      n = next;
    }
    while (due.next != &due) {
      TimerNode* n = due.next;
      unlink(n);
      on_expire(n);
    }
  }

 private:
  static void unlink(TimerNode* n);
  static void link_after(TimerNode* pos, TimerNode* n);
  std::array<TimerNode, slot_count> slots_;
  std::uint64_t now_ = 0;
};

}  // namespace duplex::net
