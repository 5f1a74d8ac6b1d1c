// The NATS engine's reorder/gap-fill stage (src/engines/ordered_delivery.hpp),
// driven by hand: publications in any order, a synthetic clock, fills
// answered by the test.
#include <algorithm>
#include <chrono>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engines/ordered_delivery.hpp"

namespace {

using duplex::engines::detail::OrderedDelivery;
using duplex::engines::detail::OrderedDeliveryOptions;
using duplex::hub::Publication;
using duplex::hub::PublicationPtr;
using namespace std::chrono_literals;

PublicationPtr pub(std::uint64_t offset) {
  auto p = std::make_shared<Publication>();
  p->offset = offset;
  p->data = "\"m" + std::to_string(offset) + "\"";
  return p;
}

struct Delivered {
  std::string channel;
  std::string epoch;
  std::uint64_t offset;
};

class OrderedDeliveryTest : public ::testing::Test {
 protected:
  OrderedDeliveryTest() { make({}); }

  void make(OrderedDeliveryOptions options) {
    OrderedDelivery::Callbacks callbacks;
    callbacks.deliver = [this](const std::string& channel, const std::string& epoch, const PublicationPtr& p) {
      delivered.push_back({channel, epoch, p->offset});
    };
    callbacks.fill = [this](const OrderedDelivery::FillRequest& request) { fills.push_back(request); };
    callbacks.resubscribe = [this](const std::string& channel) { resubscribes.push_back(channel); };
    stage = std::make_unique<OrderedDelivery>(options, std::move(callbacks));
  }

  std::vector<std::uint64_t> offsets(const std::string& channel = "a") const {
    std::vector<std::uint64_t> out;
    for (const auto& d : delivered)
      if (d.channel == channel) out.push_back(d.offset);
    return out;
  }

  void accept(std::uint64_t offset, const std::string& channel = "a", const std::string& epoch = "e1") {
    stage->accept(channel, epoch, pub(offset), now);
  }

  // Answers the last fill request from a "history" holding every offset in
  // [first_kept, last_kept].
  void answer_last_fill(std::uint64_t first_kept, std::uint64_t last_kept) {
    ASSERT_FALSE(fills.empty());
    const auto request = fills.back();
    std::vector<PublicationPtr> read;
    bool complete = true;
    for (std::uint64_t o = request.from; o <= request.to; ++o) {
      if (o >= first_kept && o <= last_kept)
        read.push_back(pub(o));
      else
        complete = false;
    }
    stage->filled(request.channel, request.id, read, complete, now);
  }

