// The loop's coarse timer wheel: nodes expire at their tick, not before;
// deadlines beyond one revolution wait in their slot; a node scheduled "as
// far as 32 bits reach" (a connection with no deadline) never expires.
#include <gtest/gtest.h>

#include <vector>

#include "duplex/net/timer_wheel.hpp"

using duplex::net::TimerNode;
using duplex::net::TimerWheel;

namespace {
std::vector<TimerNode*> advance(TimerWheel& wheel) {
  std::vector<TimerNode*> expired;
  wheel.advance([&](TimerNode* n) { expired.push_back(n); });
  return expired;
}
}  // namespace

TEST(TimerWheel, NodesExpireAtTheirTickAndNotBefore) {
  TimerWheel wheel;
  TimerNode a, b;
  wheel.schedule(&a, 3);
  wheel.schedule(&b, 1);
  EXPECT_EQ(advance(wheel), std::vector<TimerNode*>{&b});
  EXPECT_TRUE(advance(wheel).empty());
  EXPECT_EQ(advance(wheel), std::vector<TimerNode*>{&a});
  EXPECT_FALSE(a.linked());
  EXPECT_FALSE(b.linked());
}

TEST(TimerWheel, DeadlinesBeyondOneRevolutionWaitForTheirTurn) {
  TimerWheel wheel;
  TimerNode far;
  const std::uint64_t due = TimerWheel::slot_count * 2 + 5;  // same slot as tick 5
  wheel.schedule(&far, due);
  for (std::uint64_t t = 1; t < due; ++t) ASSERT_TRUE(advance(wheel).empty()) << "tick " << t;
  EXPECT_EQ(advance(wheel), std::vector<TimerNode*>{&far});
}

TEST(TimerWheel, TheFarthestDeadlineDoesNotExpireAndCancelUnlinks) {
  TimerWheel wheel;
  TimerNode idle, cancelled;
  wheel.schedule(&idle, ~std::uint64_t{0});  // Connection: "no deadline"
  wheel.schedule(&cancelled, 2);
  TimerWheel::cancel(&cancelled);
  for (int t = 0; t < 3 * static_cast<int>(TimerWheel::slot_count); ++t) ASSERT_TRUE(advance(wheel).empty());
  EXPECT_TRUE(idle.linked());
  std::size_t registered = 0;
  wheel.for_each([&](TimerNode*) { ++registered; });
  EXPECT_EQ(registered, 1u);  // the wheel is also the registry of live connections
}

// Kept modulo 2^32, a deadline more than 2^31 ticks ahead would read as
// past: schedule() brings it in instead.
TEST(TimerWheel, ADeadlineBeyondReachIsBroughtInNotWrapped) {
  TimerWheel wheel;
  TimerNode beyond;
  wheel.schedule(&beyond, wheel.now() + (std::uint64_t{3} << 31));
  EXPECT_EQ(beyond.deadline, static_cast<std::uint32_t>(wheel.now() + TimerWheel::max_ticks_ahead));
  for (int t = 0; t < 2 * static_cast<int>(TimerWheel::slot_count); ++t) ASSERT_TRUE(advance(wheel).empty());
  EXPECT_TRUE(beyond.linked());
}

TEST(TimerWheel, ADeadlineInThePastExpiresOnTheNextTick) {
  TimerWheel wheel;
  TimerNode late;
  advance(wheel);
  advance(wheel);
  wheel.schedule(&late, 0);
  EXPECT_EQ(advance(wheel), std::vector<TimerNode*>{&late});
}
