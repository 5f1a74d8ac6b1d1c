// HubSession driven with scripted server frames: no sockets, no clock. Every
// frame the session sends is parsed back and checked field by field.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "duplex/client/hub_session.hpp"

using namespace duplex;
using namespace duplex::client;
using namespace std::chrono_literals;

namespace {

// One frame the session sent, parsed.
class SentFrame {
 public:
  explicit SentFrame(std::string text) : text_(std::move(text)) {
    auto error = parser_.parse(text_).get(root_);
    if (error) ADD_FAILURE() << "the session sent invalid JSON: " << text_;
  }
  const std::string& text() const { return text_; }
  bool has(const char* key) const { return root_[key].error() == simdjson::SUCCESS; }
  std::string str(const char* key) const {
    std::string_view s;
    if (root_[key].get(s)) return "<missing " + std::string(key) + ">";
    return std::string(s);
  }
  std::uint64_t num(const char* key) const {
    std::uint64_t n = 0;
    if (root_[key].get(n)) ADD_FAILURE() << "no number " << key << " in " << text_;
    return n;
  }
  bool flag(const char* key) const {
    bool b = false;
    if (root_[key].get(b)) return false;
    return b;
  }
  std::string raw(const char* key) const {
    simdjson::dom::element e;
    if (root_[key].get(e)) return "<missing>";
    return simdjson::minify(e);
  }
  std::uint64_t id() const { return num("id"); }
  std::string type() const { return str("type"); }

 private:
  std::string text_;
  simdjson::dom::parser parser_;
  simdjson::dom::element root_;
};

using Sent = std::unique_ptr<SentFrame>;

class HubSessionTest : public ::testing::Test {
 protected:
  HubSessionTest() { make_session(); }

  void make_session(SessionOptions options = {}) {
    if (options.token.empty()) options.token = "tok-1";
    options_ = options;
    session_ = std::make_unique<HubSession>(options, [this] { return rng_(); });
    StateHandlers handlers;
    handlers.on_connecting = [this] { events_.push_back("connecting"); };
    handlers.on_connected = [this](const ConnectedEvent& e) {
      events_.push_back("connected");
      connected_ = e;
    };
    handlers.on_disconnected = [this](const DisconnectedEvent& e) {
      events_.push_back("disconnected " + std::to_string(e.code) + (e.will_reconnect ? " reconnect" : " final"));
      disconnected_ = e;
    };
    handlers.on_error = [this](const Error& e) { errors_.push_back(e); };
    session_->set_state_handlers(handlers);
  }

  HubSession& s() { return *session_; }

  std::vector<Sent> sent() {
    std::vector<Sent> out;
    for (auto& text : s().take_outgoing()) out.push_back(std::make_unique<SentFrame>(text));
    return out;
  }
  // Exactly one frame must have been sent; returns it.
  Sent sent_one(const std::string& type) {
    auto frames = sent();
    if (frames.size() != 1) {
      ADD_FAILURE() << "expected one " << type << " frame, got " << frames.size();
      for (auto& f : frames) ADD_FAILURE() << "  " << f->text();
      return std::make_unique<SentFrame>("{}");
    }
    EXPECT_EQ(frames[0]->type(), type) << frames[0]->text();
    return std::move(frames[0]);
  }

  void server(const std::string& frame) { s().on_text(frame, now_); }
  void reply(std::uint64_t id, const std::string& result) {
    server(R"({"type":"reply","id":)" + std::to_string(id) + R"(,"result":)" + result + "}");
  }
  void reply_error(std::uint64_t id, int code, const std::string& message) {
    server(R"({"type":"reply","id":)" + std::to_string(id) + R"(,"error":{"code":)" + std::to_string(code) +
           R"(,"message":")" + message + R"("}})");
  }
  void push_message(const std::string& channel, std::uint64_t offset, const std::string& data,
                    const std::string& epoch = "e1") {
    server(R"({"type":"message","channel":")" + channel + R"(","epoch":")" + epoch + R"(","offset":)" +
           std::to_string(offset) + R"(,"data":)" + data + "}");
  }

  // Opens a transport and completes authentication.
  void connect(std::uint64_t ping = 25) {
    s().on_transport_connecting(now_);
    s().on_transport_open(now_);
    auto auth = sent_one("authenticate");
    ASSERT_EQ(auth->str("token"), options_.token);
    reply(auth->id(), R"({"client":"c-1","user":"42","node":"n1","ping":)" + std::to_string(ping) + "}");
    ASSERT_EQ(s().state(), ConnectionState::connected);
  }

  // Subscribes `channel` (connected) and answers the subscribe at `offset`.
  void subscribe_at(const std::string& channel, std::uint64_t offset, const std::string& epoch = "e1") {
    SubscriptionHandlers handlers;
    handlers.on_message = [this](const Message& m) {
      received_.push_back(m);
      offsets_[m.channel].push_back(m.offset);
    };
    handlers.on_subscribed = [this](const SubscribedEvent& e) { subscribed_.push_back(e); };
    handlers.on_gap = [this](const GapEvent& e) { gaps_.push_back(e); };
    handlers.on_error = [this](const std::string& ch, const Error& e, bool retry) {
      sub_errors_.push_back(ch + " " + std::to_string(e.code) + (retry ? " retry" : " final"));
    };
    handlers.on_unsubscribed = [this](const UnsubscribedEvent& e) { unsubscribed_.push_back(e); };
    ASSERT_FALSE(s().subscribe(channel, handlers, {}, now_));
    if (s().state() != ConnectionState::connected) return;
    auto sub = sent_one("subscribe");
    ASSERT_EQ(sub->str("channel"), channel);
    EXPECT_FALSE(sub->has("recover"));
    reply(sub->id(), R"({"channel":")" + channel + R"(","epoch":")" + epoch + R"(","offset":)" +
                         std::to_string(offset) + R"(,"recoverable":true})");
  }

  // The transport dies; returns the reconnect decision.
  ReconnectDecision drop(std::uint16_t code = 1006) {
    auto decision = s().on_transport_closed(code, "gone", now_);
    return decision;
  }

