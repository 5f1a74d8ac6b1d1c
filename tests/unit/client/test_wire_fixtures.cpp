// The duplex.v1 messages of tests/wire/duplex.v1.json through the server's
// codec and the C++ client (HubSession); tests/js/wire_fixtures.test.mjs runs
// duplex.js over the same file. The fixtures are the one written-down form of
// the wire protocol: a side that writes or reads a message differently fails
// here, whichever side it is.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "duplex/client/hub_session.hpp"
#include "duplex/hub/codec.hpp"
#include "support/json.hpp"

namespace {

using namespace duplex;
using client::HubSession;
using simdjson::dom::element;

std::filesystem::path fixtures_path() {
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "wire" / "duplex.v1.json";
}

// JSON with object keys sorted (and `id` left out when asked), so two
// encodings of the same message compare equal whatever their key order.
void append_canonical(std::string& out, element e, bool skip_id) {
  switch (e.type()) {
    case simdjson::dom::element_type::OBJECT: {
      std::vector<std::pair<std::string_view, element>> fields;
      for (auto field : simdjson::dom::object(e))
        if (!(skip_id && field.key == "id")) fields.emplace_back(field.key, field.value);
      std::sort(fields.begin(), fields.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      out += '{';
      for (std::size_t i = 0; i < fields.size(); ++i) {
        if (i) out += ',';
        out += '"';
        out += fields[i].first;
        out += "\":";
        append_canonical(out, fields[i].second, false);
      }
      out += '}';
      break;
    }
    case simdjson::dom::element_type::ARRAY: {
      out += '[';
      bool first = true;
      for (element item : simdjson::dom::array(e)) {
        if (!first) out += ',';
        first = false;
        append_canonical(out, item, false);
      }
      out += ']';
      break;
    }
    default:
      out += simdjson::minify(e);
  }
}

std::string canonical(element e, bool skip_id = false) {
  std::string out;
  append_canonical(out, e, skip_id);
  return out;
}

// Fixture fields (the file is ours: a missing field is a broken fixture).
element member(element e, const char* key) {
  element v;
  EXPECT_EQ(e[key].get(v), simdjson::SUCCESS) << "no \"" << key << "\" in " << simdjson::minify(e);
  return v;
}
std::string text(element e, const char* key) {
  std::string_view s;
  EXPECT_EQ(e[key].get(s), simdjson::SUCCESS) << "no string \"" << key << "\" in " << simdjson::minify(e);
  return std::string(s);
}

std::string canonical(std::string_view json, bool skip_id = false) {
  simdjson::dom::parser parser;
  element e;
  if (parser.parse(json.data(), json.size()).get(e)) return "<not JSON: " + std::string(json) + ">";
  return canonical(e, skip_id);
}

class WireFixtures : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    static simdjson::padded_string text;
    ASSERT_EQ(simdjson::padded_string::load(fixtures_path().string()).get(text), simdjson::SUCCESS)
        << "cannot read " << fixtures_path();
    static simdjson::dom::parser parser;
    ASSERT_EQ(parser.parse(text).get(root_), simdjson::SUCCESS) << fixtures_path() << " is not JSON";
  }

  static std::vector<element> list(const char* key) {
    std::vector<element> out;
    for (element e : simdjson::dom::array(root_[key])) out.push_back(e);
    return out;
  }
  static std::string name_of(element e) { return text(e, "name"); }

  static element root_;
};

element WireFixtures::root_;

// ---- the server's codec ------------------------------------------------------------------

std::string command_type_name(hub::CommandType type) {
  switch (type) {
    case hub::CommandType::authenticate: return "authenticate";
    case hub::CommandType::subscribe: return "subscribe";
    case hub::CommandType::unsubscribe: return "unsubscribe";
    case hub::CommandType::publish: return "publish";
    case hub::CommandType::presence: return "presence";
    case hub::CommandType::history: return "history";
    case hub::CommandType::refresh: return "refresh";
    case hub::CommandType::ping: return "ping";
    case hub::CommandType::unknown: return "unknown";
  }
  return "?";
}

