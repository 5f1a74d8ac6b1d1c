// Bodies of the engine contract cases that every engine passes alike, shared
// by the typed EngineContract suite (tests/unit/engines/test_engines.cpp: memory and
// SQLite) and RedisContract (tests/engines/test_redis_engine.cpp). Each test
// sets its engine up, calls the body, then adds its engine's own checks.
// `epoch_of(channel)` reads the channel's epoch (one per engine for memory
// and SQLite, one per channel for Redis).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
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

// `announced()` gives the join and leave events delivered for the changes
// (a Redis node waits for them; memory and SQLite deliver before returning).
inline void presence_lists_entries_and_announces_real_changes(
    engines::Engine& engine, const std::function<std::vector<engines::ChannelEvent>()>& announced) {
  using engines::ChannelEvent;
  const hub::ClientInfo alice{"conn-a", "alice", R"({"name":"Alice"})"};
  const hub::ClientInfo bob{"conn-b", "bob", ""};
  const hub::ClientInfo carol{"conn-c", "", ""};
  engine.presence_add("room", alice, true);
  engine.presence_add("room", bob, true);
  hub::ClientInfo alice_renamed = alice;
  alice_renamed.info = R"({"name":"Al"})";
  engine.presence_add("room", alice_renamed, true);  // already present: updated, not announced

  auto entries = presence_sync(engine, "room");
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].client, "conn-a");
  EXPECT_EQ(entries[0].user, "alice");
  EXPECT_EQ(entries[0].info, R"({"name":"Al"})");
  EXPECT_EQ(entries[1].client, "conn-b");
  EXPECT_TRUE(presence_sync(engine, "elsewhere").empty());

  engine.presence_remove("room", alice, true);
  engine.presence_remove("room", alice, true);  // gone already: no second leave
  engine.presence_add("room", carol, false);    // quiet
  engine.presence_remove("room", carol, false);
  engine.presence_remove("nowhere", bob, true);

  entries = presence_sync(engine, "room");
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].client, "conn-b");

  const auto events = announced();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].kind, ChannelEvent::Kind::join);
  EXPECT_EQ(events[0].channel, "room");
  EXPECT_EQ(events[0].client.client, "conn-a");
  EXPECT_EQ(events[0].client.user, "alice");
  EXPECT_EQ(events[0].client.info, R"({"name":"Alice"})");
  EXPECT_EQ(events[1].kind, ChannelEvent::Kind::join);
  EXPECT_EQ(events[1].client.client, "conn-b");
  EXPECT_EQ(events[2].kind, ChannelEvent::Kind::leave);
  EXPECT_EQ(events[2].client.client, "conn-a");
}

// Four threads publish 300 each over "hot" and "warm"; `delivered(channel,
// count)` returns once `count` publications of the channel were delivered
// to `recorder` (or gives up; the check below then fails).
inline void concurrent_publishers_get_unique_offsets_delivered_in_order(
    engines::Engine& engine, const Recorder& recorder,
    const std::function<void(const std::string& channel, std::size_t count)>& delivered) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 300;
  const std::vector<std::string> channels{"hot", "warm"};
  Completions completions;
  std::mutex per_thread_mutex;
  std::map<std::pair<int, std::string>, std::vector<std::uint64_t>> per_thread;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string& channel = channels[static_cast<std::size_t>(i) % channels.size()];
        engine.publish(message(channel, std::to_string(t)), [&, t, channel](engines::PublishResult result) {
          {
            std::lock_guard lock(per_thread_mutex);
            per_thread[{t, channel}].push_back(result.position.offset);
          }
          completions.add(std::move(result));
        });
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_TRUE(completions.wait_for(kThreads * kPerThread));

  const std::uint64_t per_channel = kThreads * kPerThread / channels.size();
  for (const auto& channel : channels) {
    std::vector<std::uint64_t> assigned;
    for (const auto& [key, offsets] : per_thread) {
      if (key.second != channel) continue;
      EXPECT_TRUE(std::is_sorted(offsets.begin(), offsets.end())) << "one thread's publishes stay in order";
      assigned.insert(assigned.end(), offsets.begin(), offsets.end());
    }
    std::sort(assigned.begin(), assigned.end());
    EXPECT_EQ(assigned, range(1, per_channel)) << channel;
    delivered(channel, per_channel);
    EXPECT_EQ(recorder.offsets(channel), range(1, per_channel)) << channel;
  }
}

// The presence and concurrent-publisher cases for an engine that delivers on its own thread (Redis,
// NATS): subscribed first, the events waited for through `recorder`.
inline void presence_announced_through_the_fan_out(engines::Engine& engine, Recorder& recorder) {
  ASSERT_EQ(subscribe_sync(engine, "room"), engines::EngineErrc::ok);
  auto joins_and_leaves = [&] {
    std::vector<engines::ChannelEvent> found;
    for (auto& e : recorder.events())
      if (e.kind == engines::ChannelEvent::Kind::join || e.kind == engines::ChannelEvent::Kind::leave) found.push_back(e);
    return found;
  };
  presence_lists_entries_and_announces_real_changes(engine, [&] {
    EXPECT_TRUE(recorder.wait_until([&] { return joins_and_leaves().size() >= 3; }));
    std::this_thread::sleep_for(100ms);
    return joins_and_leaves();
  });
}

inline void concurrent_publishers_delivered_through_the_fan_out(engines::Engine& engine, Recorder& recorder) {
  for (const auto& channel : {"hot", "warm"}) ASSERT_EQ(subscribe_sync(engine, channel), engines::EngineErrc::ok);
  concurrent_publishers_get_unique_offsets_delivered_in_order(
      engine, recorder, [&](const std::string& channel, std::size_t count) {
        EXPECT_TRUE(recorder.wait_until([&] { return recorder.offsets(channel).size() >= count; }));
      });
}