  SessionOptions options_;
  std::mt19937_64 rng_{12345};
  std::unique_ptr<HubSession> session_;
  TimePoint now_ = TimePoint{} + 1000h;
  std::vector<std::string> events_;
  std::vector<Error> errors_;
  ConnectedEvent connected_;
  DisconnectedEvent disconnected_;
  std::vector<Message> received_;
  std::map<std::string, std::vector<std::uint64_t>> offsets_;
  std::vector<SubscribedEvent> subscribed_;
  std::vector<GapEvent> gaps_;
  std::vector<std::string> sub_errors_;
  std::vector<UnsubscribedEvent> unsubscribed_;
};

using Offsets = std::vector<std::uint64_t>;

}  // namespace

// ---- authentication -------------------------------------------------------------

TEST_F(HubSessionTest, AuthenticatesFirstThenReportsConnected) {
  EXPECT_EQ(s().state(), ConnectionState::disconnected);
  s().on_transport_connecting(now_);
  EXPECT_EQ(s().state(), ConnectionState::connecting);
  EXPECT_TRUE(sent().empty());
  s().on_transport_open(now_);
  auto auth = sent_one("authenticate");
  EXPECT_EQ(auth->str("token"), "tok-1");
  EXPECT_GT(auth->id(), 0u);
  EXPECT_EQ(s().state(), ConnectionState::connecting);
  reply(auth->id(), R"({"client":"c-9","user":"42","expires":1764000000,"node":"node-1","ping":25})");
  EXPECT_EQ(s().state(), ConnectionState::connected);
  EXPECT_EQ(events_, (std::vector<std::string>{"connecting", "connected"}));
  EXPECT_EQ(connected_.client, "c-9");
  EXPECT_EQ(connected_.user, "42");
  EXPECT_EQ(connected_.node, "node-1");
  EXPECT_EQ(connected_.expires, 1764000000);
  EXPECT_EQ(connected_.ping_seconds, 25u);
  EXPECT_EQ(s().ping_interval(), 25s);
}

TEST_F(HubSessionTest, AnonymousAuthenticateCarriesNoToken) {
  session_ = std::make_unique<HubSession>(SessionOptions{}, [this] { return rng_(); });
  s().on_transport_connecting(now_);
  s().on_transport_open(now_);
  auto auth = sent_one("authenticate");
  EXPECT_FALSE(auth->has("token")) << auth->text();
}

TEST_F(HubSessionTest, CommandsMadeBeforeAuthenticationWaitForIt) {
  ASSERT_FALSE(s().publish("chat:a", R"({"x":1})", {}, {}, now_));
  s().on_transport_connecting(now_);
  s().on_transport_open(now_);
  auto frames = sent();
  ASSERT_EQ(frames.size(), 1u);  // authenticate only
  EXPECT_EQ(frames[0]->type(), "authenticate");
  reply(frames[0]->id(), R"({"client":"c","user":"u","ping":0})");
  auto publish = sent_one("publish");
  EXPECT_EQ(publish->str("channel"), "chat:a");
  EXPECT_EQ(publish->raw("data"), R"({"x":1})");
}

TEST_F(HubSessionTest, TokenProviderIsAskedOnEveryConnectAndStaleAnswersAreIgnored) {
  SessionOptions options;
  options.use_token_provider = true;
  make_session(options);
  s().on_transport_connecting(now_);
  s().on_transport_open(now_);
  EXPECT_TRUE(sent().empty());  // nothing before the token
  const auto request = s().take_token_request();
  ASSERT_TRUE(request.has_value());
  EXPECT_FALSE(s().take_token_request().has_value());
  s().on_token(*request + 100, TokenResult{"wrong", ""}, now_);  // not the request we made
  EXPECT_TRUE(sent().empty());
  s().on_token(*request, TokenResult{"fresh-1", ""}, now_);
  auto auth = sent_one("authenticate");
  EXPECT_EQ(auth->str("token"), "fresh-1");
  reply(auth->id(), R"({"client":"c","user":"u","ping":0})");
  ASSERT_EQ(s().state(), ConnectionState::connected);

  ASSERT_TRUE(drop().reconnect);
  s().on_transport_connecting(now_);
  s().on_transport_open(now_);
  const auto second = s().take_token_request();
  ASSERT_TRUE(second.has_value());
  EXPECT_NE(*second, *request);
  s().on_token(*request, TokenResult{"old", ""}, now_);  // the previous connect's request: ignored
  EXPECT_TRUE(sent().empty());
  s().on_token(*second, TokenResult{"fresh-2", ""}, now_);
  EXPECT_EQ(sent_one("authenticate")->str("token"), "fresh-2");
}

TEST_F(HubSessionTest, TokenProviderFailureDropsTheTransportAndRetries) {
  SessionOptions options;
  options.use_token_provider = true;
  make_session(options);
  s().on_transport_connecting(now_);
  s().on_transport_open(now_);
  const auto request = s().take_token_request();
  ASSERT_TRUE(request);
  s().on_token(*request, TokenResult{"", "auth server down"}, now_);
  ASSERT_EQ(errors_.size(), 1u);
  EXPECT_EQ(errors_[0].code, error_code::token_unavailable);
  const auto close = s().take_close_request();
  ASSERT_TRUE(close);
  EXPECT_TRUE(drop(close->code).reconnect);
}

TEST_F(HubSessionTest, RefusedTokenStopsForGoodAndFailsPendingPublishes) {
  std::vector<int> failures;
  ASSERT_FALSE(s().publish("chat:a", "1", [&](const Outcome<PublishResult>& o) { failures.push_back(o.error->code); },
                           {}, now_));
  s().on_transport_connecting(now_);
  s().on_transport_open(now_);
  auto auth = sent_one("authenticate");
  reply_error(auth->id(), error_code::unauthorized, "invalid token");
  ASSERT_EQ(errors_.size(), 1u);
  EXPECT_EQ(errors_[0].code, error_code::unauthorized);
  const auto close = s().take_close_request();
  ASSERT_TRUE(close);
  EXPECT_EQ(close->code, session_close::invalid_token);
  const auto decision = drop(close->code);
  EXPECT_FALSE(decision.reconnect);
  EXPECT_EQ(s().state(), ConnectionState::closed);
  EXPECT_EQ(failures, std::vector<int>{error_code::closed});
  EXPECT_EQ(events_.back(), "disconnected 4501 final");
}