// What the server decoded, written back as the JSON command it stands for.
std::string decoded_as_json(const hub::Command& c) {
  std::string out = "{\"id\":" + std::to_string(c.id) + ",\"type\":\"" + command_type_name(c.type) + "\"";
  auto add_string = [&](const char* key, const std::string& value) {
    if (value.empty()) return;
    out += ",\"" + std::string(key) + "\":";
    hub::append_json_string(out, value);
  };
  add_string("channel", c.channel);
  add_string("token", c.token);
  if (!c.data.empty()) out += ",\"data\":" + c.data;
  add_string("idempotency_key", c.idempotency_key);
  if (c.recover) {
    out += ",\"recover\":true";
    add_string("epoch", c.epoch);
    out += ",\"offset\":" + std::to_string(c.offset);
  }
  if (c.has_limit) out += ",\"limit\":" + std::to_string(c.limit);
  if (c.has_since) {
    out += ",\"since\":{\"epoch\":";
    hub::append_json_string(out, c.since_epoch);
    out += ",\"offset\":" + std::to_string(c.since_offset) + "}";
  }
  if (c.reverse) out += ",\"reverse\":true";
  return canonical(out + "}");
}

TEST_F(WireFixtures, TheServerDecodesEveryCommandToWhatItSays) {
  for (element fixture : list("commands")) {
    SCOPED_TRACE(name_of(fixture));
    const std::string frame = simdjson::minify(member(fixture, "frame"));
    hub::Command command;
    std::string error;
    ASSERT_EQ(hub::json_codec().decode(frame, command, error), hub::DecodeStatus::ok) << error;
    EXPECT_EQ(decoded_as_json(command), canonical(member(fixture, "frame")));
  }
}

hub::PublicationPtr publication(std::uint64_t offset, std::string data, std::string publisher = "") {
  return std::make_shared<const hub::Publication>(hub::Publication{offset, std::move(data), std::move(publisher), 0});
}

// Each server fixture, written by the codec from the values it stands for.
std::map<std::string, std::function<std::string(const hub::Codec&)>> server_encoders() {
  const std::string bob = hub::publisher_json({"c2", "bob", ""});
  const hub::ClientInfo bob_with_info{"c2", "bob", R"({"name":"Bob"})"};
  return {
      {"connected reply", [](const hub::Codec& c) { return c.reply_connected(1, {"c1", "alice", 2000000000, "n1", 25}); }},
      {"connected push", [](const hub::Codec& c) { return c.push_connected({"c1", "", 0, "n1", 25}); }},
      {"subscribe reply",
       [](const hub::Codec& c) { return c.reply_subscribe(2, {"chat", {"E1", 7}, true, false, false, {}}); }},
      {"subscribe reply, recovered",
       [bob](const hub::Codec& c) {
         return c.reply_subscribe(
             3, {"chat", {"E1", 9}, true, true, true, {publication(8, R"({"text":"a"})"), publication(9, "\"b\"", bob)}});
       }},
      {"subscribe reply, not recovered",
       [](const hub::Codec& c) { return c.reply_subscribe(3, {"chat", {"E2", 4}, true, true, false, {}}); }},
      {"publish reply", [](const hub::Codec& c) { return c.reply_publish(4, {"E1", 10}, false); }},
      {"publish reply, duplicate", [](const hub::Codec& c) { return c.reply_publish(4, {"E1", 10}, true); }},
      {"presence reply",
       [](const hub::Codec& c) {
         return c.reply_presence(5, {{"c1", "alice", R"({"name":"Alice"})"}, {"c2", "bob", ""}});
       }},
      {"history reply",
       [bob](const hub::Codec& c) {
         return c.reply_history(6, {"E1", 10}, {publication(10, R"({"text":"c"})", bob), publication(9, "null")});
       }},
      {"unsubscribe reply", [](const hub::Codec& c) { return c.reply_empty(7); }},
      {"refresh reply", [](const hub::Codec& c) { return c.reply_refresh(8, 2000003600); }},
      {"error reply", [](const hub::Codec& c) { return c.reply_error(5, 103, "permission denied: \"chat\""); }},
      {"message push",
       [bob_with_info](const hub::Codec& c) {
         return c.push_message("chat", "E1",
                               {8, R"({"text":"h\u00e9","n":1})", hub::publisher_json(bob_with_info), 0});
       }},
      {"message push from the HTTP API",
       [](const hub::Codec& c) { return c.push_message("chat", "E1", {8, "[1,2,3]", "", 0}); }},
      {"join push", [bob_with_info](const hub::Codec& c) { return c.push_join_leave(true, "chat", bob_with_info); }},
      {"leave push", [](const hub::Codec& c) { return c.push_join_leave(false, "chat", {"c2", "bob", ""}); }},
      {"unsubscribe push, final",
       [](const hub::Codec& c) { return c.push_unsubscribe("chat", 2000, "unsubscribed by the server"); }},
      {"unsubscribe push, resubscribe",
       [](const hub::Codec& c) { return c.push_unsubscribe("chat", 2500, "resubscribe"); }},
      {"refresh push", [](const hub::Codec& c) { return c.push_refresh(2000000000); }},
      {"disconnect push", [](const hub::Codec& c) { return c.push_disconnect(4501, "invalid token", false); }},
  };
}