  std::unique_ptr<OrderedDelivery> stage;
  OrderedDelivery::TimePoint now = OrderedDelivery::TimePoint{} + 1000s;
  std::vector<Delivered> delivered;
  std::vector<OrderedDelivery::FillRequest> fills;
  std::vector<std::string> resubscribes;
};

TEST_F(OrderedDeliveryTest, InOrderIsDeliveredAtOnce) {
  stage->set_baseline("a", "e1", 10, now);
  for (std::uint64_t o = 11; o <= 20; ++o) accept(o);
  std::vector<std::uint64_t> want;
  for (std::uint64_t o = 11; o <= 20; ++o) want.push_back(o);
  EXPECT_EQ(offsets(), want);
  for (const auto& d : delivered) EXPECT_EQ(d.epoch, "e1");
  EXPECT_EQ(stage->held("a"), 0u);
  EXPECT_FALSE(stage->next_deadline());
  EXPECT_TRUE(fills.empty());
  EXPECT_TRUE(resubscribes.empty());
}

TEST_F(OrderedDeliveryTest, UntrackedChannelsAreIgnored) {
  accept(1, "nobody");
  EXPECT_TRUE(delivered.empty());
  EXPECT_FALSE(stage->tracked("nobody"));
}

TEST_F(OrderedDeliveryTest, ReorderedArrivalsAreDeliveredInOrder) {
  stage->set_baseline("a", "e1", 0, now);
  accept(2);
  accept(3);
  EXPECT_TRUE(delivered.empty());
  EXPECT_EQ(stage->held("a"), 2u);
  ASSERT_TRUE(stage->next_deadline());
  EXPECT_EQ(*stage->next_deadline(), now + 500ms);
  now += 100ms;
  accept(1);
  EXPECT_EQ(offsets(), (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_EQ(stage->held("a"), 0u);
  EXPECT_FALSE(stage->next_deadline());
  now += 1s;
  stage->tick(now);
  EXPECT_TRUE(fills.empty());
  EXPECT_EQ(stage->stats().reordered, 2u);
}

TEST_F(OrderedDeliveryTest, ShuffledStreamComesOutSorted) {
  stage->set_baseline("a", "e1", 0, now);
  std::vector<std::uint64_t> order;
  for (std::uint64_t o = 1; o <= 1000; ++o) order.push_back(o);
  std::mt19937 rng(7);
  // Shuffle within windows of 16: bounded disorder, as two racing publishers give.
  for (std::size_t i = 0; i < order.size(); i += 16)
    std::shuffle(order.begin() + static_cast<long>(i),
                 order.begin() + static_cast<long>(std::min(order.size(), i + 16)), rng);
  for (auto o : order) accept(o);
  std::vector<std::uint64_t> want(1000);
  for (std::uint64_t o = 0; o < 1000; ++o) want[o] = o + 1;
  EXPECT_EQ(offsets(), want);
  EXPECT_TRUE(fills.empty());
}

TEST_F(OrderedDeliveryTest, DuplicatesAreDropped) {
  stage->set_baseline("a", "e1", 5, now);
  accept(3);  // at or below the baseline: in history already
  accept(5);
  accept(6);
  accept(6);
  accept(8);
  accept(8);  // held twice
  accept(7);
  accept(7);
  accept(8);
  EXPECT_EQ(offsets(), (std::vector<std::uint64_t>{6, 7, 8}));
  EXPECT_EQ(stage->stats().duplicates, 6u);
}

TEST_F(OrderedDeliveryTest, GapIsFilledFromHistoryAfterTheWindow) {
  stage->set_baseline("a", "e1", 0, now);
  accept(1);
  accept(4);
  accept(6);
  EXPECT_EQ(offsets(), (std::vector<std::uint64_t>{1}));
  now += 499ms;
  stage->tick(now);
  EXPECT_TRUE(fills.empty()) << "the window has not expired";
  now += 1ms;
  stage->tick(now);
  ASSERT_EQ(fills.size(), 1u);
  EXPECT_EQ(fills[0].channel, "a");
  EXPECT_EQ(fills[0].epoch, "e1");
  EXPECT_EQ(fills[0].from, 2u);
  EXPECT_EQ(fills[0].to, 5u);  // one read covers every gap up to the newest held offset
  // While the fill is in flight no second one is asked for.
  now += 1s;
  stage->tick(now);
  EXPECT_EQ(fills.size(), 1u);
  EXPECT_FALSE(stage->next_deadline());
  // Arrivals during the fill still go out when they close the gap.
  accept(2);
  EXPECT_EQ(offsets(), (std::vector<std::uint64_t>{1, 2}));
  answer_last_fill(1, 100);
  EXPECT_EQ(offsets(), (std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_TRUE(resubscribes.empty());
  EXPECT_EQ(stage->stats().filled, 2u);  // 3 and 5
  accept(7);
  EXPECT_EQ(offsets().back(), 7u);
}

TEST_F(OrderedDeliveryTest, UnfillableGapAsksForResubscribeAndResets) {
  stage->set_baseline("a", "e1", 0, now);
  accept(1);
  accept(3);
  now += 600ms;
  stage->tick(now);
  ASSERT_EQ(fills.size(), 1u);
  answer_last_fill(3, 100);  // offset 2 expired from history
  EXPECT_EQ(resubscribes, (std::vector<std::string>{"a"}));
  EXPECT_TRUE(stage->tracked("a"));
  EXPECT_FALSE(stage->baselined("a"));
  EXPECT_EQ(stage->held("a"), 0u);
  // Unbaselined: arrivals wait for the new baseline.
  accept(4);
  accept(5);
  EXPECT_EQ(offsets(), (std::vector<std::uint64_t>{1}));
  stage->set_baseline("a", "e1", 4, now);
  EXPECT_EQ(offsets(), (std::vector<std::uint64_t>{1, 5}));
}

TEST_F(OrderedDeliveryTest, CompleteFillThatMissesOffsetsStillResubscribes) {
  stage->set_baseline("a", "e1", 0, now);
  accept(3);
  now += 1s;
  stage->tick(now);
  ASSERT_EQ(fills.size(), 1u);
  stage->filled("a", fills[0].id, {pub(2)}, true, now);  // claims complete, lacks 1
  EXPECT_EQ(resubscribes.size(), 1u);
  EXPECT_TRUE(delivered.empty());
}

TEST_F(OrderedDeliveryTest, StaleFillAnswersAreIgnored) {
  stage->set_baseline("a", "e1", 0, now);
  accept(2);
  now += 1s;
  stage->tick(now);
  ASSERT_EQ(fills.size(), 1u);
  const auto id = fills[0].id;
  stage->reset("a");
  stage->set_baseline("a", "e1", 10, now);
  stage->filled("a", id, {pub(1)}, true, now);
  stage->filled("a", 0, {pub(11)}, true, now);
  EXPECT_TRUE(delivered.empty());
  EXPECT_TRUE(resubscribes.empty());
  // A removed channel's answer too.
  accept(12);
  now += 1s;
  stage->tick(now);
  ASSERT_EQ(fills.size(), 2u);
  stage->remove("a");
  stage->filled("a", fills[1].id, {pub(11)}, true, now);
  EXPECT_TRUE(delivered.empty());
  EXPECT_FALSE(stage->tracked("a"));
}

TEST_F(OrderedDeliveryTest, EpochChangeResubscribes) {
  stage->set_baseline("a", "e1", 0, now);
  accept(1);
  accept(2);
  accept(1, "a", "e2");  // history was lost: offsets restart in a new epoch
  EXPECT_EQ(resubscribes, (std::vector<std::string>{"a"}));
  EXPECT_FALSE(stage->baselined("a"));
  accept(2, "a", "e2");
  // The new baseline (read after the resubscribe) decides what is left.
  stage->set_baseline("a", "e2", 1, now);
  ASSERT_EQ(delivered.size(), 3u);
  EXPECT_EQ(delivered[2].offset, 2u);
  EXPECT_EQ(delivered[2].epoch, "e2");
}

TEST_F(OrderedDeliveryTest, FillReadInAnotherEpochIsIncomplete) {
  // The engine reports a fill whose epoch no longer matches as incomplete.
  stage->set_baseline("a", "e1", 0, now);
  accept(5);
  now += 1s;
  stage->tick(now);
  ASSERT_EQ(fills.size(), 1u);
  stage->filled("a", fills[0].id, {}, false, now);
  EXPECT_EQ(resubscribes.size(), 1u);
}

TEST_F(OrderedDeliveryTest, TooManyHeldResubscribes) {
  make({500ms, 100});
  stage->set_baseline("a", "e1", 0, now);
  stage->set_baseline("b", "e1", 0, now);
  for (std::uint64_t o = 2; o <= 101; ++o) accept(o);
  EXPECT_TRUE(resubscribes.empty());
  EXPECT_EQ(stage->held("a"), 100u);
  accept(102);
  EXPECT_EQ(resubscribes, (std::vector<std::string>{"a"}));
  EXPECT_EQ(stage->held("a"), 0u);
  // Other channels are untouched.
  accept(1, "b");
  EXPECT_EQ(offsets("b"), (std::vector<std::uint64_t>{1}));
}

TEST_F(OrderedDeliveryTest, BaselineSetAfterEarlyArrivals) {
  stage->add("a");
  EXPECT_TRUE(stage->tracked("a"));
  EXPECT_FALSE(stage->baselined("a"));
  accept(7);
  accept(9);
  accept(8);
  accept(10, "a", "old");  // another epoch: dropped at the baseline
  accept(11);
  EXPECT_TRUE(delivered.empty());
  EXPECT_FALSE(stage->next_deadline()) << "no gaps before the baseline";
  stage->set_baseline("a", "e1", 8, now);  // 7 and 8 are in the history read
  EXPECT_EQ(offsets(), (std::vector<std::uint64_t>{9}));
  // 10 is missing (its arrival was of the old epoch): a gap before 11.
  ASSERT_TRUE(stage->next_deadline());
  now += 1s;
  stage->tick(now);
  ASSERT_EQ(fills.size(), 1u);
  EXPECT_EQ(fills[0].from, 10u);
  EXPECT_EQ(fills[0].to, 10u);
  answer_last_fill(1, 20);
  EXPECT_EQ(offsets(), (std::vector<std::uint64_t>{9, 10, 11}));
}

TEST_F(OrderedDeliveryTest, EarlyArrivalsAreBounded) {
  make({500ms, 10});
  stage->add("a");
  for (std::uint64_t o = 1; o <= 30; ++o) accept(o);
  EXPECT_EQ(stage->held("a"), 10u);  // the lowest went first
  stage->set_baseline("a", "e1", 15, now);
  // 16..20 were dropped before the baseline: filled from history.
  EXPECT_TRUE(delivered.empty());
  stage->tick(now + 1s);
  ASSERT_EQ(fills.size(), 1u);
  EXPECT_EQ(fills[0].from, 16u);
  EXPECT_EQ(fills[0].to, 29u);
  answer_last_fill(1, 30);
  std::vector<std::uint64_t> want;
  for (std::uint64_t o = 16; o <= 30; ++o) want.push_back(o);
  EXPECT_EQ(offsets(), want);
  EXPECT_TRUE(resubscribes.empty());
}

TEST_F(OrderedDeliveryTest, BaselineNeverMovesBackwards) {
  stage->set_baseline("a", "e1", 0, now);
  accept(1);
  accept(2);
  stage->set_baseline("a", "e1", 1, now);
  accept(2);
  accept(3);
  EXPECT_EQ(offsets(), (std::vector<std::uint64_t>{1, 2, 3}));
  stage->set_baseline("a", "e1", 5, now);  // forwards: 4 and 5 come from history
  accept(4);
  accept(6);
  EXPECT_EQ(offsets(), (std::vector<std::uint64_t>{1, 2, 3, 6}));
}

TEST_F(OrderedDeliveryTest, ChannelsAreIndependent) {
  stage->set_baseline("a", "e1", 0, now);
  stage->set_baseline("b", "e9", 100, now);
  accept(2, "a");
  accept(101, "b", "e9");
  accept(102, "b", "e9");
  EXPECT_EQ(offsets("b"), (std::vector<std::uint64_t>{101, 102}));
  EXPECT_TRUE(offsets("a").empty());
  now += 1s;
  stage->tick(now);
  ASSERT_EQ(fills.size(), 1u);
  EXPECT_EQ(fills[0].channel, "a");
  EXPECT_EQ(fills[0].from, 1u);
  EXPECT_EQ(fills[0].to, 1u);
}

TEST_F(OrderedDeliveryTest, NextDeadlineFollowsTheOldestGap) {
  stage->set_baseline("a", "e1", 0, now);
  stage->set_baseline("b", "e1", 0, now);
  accept(3, "a");
  const auto first = now;
  now += 200ms;
  accept(5, "b");
  ASSERT_TRUE(stage->next_deadline());
  EXPECT_EQ(*stage->next_deadline(), first + 500ms);
  stage->tick(first + 500ms);
  ASSERT_EQ(fills.size(), 1u);
  EXPECT_EQ(fills[0].channel, "a");
  ASSERT_TRUE(stage->next_deadline());
  EXPECT_EQ(*stage->next_deadline(), now + 500ms);
}

}  // namespace