TEST_F(HubSessionTest, ExpiredTokenRetriesOnlyWithAProvider) {
  s().on_transport_connecting(now_);
  s().on_transport_open(now_);
  reply_error(sent_one("authenticate")->id(), error_code::token_expired, "token expired");
  auto close = s().take_close_request();
  ASSERT_TRUE(close);
  EXPECT_FALSE(drop(close->code).reconnect);  // a fixed token stays expired

  SessionOptions options;
  options.use_token_provider = true;
  make_session(options);
  s().on_transport_connecting(now_);
  s().on_transport_open(now_);
  s().on_token(*s().take_token_request(), TokenResult{"t", ""}, now_);
  reply_error(sent_one("authenticate")->id(), error_code::token_expired, "token expired");
  close = s().take_close_request();
  ASSERT_TRUE(close);
  EXPECT_TRUE(drop(close->code).reconnect);
}

// ---- subscriptions ----------------------------------------------------------------

TEST_F(HubSessionTest, SubscribeReplyMakesTheSubscriptionActive) {
  connect();
  SubscriptionHandlers handlers;
  handlers.on_subscribed = [this](const SubscribedEvent& e) { subscribed_.push_back(e); };
  ASSERT_FALSE(s().subscribe("chat:general", handlers, {}, now_));
  EXPECT_EQ(s().subscription_state("chat:general"), SubscriptionState::subscribing);
  auto sub = sent_one("subscribe");
  EXPECT_EQ(sub->str("channel"), "chat:general");
  EXPECT_FALSE(sub->has("recover"));
  reply(sub->id(), R"({"channel":"chat:general","epoch":"f1c9a6","offset":45,"recoverable":true})");
  EXPECT_EQ(s().subscription_state("chat:general"), SubscriptionState::subscribed);
  ASSERT_EQ(subscribed_.size(), 1u);
  EXPECT_EQ(subscribed_[0].position, (hub::StreamPosition{"f1c9a6", 45}));
  EXPECT_TRUE(subscribed_[0].recoverable);
  EXPECT_FALSE(subscribed_[0].recovering);
  EXPECT_EQ(s().position("chat:general"), (hub::StreamPosition{"f1c9a6", 45}));
  // A second subscribe to the same channel is refused locally.
  const auto again = s().subscribe("chat:general", {}, {}, now_);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->code, error_code::already_subscribed);
}

TEST_F(HubSessionTest, SubscribeTokenIsSent) {
  connect();
  SubscribeOptions options;
  options.token = "sub-token";
  ASSERT_FALSE(s().subscribe("secret:x", {}, options, now_));
  EXPECT_EQ(sent_one("subscribe")->str("token"), "sub-token");
}

TEST_F(HubSessionTest, LiveMessagesAreDeliveredOnceInOffsetOrder) {
  connect();
  subscribe_at("chat:a", 0);
  push_message("chat:a", 1, R"({"text": "hi",  "n":1.50})");
  push_message("chat:a", 2, "2");
  push_message("chat:a", 2, "2");  // duplicate
  push_message("chat:a", 1, "1");  // older: duplicate
  push_message("chat:a", 3, "3");
  EXPECT_EQ(offsets_["chat:a"], (Offsets{1, 2, 3}));
  EXPECT_EQ(s().duplicates_dropped(), 2u);
  ASSERT_FALSE(received_.empty());
  EXPECT_EQ(received_[0].data, R"({"text": "hi",  "n":1.50})");  // byte for byte
  EXPECT_EQ(received_[0].epoch, "e1");
  EXPECT_TRUE(gaps_.empty());
  EXPECT_EQ(s().position("chat:a"), (hub::StreamPosition{"e1", 3}));
}

TEST_F(HubSessionTest, PublisherInfoIsPassedThroughRaw) {
  connect();
  subscribe_at("chat:a", 0);
  server(R"({"type":"message","channel":"chat:a","epoch":"e1","offset":1,"data":"x","info":{"user":"42","client":"c","info":{"name":"Ada"}}})");
  ASSERT_EQ(received_.size(), 1u);
  EXPECT_EQ(received_[0].data, R"("x")");
  EXPECT_EQ(received_[0].info, R"({"user":"42","client":"c","info":{"name":"Ada"}})");
}

TEST_F(HubSessionTest, MessagesForOtherChannelsAreIgnored) {
  connect();
  subscribe_at("chat:a", 0);
  push_message("chat:b", 1, "1");
  EXPECT_TRUE(received_.empty());
}

TEST_F(HubSessionTest, OffsetJumpAndEpochChangeAreReportedAsGaps) {
  connect();
  subscribe_at("chat:a", 10);
  push_message("chat:a", 11, "1");
  push_message("chat:a", 14, "2");  // 12 and 13 never came
  ASSERT_EQ(gaps_.size(), 1u);
  EXPECT_EQ(gaps_[0].last_seen, (hub::StreamPosition{"e1", 11}));
  EXPECT_EQ(gaps_[0].resumed_at, (hub::StreamPosition{"e1", 13}));
  push_message("chat:a", 1, "3", "e2");  // the stream restarted
  ASSERT_EQ(gaps_.size(), 2u);
  EXPECT_EQ(gaps_[1].last_seen, (hub::StreamPosition{"e1", 14}));
  EXPECT_EQ(gaps_[1].resumed_at, (hub::StreamPosition{"e2", 0}));
  EXPECT_EQ(offsets_["chat:a"], (Offsets{11, 14, 1}));
}

TEST_F(HubSessionTest, ReconnectResubscribesWithRecoverFromTheLastPosition) {
  connect();
  subscribe_at("chat:a", 40, "f1c9a6");
  push_message("chat:a", 41, "1", "f1c9a6");
  const auto decision = drop(1006);
  EXPECT_TRUE(decision.reconnect);
  EXPECT_EQ(s().state(), ConnectionState::disconnected);
  EXPECT_EQ(s().subscription_state("chat:a"), SubscriptionState::subscribing);
  EXPECT_EQ(events_.back(), "disconnected 1006 reconnect");
  EXPECT_TRUE(sent().empty());

  connect();
  auto sub = sent_one("subscribe");
  EXPECT_EQ(sub->str("channel"), "chat:a");
  EXPECT_TRUE(sub->flag("recover"));
  EXPECT_EQ(sub->str("epoch"), "f1c9a6");
  EXPECT_EQ(sub->num("offset"), 41u);
}