TEST_F(WireFixtures, TheServerWritesEveryServerMessageByteForByte) {
  auto encoders = server_encoders();
  std::set<std::string> covered;
  for (element fixture : list("server")) {
    const std::string name = name_of(fixture);
    SCOPED_TRACE(name);
    const auto it = encoders.find(name);
    ASSERT_NE(it, encoders.end()) << "no encoder for this fixture in " << __FILE__;
    covered.insert(name);
    const std::string frame = text(fixture, "frame");
    EXPECT_EQ(it->second(hub::json_codec()), frame);
    // A reply is told apart from a push by its type, nothing else.
    const std::string kind = text(fixture, "kind");
    simdjson::dom::parser parser;
    element parsed;
    ASSERT_EQ(parser.parse(frame).get(parsed), simdjson::SUCCESS);
    EXPECT_EQ(text(parsed, "type") == "reply", kind == "reply");
  }
  for (const auto& [name, encoder] : encoders) EXPECT_TRUE(covered.contains(name)) << "no fixture for " << name;
}

// ---- the C++ client ----------------------------------------------------------------------

// A HubSession with a transport that is open, authenticated and subscribed
// to "chat" at E1:7, recording everything the session surfaces as JSON in
// the fixtures' vocabulary (the `client` objects).
class ClientUnderTest {
 public:
  explicit ClientUnderTest(bool use_token_provider = false) {
    client::SessionOptions options;
    options.token = "T1";
    options.use_token_provider = use_token_provider;
    session_ = std::make_unique<HubSession>(options, [] { return 42u; });
    client::StateHandlers handlers;
    handlers.on_connected = [this](const client::ConnectedEvent& e) {
      std::string out = "{\"client\":" + quoted(e.client) + ",\"user\":" + quoted(e.user) + ",\"node\":" + quoted(e.node);
      if (e.expires) out += ",\"expires\":" + std::to_string(*e.expires);
      out += ",\"ping\":" + std::to_string(e.ping_seconds) + "}";
      observe("connected", out);
    };
    handlers.on_disconnected = [this](const client::DisconnectedEvent& e) {
      observe("disconnect", "{\"code\":" + std::to_string(e.code) + ",\"reason\":" + quoted(e.reason) +
                                ",\"reconnect\":" + (e.will_reconnect ? "true" : "false") + "}");
    };
    handlers.on_token_refreshed = [this](std::int64_t expires) {
      observe("refreshed", "{\"expires\":" + std::to_string(expires) + "}");
    };
    handlers.on_error = [this](const client::Error& e) { errors_.push_back(e.message); };
    session_->set_state_handlers(handlers);
  }

