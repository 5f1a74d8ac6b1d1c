// libFuzzer target: the C++ client's reader of the hub's replies and pushes
// (wire::ServerFrameParser), which reads whatever a server or anything
// posing as one sends.
//
// Whatever the bytes, parse must return; when it accepts a frame, every raw
// JSON field it hands to the application (`data`, `info`, each
// publication's) must itself be one valid JSON value, and a refusal must say
// why.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "support/json.hpp"
#include "wire/server_frames.hpp"

namespace {

void check(bool ok, const char* what, std::string_view text) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_server_frame invariant violated: %s\n%.*s\n", what, static_cast<int>(text.size()),
                 text.data());
    std::abort();
  }
}

bool raw_json_ok(const std::string& raw) { return duplex::hub::is_valid_json(raw, 128); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  static duplex::wire::ServerFrameParser parser;
  const std::string_view text(reinterpret_cast<const char*>(bytes), size);
  duplex::wire::ServerFrame frame;
  std::string error;
  if (!parser.parse(text, frame, error)) {
    check(!error.empty(), "refused without a reason", text);
    return 0;
  }
  if (frame.data) check(raw_json_ok(*frame.data), "data is not one JSON value", text);
  if (!frame.info.empty()) check(raw_json_ok(frame.info), "info is not one JSON value", text);
  for (const auto& publication : frame.publications) {
    check(raw_json_ok(publication.data), "a publication's data is not one JSON value", text);
    if (!publication.info.empty()) check(raw_json_ok(publication.info), "a publication's info is not JSON", text);
  }
  check(frame.publications.size() <= duplex::wire::ServerFrameParser::max_list_items, "too many publications", text);
  return 0;
}