TEST_F(HubSessionTest, RecoveredPublicationsComeFirstThenLiveOnesWithoutDuplicates) {
  connect();
  subscribe_at("chat:a", 41);
  push_message("chat:a", 42, "42");
  drop();
  connect();
  auto sub = sent_one("subscribe");
  ASSERT_EQ(sub->num("offset"), 42u);
  // Live messages that overtake the reply are held back and merged.
  push_message("chat:a", 45, "45");
  push_message("chat:a", 46, "46");
  EXPECT_EQ(offsets_["chat:a"], (Offsets{42}));
  reply(sub->id(), R"({"channel":"chat:a","epoch":"e1","offset":45,"recoverable":true,"recovered":true,
      "publications":[{"offset":42,"data":42},{"offset":43,"data":{"n":43}},{"offset":44,"data":44},{"offset":45,"data":45}]})");
  push_message("chat:a", 46, "46");  // already delivered from the held-back ones
  push_message("chat:a", 47, "47");
  EXPECT_EQ(offsets_["chat:a"], (Offsets{42, 43, 44, 45, 46, 47}));
  EXPECT_TRUE(gaps_.empty());
  ASSERT_EQ(subscribed_.size(), 2u);
  EXPECT_TRUE(subscribed_[1].recovering);
  EXPECT_TRUE(subscribed_[1].recovered);
  EXPECT_EQ(received_[1].data, R"({"n":43})");
}

TEST_F(HubSessionTest, RecoveredFalseIsReportedAsAGapAndNothingIsReplayed) {
  connect();
  subscribe_at("chat:a", 5);
  push_message("chat:a", 6, "6");
  drop();
  connect();
  auto sub = sent_one("subscribe");
  reply(sub->id(), R"({"channel":"chat:a","epoch":"e2","offset":900,"recoverable":true,"recovered":false,
      "publications":[{"offset":899,"data":1}]})");
  ASSERT_EQ(gaps_.size(), 1u);
  EXPECT_EQ(gaps_[0].channel, "chat:a");
  EXPECT_EQ(gaps_[0].last_seen, (hub::StreamPosition{"e1", 6}));
  EXPECT_EQ(gaps_[0].resumed_at, (hub::StreamPosition{"e2", 900}));
  ASSERT_EQ(subscribed_.size(), 2u);
  EXPECT_FALSE(subscribed_[1].recovered);
  push_message("chat:a", 901, "901", "e2");
  EXPECT_EQ(offsets_["chat:a"], (Offsets{6, 901}));
  EXPECT_EQ(gaps_.size(), 1u);
}

TEST_F(HubSessionTest, SubscribeFromAKnownPositionRecoversAtOnce) {
  connect();
  SubscribeOptions options;
  options.since = hub::StreamPosition{"e1", 7};
  ASSERT_FALSE(s().subscribe("chat:a", {}, options, now_));
  auto sub = sent_one("subscribe");
  EXPECT_TRUE(sub->flag("recover"));
  EXPECT_EQ(sub->num("offset"), 7u);
}

TEST_F(HubSessionTest, PermanentSubscribeErrorEndsTheSubscriptionTransientOneRetries) {
  connect();
  SubscriptionHandlers handlers;
  handlers.on_error = [this](const std::string& ch, const Error& e, bool retry) {
    sub_errors_.push_back(ch + " " + std::to_string(e.code) + (retry ? " retry" : " final"));
  };
  handlers.on_unsubscribed = [this](const UnsubscribedEvent& e) { unsubscribed_.push_back(e); };
  ASSERT_FALSE(s().subscribe("chat:denied", handlers, {}, now_));
  reply_error(sent_one("subscribe")->id(), error_code::permission_denied, "permission denied");
  EXPECT_EQ(s().subscription_state("chat:denied"), SubscriptionState::unsubscribed);
  ASSERT_EQ(unsubscribed_.size(), 1u);
  EXPECT_EQ(unsubscribed_[0].code, error_code::permission_denied);

  ASSERT_FALSE(s().subscribe("chat:busy", handlers, {}, now_));
  reply_error(sent_one("subscribe")->id(), error_code::unavailable, "engine unavailable");
  EXPECT_EQ(s().subscription_state("chat:busy"), SubscriptionState::subscribing);
  EXPECT_EQ(sub_errors_, (std::vector<std::string>{"chat:denied 103 final", "chat:busy 113 retry"}));
  // The retry waits for its backoff (at most base = 500 ms for the first).
  now_ += 501ms;
  s().tick(now_);
  auto retry = sent_one("subscribe");
  EXPECT_EQ(retry->str("channel"), "chat:busy");
}

TEST_F(HubSessionTest, ServerSideUnsubscribeEndsTheSubscription) {
  connect();
  subscribe_at("chat:a", 0);
  server(R"({"type":"unsubscribe","channel":"chat:a","code":2000,"reason":"unsubscribed by server"})");
  EXPECT_EQ(s().subscription_state("chat:a"), SubscriptionState::unsubscribed);
  ASSERT_EQ(unsubscribed_.size(), 1u);
  EXPECT_EQ(unsubscribed_[0].code, 2000);
  EXPECT_EQ(unsubscribed_[0].reason, "unsubscribed by server");
  push_message("chat:a", 1, "1");
  EXPECT_TRUE(received_.empty());
  drop();
  connect();
  EXPECT_TRUE(sent().empty());  // not resubscribed
}

TEST_F(HubSessionTest, ServerSideUnsubscribe2500ResubscribesAtOnceAndRecovers) {
  connect();
  subscribe_at("chat:a", 41);
  push_message("chat:a", 42, "42");
  server(R"({"type":"unsubscribe","channel":"chat:a","code":2500,"reason":"the server lost track of this channel"})");
  EXPECT_EQ(s().subscription_state("chat:a"), SubscriptionState::subscribing);
  EXPECT_TRUE(unsubscribed_.empty());
  auto sub = sent_one("subscribe");
  EXPECT_TRUE(sub->flag("recover"));
  EXPECT_EQ(sub->num("offset"), 42u);
  reply(sub->id(), R"({"channel":"chat:a","epoch":"e1","offset":44,"recoverable":true,"recovered":true,
      "publications":[{"offset":43,"data":43},{"offset":44,"data":44}]})");
  EXPECT_EQ(s().subscription_state("chat:a"), SubscriptionState::subscribed);
  EXPECT_EQ(offsets_["chat:a"], (Offsets{42, 43, 44}));
  EXPECT_TRUE(gaps_.empty());
}

