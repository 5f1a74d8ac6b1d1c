// client::HubClient against the real hub (transport::HubServer) on loopback:
// subscribe/publish between two clients, a dropped connection recovering
// every message exactly once and in order, publishes made while disconnected
// applied once, and `duplex connect --hub` from a shell.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "duplex/client/hub_client.hpp"
#include "hub_fixture.hpp"

using namespace hub_test;
using namespace duplex::client;
using namespace std::chrono_literals;

namespace {

// The fixture's configuration, with publish rate limits out of the way of
// bursts of a hundred publishes.
duplex::hub::HubConfig client_test_config() {
  auto config = test_config();
  config.limits.publish_rate = 100'000;
  config.limits.publish_burst = 100'000;
  return config;
}

std::string url_of(Server& server) {
  return "ws://127.0.0.1:" + std::to_string(server.port()) + "/connection/websocket";
}

HubClientOptions options_for(Server& server, const std::string& user) {
  HubClientOptions options;
  options.url = url_of(server);
  options.token = token_for(user);
  options.backoff_base = 100ms;
  options.backoff_cap = 1000ms;
  options.command_timeout = 5000ms;
  return options;
}

// What one client saw, recorded from its loop thread; tests wait on it.
class Recorder {
 public:
  StateHandlers state_handlers() {
    StateHandlers h;
    h.on_connected = [this](const ConnectedEvent& e) { record([&] { connected_.push_back(e); }); };
    h.on_disconnected = [this](const DisconnectedEvent& e) { record([&] { disconnected_.push_back(e); }); };
    h.on_error = [this](const Error& e) { record([&] { errors_.push_back(e); }); };
    return h;
  }
  SubscriptionHandlers subscription_handlers() {
    SubscriptionHandlers h;
    h.on_message = [this](const Message& m) { record([&] { messages_.push_back(m); }); };
    h.on_subscribed = [this](const SubscribedEvent& e) { record([&] { subscribed_.push_back(e); }); };
    h.on_gap = [this](const GapEvent& e) { record([&] { gaps_.push_back(e); }); };
    h.on_error = [this](const std::string&, const Error& e, bool) { record([&] { errors_.push_back(e); }); };
    return h;
  }

  template <class Predicate>
  bool wait(Predicate done, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(m_);
    return cv_.wait_for(lock, timeout, [&] { return done(*this); });
  }
  // Accessors for use inside wait() predicates (the lock is held) or after.
  const std::vector<Message>& messages() const { return messages_; }
  const std::vector<SubscribedEvent>& subscribed() const { return subscribed_; }
  const std::vector<GapEvent>& gaps() const { return gaps_; }
  const std::vector<ConnectedEvent>& connected() const { return connected_; }
  const std::vector<DisconnectedEvent>& disconnected() const { return disconnected_; }
  const std::vector<Error>& errors() const { return errors_; }