  HubSession& session() { return *session_; }
  client::TimePoint now() const { return now_; }
  void advance(client::Millis by) { now_ += by; }

  // Opens the transport; returns the authenticate frame (with a token
  // provider, after answering its request with "T1").
  std::string open() {
    session_->on_transport_connecting(now_);
    session_->on_transport_open(now_);
    if (const auto request = session_->take_token_request()) session_->on_token(*request, {"T1", ""}, now_);
    return one_sent();
  }
  void connect() {
    receive_reply_to(open(), R"({"type":"reply","id":1,"result":{"client":"c1","user":"alice","node":"n1","ping":25}})");
    clear();
  }
  void subscribe(std::optional<hub::StreamPosition> since = {}) {
    client::SubscriptionHandlers handlers;
    handlers.on_message = [this](const client::Message& m) {
      std::string out = "{\"channel\":" + quoted(m.channel) + ",\"epoch\":" + quoted(m.epoch) +
                        ",\"offset\":" + std::to_string(m.offset) + ",\"data\":" + m.data;
      if (!m.info.empty()) out += ",\"info\":" + m.info;
      messages_.push_back(out + "}");
    };
    handlers.on_subscribed = [this](const client::SubscribedEvent& e) {
      observe("subscribed", "{\"channel\":" + quoted(e.channel) + ",\"epoch\":" + quoted(e.position.epoch) +
                                ",\"offset\":" + std::to_string(e.position.offset) +
                                ",\"recovered\":" + (e.recovered ? "true" : "false") + "}");
    };
    handlers.on_unsubscribed = [this](const client::UnsubscribedEvent& e) {
      observe("unsubscribed", "{\"channel\":" + quoted(e.channel) + ",\"code\":" + std::to_string(e.code) +
                                  ",\"reason\":" + quoted(e.reason) + "}");
    };
    handlers.on_join = [this](const std::string& channel, const hub::ClientInfo& c) { presence_change("join", channel, c); };
    handlers.on_leave = [this](const std::string& channel, const hub::ClientInfo& c) { presence_change("leave", channel, c); };
    client::SubscribeOptions options;
    options.since = std::move(since);
    ASSERT_FALSE(session_->subscribe("chat", handlers, options, now_));
  }
  // Connected and subscribed to "chat" at E1:7.
  void subscribed() {
    connect();
    subscribe();
    receive_reply_to(one_sent(), R"({"type":"reply","id":0,"result":{"channel":"chat","epoch":"E1","offset":7,"recoverable":true}})");
    clear();
  }

  std::vector<std::string> sent() { return session_->take_outgoing(); }
  std::string one_sent() {
    auto frames = sent();
    if (frames.size() != 1) {
      ADD_FAILURE() << "expected one frame sent, got " << frames.size();
      return "{}";
    }
    return frames[0];
  }
  // Feeds `reply` as the answer to the command `sent` (its id replaced).
  void receive_reply_to(const std::string& sent_frame, std::string reply) {
    simdjson::dom::parser parser;
    std::uint64_t id = 0;
    EXPECT_EQ(parser.parse(sent_frame)["id"].get(id), simdjson::SUCCESS) << sent_frame;
    const auto at = reply.find("\"id\":");
    const auto end = reply.find(',', at);
    reply.replace(at, end - at, "\"id\":" + std::to_string(id));
    receive(reply);
  }
  void receive(const std::string& frame) { session_->on_text(frame, now_); }