TEST_F(HubSessionTest, UnsubscribeIsSentAndNotResubscribed) {
  connect();
  subscribe_at("chat:a", 0);
  s().unsubscribe("chat:a", now_);
  EXPECT_EQ(sent_one("unsubscribe")->str("channel"), "chat:a");
  EXPECT_EQ(s().subscription_state("chat:a"), SubscriptionState::unsubscribed);
  push_message("chat:a", 1, "1");
  EXPECT_TRUE(received_.empty());
}

TEST_F(HubSessionTest, JoinAndLeaveReachTheSubscription) {
  connect();
  std::vector<std::string> seen;
  SubscriptionHandlers handlers;
  handlers.on_join = [&](const std::string& ch, const hub::ClientInfo& c) { seen.push_back("join " + ch + " " + c.user + " " + c.info); };
  handlers.on_leave = [&](const std::string& ch, const hub::ClientInfo& c) { seen.push_back("leave " + ch + " " + c.client); };
  ASSERT_FALSE(s().subscribe("chat:a", handlers, {}, now_));
  reply(sent_one("subscribe")->id(), R"({"channel":"chat:a","epoch":"e","offset":0})");
  server(R"({"type":"join","channel":"chat:a","client":{"client":"c7","user":"42","info":{"name":"Ada"}}})");
  server(R"({"type":"leave","channel":"chat:a","client":{"client":"c7","user":"42"}})");
  EXPECT_EQ(seen, (std::vector<std::string>{R"(join chat:a 42 {"name":"Ada"})", "leave chat:a c7"}));
}

// ---- publishes ----------------------------------------------------------------

TEST_F(HubSessionTest, PublishCarriesDataAndAGeneratedIdempotencyKey) {
  connect();
  std::vector<PublishResult> results;
  ASSERT_FALSE(s().publish("chat:a", R"({"text":"hello"})", [&](const Outcome<PublishResult>& o) {
    ASSERT_TRUE(o.ok());
    results.push_back(o.value);
  }, {}, now_));
  auto publish = sent_one("publish");
  EXPECT_EQ(publish->str("channel"), "chat:a");
  EXPECT_EQ(publish->raw("data"), R"({"text":"hello"})");
  const std::string key = publish->str("idempotency_key");
  ASSERT_EQ(key.size(), 16u);
  EXPECT_EQ(key.find_first_not_of("0123456789abcdef"), std::string::npos) << key;
  reply(publish->id(), R"({"epoch":"f1","offset":46})");
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].offset, 46u);
  EXPECT_EQ(results[0].epoch, "f1");
  EXPECT_FALSE(results[0].duplicate);
  EXPECT_EQ(results[0].idempotency_key, key);

  // Two publishes get different keys; a given key is kept.
  PublishOptions mine;
  mine.idempotency_key = "k-81f2";
  ASSERT_FALSE(s().publish("chat:a", "1", {}, {}, now_));
  ASSERT_FALSE(s().publish("chat:a", "2", {}, mine, now_));
  auto frames = sent();
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_NE(frames[0]->str("idempotency_key"), key);
  EXPECT_EQ(frames[1]->str("idempotency_key"), "k-81f2");
}