  template <class Fn>
  void record(Fn fn) {
    {
      // Notified under the lock: the waiting test may destroy this object as
      // soon as it sees the change.
      std::lock_guard lock(m_);
      fn();
      cv_.notify_all();
    }
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<Message> messages_;
  std::vector<SubscribedEvent> subscribed_;
  std::vector<GapEvent> gaps_;
  std::vector<ConnectedEvent> connected_;
  std::vector<DisconnectedEvent> disconnected_;
  std::vector<Error> errors_;
};

// Counts publish acknowledgements; remembers failures.
class Acks {
 public:
  PublishCallback callback() {
    return [this](const Outcome<PublishResult>& o) {
      {
        std::lock_guard lock(m_);
        if (o.ok()) {
          offsets_.push_back(o.value.offset);
          if (o.value.duplicate) ++duplicates_;
        } else {
          failures_.push_back(std::to_string(o.error->code) + " " + o.error->message);
        }
        cv_.notify_all();  // under the lock: the test may destroy this once it sees the count
      }
    };
  }
  bool wait_for(std::size_t count, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(m_);
    return cv_.wait_for(lock, timeout, [&] { return offsets_.size() + failures_.size() >= count; });
  }
  std::vector<std::uint64_t> offsets() {
    std::lock_guard lock(m_);
    return offsets_;
  }
  std::vector<std::string> failures() {
    std::lock_guard lock(m_);
    return failures_;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<std::uint64_t> offsets_;
  std::vector<std::string> failures_;
  int duplicates_ = 0;
};

std::vector<std::uint64_t> offsets_of(const std::vector<Message>& messages) {
  std::vector<std::uint64_t> out;
  for (const auto& m : messages) out.push_back(m.offset);
  return out;
}

std::vector<std::uint64_t> range(std::uint64_t first, std::uint64_t last) {
  std::vector<std::uint64_t> out;
  for (auto i = first; i <= last; ++i) out.push_back(i);
  return out;
}

}  // namespace

TEST(HubClient, TwoClientsSubscribePublishAndReceive) {
  Server server(client_test_config());
  Recorder alice_saw, bob_saw;
  HubClient alice(options_for(server, "alice"));
  HubClient bob(options_for(server, "bob"));
  alice.set_state_handlers(alice_saw.state_handlers());
  bob.set_state_handlers(bob_saw.state_handlers());
  ASSERT_FALSE(alice.subscribe("chat:room", alice_saw.subscription_handlers()));
  alice.connect();
  bob.connect();
  ASSERT_TRUE(alice_saw.wait([](auto& r) { return !r.subscribed().empty(); })) << "alice never subscribed";
  EXPECT_EQ(alice.state(), ConnectionState::connected);
  ASSERT_EQ(alice_saw.connected().size(), 1u);
  EXPECT_EQ(alice_saw.connected()[0].user, "alice");

  Acks acks;
  ASSERT_FALSE(bob.publish("chat:room", R"({"text":"one"})", acks.callback()));
  ASSERT_FALSE(bob.publish("chat:room", R"({"text":"two","n":2.5})", acks.callback()));
  ASSERT_FALSE(bob.publish("chat:room", R"("three")", acks.callback()));
  ASSERT_TRUE(acks.wait_for(3));
  EXPECT_EQ(acks.failures(), std::vector<std::string>{});
  EXPECT_EQ(acks.offsets(), range(1, 3));

  ASSERT_TRUE(alice_saw.wait([](auto& r) { return r.messages().size() >= 3; }));
  const auto& got = alice_saw.messages();
  EXPECT_EQ(offsets_of(got), range(1, 3));
  EXPECT_EQ(got[0].data, R"({"text":"one"})");
  EXPECT_EQ(got[1].data, R"({"text":"two","n":2.5})");
  EXPECT_EQ(got[2].data, R"("three")");
  EXPECT_EQ(got[0].channel, "chat:room");
  EXPECT_NE(got[0].info.find("\"bob\""), std::string::npos) << got[0].info;

  // Presence and history (both need a subscription to the channel).
  std::promise<Outcome<PresenceResult>> presence;
  ASSERT_FALSE(alice.presence("chat:room", [&](const Outcome<PresenceResult>& o) { presence.set_value(o); }));
  auto who = presence.get_future();
  ASSERT_EQ(who.wait_for(5s), std::future_status::ready);
  const auto present = who.get();
  ASSERT_TRUE(present.ok()) << present.error->message;
  ASSERT_EQ(present.value.clients.size(), 1u);
  EXPECT_EQ(present.value.clients[0].user, "alice");

  std::promise<Outcome<HistoryResult>> history;
  HistoryOptions last_two;
  last_two.limit = 2;
  ASSERT_FALSE(alice.history("chat:room", last_two, [&](const Outcome<HistoryResult>& o) { history.set_value(o); }));
  auto past = history.get_future();
  ASSERT_EQ(past.wait_for(5s), std::future_status::ready);
  const auto h = past.get();
  ASSERT_TRUE(h.ok()) << h.error->message;
  EXPECT_EQ(h.value.position.offset, 3u);
  ASSERT_EQ(h.value.publications.size(), 2u);
  EXPECT_EQ(h.value.publications[0].offset, 2u);
  EXPECT_EQ(h.value.publications[1].data, R"("three")");

  // Errors from the server reach the callback with PROTOCOL.md's code.
  std::promise<Outcome<PresenceResult>> refused;
  ASSERT_FALSE(bob.presence("chat:room", [&](const Outcome<PresenceResult>& o) { refused.set_value(o); }));
  auto not_subscribed = refused.get_future();
  ASSERT_EQ(not_subscribed.wait_for(5s), std::future_status::ready);
  const auto answer = not_subscribed.get();
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.error->code, error_code::not_subscribed);
}

TEST(HubClient, DroppedConnectionRecoversEveryMessageOnceAndInOrder) {
  Server server(client_test_config());
  Recorder reader_saw, writer_saw;
  auto reader_options = options_for(server, "reader");
  reader_options.backoff_base = 300ms;  // stays away while the writer publishes
  HubClient reader(reader_options);
  HubClient writer(options_for(server, "writer"));
  reader.set_state_handlers(reader_saw.state_handlers());
  writer.set_state_handlers(writer_saw.state_handlers());
  ASSERT_FALSE(reader.subscribe("chat:feed", reader_saw.subscription_handlers()));
  reader.connect();
  writer.connect();
  ASSERT_TRUE(reader_saw.wait([](auto& r) { return !r.subscribed().empty(); }));
  ASSERT_TRUE(writer_saw.wait([](auto& r) { return !r.connected().empty(); }));

  Acks acks;
  for (int i = 1; i <= 20; ++i) ASSERT_FALSE(writer.publish("chat:feed", std::to_string(i), acks.callback()));
  ASSERT_TRUE(reader_saw.wait([](auto& r) { return r.messages().size() >= 20; }));

  reader.drop_connection_for_test();
  ASSERT_TRUE(reader_saw.wait([](auto& r) { return !r.disconnected().empty(); }));
  EXPECT_TRUE(reader_saw.disconnected()[0].will_reconnect);
  EXPECT_EQ(reader_saw.disconnected()[0].code, 1006);
  // 100 publishes while the reader is away and while it comes back.
  for (int i = 21; i <= 120; ++i) {
    ASSERT_FALSE(writer.publish("chat:feed", std::to_string(i), acks.callback()));
    if (i % 10 == 0) std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(acks.wait_for(120));
  EXPECT_EQ(acks.failures(), std::vector<std::string>{});

  ASSERT_TRUE(reader_saw.wait([](auto& r) { return r.messages().size() >= 120; }, 15s))
      << "got " << reader_saw.messages().size();
  std::this_thread::sleep_for(200ms);  // anything extra (a duplicate) would arrive now
  reader_saw.record([] {});
  ASSERT_TRUE(reader_saw.wait([](auto&) { return true; }));
  const auto& got = reader_saw.messages();
  EXPECT_EQ(offsets_of(got), range(1, 120));
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].data, std::to_string(i + 1)) << i;
  EXPECT_TRUE(reader_saw.gaps().empty());
  ASSERT_EQ(reader_saw.subscribed().size(), 2u);
  EXPECT_TRUE(reader_saw.subscribed()[1].recovering);
  EXPECT_TRUE(reader_saw.subscribed()[1].recovered);
  EXPECT_EQ(reader_saw.connected().size(), 2u);
}

