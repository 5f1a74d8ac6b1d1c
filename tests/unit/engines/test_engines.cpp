// The storage engines against the Engine contract (engine.hpp): the same
// typed suite runs on the memory and the SQLite engine, then SQLite's own
// promises (restart, kill -9 durability, batching throughput, failures) and
// the factory.
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "duplex/engines/engine.hpp"
#include "duplex/engines/factory.hpp"
#include "duplex/engines/memory_engine.hpp"
#include "duplex/engines/sqlite_engine.hpp"
#include "../../engines/engine_contract_cases.hpp"
#include "../../engines/engine_test_support.hpp"

namespace {

using namespace duplex::engines;
using namespace std::chrono_literals;
using duplex::hub::ClientInfo;

using namespace duplex::test;

// ---------------------------------------------------------------------------
// The contract, on both engines.

struct MemoryKind {
  static constexpr const char* kName = "memory";
  static std::unique_ptr<Engine> open(const std::string&, std::function<std::int64_t()> clock) {
    MemoryEngineOptions options;
    options.clock = std::move(clock);
    return std::make_unique<MemoryEngine>(std::move(options));
  }
};

struct SqliteKind {
  static constexpr const char* kName = "sqlite";
  static std::unique_ptr<Engine> open(const std::string& data_dir, std::function<std::int64_t()> clock) {
    SqliteEngineOptions options;
    options.data_dir = data_dir;
    options.clock = std::move(clock);
    return std::make_unique<SqliteEngine>(std::move(options));
  }
};

template <class Kind>
class EngineContract : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = Kind::open(dir_.path() + "/data", clock_.function());
    engine_->set_deliver(recorder_.callback());
  }
  void TearDown() override {
    if (engine_) engine_->stop();
  }
  std::string epoch() { return history_sync(*engine_, newest("any", 0)).top.epoch; }

  TempDir dir_;
  TestClock clock_;
  Recorder recorder_;  // outlives the engine, which may deliver until stopped
  std::unique_ptr<Engine> engine_;
};

struct KindNames {
  template <class Kind>
  static std::string GetName(int) {
    return Kind::kName;
  }
};

using EngineKinds = ::testing::Types<MemoryKind, SqliteKind>;
TYPED_TEST_SUITE(EngineContract, EngineKinds, KindNames);

TYPED_TEST(EngineContract, NameAndHealth) {
  EXPECT_EQ(this->engine_->name(), TypeParam::kName);
  EXPECT_TRUE(this->engine_->healthy());
}

TYPED_TEST(EngineContract, OffsetsStartAtOneAndGrowPerChannel) {
  Engine& engine = *this->engine_;
  const HistoryResult untouched = history_sync(engine, newest("chat:a", 10));
  EXPECT_TRUE(is_hex_epoch(untouched.top.epoch)) << untouched.top.epoch;
  EXPECT_EQ(untouched.top.offset, 0u);
  EXPECT_TRUE(untouched.publications.empty());
  const std::string epoch = untouched.top.epoch;

  for (std::uint64_t expected = 1; expected <= 3; ++expected) {
    const PublishResult result = publish_sync(engine, message("chat:a", std::to_string(expected)));
    ASSERT_EQ(result.error, EngineErrc::ok) << result.message;
    EXPECT_FALSE(result.duplicate);
    EXPECT_EQ(result.position, (StreamPosition{epoch, expected}));
  }
  EXPECT_EQ(publish_sync(engine, message("chat:b", "1")).position, (StreamPosition{epoch, 1}));
  EXPECT_EQ(publish_sync(engine, message("chat:a", "4")).position, (StreamPosition{epoch, 4}));
  EXPECT_EQ(history_sync(engine, newest("chat:a", 0)).top, (StreamPosition{epoch, 4}));
  EXPECT_EQ(history_sync(engine, newest("chat:b", 0)).top, (StreamPosition{epoch, 1}));
}