TEST_F(HubSessionTest, InvalidPublishesAreRejectedAtTheApi) {
  connect();
  const auto not_json = s().publish("chat:a", "hello there", {}, {}, now_);
  ASSERT_TRUE(not_json);
  EXPECT_EQ(not_json->code, error_code::invalid_argument);
  EXPECT_TRUE(s().publish("chat:a", R"({"a":)", {}, {}, now_));
  EXPECT_TRUE(s().publish("chat:a", "", {}, {}, now_));
  EXPECT_TRUE(s().publish("chat:a", std::string(40, '[') + std::string(40, ']'), {}, {}, now_));  // too deep
  EXPECT_TRUE(s().publish("chat room", "1", {}, {}, now_));
  EXPECT_TRUE(s().publish("", "1", {}, {}, now_));
  EXPECT_TRUE(s().publish(std::string(256, 'a'), "1", {}, {}, now_));
  EXPECT_TRUE(s().publish("chat:a", "\"" + std::string(70'000, 'x') + "\"", {}, {}, now_));
  PublishOptions long_key;
  long_key.idempotency_key = std::string(129, 'k');
  EXPECT_TRUE(s().publish("chat:a", "1", {}, long_key, now_));
  EXPECT_TRUE(s().subscribe("bad channel", {}, {}, now_));
  EXPECT_TRUE(s().presence("", {}, now_));
  EXPECT_TRUE(sent().empty());
  EXPECT_FALSE(s().publish("chat:a", "  [1, 2]  ", {}, {}, now_));
}

TEST_F(HubSessionTest, UnacknowledgedAndQueuedPublishesAreResentAfterReconnectWithTheSameKey) {
  connect();
  subscribe_at("chat:a", 0);
  std::vector<std::string> acked;
  auto record = [&](const Outcome<PublishResult>& o) {
    ASSERT_TRUE(o.ok()) << o.error->message;
    acked.push_back(o.value.idempotency_key + (o.value.duplicate ? " dup" : ""));
  };
  ASSERT_FALSE(s().publish("chat:a", R"("first")", record, {}, now_));
  auto first = sent_one("publish");
  const std::string first_key = first->str("idempotency_key");
  drop();  // no reply: unknown whether it was applied
  ASSERT_FALSE(s().publish("chat:a", R"("second")", record, {}, now_));
  ASSERT_FALSE(s().publish("chat:a", R"("third")", record, {}, now_));
  EXPECT_TRUE(sent().empty());
  EXPECT_EQ(s().queued_commands(), 3u);

  connect();
  auto frames = sent();
  ASSERT_EQ(frames.size(), 4u);  // resubscribe, then the publishes in their original order
  EXPECT_EQ(frames[0]->type(), "subscribe");
  EXPECT_EQ(frames[1]->raw("data"), R"("first")");
  EXPECT_EQ(frames[1]->str("idempotency_key"), first_key);
  EXPECT_NE(frames[1]->id(), first->id());
  EXPECT_EQ(frames[2]->raw("data"), R"("second")");
  EXPECT_EQ(frames[3]->raw("data"), R"("third")");
  const std::string second_key = frames[2]->str("idempotency_key");
  reply(frames[1]->id(), R"({"epoch":"e1","offset":1,"duplicate":true})");
  reply(frames[2]->id(), R"({"epoch":"e1","offset":2})");
  reply(frames[3]->id(), R"({"epoch":"e1","offset":3})");
  ASSERT_EQ(acked.size(), 3u);
  EXPECT_EQ(acked[0], first_key + " dup");
  EXPECT_EQ(acked[1], second_key);
  EXPECT_EQ(s().queued_commands(), 0u);
  EXPECT_EQ(s().in_flight_commands(), 1u);  // the subscribe
}

TEST_F(HubSessionTest, QueueIsBoundedAndTheOldestFailFirst) {
  SessionOptions options;
  options.max_queued_publishes = 3;
  make_session(options);
  std::vector<std::string> failed;
  for (int i = 1; i <= 5; ++i)
    ASSERT_FALSE(s().publish("chat:a", std::to_string(i), [&failed, i](const Outcome<PublishResult>& o) {
      ASSERT_FALSE(o.ok());
      failed.push_back(std::to_string(i) + ":" + std::to_string(o.error->code));
    }, {}, now_));
  EXPECT_EQ(failed, (std::vector<std::string>{"1:902", "2:902"}));
  EXPECT_EQ(s().queued_commands(), 3u);
  connect();
  auto frames = sent();
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0]->raw("data"), "3");
  EXPECT_EQ(frames[2]->raw("data"), "5");
}

TEST_F(HubSessionTest, ServerErrorsReachThePublishCallback) {
  connect();
  std::optional<Error> error;
  ASSERT_FALSE(s().publish("chat:a", "1", [&](const Outcome<PublishResult>& o) { error = o.error; }, {}, now_));
  reply_error(sent_one("publish")->id(), error_code::too_many_requests, "slow down");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, error_code::too_many_requests);
  EXPECT_EQ(error->message, "slow down");
}

// ---- replies and timeouts -----------------------------------------------------------

TEST_F(HubSessionTest, RepliesAreMatchedByIdInAnyOrder) {
  connect();
  std::vector<std::string> order;
  ASSERT_FALSE(s().presence("chat:a", [&](const Outcome<PresenceResult>& o) {
    ASSERT_TRUE(o.ok());
    ASSERT_EQ(o.value.clients.size(), 1u);
    order.push_back("presence " + o.value.clients[0].user + " " + o.value.clients[0].info);
  }, now_));
  HistoryOptions h;
  h.limit = 2;
  h.since = hub::StreamPosition{"e1", 40};
  h.reverse = true;
  ASSERT_FALSE(s().history("chat:a", h, [&](const Outcome<HistoryResult>& o) {
    ASSERT_TRUE(o.ok());
    ASSERT_EQ(o.value.publications.size(), 2u);
    order.push_back("history " + std::to_string(o.value.position.offset) + " " + o.value.publications[1].data);
  }, now_));
  auto frames = sent();
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[1]->type(), "history");
  EXPECT_EQ(frames[1]->num("limit"), 2u);
  EXPECT_EQ(frames[1]->raw("since"), R"({"epoch":"e1","offset":40})");
  EXPECT_TRUE(frames[1]->flag("reverse"));
  reply(9999, R"({"clients":[]})");  // nobody asked: ignored
  reply(frames[1]->id(), R"({"epoch":"e1","offset":46,"publications":[{"offset":46,"data":{"t":"b"}},{"offset":45,"data":[1, 2]}]})");
  reply(frames[0]->id(), R"({"clients":[{"client":"c7","user":"42","info":{"name":"Ada"}}]})");
  reply(frames[0]->id(), R"({"clients":[]})");  // a second reply with the same id: ignored
  EXPECT_EQ(order, (std::vector<std::string>{"history 46 [1, 2]", R"(presence 42 {"name":"Ada"})"}));
}

TEST_F(HubSessionTest, ReadsTimeOutWithAnErrorAndLateRepliesAreIgnored) {
  connect(0);
  std::vector<int> codes;
  ASSERT_FALSE(s().presence("chat:a", [&](const Outcome<PresenceResult>& o) {
    codes.push_back(o.ok() ? 0 : o.error->code);
  }, now_));
  auto presence = sent_one("presence");
  now_ += 9s;
  s().tick(now_);
  EXPECT_TRUE(codes.empty());
  now_ += 2s;
  s().tick(now_);
  EXPECT_EQ(codes, std::vector<int>{error_code::timeout});
  reply(presence->id(), R"({"clients":[]})");
  EXPECT_EQ(codes.size(), 1u);
  EXPECT_FALSE(s().take_close_request());  // a slow read alone does not drop the connection
}

TEST_F(HubSessionTest, PublishTimeoutDropsTheConnectionAndResendsAfterReconnect) {
  connect(0);
  bool acked = false;
  ASSERT_FALSE(s().publish("chat:a", "1", [&](const Outcome<PublishResult>& o) { acked = o.ok(); }, {}, now_));
  const std::string key = sent_one("publish")->str("idempotency_key");
  now_ += 11s;
  s().tick(now_);
  const auto close = s().take_close_request();
  ASSERT_TRUE(close);
  EXPECT_EQ(close->code, session_close::stale);
  EXPECT_FALSE(acked);
  EXPECT_TRUE(drop(1006).reconnect);
  connect(0);
  auto again = sent_one("publish");
  EXPECT_EQ(again->str("idempotency_key"), key);
  reply(again->id(), R"({"epoch":"e","offset":1,"duplicate":true})");
  EXPECT_TRUE(acked);
}

