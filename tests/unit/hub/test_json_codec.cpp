// The duplex.v1 JSON command decoder (hub::json_codec().decode): every
// command type, missing and mistyped fields (bad_request, error 107),
// non-commands (malformed, close 4500), forward-compatible unknown types.
#include <gtest/gtest.h>

#include <string>

#include "duplex/hub/codec.hpp"
#include "support/json.hpp"

using namespace duplex::hub;

namespace {

struct Decoded {
  DecodeStatus status;
  Command command;
  std::string error;
};

Decoded decode(std::string_view frame) {
  Decoded d{};
  d.status = json_codec().decode(frame, d.command, d.error);
  return d;
}

}  // namespace

TEST(JsonCodecDecode, EachCommandType) {
  auto d = decode(R"({"type":"authenticate","id":1,"token":"abc.def.ghi"})");
  ASSERT_EQ(d.status, DecodeStatus::ok) << d.error;
  EXPECT_EQ(d.command.type, CommandType::authenticate);
  EXPECT_EQ(d.command.id, 1u);
  EXPECT_EQ(d.command.token, "abc.def.ghi");

  d = decode(R"({"type":"authenticate","id":1})");  // anonymous
  ASSERT_EQ(d.status, DecodeStatus::ok) << d.error;
  EXPECT_TRUE(d.command.token.empty());

  d = decode(R"({"type":"refresh","id":9,"token":"t"})");
  ASSERT_EQ(d.status, DecodeStatus::ok) << d.error;
  EXPECT_EQ(d.command.type, CommandType::refresh);
  EXPECT_EQ(d.command.token, "t");

  d = decode(R"({"type":"subscribe","id":2,"channel":"chat:general","recover":true,"epoch":"f1c9a6","offset":41,"token":"s"})");
  ASSERT_EQ(d.status, DecodeStatus::ok) << d.error;
  EXPECT_EQ(d.command.type, CommandType::subscribe);
  EXPECT_EQ(d.command.channel, "chat:general");
  EXPECT_TRUE(d.command.recover);
  EXPECT_EQ(d.command.epoch, "f1c9a6");
  EXPECT_EQ(d.command.offset, 41u);
  EXPECT_EQ(d.command.token, "s");

  d = decode(R"({"type":"unsubscribe","id":3,"channel":"chat:general"})");
  ASSERT_EQ(d.status, DecodeStatus::ok) << d.error;
  EXPECT_EQ(d.command.type, CommandType::unsubscribe);
  EXPECT_EQ(d.command.channel, "chat:general");

  d = decode(R"({"type":"publish","id":4,"channel":"chat:general","data": { "text" : "hello", "n" : [1, 2.50] },"idempotency_key":"k-81f2"})");
  ASSERT_EQ(d.status, DecodeStatus::ok) << d.error;
  EXPECT_EQ(d.command.type, CommandType::publish);
  EXPECT_EQ(d.command.data, R"({"text":"hello","n":[1,2.5]})");  // minified
  EXPECT_EQ(d.command.idempotency_key, "k-81f2");

  d = decode(R"({"type":"presence","id":5,"channel":"chat:general"})");
  ASSERT_EQ(d.status, DecodeStatus::ok) << d.error;
  EXPECT_EQ(d.command.type, CommandType::presence);

  d = decode(R"({"type":"history","id":6,"channel":"chat:general","limit":2,"reverse":true,"since":{"epoch":"e","offset":40}})");
  ASSERT_EQ(d.status, DecodeStatus::ok) << d.error;
  EXPECT_EQ(d.command.type, CommandType::history);
  EXPECT_TRUE(d.command.has_limit);
  EXPECT_EQ(d.command.limit, 2u);
  EXPECT_TRUE(d.command.reverse);
  EXPECT_TRUE(d.command.has_since);
  EXPECT_EQ(d.command.since_epoch, "e");
  EXPECT_EQ(d.command.since_offset, 40u);

  d = decode(R"({"type":"history","id":6,"channel":"chat:general"})");
  ASSERT_EQ(d.status, DecodeStatus::ok) << d.error;
  EXPECT_FALSE(d.command.has_limit);
  EXPECT_FALSE(d.command.has_since);

  d = decode(R"({"type":"ping","id":7})");
  ASSERT_EQ(d.status, DecodeStatus::ok) << d.error;
  EXPECT_EQ(d.command.type, CommandType::ping);
}

TEST(JsonCodecDecode, UnknownTypeIsOkForForwardCompatibility) {
  auto d = decode(R"({"type":"teleport","id":12,"where":[1,2]})");
  ASSERT_EQ(d.status, DecodeStatus::ok) << d.error;
  EXPECT_EQ(d.command.type, CommandType::unknown);
  EXPECT_EQ(d.command.id, 12u);
}

TEST(JsonCodecDecode, UnknownFieldsAreIgnored) {
  auto d = decode(R"({"type":"ping","id":7,"future":{"deep":[true]}})");
  EXPECT_EQ(d.status, DecodeStatus::ok) << d.error;
}