TEST(HubClient, PublishesMadeWhileDisconnectedAreAppliedOnce) {
  Server server(client_test_config());
  Recorder reader_saw, writer_saw;
  HubClient reader(options_for(server, "reader"));
  auto writer_options = options_for(server, "writer");
  writer_options.backoff_base = 200ms;
  HubClient writer(writer_options);
  reader.set_state_handlers(reader_saw.state_handlers());
  writer.set_state_handlers(writer_saw.state_handlers());
  ASSERT_FALSE(reader.subscribe("chat:queue", reader_saw.subscription_handlers()));
  reader.connect();
  writer.connect();
  ASSERT_TRUE(reader_saw.wait([](auto& r) { return !r.subscribed().empty(); }));
  ASSERT_TRUE(writer_saw.wait([](auto& r) { return !r.connected().empty(); }));

  Acks acks;
  int n = 0;
  // Round after round: some publishes go out and the connection dies under
  // them (acknowledged or not, nobody knows), the rest are made while
  // disconnected. Each must be applied exactly once.
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 10; ++i) ASSERT_FALSE(writer.publish("chat:queue", std::to_string(++n), acks.callback()));
    writer.drop_connection_for_test();
    for (int i = 0; i < 10; ++i) ASSERT_FALSE(writer.publish("chat:queue", std::to_string(++n), acks.callback()));
    const auto connects = static_cast<std::size_t>(round + 2);
    ASSERT_TRUE(writer_saw.wait([&](auto& r) { return r.connected().size() >= connects; }))
        << "the writer did not reconnect in round " << round;
  }
  ASSERT_TRUE(acks.wait_for(static_cast<std::size_t>(n)));
  EXPECT_EQ(acks.failures(), std::vector<std::string>{});
  auto offsets = acks.offsets();
  std::sort(offsets.begin(), offsets.end());
  EXPECT_EQ(offsets, range(1, static_cast<std::uint64_t>(n)));  // each applied once: no offset twice, none skipped

  ASSERT_TRUE(reader_saw.wait([&](auto& r) { return r.messages().size() >= static_cast<std::size_t>(n); }));
  std::this_thread::sleep_for(200ms);
  reader_saw.record([] {});
  std::multiset<std::string> seen;
  ASSERT_TRUE(reader_saw.wait([&](auto& r) {
    for (const auto& m : r.messages()) seen.insert(m.data);
    return true;
  }));
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(n));
  for (int i = 1; i <= n; ++i) EXPECT_EQ(seen.count(std::to_string(i)), 1u) << i;
  EXPECT_EQ(offsets_of(reader_saw.messages()), range(1, static_cast<std::uint64_t>(n)));
}