inline void completions_may_call_back_into_the_engine(engines::Engine& engine) {
  std::promise<std::uint64_t> second_offset;
  engine.publish(message("c", "1"), [&](engines::PublishResult) {
    engine.history(after("c", {"another-epoch", 0}, 10), [&](engines::HistoryResult history) {
      EXPECT_FALSE(history.complete);
      engine.publish(message("c", "2"),
                     [&](engines::PublishResult result) { second_offset.set_value(result.position.offset); });
    });
  });
  auto future = second_offset.get_future();
  ASSERT_EQ(future.wait_for(10s), std::future_status::ready) << "a callback deadlocked the engine";
  EXPECT_EQ(future.get(), 2u);
}

// Counts each publish's completions by index; thread-safe.
class CompletionLedger {
 public:
  explicit CompletionLedger(std::size_t size) : calls_(size) {}
  std::function<void(engines::PublishResult)> callback(std::size_t index) {
    return [this, index](engines::PublishResult result) {
      calls_[index].fetch_add(1);
      std::lock_guard lock(mutex_);
      ++total_;
      if (result.error == engines::EngineErrc::ok) {
        ok_offsets_.push_back(result.position.offset);
      } else if (result.error != engines::EngineErrc::unavailable) {
        ++other_errors_;
      }
      changed_.notify_all();
    };
  }
  bool wait_for_all(std::chrono::seconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return total_ >= calls_.size(); });
  }
  // Each index completed exactly once, with ok or unavailable, and the ok
  // ones were given distinct offsets.
  void expect_each_exactly_once() {
    std::size_t never = 0, twice = 0;
    for (const auto& calls : calls_) {
      if (calls.load() == 0) ++never;
      if (calls.load() > 1) ++twice;
    }
    EXPECT_EQ(never, 0u) << "publishes whose completion never ran";
    EXPECT_EQ(twice, 0u) << "publishes completed more than once";
    std::lock_guard lock(mutex_);
    EXPECT_EQ(other_errors_, 0u) << "a publish failed with another error than unavailable";
    std::vector<std::uint64_t> offsets = ok_offsets_;
    std::sort(offsets.begin(), offsets.end());
    EXPECT_EQ(std::adjacent_find(offsets.begin(), offsets.end()), offsets.end()) << "an offset given twice";
  }
  std::size_t ok_count() const {
    std::lock_guard lock(mutex_);
    return ok_offsets_.size();
  }

 private:
  std::vector<std::atomic<int>> calls_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::size_t total_ = 0;
  std::size_t other_errors_ = 0;
  std::vector<std::uint64_t> ok_offsets_;
};

// Eight threads publish while another one stops the engine: every publish
// completes exactly once, those accepted before stop() as the engine got to
// them, later ones at once with `unavailable`; none is dropped.
inline void stop_racing_publishers_completes_every_publish_exactly_once(engines::Engine& engine) {
  constexpr std::size_t kThreads = 8;
  constexpr std::size_t kPerThread = 250;
  CompletionLedger ledger(kThreads * kPerThread);
  std::atomic<std::size_t> issued{0};
  std::vector<std::thread> publishers;
  for (std::size_t t = 0; t < kThreads; ++t) {
    publishers.emplace_back([&, t] {
      for (std::size_t i = 0; i < kPerThread; ++i) {
        const std::size_t index = t * kPerThread + i;
        engine.publish(message("race", std::to_string(index)), ledger.callback(index));
        issued.fetch_add(1);
      }
    });
  }
  std::thread stopper([&] {
    while (issued.load() < kThreads * kPerThread / 4) std::this_thread::yield();
    engine.stop();
  });
  for (auto& publisher : publishers) publisher.join();
  stopper.join();
  EXPECT_TRUE(ledger.wait_for_all(20s)) << "completions were lost";
  std::this_thread::sleep_for(100ms);  // a second completion would come now
  ledger.expect_each_exactly_once();
}

// stop() from inside a publish completion returns (no deadlock, no
// self-join); the publishes queued behind it complete exactly once; the
// publish the callback makes after stop() completes once too. Returns that
// last publish's result (a stopped engine refuses it with `unavailable`;
// the memory engine has nothing to stop and accepts it).
inline engines::PublishResult stop_from_a_completion_completes_the_rest_once(engines::Engine& engine) {
  constexpr std::size_t kBehind = 50;
  std::promise<engines::PublishResult> after_stop;
  std::atomic<int> after_stop_calls{0};
  engine.publish(message("c", "first"), [&](engines::PublishResult) {
    engine.stop();
    engine.publish(message("c", "late"), [&](engines::PublishResult result) {
      if (after_stop_calls.fetch_add(1) == 0) after_stop.set_value(std::move(result));
    });
  });
  CompletionLedger behind(kBehind);
  for (std::size_t i = 0; i < kBehind; ++i) engine.publish(message("c", std::to_string(i)), behind.callback(i));
  auto future = after_stop.get_future();
  EXPECT_EQ(future.wait_for(10s), std::future_status::ready) << "stop() from a callback blocked it";
  EXPECT_TRUE(behind.wait_for_all(10s)) << "publishes queued behind the stopping callback never completed";
  engine.stop();  // from this thread too: waits for the engine's threads
  std::this_thread::sleep_for(100ms);
  behind.expect_each_exactly_once();
  EXPECT_EQ(after_stop_calls.load(), 1);
  if (future.wait_for(0s) != std::future_status::ready) return {};
  return future.get();
}

}  // namespace duplex::test::contract