TYPED_TEST(EngineContract, DeliversEachPublicationInOrderBeforeDone) {
  Engine& engine = *this->engine_;
  Completions completions;
  std::vector<std::size_t> delivered_at_done(5, 0);
  for (std::size_t i = 0; i < 5; ++i) {
    engine.publish(message("room", "{\"n\":" + std::to_string(i + 1) + "}"),
                   [&, i](PublishResult result) {
                     delivered_at_done[i] = this->recorder_.offsets("room").size();
                     completions.add(std::move(result));
                   });
  }
  ASSERT_TRUE(completions.wait_for(5));
  for (std::size_t i = 0; i < 5; ++i) {
    EXPECT_GE(delivered_at_done[i], i + 1) << "publication " << i + 1 << " acknowledged before delivery";
  }
  const auto events = this->recorder_.events();
  ASSERT_EQ(events.size(), 5u);
  for (std::size_t i = 0; i < events.size(); ++i) {
    const ChannelEvent& event = events[i];
    EXPECT_EQ(event.kind, ChannelEvent::Kind::publication);
    EXPECT_EQ(event.channel, "room");
    EXPECT_EQ(event.epoch, this->epoch());
    ASSERT_TRUE(event.publication);
    EXPECT_EQ(event.publication->offset, i + 1);
    EXPECT_EQ(event.publication->data, "{\"n\":" + std::to_string(i + 1) + "}");
    EXPECT_EQ(event.publication->publisher, R"({"user":"u1","client":"c1"})");
    EXPECT_EQ(event.publication->time_ms, this->clock_.now());
  }
}

TYPED_TEST(EngineContract, HistoryKeepsDataPublisherAndTime) {
  ASSERT_NO_FATAL_FAILURE(
      contract::history_keeps_data_publisher_and_time(*this->engine_, this->clock_, R"({"text":"hi"})"));
}

TYPED_TEST(EngineContract, HistoryWithoutSinceGivesNewestInOrderOrReversed) {
  HistoryResult all;
  ASSERT_NO_FATAL_FAILURE(all = contract::history_without_since_gives_newest_in_order_or_reversed(*this->engine_));
  EXPECT_EQ(all.top.offset, 5u);
}

TYPED_TEST(EngineContract, HistoryIsTrimmedToSize) {
  const contract::EpochOf epoch_of = [this](const std::string&) { return this->epoch(); };
  contract::history_is_trimmed_to_size(*this->engine_, epoch_of);
}

TYPED_TEST(EngineContract, CompleteFlagWithSince) {
  const contract::EpochOf epoch_of = [this](const std::string&) { return this->epoch(); };
  contract::complete_flag_with_since(*this->engine_, epoch_of);
}

TYPED_TEST(EngineContract, HistoryTtlHidesExpiredPublications) {
  const contract::EpochOf epoch_of = [this](const std::string&) { return this->epoch(); };
  contract::history_ttl_hides_expired_publications(*this->engine_, this->clock_, epoch_of);
}

TYPED_TEST(EngineContract, OffsetsGrowWithoutHistory) {
  Engine& engine = *this->engine_;
  const std::string epoch = this->epoch();
  for (std::uint64_t i = 1; i <= 3; ++i) {
    EXPECT_EQ(publish_sync(engine, message("c", "x", keep(0))).position.offset, i);
  }
  const HistoryResult none = history_sync(engine, newest("c", 10, keep(0)));
  EXPECT_TRUE(none.publications.empty());
  EXPECT_EQ(none.top.offset, 3u);
  EXPECT_FALSE(history_sync(engine, after("c", {epoch, 0}, 10)).complete);
  EXPECT_EQ(this->recorder_.offsets("c"), range(1, 3)) << "delivered even without history";

  publish_sync(engine, message("c", "y", keep(5)));
  const HistoryResult one = history_sync(engine, after("c", {epoch, 3}, 10));
  EXPECT_EQ(offsets_of(one), (std::vector<std::uint64_t>{4}));
  EXPECT_TRUE(one.complete);
}

