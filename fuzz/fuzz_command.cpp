// libFuzzer target: the duplex.v1 JSON command decoder (hub::json_codec).
//
// The bytes are one client frame. Whatever they hold, decode must return
// without crashing, and every reply or push the hub could build from the
// decoded fields (channel names, epochs, tokens, spliced `data`) must be
// valid JSON: the encoder escapes strings and splices `data` minified.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "duplex/hub/codec.hpp"
#include "support/json.hpp"
#include "wire/commands.hpp"
#include "wire/server_frames.hpp"

using namespace duplex::hub;

namespace {

// decode accepts nesting up to 64; the pushes wrap `data` a few levels deeper.
constexpr std::size_t check_depth = 128;

void check(bool ok, const char* what, std::string_view text) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_command invariant violated: %s\n%.*s\n", what, static_cast<int>(text.size()), text.data());
    std::abort();
  }
}

void check_json(const std::string& text, const char* what) { check(is_valid_json(text, check_depth), what, text); }

// What the server writes, the C++ client reads back (the writer and the
// reader of src/wire/server_frames.hpp agree).
duplex::wire::ServerFrame read_back(const std::string& written, const char* what) {
  static duplex::wire::ServerFrameParser reader;
  duplex::wire::ServerFrame frame;
  std::string error;
  check(reader.parse(written, frame, error), what, written);
  return frame;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const std::string_view frame(reinterpret_cast<const char*>(bytes), size);
  const Codec& codec = json_codec();
  Command command;
  std::string error;
  const DecodeStatus status = codec.decode(frame, command, error);
  if (status == DecodeStatus::malformed) {
    check(!error.empty(), "malformed without a reason", frame);
    return 0;
  }
  check(command.id != 0, "a decoded command has id 0", frame);
  check_json(codec.reply_error(command.id, error_code::bad_request, error.empty() ? command.channel : error), "reply_error");
  if (status == DecodeStatus::bad_request) return 0;

  if (command.type == CommandType::publish) check_json(command.data, "publish data is not valid JSON");
  if (command.type != CommandType::unknown && !(command.type == CommandType::refresh && command.token.empty())) {
    // What the C++ client would write for this command reads back the same.
    const std::string written = duplex::wire::write_command(command);
    Command again;
    std::string why;
    check(codec.decode(written, again, why) == DecodeStatus::ok, "a written command does not read back", written);
    const bool recovering = command.type == CommandType::subscribe && command.recover;
    check(again.type == command.type && again.id == command.id && again.channel == command.channel &&
              again.token == command.token && again.data == command.data &&
              again.idempotency_key == command.idempotency_key && again.recover == command.recover &&
              (!recovering || (again.epoch == command.epoch && again.offset == command.offset)) &&
              again.has_limit == command.has_limit && again.limit == command.limit &&
              again.has_since == command.has_since && again.since_epoch == command.since_epoch &&
              again.since_offset == command.since_offset && again.reverse == command.reverse,
          "a written command reads back differently", written);
  }
  SubscribeResult subscribed;
  subscribed.channel = command.channel;
  subscribed.position = StreamPosition{command.epoch, command.offset};
  subscribed.recoverable = command.recover;
  subscribed.recover_requested = command.recover;
  Publication publication;
  publication.offset = command.offset;
  publication.data = command.data;
  publication.publisher = publisher_json(ClientInfo{command.token, command.idempotency_key, {}});
  subscribed.publications.push_back(std::make_shared<const Publication>(publication));
  check_json(codec.reply_subscribe(command.id, subscribed), "reply_subscribe");
  check_json(codec.reply_publish(command.id, StreamPosition{command.since_epoch, command.since_offset}, command.reverse),
             "reply_publish");
  check_json(codec.reply_history(command.id, subscribed.position, subscribed.publications), "reply_history");
  check_json(codec.push_message(command.channel, command.epoch, publication), "push_message");
  check_json(codec.push_join_leave(true, command.channel, ClientInfo{command.token, command.epoch, command.data}),
             "push_join_leave");
  check_json(codec.push_unsubscribe(command.channel, 2000, command.token), "push_unsubscribe");
  const auto unsubscribe = read_back(codec.push_unsubscribe(command.channel, 2000, command.token), "unsubscribe unread");
  check(unsubscribe.type == "unsubscribe" && unsubscribe.channel == command.channel && unsubscribe.code == 2000 &&
            unsubscribe.reason == command.token,
        "unsubscribe read back differently", command.channel);
  const auto published = read_back(codec.reply_publish(command.id, StreamPosition{command.epoch, command.offset}, true),
                                   "publish reply unread");
  check(published.id == command.id && published.epoch == command.epoch && published.offset == command.offset &&
            published.duplicate,
        "publish reply read back differently", command.epoch);
  if (command.data.size() < 32) {  // nested well below the reader's depth limit
    const auto message = read_back(codec.push_message(command.channel, command.epoch, publication), "message unread");
    check(message.type == "message" && message.channel == command.channel && message.epoch == command.epoch &&
              message.offset == publication.offset && message.data == (command.data.empty() ? "null" : command.data),
          "message read back differently", command.data);
  }
  check_json(codec.push_disconnect(4500, command.idempotency_key, false), "push_disconnect");
  ConnectedInfo connected{command.token, command.channel, static_cast<std::int64_t>(command.limit >> 1), command.epoch, 25};
  check_json(codec.reply_connected(command.id, connected), "reply_connected");
  check_json(codec.push_connected(connected), "push_connected");
  return 0;
}
