// Parsing the hub's replies and pushes (duplex.v1) on the client side: one
// frame -> one flat ServerFrame. The frame is validated in full first (it
// comes from the network), then walked once; `data` and `info` stay raw JSON
// text, byte for byte as the server sent them.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "duplex/wire/types.hpp"

namespace duplex::client::detail {

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

}  // namespace duplex::client::detail