TYPED_TEST(EngineContract, IdempotentRepeatReturnsFirstPositionWithoutDelivery) {
  Engine& engine = *this->engine_;
  const std::string epoch = this->epoch();
  const HistoryOptions window = keep(100, 0s, 1s);
  const PublishResult first = publish_sync(engine, message("c", "a", window, "key-1"));
  ASSERT_FALSE(first.duplicate);
  EXPECT_EQ(first.position, (StreamPosition{epoch, 1}));
  publish_sync(engine, message("c", "b", window));

  const PublishResult repeat = publish_sync(engine, message("c", "a-again", window, "key-1"));
  EXPECT_EQ(repeat.error, EngineErrc::ok);
  EXPECT_TRUE(repeat.duplicate);
  EXPECT_EQ(repeat.position, (StreamPosition{epoch, 1}));
  EXPECT_EQ(this->recorder_.offsets("c"), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(history_sync(engine, newest("c", 0)).top.offset, 2u);
  EXPECT_EQ(history_sync(engine, newest("c", 10)).publications.size(), 2u);

  const PublishResult elsewhere = publish_sync(engine, message("other", "a", window, "key-1"));
  EXPECT_FALSE(elsewhere.duplicate) << "keys are per channel";
  EXPECT_EQ(elsewhere.position.offset, 1u);

  this->clock_.advance(1100ms);
  const PublishResult after_window = publish_sync(engine, message("c", "a-late", window, "key-1"));
  EXPECT_FALSE(after_window.duplicate);
  EXPECT_EQ(after_window.position.offset, 3u);
  const PublishResult repeat_again = publish_sync(engine, message("c", "a-late", window, "key-1"));
  EXPECT_TRUE(repeat_again.duplicate);
  EXPECT_EQ(repeat_again.position.offset, 3u);
  EXPECT_EQ(this->recorder_.offsets("c"), (std::vector<std::uint64_t>{1, 2, 3}));
}

TYPED_TEST(EngineContract, IdempotencyHoldsWithinOneBurst) {
  ASSERT_NO_FATAL_FAILURE(contract::idempotency_holds_within_one_burst(*this->engine_));
  EXPECT_EQ(this->recorder_.offsets("c"), (std::vector<std::uint64_t>{1}));
}

TYPED_TEST(EngineContract, PresenceListsEntriesAndAnnouncesRealChanges) {
  contract::presence_lists_entries_and_announces_real_changes(*this->engine_,
                                                              [this] { return this->recorder_.presence_events(); });
}

TYPED_TEST(EngineContract, ConcurrentPublishersGetUniqueOffsetsDeliveredInOrder) {
  // Delivered before the publish completes: nothing to wait for.
  contract::concurrent_publishers_get_unique_offsets_delivered_in_order(*this->engine_, this->recorder_,
                                                                        [](const std::string&, std::size_t) {});
}

TYPED_TEST(EngineContract, CompletionsMayCallBackIntoTheEngine) {
  contract::completions_may_call_back_into_the_engine(*this->engine_);
}

TYPED_TEST(EngineContract, StopRacingPublishersCompletesEveryPublishExactlyOnce) {
  contract::stop_racing_publishers_completes_every_publish_exactly_once(*this->engine_);
}

TYPED_TEST(EngineContract, StopFromACompletionCompletesTheRestOnce) {
  contract::stop_from_a_completion_completes_the_rest_once(*this->engine_);
}

// ---------------------------------------------------------------------------
// Memory engine specifics.

TEST(MemoryEngine, EveryInstanceHasItsOwnEpoch) {
  MemoryEngine first;
  MemoryEngine second;
  EXPECT_TRUE(is_hex_epoch(first.epoch()));
  EXPECT_TRUE(is_hex_epoch(second.epoch()));
  EXPECT_NE(first.epoch(), second.epoch());
  EXPECT_EQ(publish_sync(first, message("c", "1")).position.epoch, first.epoch());
}

// ---------------------------------------------------------------------------
// SQLite engine specifics.

SqliteEngineOptions sqlite_at(const std::string& data_dir) {
  SqliteEngineOptions options;
  options.data_dir = data_dir;
  return options;
}

TEST(SqliteEngine, RestartKeepsEpochOffsetsHistoryAndIdempotencyKeys) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  std::string epoch;
  {
    SqliteEngine engine(sqlite_at(data));
    epoch = engine.epoch();
    EXPECT_TRUE(is_hex_epoch(epoch));
    for (int i = 1; i <= 5; ++i) publish_sync(engine, message("c", std::to_string(i), keep(3)));
    publish_sync(engine, message("c", "keyed", keep(3), "k"));
    publish_sync(engine, message("silent", "x", keep(0)));
    publish_sync(engine, message("silent", "x", keep(0)));
  }
  SqliteEngine engine(sqlite_at(data));
  EXPECT_EQ(engine.epoch(), epoch);
  const HistoryResult kept = history_sync(engine, after("c", {epoch, 3}, 10, keep(3)));
  EXPECT_EQ(offsets_of(kept), (std::vector<std::uint64_t>{4, 5, 6}));
  EXPECT_TRUE(kept.complete);
  EXPECT_EQ(kept.publications[2]->data, "keyed");
  EXPECT_EQ(kept.top, (StreamPosition{epoch, 6}));

  const PublishResult repeat = publish_sync(engine, message("c", "keyed", keep(3), "k"));
  EXPECT_TRUE(repeat.duplicate) << "idempotency keys survive a restart";
  EXPECT_EQ(repeat.position.offset, 6u);
  EXPECT_EQ(publish_sync(engine, message("c", "7", keep(3))).position, (StreamPosition{epoch, 7}));
  EXPECT_EQ(publish_sync(engine, message("silent", "x", keep(0))).position.offset, 3u)
      << "the top offset survives without history";
}

