// Scaffolding shared by the engine tests (tests/unit/engines/test_engines.cpp and
// tests/engines/*): a clock the test moves, a recorder of deliveries, a
// counter of publish completions, and synchronous wrappers around the
// callback API of Engine (engine.hpp).
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "duplex/engines/engine.hpp"
#include "test_server_process.hpp"  // TempDir

namespace duplex::test {

using namespace std::chrono_literals;

// How long a *_sync helper waits for its callback before it throws.
inline constexpr std::chrono::seconds kSyncTimeout{30};

// A clock the test moves by hand, shared with the engine's threads.
class TestClock {
 public:
  std::function<std::int64_t()> function() const {
    auto now = now_;
    return [now] { return now->load(); };
  }
  void advance(std::chrono::milliseconds by) { now_->fetch_add(by.count()); }
  std::int64_t now() const { return now_->load(); }

 private:
  std::shared_ptr<std::atomic<std::int64_t>> now_ = std::make_shared<std::atomic<std::int64_t>>(1'700'000'000'000);
};

// Records every delivered event; thread-safe.
class Recorder {
 public:
  engines::Engine::Deliver callback() {
    return [this](const engines::ChannelEvent& event) {
      std::lock_guard lock(mutex_);
      events_.push_back(event);
      changed_.notify_all();
    };
  }
  void clear() {
    std::lock_guard lock(mutex_);
    events_.clear();
  }
  std::vector<engines::ChannelEvent> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }
  // Offsets of the publications delivered on `channel`, in delivery order.
  std::vector<std::uint64_t> offsets(const std::string& channel) const {
    std::lock_guard lock(mutex_);
    std::vector<std::uint64_t> offsets;
    for (const auto& event : events_) {
      if (event.kind == engines::ChannelEvent::Kind::publication && event.channel == channel) {
        offsets.push_back(event.publication->offset);
      }
    }
    return offsets;
  }
  std::vector<engines::ChannelEvent> of_kind(engines::ChannelEvent::Kind kind) const {
    std::lock_guard lock(mutex_);
    std::vector<engines::ChannelEvent> found;
    for (const auto& event : events_) {
      if (event.kind == kind) found.push_back(event);
    }
    return found;
  }
  // Every event that is not a publication (joins, leaves, resubscribes).
  std::vector<engines::ChannelEvent> presence_events() const {
    std::lock_guard lock(mutex_);
    std::vector<engines::ChannelEvent> found;
    for (const auto& event : events_) {
      if (event.kind != engines::ChannelEvent::Kind::publication) found.push_back(event);
    }
    return found;
  }
  std::size_t count(engines::ChannelEvent::Kind kind, const std::string& channel) const {
    std::lock_guard lock(mutex_);
    return static_cast<std::size_t>(std::count_if(events_.begin(), events_.end(), [&](const engines::ChannelEvent& e) {
      return e.kind == kind && e.channel == channel;
    }));
  }
  // Waits (re-checking on every delivery, at least every 20 ms) until
  // `predicate` holds; false when it still does not after `timeout`.
  bool wait_until(const std::function<bool()>& predicate, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (predicate()) return true;
      std::unique_lock lock(mutex_);
      changed_.wait_for(lock, 20ms);
    }
    return predicate();
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<engines::ChannelEvent> events_;
};

// Polls `predicate` every 10 ms until it holds or `timeout` passes.
inline bool wait_for(const std::function<bool()>& predicate, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (predicate()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return predicate();
}

// Counts completions so a test can publish without waiting on each one.
class Completions {
 public:
  void add(engines::PublishResult result) {
    std::lock_guard lock(mutex_);
    results_.push_back(std::move(result));
    changed_.notify_all();
  }
  bool wait_for(std::size_t count, std::chrono::seconds timeout = 60s) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return results_.size() >= count; });
  }
  std::vector<engines::PublishResult> results() const {
    std::lock_guard lock(mutex_);
    return results_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<engines::PublishResult> results_;
};

inline engines::HistoryOptions keep(std::size_t size, std::chrono::seconds ttl = 0s,
                                    std::chrono::seconds window = 300s) {
  engines::HistoryOptions options;
  options.size = size;
  options.ttl = ttl;
  options.idempotency_window = window;
  return options;
}

