// A loop that stalls does not queue engine events without bound: past
// limits.max_pending_deliveries its subscribers of the channels that
// overflowed are told to resubscribe (unsubscribe push 2500), and their
// resubscribe with recovery returns every message they missed.
#include <gtest/gtest.h>

#include <future>
#include <sstream>
#include <string>

#include "hub_fixture.hpp"

using namespace hub_test;

namespace {

// The value of the sample line `name value` in /metrics (-1 when missing).
double metric(std::uint16_t port, const std::string& name) {
  std::istringstream in(http_body(http_get(port, "/metrics")));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  return -1;
}

// Holds a loop inside one task until released (also when the test fails).
class LoopBlocker {
 public:
  explicit LoopBlocker(net::EventLoop& loop) {
    std::promise<void> entered;
    auto inside = entered.get_future();
    loop.post([entered = std::move(entered), released = released_]() mutable {
      entered.set_value();
      released.wait();
    });
    inside.wait();
  }
  ~LoopBlocker() { release(); }
  void release() {
    if (!done_) release_.set_value();
    done_ = true;
  }

 private:
  std::promise<void> release_;
  std::shared_future<void> released_ = release_.get_future().share();
  bool done_ = false;
};

TEST(DeliveryBounds, AStalledLoopTellsItsSubscribersToResubscribeAndTheyRecoverEveryMessage) {
  hub::HubConfig config = test_config();
  config.server.threads = 1;
  config.limits.max_pending_deliveries = 5;
  Server server(config);
  auto alice = connect_as(server, "alice");
  auto subscribed = alice->call(1, R"({"type":"subscribe","id":1,"channel":"chat:flood"})");
  ASSERT_FALSE(subscribed->has("/error")) << subscribed->text;
  const std::string epoch = subscribed->str_at("/result/epoch");

  constexpr int kPublished = 30;
  {
    LoopBlocker blocked(server.get().loop(0));
    // Straight to the engine (the HTTP API runs on the blocked loop); the
    // memory engine delivers before publish returns.
    for (int n = 1; n <= kPublished; ++n) {
      engines::PublishRequest request;
      request.channel = "chat:flood";
      request.data = std::to_string(n);
      request.history.size = 1000;
      std::promise<engines::PublishResult> done;
      server.get().hub().engine().publish(std::move(request),
                                          [&done](engines::PublishResult r) { done.set_value(std::move(r)); });
      ASSERT_EQ(done.get_future().get().error, engines::EngineErrc::ok);
    }
  }

  // What fitted is delivered, then the push that says the rest was not.
  for (std::uint64_t offset = 1; offset <= 5; ++offset) EXPECT_EQ(alice->next("message")->u64("offset"), offset);
  auto told = alice->next("unsubscribe");
  EXPECT_EQ(told->str("channel"), "chat:flood");
  EXPECT_EQ(told->u64("code"), 2500u) << told->text;
  EXPECT_THROW(alice->next("message", 300ms), std::runtime_error) << "nothing past the overflow arrives live";

  auto recovered = alice->call(2, R"({"type":"subscribe","id":2,"channel":"chat:flood","recover":true,"epoch":")" +
                                      epoch + R"(","offset":5})");
  ASSERT_FALSE(recovered->has("/error")) << recovered->text;
  EXPECT_TRUE(recovered->bool_at("/result/recovered")) << recovered->text;
  std::uint64_t expect = 6;
  for (auto p : recovered->array("/result/publications")) {
    std::uint64_t offset = 0;
    ASSERT_EQ(p["offset"].get(offset), simdjson::SUCCESS);
    EXPECT_EQ(offset, expect++);
  }
  EXPECT_EQ(expect, kPublished + 1u) << "every message missed is recovered";

  EXPECT_EQ(metric(server.port(), "duplex_pending_deliveries_overflowed_total"), kPublished - 5);
  EXPECT_EQ(metric(server.port(), "duplex_resubscribes_total"), 1);
  EXPECT_EQ(metric(server.port(), "duplex_pending_deliveries"), 0);
}

TEST(DeliveryBounds, BelowTheLimitAStalledLoopDeliversEverythingLive) {
  hub::HubConfig config = test_config();
  config.server.threads = 1;
  config.limits.max_pending_deliveries = 50;
  Server server(config);
  auto alice = connect_as(server, "alice");
  ASSERT_FALSE(alice->call(1, R"({"type":"subscribe","id":1,"channel":"chat:calm"})")->has("/error"));
  {
    LoopBlocker blocked(server.get().loop(0));
    for (int n = 1; n <= 50; ++n) {
      engines::PublishRequest request;
      request.channel = "chat:calm";
      request.data = std::to_string(n);
      request.history.size = 1000;
      server.get().hub().engine().publish(std::move(request), [](engines::PublishResult) {});
    }
  }
  for (std::uint64_t offset = 1; offset <= 50; ++offset) EXPECT_EQ(alice->next("message")->u64("offset"), offset);
  EXPECT_EQ(metric(server.port(), "duplex_pending_deliveries_overflowed_total"), 0);
  EXPECT_EQ(metric(server.port(), "duplex_resubscribes_total"), 0);
}

}  // namespace