TEST(SqliteEngine, DeletedDatabaseStartsANewEpoch) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  std::string first_epoch;
  {
    SqliteEngine engine(sqlite_at(data));
    first_epoch = engine.epoch();
    publish_sync(engine, message("c", "1"));
  }
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(data + "/duplex.db" + suffix);
  SqliteEngine engine(sqlite_at(data));
  EXPECT_NE(engine.epoch(), first_epoch);
  EXPECT_EQ(publish_sync(engine, message("c", "1")).position.offset, 1u);
  EXPECT_FALSE(history_sync(engine, after("c", {first_epoch, 1}, 10)).complete);
}

TEST(SqliteEngine, StopAcknowledgesQueuedPublishesAndRefusesLaterOnes) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  Completions completions;
  constexpr std::size_t kQueued = 3000;
  {
    SqliteEngine engine(sqlite_at(data));
    for (std::size_t i = 0; i < kQueued; ++i) {
      engine.publish(message("c", std::to_string(i)), [&](PublishResult result) { completions.add(std::move(result)); });
    }
    engine.stop();
    EXPECT_EQ(completions.results().size(), kQueued) << "stop() acknowledges everything queued";
    for (const auto& result : completions.results()) EXPECT_EQ(result.error, EngineErrc::ok) << result.message;

    const PublishResult late = publish_sync(engine, message("c", "late"));
    EXPECT_EQ(late.error, EngineErrc::unavailable);
    EXPECT_FALSE(late.message.empty());
    EXPECT_EQ(history_sync(engine, newest("c", 1)).error, EngineErrc::unavailable);
  }
  SqliteEngine reopened(sqlite_at(data));
  EXPECT_EQ(history_sync(reopened, newest("c", 0)).top.offset, kQueued);
}

TEST(SqliteEngine, SecondEngineOnTheSameDataDirIsRefused) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  SqliteEngine first(sqlite_at(data));
  try {
    SqliteEngine second(sqlite_at(data));
    FAIL() << "a second engine opened the same database";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("in use"), std::string::npos) << error.what();
  }
}