TEST(JsonCodecDecode, MissingFieldsAreBadRequestsWithTheId) {
  for (const char* frame : {R"({"type":"subscribe","id":5})", R"({"type":"unsubscribe","id":5})",
                            R"({"type":"publish","id":5,"data":1})", R"({"type":"publish","id":5,"channel":"chat:a"})",
                            R"({"type":"presence","id":5})", R"({"type":"history","id":5})",
                            R"({"type":"refresh","id":5})",
                            R"({"type":"history","id":5,"channel":"c","since":{"epoch":"e"}})",
                            R"({"type":"history","id":5,"channel":"c","since":{"offset":1}})"}) {
    auto d = decode(frame);
    EXPECT_EQ(d.status, DecodeStatus::bad_request) << frame;
    EXPECT_EQ(d.command.id, 5u) << frame;
    EXPECT_FALSE(d.error.empty()) << frame;
  }
}

TEST(JsonCodecDecode, WrongFieldTypesAreBadRequests) {
  for (const char* frame : {R"({"type":"subscribe","id":5,"channel":7})",
                            R"({"type":"subscribe","id":5,"channel":"c","recover":"yes"})",
                            R"({"type":"subscribe","id":5,"channel":"c","offset":"41"})",
                            R"({"type":"subscribe","id":5,"channel":"c","offset":-1})",
                            R"({"type":"subscribe","id":5,"channel":"c","epoch":3})",
                            R"({"type":"subscribe","id":5,"channel":"c","token":{}})",
                            R"({"type":"authenticate","id":5,"token":42})",
                            R"({"type":"refresh","id":5,"token":null})",
                            R"({"type":"publish","id":5,"channel":"c","data":1,"idempotency_key":1})",
                            R"({"type":"history","id":5,"channel":"c","limit":"2"})",
                            R"({"type":"history","id":5,"channel":"c","limit":1.5})",
                            R"({"type":"history","id":5,"channel":"c","reverse":1})",
                            R"({"type":"history","id":5,"channel":"c","since":{"epoch":1,"offset":1}})",
                            R"({"type":"history","id":5,"channel":"c","since":"e:1"})"}) {
    auto d = decode(frame);
    EXPECT_EQ(d.status, DecodeStatus::bad_request) << frame;
    EXPECT_EQ(d.command.id, 5u) << frame;
  }
}

TEST(JsonCodecDecode, NonCommandsAreMalformed) {
  for (const char* frame : {"", "not json", "[1,2]", "42", "\"ping\"", "null", "true", R"({"type":"ping","id":1)",
                            R"({"type":"ping","id":1} trailing)", R"({"id":1})", R"({"type":7,"id":1})",
                            R"({"type":"ping"})", R"({"type":"ping","id":0})", R"({"type":"ping","id":-3})",
                            R"({"type":"ping","id":"1"})", R"({"type":"ping","id":1.5})",
                            R"({"type":"publish","id":1,"channel":"c","data":123456789012345678901234567890})"}) {
    auto d = decode(frame);
    EXPECT_EQ(d.status, DecodeStatus::malformed) << frame;
    EXPECT_FALSE(d.error.empty()) << frame;
  }
}

TEST(JsonCodecDecode, NestingBeyondTheParserDepthIsMalformedNotACrash) {
  const std::string deep = R"({"type":"publish","id":1,"channel":"c","data":)" + std::string(10000, '[') +
                           std::string(10000, ']') + "}";
  EXPECT_EQ(decode(deep).status, DecodeStatus::malformed);
}

TEST(JsonCodecDecode, DecodedFieldsEncodeToValidJson) {
  // Control characters and invalid UTF-8 never survive simdjson's string
  // parsing, but escapes do: the encoder must escape them again.
  auto d = decode(R"({"type":"subscribe","id":3,"channel":"a\"b\\c\u0001\n","epoch":"\u0000"})");
  ASSERT_EQ(d.status, DecodeStatus::ok) << d.error;
  EXPECT_EQ(d.command.channel, std::string("a\"b\\c\x01\n"));
  SubscribeResult r;
  r.channel = d.command.channel;
  r.position = StreamPosition{d.command.epoch, 1};
  EXPECT_TRUE(is_valid_json(json_codec().reply_subscribe(3, r)));
  EXPECT_TRUE(is_valid_json(json_codec().push_unsubscribe(d.command.channel, 2000, d.command.epoch)));
  EXPECT_TRUE(is_valid_json(json_codec().reply_error(3, error_code::bad_request, d.command.channel)));
}

TEST(JsonCodecLimits, CommandsNestedDeeperThanTheConfiguredDepthAreRefused) {
  // {"type":"publish",...,"data":[[...]]}: the object is level 1, each array one more.
  auto nested = [](int arrays) {
    return R"({"type":"publish","id":1,"channel":"chat:a","data":)" + std::string(arrays, '[') +
           std::string(arrays, ']') + "}";
  };
  Command command;
  std::string error;
  EXPECT_EQ(json_codec(4).decode(nested(3), command, error), DecodeStatus::ok) << error;
  EXPECT_EQ(json_codec(4).decode(nested(4), command, error), DecodeStatus::malformed);
  EXPECT_EQ(error, "JSON nested deeper than 4 levels");
  // The default codec and the reference config's 32 allow ordinary documents.
  EXPECT_EQ(json_codec(32).decode(nested(20), command, error), DecodeStatus::ok) << error;
  EXPECT_EQ(json_codec(32).decode(nested(40), command, error), DecodeStatus::malformed);
}