  void observe(const std::string& key, const std::string& json) { observations_.emplace_back(key, json); }
  void clear() {
    observations_.clear();
    messages_.clear();
  }
  // Everything surfaced since the last clear, as one canonical JSON object.
  std::string observed() {
    std::string out = "{";
    bool first = true;
    for (const auto& [key, json] : observations_) {
      if (!first) out += ',';
      first = false;
      out += quoted(key) + ":" + json;
    }
    if (!messages_.empty()) {
      if (!first) out += ',';
      out += "\"messages\":[";
      for (std::size_t i = 0; i < messages_.size(); ++i) out += (i ? "," : "") + messages_[i];
      out += ']';
    }
    return canonical(out + "}");
  }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  static std::string quoted(const std::string& s) {
    std::string out;
    hub::append_json_string(out, s);
    return out;
  }
  void presence_change(const char* kind, const std::string& channel, const hub::ClientInfo& c) {
    std::string out = "{\"channel\":" + quoted(channel) + ",\"client\":" + quoted(c.client) + ",\"user\":" + quoted(c.user);
    if (!c.info.empty()) out += ",\"info\":" + c.info;
    observe(kind, out + "}");
  }

  std::unique_ptr<HubSession> session_;
  client::TimePoint now_ = client::TimePoint{} + std::chrono::hours(1);
  std::vector<std::pair<std::string, std::string>> observations_;
  std::vector<std::string> messages_;
  std::vector<std::string> errors_;
};

// How the C++ client's application API makes each command fixture: each
// driver leaves `c` with that command sent and returns its frame.
using CommandDriver = std::function<std::string(ClientUnderTest& c)>;

std::string publications_json(const std::vector<hub::Publication>& publications) {
  std::string out = "[";
  for (std::size_t i = 0; i < publications.size(); ++i) {
    const auto& p = publications[i];
    out += (i ? ",{\"offset\":" : "{\"offset\":") + std::to_string(p.offset) + ",\"data\":" + p.data;
    if (!p.publisher.empty()) out += ",\"info\":" + p.publisher;
    out += '}';
  }
  return out + "]";
}

std::map<std::string, CommandDriver> command_drivers() {
  return {
      {"authenticate", [](ClientUnderTest& c) { return c.open(); }},
      {"subscribe",
       [](ClientUnderTest& c) {
         c.connect();
         c.subscribe();
         return c.one_sent();
       }},
      {"subscribe with recovery",
       [](ClientUnderTest& c) {
         c.connect();
         c.subscribe(hub::StreamPosition{"E1", 7});
         return c.one_sent();
       }},
      {"publish with an idempotency key",
       [](ClientUnderTest& c) {
         c.subscribed();
         client::PublishOptions options;
         options.idempotency_key = "k-1";
         EXPECT_FALSE(c.session().publish(
             "chat", R"({"text":"hi","n":[1,2]})",
             [&c](const client::Outcome<client::PublishResult>& o) {
               if (o.ok())
                 c.observe("published", "{\"epoch\":\"" + o.value.epoch + "\",\"offset\":" + std::to_string(o.value.offset) +
                                            ",\"duplicate\":" + (o.value.duplicate ? "true" : "false") + "}");
             },
             options, c.now()));
         return c.one_sent();
       }},
      {"presence",
       [](ClientUnderTest& c) {
         c.subscribed();
         EXPECT_FALSE(c.session().presence(
             "chat",
             [&c](const client::Outcome<client::PresenceResult>& o) {
               if (!o.ok()) {
                 std::string message;
                 hub::append_json_string(message, o.error->message);
                 c.observe("error", "{\"code\":" + std::to_string(o.error->code) + ",\"message\":" + message + "}");
                 return;
               }
               std::string out = "[";
               for (std::size_t i = 0; i < o.value.clients.size(); ++i) {
                 if (i) out += ',';
                 hub::append_client_json(out, o.value.clients[i]);
               }
               c.observe("presence", out + "]");
             },
             c.now()));
         return c.one_sent();
       }},
      {"history since, limit, reverse",
       [](ClientUnderTest& c) {
         c.subscribed();
         client::HistoryOptions options;
         options.limit = 10;
         options.since = hub::StreamPosition{"E1", 3};
         options.reverse = true;
         EXPECT_FALSE(c.session().history(
             "chat", options,
             [&c](const client::Outcome<client::HistoryResult>& o) {
               if (o.ok())
                 c.observe("history", "{\"epoch\":\"" + o.value.position.epoch + "\",\"offset\":" +
                                          std::to_string(o.value.position.offset) +
                                          ",\"publications\":" + publications_json(o.value.publications) + "}");
             },
             c.now()));
         return c.one_sent();
       }},
      {"unsubscribe",
       [](ClientUnderTest& c) {
         c.subscribed();
         c.session().unsubscribe("chat", c.now());
         return c.one_sent();
       }},
      {"refresh",
       [](ClientUnderTest& c) {
         c.connect();
         c.receive(R"({"type":"refresh","expires":2000000000})");
         const auto request = c.session().take_token_request();
         EXPECT_TRUE(request.has_value()) << "a refresh push asks the provider for a token";
         c.session().on_token(request.value_or(0), {"T2", ""}, c.now());
         return c.one_sent();
       }},
      {"ping",
       [](ClientUnderTest& c) {
         c.connect();
         c.advance(std::chrono::seconds(26));
         c.session().tick(c.now());
         return c.one_sent();
       }},
  };
}

