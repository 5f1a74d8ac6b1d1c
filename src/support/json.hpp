// Small JSON helpers shared by the hub, its clients and the CLI: string
// escaping for hand-built JSON (the hot path builds pushes by concatenation,
// splicing raw `data` through untouched) and validation of raw JSON values.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace duplex::hub {

// Appends `s` as a JSON string literal (quotes included). Bytes that are not
// valid UTF-8 are replaced by U+FFFD so the output is always valid JSON.
void append_json_string(std::string& out, std::string_view s);
std::string json_string(std::string_view s);

// True if `text` is exactly one JSON value (surrounding whitespace allowed),
// nested at most `max_depth` deep.
bool is_valid_json(std::string_view text, std::size_t max_depth = 32);

}  // namespace duplex::hub
