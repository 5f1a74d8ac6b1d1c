// The clients' commands in duplex.v1 (JSON): the server reads them here
// (hub's JsonCodec); tests/wire/duplex.v1.json holds the fixtures the
// server, the C++ client and duplex.js are checked against.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

#include "duplex/wire/command.hpp"

namespace duplex::wire {

// The deepest nesting a command may be read with (limits.max_json_depth).
inline constexpr std::size_t max_command_depth = 256;

// One frame -> `command`. Nesting deeper than `max_depth` (clamped to
// 1..max_command_depth) is malformed. On bad_request, `command.id` is set
// when it could be read and `error` says why.
hub::DecodeStatus decode_command(std::string_view frame, std::size_t max_depth, hub::Command& command,
                                 std::string& error);

}  // namespace duplex::wire
