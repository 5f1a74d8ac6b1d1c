// The clients' commands in duplex.v1 (JSON), both directions in one place:
// the C++ client writes them (write_command), the server reads them
// (read_command, through the hub's JsonCodec); tests/wire/duplex.v1.json
// holds the fixtures the server, the C++ client and duplex.js are checked
// against.
#pragma once
#include <array>
#include <cstddef>
#include <string>
#include <string_view>

#include "duplex/wire/command.hpp"

namespace duplex::wire {

// The "type" of each CommandType but unknown, in the enum's order.
inline constexpr std::array<std::string_view, 8> command_names{"authenticate", "subscribe", "unsubscribe", "publish",
                                                                "presence",     "history",   "refresh",     "ping"};
static_assert(command_names.size() == static_cast<std::size_t>(hub::CommandType::unknown));

// The deepest nesting a command may be read with (limits.max_json_depth).
inline constexpr std::size_t max_command_depth = 256;

// One frame -> `command`. Nesting deeper than `max_depth` (clamped to
// 1..max_command_depth) is malformed. On bad_request, `command.id` is set
// when it could be read and `error` says why.
hub::DecodeStatus decode_command(std::string_view frame, std::size_t max_depth, hub::Command& command,
                                 std::string& error);

// `command` as one frame: "type" and "id" first, then the fields its type
// uses (channel, token; subscribe: recover, epoch, offset; publish: data,
// spliced as is, and idempotency_key; history: limit, since, reverse).
// `data` must be valid JSON (the client validated it).
std::string write_command(const hub::Command& command);

}  // namespace duplex::wire