TEST(HubClient, RefusedTokenStopsWithoutReconnecting) {
  Server server(client_test_config());
  Recorder saw;
  auto options = options_for(server, "mallory");
  options.token = hub::sign_token_hs256(R"({"sub":"mallory"})", "not-the-secret");
  HubClient client(options);
  client.set_state_handlers(saw.state_handlers());
  Acks acks;
  ASSERT_FALSE(client.publish("chat:x", "1", acks.callback()));
  client.connect();
  ASSERT_TRUE(saw.wait([](auto& r) { return !r.disconnected().empty(); }));
  EXPECT_FALSE(saw.disconnected()[0].will_reconnect);
  ASSERT_TRUE(acks.wait_for(1));
  ASSERT_EQ(acks.failures().size(), 1u);
  EXPECT_EQ(acks.failures()[0].substr(0, 3), std::to_string(error_code::closed));
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(client.state(), ConnectionState::closed);
  EXPECT_TRUE(saw.wait([](auto& r) { return r.disconnected().size() == 1 && r.connected().empty(); }));
}

TEST(HubClient, TokenProviderIsAskedForEachConnection) {
  Server server(client_test_config());
  Recorder saw;
  auto options = options_for(server, "carol");
  std::atomic<int> asked{0};
  options.token = "";
  options.token_provider = [&asked](std::function<void(TokenResult)> done) {
    ++asked;
    // Answer from another thread, as an HTTP fetch would.
    std::thread([done = std::move(done)] { done(TokenResult{token_for("carol"), ""}); }).detach();
  };
  HubClient client(options);
  client.set_state_handlers(saw.state_handlers());
  client.connect();
  ASSERT_TRUE(saw.wait([](auto& r) { return r.connected().size() == 1; }));
  EXPECT_EQ(saw.connected()[0].user, "carol");
  client.drop_connection_for_test();
  ASSERT_TRUE(saw.wait([](auto& r) { return r.connected().size() == 2; }));
  EXPECT_EQ(asked.load(), 2);
}

// ---- duplex connect --hub ----------------------------------------------------------

namespace {

// Runs a shell command; returns its exit status and stdout.
std::pair<int, std::string> run(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return {-1, out};
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace

TEST(HubClient, ConnectCommandPublishesStdinAndPrintsHistory) {
  Server server(client_test_config());
  Recorder saw;
  HubClient watcher(options_for(server, "watcher"));
  ASSERT_FALSE(watcher.subscribe("chat:cli", saw.subscription_handlers()));
  watcher.connect();
  ASSERT_TRUE(saw.wait([](auto& r) { return !r.subscribed().empty(); }));

  const std::string base = std::string(DUPLEX_BINARY) + " connect --hub " + url_of(server) + " --token " +
                           token_for("cli");
  // A JSON line goes as is, any other line as a JSON string.
  const auto [publish_status, publish_out] =
      run("printf '%s\\n' '{\"text\":\"hi\"}' 'plain words' 42 | timeout 20 " + base + " --publish chat:cli 2>/dev/null");
  EXPECT_EQ(publish_status, 0);
  ASSERT_TRUE(saw.wait([](auto& r) { return r.messages().size() >= 3; }));
  EXPECT_EQ(saw.messages()[0].data, R"({"text":"hi"})");
  EXPECT_EQ(saw.messages()[1].data, R"("plain words")");
  EXPECT_EQ(saw.messages()[2].data, "42");

  const auto [history_status, history_out] = run("timeout 20 " + base + " --history chat:cli 2>/dev/null");
  EXPECT_EQ(history_status, 0);
  EXPECT_EQ(history_out,
            "{\"channel\":\"chat:cli\",\"offset\":1,\"data\":{\"text\":\"hi\"}}\n"
            "{\"channel\":\"chat:cli\",\"offset\":2,\"data\":\"plain words\"}\n"
            "{\"channel\":\"chat:cli\",\"offset\":3,\"data\":42}\n");

  const auto [presence_status, presence_out] = run("timeout 20 " + base + " --presence chat:cli 2>/dev/null");
  EXPECT_EQ(presence_status, 0);
  EXPECT_NE(presence_out.find("\"presence\":\"chat:cli\""), std::string::npos) << presence_out;
  EXPECT_NE(presence_out.find("\"user\":\"watcher\""), std::string::npos) << presence_out;

  // A subscriber prints each message as one JSON line; SIGTERM ends it.
  const std::string out_file = ::testing::TempDir() + "hub_cli_sub.out";
  const auto [sub_status, sub_out] =
      run("(timeout -s TERM 3 " + base + " --subscribe chat:cli > " + out_file + " 2>/dev/null; true) & sleep 1; " +
          "echo 43 | timeout 20 " + base + " --publish chat:cli 2>/dev/null; wait; cat " + out_file);
  EXPECT_EQ(sub_status, 0);
  EXPECT_EQ(sub_out, "{\"channel\":\"chat:cli\",\"offset\":4,\"data\":43}\n");
}
