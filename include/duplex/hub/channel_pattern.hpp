// Channel patterns in token claims (`channels`, `publish`): which channels a
// token grants. Patterns and channels are attacker-influenced, so matching is
// linear in the channel length with a bounded pattern (no backtracking).
#pragma once
#include <cstddef>
#include <string_view>

namespace duplex::hub {

// Longer patterns never match (channel names are at most 255 bytes anyway).
inline constexpr std::size_t max_channel_pattern_length = 255;

// `*` matches any run of characters except ':' (stays inside one segment),
// `**` (or more stars) matches any run; every other byte matches itself.
// Examples: "chat:*" matches "chat:lobby" but not "chat:a:b"; "chat:**"
// matches both; "**" matches everything.
bool channel_pattern_matches(std::string_view pattern, std::string_view channel);

}  // namespace duplex::hub
