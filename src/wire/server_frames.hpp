// The hub's replies and pushes in duplex.v1 (JSON), both directions in one
// place: the server writes them with the functions below (hub's JsonCodec),
// the C++ client reads them with ServerFrameParser; tests/wire/duplex.v1.json
// holds the fixtures both sides (and duplex.js) are checked against.
//
// Writing: built by concatenation, with `data` and `info` spliced in as
// stored (validated, minified JSON), so a publication is never re-encoded
// per subscriber.
//
// Reading: one frame -> one flat ServerFrame. The frame is validated in full
// first (it comes from the network), then walked once; `data` and `info`
// stay raw JSON text, byte for byte as the server sent them.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "duplex/wire/types.hpp"

namespace duplex::wire {

// ---- writing (server) ----------------------------------------------------------

std::string reply_error(std::uint64_t id, int code, std::string_view message);
std::string reply_empty(std::uint64_t id);
std::string reply_connected(std::uint64_t id, const hub::ConnectedInfo& info);
std::string reply_subscribe(std::uint64_t id, const hub::SubscribeResult& result);
std::string reply_publish(std::uint64_t id, const hub::StreamPosition& position, bool duplicate);
std::string reply_presence(std::uint64_t id, const std::vector<hub::ClientInfo>& clients);
std::string reply_history(std::uint64_t id, const hub::StreamPosition& top,
                          const std::vector<hub::PublicationPtr>& publications);
std::string reply_refresh(std::uint64_t id, std::int64_t expires);

std::string push_connected(const hub::ConnectedInfo& info);
std::string push_message(std::string_view channel, std::string_view epoch, const hub::Publication& p);
std::string push_join_leave(bool join, std::string_view channel, const hub::ClientInfo& client);
std::string push_unsubscribe(std::string_view channel, int code, std::string_view reason);
std::string push_refresh(std::int64_t expires);
std::string push_disconnect(std::uint16_t code, std::string_view reason, bool reconnect);

// A publication {"offset","data","info"} and a client {"client","user","info"},
// as in the frames above and the HTTP API.
void append_publication_json(std::string& out, const hub::Publication& p);
void append_client_json(std::string& out, const hub::ClientInfo& c);

// ---- reading (client) ----------------------------------------------------------

struct RawPublication {
  std::uint64_t offset = 0;
  std::string data;
  std::string info;
};

// The union of every field a reply result or a push may carry; fields of a
// reply's `result` object land here too.
struct ServerFrame {
  std::string type;
  std::optional<std::uint64_t> id;
  bool has_result = false;
  bool has_error = false;
  std::int64_t error_code = 0;
  std::string error_message;

  std::string channel;
  std::string epoch;
  std::optional<std::uint64_t> offset;
  std::optional<std::string> data;  // raw JSON
  std::string info;                 // raw JSON, empty if absent
  bool recoverable = false;
  std::optional<bool> recovered;
  bool duplicate = false;
  std::vector<RawPublication> publications;
  std::vector<hub::ClientInfo> clients;

  std::string client_id;         // "client" as a string (connected, authenticate result)
  hub::ClientInfo client_info;   // "client" as an object (join, leave)
  std::string user;
  std::string node;
  std::optional<std::int64_t> expires;
  std::optional<std::uint64_t> ping;

  std::optional<std::int64_t> code;  // disconnect, unsubscribe
  std::string reason;
  std::optional<bool> reconnect;
};

class ServerFrameParser {
 public:
  static constexpr std::size_t max_frame_bytes = 64u << 20;
  static constexpr std::size_t max_depth = 64;       // envelope + data nested 32 deep, with room
  static constexpr std::size_t max_list_items = 1u << 20;  // publications / clients per frame

  ServerFrameParser();

  // False (with a reason) if `text` is not one well-formed frame.
  bool parse(std::string_view text, ServerFrame& out, std::string& error);

 private:
  simdjson::dom::parser validator_;
  simdjson::ondemand::parser walker_;
  std::string buffer_;  // the frame plus simdjson's padding
};

}  // namespace duplex::wire