bool needs_token_provider(const std::string& command) { return command == "refresh"; }

TEST_F(WireFixtures, TheCppClientSendsEveryCommandAsWritten) {
  auto drivers = command_drivers();
  for (element fixture : list("commands")) {
    const std::string name = name_of(fixture);
    SCOPED_TRACE(name);
    const auto it = drivers.find(name);
    ASSERT_NE(it, drivers.end()) << "no driver for this command in " << __FILE__;
    ClientUnderTest c(needs_token_provider(name));
    const std::string frame = it->second(c);
    EXPECT_EQ(canonical(frame, true), canonical(member(fixture, "frame"), true)) << frame;
  }
}

TEST_F(WireFixtures, TheCppClientReadsEveryServerMessage) {
  auto drivers = command_drivers();
  for (element fixture : list("server")) {
    const std::string name = name_of(fixture);
    SCOPED_TRACE(name);
    const std::string frame = text(fixture, "frame");
    std::string_view answers;
    const bool is_reply = fixture["answers"].get(answers) == simdjson::SUCCESS;
    const bool token_push = name == "refresh push" || answers == "refresh";
    ClientUnderTest c(token_push);
    if (name == "connected reply") {
      c.receive_reply_to(c.open(), frame);
    } else if (name == "connected push") {
      // A token in the URL or a header: the server greets at once, then
      // answers the client's authenticate with "already authenticated".
      const std::string auth = c.open();
      c.receive(frame);
      c.receive_reply_to(auth, R"({"type":"reply","id":0,"error":{"code":107,"message":"already authenticated"}})");
      EXPECT_EQ(c.session().state(), client::ConnectionState::connected);
    } else if (is_reply) {
      const auto driver = drivers.find(std::string(answers));
      ASSERT_NE(driver, drivers.end()) << "answers an unknown command " << answers;
      const std::string sent = driver->second(c);
      c.receive_reply_to(sent, frame);
      if (name == "unsubscribe reply") {
        EXPECT_EQ(c.session().in_flight_commands(), 0u);
        c.observe("replied", "{}");
      }
    } else if (token_push) {
      c.connect();
      c.receive(frame);
      if (c.session().take_token_request()) c.observe("asks_for_a_token", "true");
    } else {
      c.subscribed();
      c.receive(frame);
      if (name == "disconnect push") c.session().on_transport_closed(1006, "", c.now());  // the close frame lost
      if (name == "unsubscribe push, resubscribe") c.observe("resubscribes", canonical(c.one_sent(), true));
    }
    std::string expected = canonical(member(fixture, "client"));
    EXPECT_EQ(c.observed(), expected);
    EXPECT_TRUE(c.errors().empty()) << c.errors().front();
  }
}

}  // namespace