inline constexpr const char* kPublisher = R"({"user":"u1","client":"c1"})";

// A publish by kPublisher.
inline engines::PublishRequest message(const std::string& channel, const std::string& data,
                                       engines::HistoryOptions history = keep(100), const std::string& key = {}) {
  engines::PublishRequest request;
  request.channel = channel;
  request.data = data;
  request.publisher = kPublisher;
  request.idempotency_key = key;
  request.history = history;
  return request;
}

inline engines::HistoryRequest newest(const std::string& channel, std::size_t limit,
                                      engines::HistoryOptions history = keep(100), bool reverse = false) {
  engines::HistoryRequest request;
  request.channel = channel;
  request.limit = limit;
  request.history = history;
  request.reverse = reverse;
  return request;
}

inline engines::HistoryRequest after(const std::string& channel, hub::StreamPosition since, std::size_t limit,
                                     engines::HistoryOptions history = keep(100)) {
  engines::HistoryRequest request = newest(channel, limit, history);
  request.since = std::move(since);
  return request;
}

// Runs `start(callback)` and waits for the callback's value; throws
// "<what> never completed" after kSyncTimeout.
template <class Result, class Start>
Result wait_result(const char* what, Start start) {
  std::promise<Result> promise;
  auto future = promise.get_future();
  start([&promise](Result result) { promise.set_value(std::move(result)); });
  if (future.wait_for(kSyncTimeout) != std::future_status::ready) {
    throw std::runtime_error(std::string(what) + " never completed");
  }
  return future.get();
}

inline engines::PublishResult publish_sync(engines::Engine& engine, engines::PublishRequest request) {
  return wait_result<engines::PublishResult>(
      "publish", [&](auto done) { engine.publish(std::move(request), std::move(done)); });
}

inline engines::HistoryResult history_sync(engines::Engine& engine, engines::HistoryRequest request) {
  return wait_result<engines::HistoryResult>(
      "history", [&](auto done) { engine.history(std::move(request), std::move(done)); });
}

inline engines::EngineErrc subscribe_sync(engines::Engine& engine, const std::string& channel) {
  return wait_result<engines::EngineErrc>("node_subscribe",
                                          [&](auto done) { engine.node_subscribe(channel, std::move(done)); });
}

// Subscribes the node to `channel` until the engine accepts it (its backend
// is back), as the hub does for subscribers told to resubscribe; each
// refused attempt is balanced with node_unsubscribe, as the hub balances it.
inline bool subscribe_when_up(engines::Engine& engine, const std::string& channel,
                              std::chrono::milliseconds within = 10s) {
  return wait_for(
      [&] {
        const engines::EngineErrc e = subscribe_sync(engine, channel);
        if (e != engines::EngineErrc::ok) engine.node_unsubscribe(channel);
        return e == engines::EngineErrc::ok;
      },
      within);
}

inline std::vector<hub::ClientInfo> presence_sync(engines::Engine& engine, const std::string& channel) {
  return wait_result<std::vector<hub::ClientInfo>>("presence",
                                                   [&](auto done) { engine.presence(channel, std::move(done)); });
}

inline std::vector<engines::NodeInfo> nodes_sync(engines::Engine& engine) {
  return wait_result<std::vector<engines::NodeInfo>>("nodes", [&](auto done) { engine.nodes(std::move(done)); });
}

inline std::vector<std::uint64_t> offsets_of(const engines::HistoryResult& result) {
  std::vector<std::uint64_t> offsets;
  for (const auto& publication : result.publications) offsets.push_back(publication->offset);
  return offsets;
}

// first, first + 1, ..., last (empty when last < first).
inline std::vector<std::uint64_t> range(std::uint64_t first, std::uint64_t last) {
  std::vector<std::uint64_t> values;
  for (std::uint64_t value = first; value <= last; ++value) values.push_back(value);
  return values;
}

inline bool is_hex_epoch(const std::string& epoch) {
  return epoch.size() == 16 && std::all_of(epoch.begin(), epoch.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

}  // namespace duplex::test