TEST_F(HubSessionTest, HeartbeatPingsAndDropsAStaleConnection) {
  connect(25);
  now_ += 24s;
  s().tick(now_);
  EXPECT_TRUE(sent().empty());
  now_ += 1s;
  s().tick(now_);
  auto ping = sent_one("ping");
  reply(ping->id(), "{}");
  // Silence from here on: dropped once ping (25 s) + ping_timeout (10 s) pass.
  now_ += 25s;
  s().tick(now_);
  sent_one("ping");
  EXPECT_FALSE(s().take_close_request());
  now_ += 10s + 1ms;
  s().tick(now_);
  const auto close = s().take_close_request();
  ASSERT_TRUE(close);
  EXPECT_EQ(close->code, session_close::stale);
  EXPECT_TRUE(drop(1006).reconnect);
}

// ---- disconnects and backoff ------------------------------------------------------------

TEST_F(HubSessionTest, CloseCodesDecideReconnect) {
  for (std::uint16_t code : {1000, 1001, 1006, 1008, 1011, 1012, 4000, 4001, 4002, 4004, 4005, 4502})
    EXPECT_TRUE(HubSession::should_reconnect(code)) << code;
  for (std::uint16_t code : {1002, 1003, 1007, 1009, 4500, 4501, 4503, 4999})
    EXPECT_FALSE(HubSession::should_reconnect(code)) << code;

  struct Case {
    std::uint16_t code;
    bool reconnect;
  };
  for (const Case c : {Case{1001, true}, Case{1008, true}, Case{1009, false}, Case{4001, true}, Case{4002, true},
                       Case{4004, true}, Case{4005, true}, Case{4500, false}, Case{4501, false}, Case{4502, false},
                       Case{4503, false}, Case{1006, true}}) {
    make_session();
    connect();
    const auto decision = drop(c.code);
    EXPECT_EQ(decision.reconnect, c.reconnect) << c.code;
    EXPECT_EQ(s().state(), c.reconnect ? ConnectionState::disconnected : ConnectionState::closed) << c.code;
    EXPECT_EQ(disconnected_.code, c.code);
    EXPECT_EQ(disconnected_.will_reconnect, c.reconnect);
  }
}

TEST_F(HubSessionTest, DisconnectPushDecidesOverTheCloseCode) {
  connect();
  server(R"({"type":"disconnect","code":4503,"reason":"disconnected by the server","reconnect":false})");
  const auto decision = drop(1006);  // the TCP close raced the close frame
  EXPECT_FALSE(decision.reconnect);
  EXPECT_EQ(disconnected_.code, 4503);
  EXPECT_EQ(disconnected_.reason, "disconnected by the server");

  make_session();
  connect();
  server(R"({"type":"disconnect","code":1001,"reason":"server shutting down","reconnect":true})");
  EXPECT_TRUE(drop(1001).reconnect);
}

