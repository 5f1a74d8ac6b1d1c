// net::EventLoop and net::LoopTimer on their own: posts from the loop and
// from other threads, one-shot timers, stop, and a task that throws.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "duplex/duplex.hpp"
#include "duplex/net/error_log.hpp"

using namespace duplex;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// Runs a loop on its own thread for the test's lifetime.
struct LoopThread {
  net::EventLoop loop;
  std::thread thread{[this] { loop.run(); }};
  ~LoopThread() {
    loop.stop();
    thread.join();
  }
};

// Blocks until `done` is true or 3 s pass.
template <typename Pred>
bool wait_for(Pred done) {
  const auto deadline = Clock::now() + 3s;
  while (!done()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

}  // namespace

TEST(EventLoop, StopBeforeRunReturnsAtOnce) {
  net::EventLoop loop;
  loop.stop();
  const auto start = Clock::now();
  loop.run();
  EXPECT_LT(Clock::now() - start, 500ms);
}

TEST(EventLoop, PostsFromOtherThreadsRunInOrderOnTheLoopThreadAndWakeIt) {
  LoopThread t;
  std::this_thread::sleep_for(50ms);  // the loop is asleep in epoll_wait
  std::mutex m;
  std::vector<int> order;
  std::atomic<int> on_loop{0};
  const auto posted = Clock::now();
  std::atomic<long long> first_ran_after_us{-1};
  for (int i = 0; i < 1000; ++i)
    t.loop.post([&, i] {
      if (i == 0) first_ran_after_us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - posted).count();
      if (t.loop.running_in_this_thread()) ++on_loop;
      std::lock_guard lock(m);
      order.push_back(i);
    });
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lock(m);
    return order.size() == 1000;
  }));
  EXPECT_EQ(on_loop.load(), 1000);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
  // Woken by the eventfd, not by the next tick (100 ms).
  EXPECT_LT(first_ran_after_us.load(), 50'000);
}

TEST(EventLoop, APostFromTheLoopRunsAfterTheTaskThatPostedIt) {
  LoopThread t;
  std::atomic<bool> done{false};
  std::string trace;
  t.loop.post([&] {
    t.loop.post([&] {
      trace += "inner";
      done = true;
    });
    trace += "outer,";
  });
  ASSERT_TRUE(wait_for([&] { return done.load(); }));
  EXPECT_EQ(trace, "outer,inner");
}

TEST(EventLoop, ATaskThatThrowsIsLoggedAndTheLoopGoesOn) {
  std::mutex m;
  std::vector<std::string> logged;
  net::set_error_log([&](std::string_view message) {
    std::lock_guard lock(m);
    logged.emplace_back(message);
  });
  {
    LoopThread t;
    std::atomic<bool> after{false};
    t.loop.post([] { throw std::runtime_error("boom"); });
    t.loop.post([&] { after = true; });
    EXPECT_TRUE(wait_for([&] { return after.load(); }));
  }
  net::set_error_log(nullptr);
  std::lock_guard lock(m);
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_NE(logged[0].find("boom"), std::string::npos) << logged[0];
}

TEST(LoopTimer, FiresOnceAfterItsDelayAndRestartReplacesIt) {
  LoopThread t;
  std::atomic<int> fired{0}, replaced{0};
  std::atomic<long long> after_ms{-1};
  std::unique_ptr<net::LoopTimer> timer;
  const auto started = Clock::now();
  t.loop.post([&] {
    timer = std::make_unique<net::LoopTimer>(t.loop);
    timer->start(10s, [&] { ++replaced; });
    timer->start(60ms, [&] {
      after_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
      ++fired;
    });
  });
  ASSERT_TRUE(wait_for([&] { return fired.load() == 1; }));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(fired.load(), 1);
  EXPECT_EQ(replaced.load(), 0);
  EXPECT_GE(after_ms.load(), 60);
  EXPECT_LT(after_ms.load(), 1000);
  std::atomic<bool> gone{false};
  t.loop.post([&] {
    EXPECT_FALSE(timer->pending());
    timer.reset();
    gone = true;
  });
  ASSERT_TRUE(wait_for([&] { return gone.load(); }));
}

// cancel() neither runs the handler nor destroys it inside the call: a
// handler owning the object that cancels it cannot free it under that call.
TEST(LoopTimer, CancelDestroysTheHandlerLaterNeverRunsIt) {
  LoopThread t;
  std::atomic<bool> ran{false}, done{false}, destroyed{false}, destroyed_in_cancel{false}, destroyed_by_next{false};
  struct Owner {
    Owner(net::EventLoop& l, std::atomic<bool>& d) : timer(l), destroyed(d) {}
    ~Owner() { destroyed = true; }
    net::LoopTimer timer;
    std::atomic<bool>& destroyed;
  };
  t.loop.post([&] {
    auto owner = std::make_shared<Owner>(t.loop, destroyed);
    Owner* raw = owner.get();
    // The timer's handler holds the only reference to its owner.
    raw->timer.start(20ms, [owner = std::move(owner), &ran] { ran = true; });
    raw->timer.cancel();
    destroyed_in_cancel = destroyed.load();
    t.loop.post([&] {
      destroyed_by_next = destroyed.load();  // queued after the task that destroys the handler
      done = true;
    });
  });
  ASSERT_TRUE(wait_for([&] { return done.load(); }));
  std::this_thread::sleep_for(60ms);
  EXPECT_FALSE(ran.load());
  EXPECT_FALSE(destroyed_in_cancel.load());
  EXPECT_TRUE(destroyed_by_next.load());
}

TEST(LoopTimer, ManyTimersFireInDeadlineOrder) {
  LoopThread t;
  std::vector<int> order;
  std::atomic<bool> done{false};
  std::vector<std::unique_ptr<net::LoopTimer>> timers;
  t.loop.post([&] {
    for (int i = 0; i < 5; ++i) {
      timers.push_back(std::make_unique<net::LoopTimer>(t.loop));
      timers.back()->start(std::chrono::milliseconds(10 * (5 - i)), [&, i] {
        order.push_back(i);
        if (order.size() == 5) done = true;
      });
    }
  });
  ASSERT_TRUE(wait_for([&] { return done.load(); }));
  EXPECT_EQ(order, (std::vector<int>{4, 3, 2, 1, 0}));
  std::atomic<bool> cleared{false};
  t.loop.post([&] {
    timers.clear();
    cleared = true;
  });
  ASSERT_TRUE(wait_for([&] { return cleared.load(); }));
}