TEST(SqliteEngine, RefusesADatabaseOfAnotherSchemaVersion) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  { SqliteEngine engine(sqlite_at(data)); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((data + "/duplex.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE meta SET value='99' WHERE key='schema_version'", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  try {
    SqliteEngine engine(sqlite_at(data));
    FAIL() << "opened a database of schema version 99";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("schema version 99"), std::string::npos) << error.what();
  }
}

TEST(SqliteEngine, FullDatabaseFailsThePublishAsUnavailableUntilSpaceReturns) {
  TempDir dir;
  SqliteEngineOptions options = sqlite_at(dir.path() + "/data");
  options.max_database_pages = 48;  // 4 KiB pages: a ~190 KiB database
  SqliteEngine engine(options);
  Recorder recorder;
  engine.set_deliver(recorder.callback());
  const std::string big = "\"" + std::string(8000, 'x') + "\"";
  std::uint64_t accepted = 0;
  PublishResult failed;
  for (int i = 0; i < 200; ++i) {
    PublishResult result = publish_sync(engine, message("big", big, keep(1000)));
    if (result.error != EngineErrc::ok) {
      failed = std::move(result);
      break;
    }
    EXPECT_EQ(result.position.offset, ++accepted);
  }
  ASSERT_EQ(failed.error, EngineErrc::unavailable) << "the database never filled up";
  EXPECT_NE(failed.message.find("full"), std::string::npos) << failed.message;
  EXPECT_FALSE(engine.healthy());
  EXPECT_EQ(recorder.offsets("big").size(), accepted) << "a failed publish is not delivered";
  EXPECT_EQ(history_sync(engine, newest("big", 0)).top.offset, accepted) << "nothing of the failed batch stayed";

  // Dropping the channel's history frees the pages: the next commit succeeds.
  const PublishResult recovered = publish_sync(engine, message("big", "1", keep(0)));
  ASSERT_EQ(recovered.error, EngineErrc::ok) << recovered.message;
  EXPECT_EQ(recovered.position.offset, accepted + 1) << "no offset was burnt by the failure";
  EXPECT_TRUE(engine.healthy());
}

// Holds the writer inside the delivery of offset 1 so the queue fills up,
// then checks that what does not fit is refused at once and the rest is kept.
void expect_queue_bound(SqliteEngineOptions options, std::size_t fits, const std::string& data) {
  SqliteEngine engine(options);
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> first{true};
  engine.set_deliver([&](const ChannelEvent&) {
    if (first.exchange(false)) {
      entered.set_value();
      released.wait();
    }
  });
  Completions completions;
  auto collect = [&](PublishResult result) { completions.add(std::move(result)); };
  engine.publish(message("c", data), collect);
  entered.get_future().wait();
  for (std::size_t i = 0; i < fits; ++i) engine.publish(message("c", data), collect);
  const PublishResult refused = publish_sync(engine, message("c", data));
  EXPECT_EQ(refused.error, EngineErrc::unavailable);
  EXPECT_NE(refused.message.find("overloaded"), std::string::npos) << refused.message;
  release.set_value();
  ASSERT_TRUE(completions.wait_for(fits + 1));
  std::vector<std::uint64_t> offsets;
  for (const auto& result : completions.results()) {
    EXPECT_EQ(result.error, EngineErrc::ok) << result.message;
    offsets.push_back(result.position.offset);
  }
  EXPECT_EQ(offsets, range(1, fits + 1)) << "the refused publish took no offset";
}

TEST(SqliteEngine, RefusesPublishesBeyondTheQueueBound) {
  TempDir dir;
  SqliteEngineOptions options = sqlite_at(dir.path() + "/data");
  options.max_queue = 4;
  expect_queue_bound(options, 4, "1");
}

TEST(SqliteEngine, RefusesPublishesBeyondTheQueueByteBound) {
  TempDir dir;
  SqliteEngineOptions options = sqlite_at(dir.path() + "/data");
  const std::string data = "\"" + std::string(998, 'x') + "\"";
  const std::size_t per_publish = data.size() + message("c", data).publisher.size();
  options.max_queue_bytes = 3 * per_publish + per_publish / 2;
  expect_queue_bound(options, 3, data);
}

TEST(SqliteEngine, HistorySeesEveryDeliveredPublication) {
  TempDir dir;
  SqliteEngine engine(sqlite_at(dir.path() + "/data"));
  constexpr std::size_t kCount = 300;
  std::atomic<std::size_t> stale{0};
  std::atomic<std::size_t> checked{0};
  Completions completions;
  for (std::size_t i = 0; i < kCount; ++i) {
    engine.publish(message("c", "1"), [&](PublishResult result) {
      const std::uint64_t offset = result.position.offset;
      engine.history(newest("c", 1), [&, offset](HistoryResult history) {
        if (history.top.offset < offset || history.publications.empty() ||
            history.publications.back()->offset < offset) {
          ++stale;
        }
        ++checked;
      });
      completions.add(std::move(result));
    });
  }
  ASSERT_TRUE(completions.wait_for(kCount));
  for (int i = 0; i < 3000 && checked.load() < kCount; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(checked.load(), kCount);
  EXPECT_EQ(stale.load(), 0u);
}

TEST(SqliteEngine, PurgesExpiredIdempotencyKeysAndHistoryRows) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  TestClock clock;
  SqliteEngineOptions options = sqlite_at(data);
  options.clock = clock.function();
  SqliteEngine engine(options);
  for (int i = 0; i < 5; ++i) {
    publish_sync(engine, message("c", "1", keep(100, 2s, 2s), "key-" + std::to_string(i)));
  }
  auto count = [&](const char* sql) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2((data + "/duplex.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* statement = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &statement, nullptr), SQLITE_OK);
    EXPECT_EQ(sqlite3_step(statement), SQLITE_ROW);
    const auto value = sqlite3_column_int64(statement, 0);
    sqlite3_finalize(statement);
    sqlite3_close(db);
    return value;
  };
  EXPECT_EQ(count("SELECT count(*) FROM idempotency_keys"), 5);
  EXPECT_EQ(count("SELECT count(*) FROM publications"), 5);
  clock.advance(10s);  // past the window, the TTL and the purge interval
  // The idle writer wakes once a second and purges when due.
  for (int i = 0; i < 50 && count("SELECT count(*) FROM idempotency_keys") > 0; ++i) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(count("SELECT count(*) FROM idempotency_keys"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM publications"), 0);
  EXPECT_EQ(publish_sync(engine, message("c", "1", keep(100, 2s, 2s), "key-0")).position.offset, 6u);
}

TEST(SqliteEngine, BatchedThroughputFromTwoThreads) {
  TempDir dir;
  SqliteEngine engine(sqlite_at(dir.path() + "/data"));
  Recorder recorder;
  engine.set_deliver(recorder.callback());
  constexpr std::size_t kPerThread = 10'000;
  const std::vector<std::string> channels{"bench:a", "bench:b", "bench:c", "bench:d"};
  Completions completions;
  std::mutex offsets_mutex;
  std::map<std::string, std::vector<std::uint64_t>> assigned;
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (std::size_t i = 0; i < kPerThread; ++i) {
        const std::string& channel = channels[(i + static_cast<std::size_t>(t)) % channels.size()];
        engine.publish(message(channel, R"({"text":"a typical chat message of some length"})"),
                       [&, channel](PublishResult result) {
                         if (result.error == EngineErrc::ok) {
                           std::lock_guard lock(offsets_mutex);
                           assigned[channel].push_back(result.position.offset);
                         }
                         completions.add(std::move(result));
                       });
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_TRUE(completions.wait_for(2 * kPerThread, 120s));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ sqlite   ] %zu publishes in %.3f s: %.0f publishes/s\n", 2 * kPerThread, seconds,
              static_cast<double>(2 * kPerThread) / seconds);

  for (const auto& result : completions.results()) ASSERT_EQ(result.error, EngineErrc::ok) << result.message;
  const std::uint64_t per_channel = 2 * kPerThread / channels.size();
  for (const auto& channel : channels) {
    auto offsets = assigned[channel];
    EXPECT_EQ(offsets, range(1, per_channel)) << channel << ": acknowledged in offset order, each once";
    EXPECT_EQ(recorder.offsets(channel), range(1, per_channel)) << channel;
  }
}

// A child process publishes as fast as it can and reports every acknowledged
// offset through a pipe; the parent kills it with SIGKILL mid-stream and
// reopens the database: every acknowledged publication must be there.
TEST(SqliteEngine, AcknowledgedPublishesSurviveKill9) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  constexpr std::size_t kAcksBeforeKill = 3000;
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(pipe_fds[0]);
    const int out = pipe_fds[1];
    try {
      SqliteEngine engine(sqlite_at(data));
      if (::write(out, engine.epoch().data(), 16) != 16) ::_exit(3);
      std::mutex mutex;
      std::condition_variable acked;
      std::size_t in_flight = 0;
      for (std::uint64_t i = 1; i <= 10'000'000; ++i) {
        {
          std::unique_lock lock(mutex);
          acked.wait(lock, [&] { return in_flight < 512; });
          ++in_flight;
        }
        engine.publish(message("durable", "{\"n\":" + std::to_string(i) + "}", keep(100'000'000)),
                       [&, out](PublishResult result) {
                         if (result.error == EngineErrc::ok) {
                           const std::uint64_t offset = result.position.offset;
                           if (::write(out, &offset, sizeof offset) != sizeof offset) ::_exit(4);
                         }
                         std::lock_guard lock(mutex);
                         --in_flight;
                         acked.notify_one();
                       });
      }
    } catch (...) {
      ::_exit(2);
    }
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  auto read_exact = [&](void* buffer, std::size_t size) {
    auto* bytes = static_cast<char*>(buffer);
    std::size_t got = 0;
    while (got < size) {
      const ssize_t n = ::read(pipe_fds[0], bytes + got, size - got);
      if (n <= 0) return false;
      got += static_cast<std::size_t>(n);
    }
    return true;
  };
  std::string child_epoch(16, '\0');
  ASSERT_TRUE(read_exact(child_epoch.data(), 16));
  std::vector<std::uint64_t> acked;
  std::uint64_t offset = 0;
  while (acked.size() < kAcksBeforeKill && read_exact(&offset, sizeof offset)) acked.push_back(offset);
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  // Whatever the child wrote before dying was acknowledged too.
  while (read_exact(&offset, sizeof offset)) acked.push_back(offset);
  ::close(pipe_fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the child ended before the kill, status " << status;
  ASSERT_GE(acked.size(), kAcksBeforeKill);

  SqliteEngine engine(sqlite_at(data));
  EXPECT_EQ(engine.epoch(), child_epoch);
  const HistoryResult kept =
      history_sync(engine, after("durable", {child_epoch, 0}, 100'000'000, keep(100'000'000)));
  ASSERT_EQ(kept.error, EngineErrc::ok) << kept.message;
  EXPECT_TRUE(kept.complete);
  std::set<std::uint64_t> present;
  for (const auto& publication : kept.publications) {
    present.insert(publication->offset);
    EXPECT_EQ(publication->data, "{\"n\":" + std::to_string(publication->offset) + "}");
  }
  std::size_t lost = 0;
  for (std::uint64_t acknowledged : acked) lost += present.count(acknowledged) == 0;
  EXPECT_EQ(lost, 0u) << "of " << acked.size() << " acknowledged publications";
  EXPECT_GE(kept.top.offset, *std::max_element(acked.begin(), acked.end()));
  std::printf("[ sqlite   ] child killed after %zu acknowledged publishes; %zu in the database\n", acked.size(),
              present.size());
}

// ---------------------------------------------------------------------------
// The factory.

TEST(EngineFactory, MakesTheConfiguredEngine) {
  TempDir dir;
  duplex::engines::EngineConfig config;
  config.type = "memory";
  EXPECT_EQ(make_engine(config)->name(), "memory");
  config.type = "sqlite";
  config.data_dir = dir.path() + "/nested/deeper/data";
  auto engine = make_engine(config);
  EXPECT_EQ(engine->name(), "sqlite");
  EXPECT_TRUE(std::filesystem::exists(config.data_dir + "/duplex.db")) << "data dir created, mkdir -p";
  EXPECT_EQ(publish_sync(*engine, message("c", "1")).position.offset, 1u);
}

TEST(EngineFactory, DataDirThatIsAFileIsAClearError) {
  TempDir dir;
  const std::string file = dir.path() + "/not-a-dir";
  std::ofstream(file) << "x";
  duplex::engines::EngineConfig config;
  config.data_dir = file;
  try {
    make_engine(config);
    FAIL() << "opened an engine on a regular file";
  } catch (const std::runtime_error& error) {
    const std::string what = error.what();
    EXPECT_NE(what.find(file), std::string::npos) << what;
    EXPECT_NE(what.find("not a directory"), std::string::npos) << what;
  }
  config.data_dir = file + "/below";
  try {
    make_engine(config);
    FAIL() << "created a data dir below a regular file";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("cannot create data dir"), std::string::npos) << error.what();
  }
}

TEST(EngineFactory, RejectsUnknownTypesAndEmptyBatches) {
  duplex::engines::EngineConfig config;
  config.type = "postgres";
  try {
    make_engine(config);
    FAIL() << "made an engine of unknown type";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("postgres"), std::string::npos) << error.what();
  }
  config.type = "sqlite";
  config.max_batch = 0;
  EXPECT_THROW(make_engine(config), std::runtime_error);
}

}  // namespace