TEST_F(HubSessionTest, FullJitterStaysWithinTheExponentialCeiling) {
  const Millis base{500}, cap{20'000};
  std::mt19937_64 rng(7);
  for (unsigned attempt = 0; attempt < 40; ++attempt) {
    const std::int64_t ceiling = std::min<std::int64_t>(cap.count(), attempt < 20 ? base.count() << attempt : cap.count());
    Millis lowest{cap}, highest{0};
    for (int i = 0; i < 2000; ++i) {
      const Millis d = HubSession::full_jitter(base, cap, attempt, rng());
      ASSERT_GE(d.count(), 0);
      ASSERT_LE(d.count(), ceiling) << "attempt " << attempt;
      lowest = std::min(lowest, d);
      highest = std::max(highest, d);
    }
    // Spread over the whole range, not a fixed step.
    EXPECT_LT(lowest.count(), ceiling / 10 + 1) << attempt;
    EXPECT_GT(highest.count(), ceiling * 9 / 10) << attempt;
  }
  EXPECT_EQ(HubSession::full_jitter(base, cap, 0, 500), Millis{500});
  EXPECT_EQ(HubSession::full_jitter(base, cap, 0, 501), Millis{0});
  EXPECT_EQ(HubSession::full_jitter(base, cap, 3, ~std::uint64_t{0} - (~std::uint64_t{0} % 4001) - 1), Millis{4000});
  EXPECT_LE(HubSession::full_jitter(base, cap, 1000, ~std::uint64_t{0}), cap);
}

TEST_F(HubSessionTest, ConsecutiveFailuresGrowTheDelayAndAConnectResetsIt) {
  SessionOptions options;
  options.backoff_base = Millis{100};
  options.backoff_cap = Millis{1000};
  make_session(options);
  // Each failed attempt doubles the ceiling, up to the cap.
  const std::int64_t ceilings[] = {100, 200, 400, 800, 1000, 1000};
  for (const auto ceiling : ceilings) {
    s().on_transport_connecting(now_);
    const auto decision = drop(1006);  // failed to open
    ASSERT_TRUE(decision.reconnect);
    EXPECT_LE(decision.delay.count(), ceiling);
  }
  EXPECT_EQ(s().reconnect_attempt(), 6u);
  connect();
  EXPECT_EQ(s().reconnect_attempt(), 0u);
  EXPECT_LE(drop().delay.count(), 100);
}

TEST_F(HubSessionTest, ApplicationCloseFailsPendingAndNeverReconnects) {
  connect();
  subscribe_at("chat:a", 0);
  std::vector<int> codes;
  ASSERT_FALSE(s().publish("chat:a", "1", [&](const Outcome<PublishResult>& o) { codes.push_back(o.error->code); }, {}, now_));
  ASSERT_FALSE(s().history("chat:a", {}, [&](const Outcome<HistoryResult>& o) { codes.push_back(o.error->code); }, now_));
  sent();
  s().close(now_);
  EXPECT_EQ(s().state(), ConnectionState::closed);
  EXPECT_EQ(codes, (std::vector<int>{error_code::closed, error_code::closed}));
  const auto close = s().take_close_request();
  ASSERT_TRUE(close);
  EXPECT_EQ(close->code, 1000);
  const auto events = events_.size();
  EXPECT_FALSE(drop(1000).reconnect);
  EXPECT_EQ(events_.size(), events);  // the close was already reported
  // Connecting again resumes the subscription from where it stood.
  push_message("chat:a", 1, "1");  // from the dead transport: ignored
  EXPECT_TRUE(received_.empty());
  connect();
  auto sub = sent_one("subscribe");
  EXPECT_TRUE(sub->flag("recover"));
  EXPECT_EQ(sub->num("offset"), 0u);
}

// ---- refresh ----------------------------------------------------------------------

TEST_F(HubSessionTest, RefreshPushFetchesATokenAndSendsRefresh) {
  SessionOptions options;
  options.use_token_provider = true;
  make_session(options);
  s().on_transport_connecting(now_);
  s().on_transport_open(now_);
  s().on_token(*s().take_token_request(), TokenResult{"t1", ""}, now_);
  reply(sent_one("authenticate")->id(), R"({"client":"c","user":"u","ping":0})");
  server(R"({"type":"refresh","expires":1764000000})");
  const auto request = s().take_token_request();
  ASSERT_TRUE(request);
  s().on_token(*request, TokenResult{"t2", ""}, now_);
  auto refresh = sent_one("refresh");
  EXPECT_EQ(refresh->str("token"), "t2");
  reply(refresh->id(), R"({"expires":1764003600})");
  EXPECT_TRUE(errors_.empty());
  EXPECT_EQ(s().state(), ConnectionState::connected);

  // A refused refresh is reported; the connection stays until the server acts.
  server(R"({"type":"refresh","expires":1764003600})");
  s().on_token(*s().take_token_request(), TokenResult{"t3", ""}, now_);
  reply_error(sent_one("refresh")->id(), error_code::unauthorized, "different user");
  ASSERT_EQ(errors_.size(), 1u);
  EXPECT_EQ(errors_[0].code, error_code::unauthorized);
  EXPECT_FALSE(s().take_close_request());
}

TEST_F(HubSessionTest, RefreshPushWithoutProviderSendsNothing) {
  connect();
  server(R"({"type":"refresh","expires":1764000000})");
  EXPECT_FALSE(s().take_token_request());
  EXPECT_TRUE(sent().empty());
}

// ---- hostile input ----------------------------------------------------------------------

TEST_F(HubSessionTest, MalformedServerFramesAreIgnoredWithoutHarm) {
  connect(0);
  subscribe_at("chat:a", 0);
  push_message("chat:a", 1, "1");
  const std::vector<std::string> garbage = {
      "",
      "not json",
      "[1,2,3]",
      "\"reply\"",
      "{",
      R"({"type":"reply","id":)",
      R"({"id":1})",                                         // no type
      R"({"type":"reply","result":{}})",                     // reply without id
      R"({"type":"reply","id":"2","result":{}})",            // id of the wrong type
      R"({"type":"reply","id":-1,"result":{}})",
      R"({"type":"message","channel":"chat:a","offset":"2","data":1})",
      R"({"type":"message","channel":"chat:a","offset":123456789012345678901234567890,"data":1})",
      R"({"type":"message","channel":"chat:a","offset":2,"data":1e999})",
      R"({"type":"message","channel":["chat:a"],"offset":2,"data":1})",
      R"({"type":"message","channel":"chat:a","offset":2,"data":1}{"x":1})",
      R"({"type":"disconnect","code":"x"})",
      R"({"type":"join","channel":"chat:a","client":7})",
      R"({"type":"reply","id":1,"result":{"publications":[1,2]}})",
      R"({"type":"reply","id":1,"result":{"clients":{"a":1}}})",
      std::string(100'000, '[') + std::string(100'000, ']'),
      std::string("{\"type\":\"message\",\"channel\":\"chat:a\",\"data\":\"\xff\xfe\"}"),
      std::string("\0\0\0", 3),
  };
  for (const auto& frame : garbage) server(frame);
  EXPECT_EQ(s().malformed_frames(), garbage.size());
  EXPECT_EQ(errors_.size(), garbage.size());
  for (const auto& e : errors_) EXPECT_EQ(e.code, error_code::bad_frame);
  EXPECT_EQ(s().state(), ConnectionState::connected);
  // Frames of unknown types and missing optional fields are fine.
  server(R"({"type":"future_push","whatever":[1,{"a":null}]})");
  server(R"({"type":"message","channel":"chat:a","epoch":"e1","offset":2,"data":2,"extra":{"x":[1]}})");
  EXPECT_EQ(offsets_["chat:a"], (Offsets{1, 2}));
  EXPECT_EQ(s().malformed_frames(), garbage.size());
}

TEST_F(HubSessionTest, HostileResultValuesAreContained) {
  const std::string huge_ping = R"({"client":"c","ping":18446744073709551615})";
  s().on_transport_connecting(now_);
  s().on_transport_open(now_);
  reply(sent_one("authenticate")->id(), huge_ping);
  EXPECT_EQ(s().state(), ConnectionState::connected);
  EXPECT_EQ(s().ping_interval(), std::chrono::hours(24));
  now_ += 1h;
  s().tick(now_);  // no overflow, no ping yet
  EXPECT_TRUE(sent().empty());
}

TEST_F(HubSessionTest, CallbacksMayReenterTheSession) {
  connect();
  SubscriptionHandlers handlers;
  int seen = 0;
  handlers.on_message = [&](const Message& m) {
    ++seen;
    if (m.offset == 2) s().unsubscribe("chat:a", now_);  // stops the delivery of the rest
    ASSERT_FALSE(s().publish("chat:log", "1", {}, {}, now_));
  };
  ASSERT_FALSE(s().subscribe("chat:a", handlers, {}, now_));
  auto sub = sent_one("subscribe");
  reply(sub->id(), R"({"channel":"chat:a","epoch":"e","offset":0})");
  drop();
  connect();
  sub = sent_one("subscribe");
  reply(sub->id(), R"({"channel":"chat:a","epoch":"e","offset":3,"recovered":true,
      "publications":[{"offset":1,"data":1},{"offset":2,"data":2},{"offset":3,"data":3}]})");
  EXPECT_EQ(seen, 2);
  auto frames = sent();
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0]->type(), "publish");
  EXPECT_EQ(frames[1]->type(), "unsubscribe");
  EXPECT_EQ(frames[2]->type(), "publish");
}
