#include "duplex/net/timer_wheel.hpp"

namespace duplex::net {

TimerWheel::TimerWheel() {
  for (auto& s : slots_) s.prev = s.next = &s;
}

void TimerWheel::unlink(TimerNode* n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = nullptr;
}

void TimerWheel::link_after(TimerNode* pos, TimerNode* n) {
  n->prev = pos;
  n->next = pos->next;
  pos->next->prev = n;
  pos->next = n;
}

void TimerWheel::schedule(TimerNode* node, std::uint64_t deadline) {
  if (node->linked()) unlink(node);
  if (deadline <= now_) deadline = now_ + 1;
  if (deadline - now_ > max_ticks_ahead) deadline = now_ + max_ticks_ahead;
  node->deadline = static_cast<std::uint32_t>(deadline);
  // Deadlines beyond one revolution stay in their slot and are skipped until due.
  link_after(&slots_[deadline & (slot_count - 1)], node);
}

void TimerWheel::cancel(TimerNode* node) {
  if (node->linked()) unlink(node);
}

}  // namespace duplex::net
