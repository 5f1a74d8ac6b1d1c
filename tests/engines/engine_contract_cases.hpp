// Bodies of the engine contract cases that every engine passes alike, shared
// by the typed EngineContract suite (tests/unit/test_engines.cpp: memory and
// SQLite) and RedisContract (tests/engines/test_redis_engine.cpp). Each test
// sets its engine up, calls the body, then adds its engine's own checks.
// `epoch_of(channel)` reads the channel's epoch (one per engine for memory
// and SQLite, one per channel for Redis).
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "engine_test_support.hpp"

namespace duplex::test::contract {

using EpochOf = std::function<std::string(const std::string& channel)>;

// `data` is the first publication's (anonymous) data.
inline void history_keeps_data_publisher_and_time(engines::Engine& engine, TestClock& clock, const std::string& data) {
  engines::PublishRequest anonymous = message("news", data);
  anonymous.publisher.clear();
  ASSERT_EQ(publish_sync(engine, std::move(anonymous)).error, engines::EngineErrc::ok);
  clock.advance(250ms);
  ASSERT_EQ(publish_sync(engine, message("news", "[1,2]")).error, engines::EngineErrc::ok);
  const engines::HistoryResult result = history_sync(engine, newest("news", 10));
  ASSERT_EQ(result.publications.size(), 2u);
  EXPECT_EQ(result.publications[0]->data, data);
  EXPECT_EQ(result.publications[0]->publisher, "");
  EXPECT_EQ(result.publications[0]->time_ms, clock.now() - 250);
  EXPECT_EQ(result.publications[1]->data, "[1,2]");
  EXPECT_EQ(result.publications[1]->publisher, kPublisher);
  EXPECT_EQ(result.publications[1]->time_ms, clock.now());
}

// Returns the full history of "c" (offsets 1 to 5) for more checks.
inline engines::HistoryResult history_without_since_gives_newest_in_order_or_reversed(engines::Engine& engine) {
  for (int i = 1; i <= 5; ++i) publish_sync(engine, message("c", std::to_string(i)));
  EXPECT_EQ(offsets_of(history_sync(engine, newest("c", 3))), (std::vector<std::uint64_t>{3, 4, 5}));
  EXPECT_EQ(offsets_of(history_sync(engine, newest("c", 3, keep(100), true))), (std::vector<std::uint64_t>{5, 4, 3}));
  engines::HistoryResult all = history_sync(engine, newest("c", 100));
  EXPECT_EQ(offsets_of(all), range(1, 5));
  if (all.publications.size() == 5) {
    EXPECT_EQ(all.publications[4]->data, "5");
  }
  const engines::HistoryResult only_top = history_sync(engine, newest("c", 0));
  EXPECT_TRUE(only_top.publications.empty());
  EXPECT_EQ(only_top.top.offset, 5u);
  return all;
}

inline void history_is_trimmed_to_size(engines::Engine& engine, const EpochOf& epoch_of) {
  const std::string epoch = epoch_of("c");
  for (int i = 1; i <= 6; ++i) publish_sync(engine, message("c", std::to_string(i), keep(3)));
  EXPECT_EQ(offsets_of(history_sync(engine, newest("c", 10, keep(3)))), (std::vector<std::uint64_t>{4, 5, 6}));

  const engines::HistoryResult covered = history_sync(engine, after("c", {epoch, 3}, 10, keep(3)));
  EXPECT_EQ(offsets_of(covered), (std::vector<std::uint64_t>{4, 5, 6}));
  EXPECT_TRUE(covered.complete);

  const engines::HistoryResult gap = history_sync(engine, after("c", {epoch, 2}, 10, keep(3)));
  EXPECT_EQ(offsets_of(gap), (std::vector<std::uint64_t>{4, 5, 6}));
  EXPECT_FALSE(gap.complete) << "offset 3 was trimmed";
  EXPECT_FALSE(history_sync(engine, after("c", {epoch, 0}, 10, keep(3))).complete);
}

inline void complete_flag_with_since(engines::Engine& engine, const EpochOf& epoch_of) {
  using hub::StreamPosition;
  const std::string epoch = epoch_of("c");
  for (int i = 1; i <= 4; ++i) publish_sync(engine, message("c", std::to_string(i)));

  const engines::HistoryResult at_top = history_sync(engine, after("c", {epoch, 4}, 10));
  EXPECT_TRUE(at_top.complete);
  EXPECT_TRUE(at_top.publications.empty());
  EXPECT_EQ(at_top.top, (StreamPosition{epoch, 4}));

  const engines::HistoryResult ahead = history_sync(engine, after("c", {epoch, 5}, 10));
  EXPECT_FALSE(ahead.complete);
  EXPECT_TRUE(ahead.publications.empty());

  const engines::HistoryResult other_epoch = history_sync(engine, after("c", {"0000000000000000", 1}, 10));
  EXPECT_FALSE(other_epoch.complete);
  EXPECT_TRUE(other_epoch.publications.empty());
  EXPECT_EQ(other_epoch.top, (StreamPosition{epoch, 4}));

  const engines::HistoryResult limited = history_sync(engine, after("c", {epoch, 1}, 2));
  EXPECT_EQ(offsets_of(limited), (std::vector<std::uint64_t>{2, 3}));
  EXPECT_FALSE(limited.complete) << "the limit cut off offset 4";

  const engines::HistoryResult exact = history_sync(engine, after("c", {epoch, 1}, 3));
  EXPECT_EQ(offsets_of(exact), (std::vector<std::uint64_t>{2, 3, 4}));
  EXPECT_TRUE(exact.complete);

  const engines::HistoryResult everything = history_sync(engine, after("c", {epoch, 0}, 100));
  EXPECT_EQ(offsets_of(everything), range(1, 4));
  EXPECT_TRUE(everything.complete);

  const engines::HistoryResult no_limit = history_sync(engine, after("c", {epoch, 2}, 0));
  EXPECT_TRUE(no_limit.publications.empty());
  EXPECT_FALSE(no_limit.complete);

  const std::string fresh_epoch = epoch_of("never");
  const engines::HistoryResult fresh_channel = history_sync(engine, after("never", {fresh_epoch, 0}, 10));
  EXPECT_TRUE(fresh_channel.complete);
  EXPECT_EQ(fresh_channel.top, (StreamPosition{fresh_epoch, 0}));
}

inline void history_ttl_hides_expired_publications(engines::Engine& engine, TestClock& clock, const EpochOf& epoch_of) {
  const std::string epoch = epoch_of("c");
  const engines::HistoryOptions short_lived = keep(10, 1s);
  publish_sync(engine, message("c", "1", short_lived));
  publish_sync(engine, message("c", "2", short_lived));
  clock.advance(1100ms);
  publish_sync(engine, message("c", "3", short_lived));

  EXPECT_EQ(offsets_of(history_sync(engine, newest("c", 10, short_lived))), (std::vector<std::uint64_t>{3}));
  const engines::HistoryResult from_start = history_sync(engine, after("c", {epoch, 0}, 10, short_lived));
  EXPECT_EQ(offsets_of(from_start), (std::vector<std::uint64_t>{3}));
  EXPECT_FALSE(from_start.complete) << "1 and 2 expired";
  const engines::HistoryResult from_two = history_sync(engine, after("c", {epoch, 2}, 10, short_lived));
  EXPECT_EQ(offsets_of(from_two), (std::vector<std::uint64_t>{3}));
  EXPECT_TRUE(from_two.complete);

  clock.advance(1100ms);
  const engines::HistoryResult expired = history_sync(engine, newest("c", 10, short_lived));
  EXPECT_TRUE(expired.publications.empty());
  EXPECT_EQ(expired.top.offset, 3u) << "expiry never rewinds offsets";
  EXPECT_EQ(publish_sync(engine, message("c", "4", short_lived)).position.offset, 4u);
}

inline void idempotency_holds_within_one_burst(engines::Engine& engine) {
  Completions completions;
  constexpr std::size_t kRepeats = 50;
  for (std::size_t i = 0; i < kRepeats; ++i) {
    engine.publish(message("c", "same", keep(100), "burst-key"),
                   [&](engines::PublishResult result) { completions.add(std::move(result)); });
  }
  ASSERT_TRUE(completions.wait_for(kRepeats));
  std::size_t applied = 0;
  for (const auto& result : completions.results()) {
    EXPECT_EQ(result.error, engines::EngineErrc::ok);
    EXPECT_EQ(result.position.offset, 1u);
    if (!result.duplicate) ++applied;
  }
  EXPECT_EQ(applied, 1u);
}

}  // namespace duplex::test::contract
