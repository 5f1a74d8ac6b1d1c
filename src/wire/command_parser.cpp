// duplex.v1 commands: one JSON object per frame, {"type","id",...}. Size is
// bounded by the transport (the frame); nesting by the parser, which refuses
// documents deeper than max_depth (limits.max_json_depth).
#include <simdjson.h>

#include <algorithm>
#include <array>
#include <memory>
#include <new>

#include "commands.hpp"

namespace duplex::wire {

using hub::Command;
using hub::CommandType;
using hub::DecodeStatus;

namespace {

using simdjson::dom::element;

// One parser per thread and depth (simdjson fixes the depth at allocation).
simdjson::dom::parser& thread_parser(std::size_t depth) {
  thread_local std::array<std::unique_ptr<simdjson::dom::parser>, max_command_depth + 1> parsers;
  auto& parser = parsers[depth];
  if (!parser) {
    parser = std::make_unique<simdjson::dom::parser>();
    if (parser->allocate(64u << 10, depth) != simdjson::SUCCESS) throw std::bad_alloc();
  }
  return *parser;
}

CommandType command_type(std::string_view t) {
  for (std::size_t i = 0; i < command_names.size(); ++i) {
    if (command_names[i] == t) return static_cast<CommandType>(i);
  }
  return CommandType::unknown;
}

bool get_string(element obj, const char* key, std::string& out, bool& present, bool& ok) {
  element v;
  if (obj[key].get(v) != simdjson::SUCCESS) return false;
  present = true;
  std::string_view s;
  if (v.get(s) != simdjson::SUCCESS) {
    ok = false;
    return false;
  }
  out.assign(s);
  return true;
}

bool get_u64(element obj, const char* key, std::uint64_t& out, bool& present, bool& ok) {
  element v;
  if (obj[key].get(v) != simdjson::SUCCESS) return false;
  present = true;
  if (v.get(out) != simdjson::SUCCESS) {
    std::int64_t i;
    if (v.get(i) == simdjson::SUCCESS && i >= 0) {
      out = static_cast<std::uint64_t>(i);
      return true;
    }
    ok = false;
    return false;
  }
  return true;
}

bool get_bool(element obj, const char* key, bool& out, bool& ok) {
  element v;
  if (obj[key].get(v) != simdjson::SUCCESS) return false;
  if (v.get(out) != simdjson::SUCCESS) {
    ok = false;
    return false;
  }
  return true;
}

}  // namespace

DecodeStatus decode_command(std::string_view frame, std::size_t max_depth, Command& command, std::string& error) {
  max_depth = std::clamp<std::size_t>(max_depth, 1, max_command_depth);
  element root;
  const auto parsed = thread_parser(max_depth).parse(frame.data(), frame.size()).get(root);
  if (parsed == simdjson::DEPTH_ERROR) {
    error = "JSON nested deeper than " + std::to_string(max_depth) + " levels";
    return DecodeStatus::malformed;
  }
  if (parsed != simdjson::SUCCESS) {
    error = "invalid JSON";
    return DecodeStatus::malformed;
  }
  simdjson::dom::object obj;
  if (root.get(obj) != simdjson::SUCCESS) {
    error = "a command must be a JSON object";
    return DecodeStatus::malformed;
  }
  bool ok = true, present = false;
  std::string type;
  if (!get_string(root, "type", type, present, ok)) {
    error = "missing or non-string \"type\"";
    return DecodeStatus::malformed;
  }
  present = false;
  if (!get_u64(root, "id", command.id, present, ok) || command.id == 0) {
    error = "missing or invalid \"id\" (a positive integer)";
    return DecodeStatus::malformed;
  }
  command.type = command_type(type);
  auto fail = [&](const char* why) {
    error = why;
    return DecodeStatus::bad_request;
  };
  switch (command.type) {
    case CommandType::unknown:
    case CommandType::ping:
      return DecodeStatus::ok;
    case CommandType::authenticate:
    case CommandType::refresh:
      present = false;
      get_string(root, "token", command.token, present, ok);
      if (!ok) return fail("\"token\" must be a string");
      if (command.type == CommandType::refresh && !present) return fail("missing \"token\"");
      return DecodeStatus::ok;
    default:
      break;
  }
  present = false;
  if (!get_string(root, "channel", command.channel, present, ok)) return fail("missing or non-string \"channel\"");
  switch (command.type) {
    case CommandType::subscribe:
      get_bool(root, "recover", command.recover, ok);
      present = false;
      get_string(root, "epoch", command.epoch, present, ok);
      get_u64(root, "offset", command.offset, present, ok);
      get_string(root, "token", command.token, present, ok);
      if (!ok) return fail("bad field type in subscribe");
      return DecodeStatus::ok;
    case CommandType::publish: {
      element data;
      if (root["data"].get(data) != simdjson::SUCCESS) return fail("missing \"data\"");
      command.data = simdjson::minify(data);
      present = false;
      get_string(root, "idempotency_key", command.idempotency_key, present, ok);
      if (!ok) return fail("\"idempotency_key\" must be a string");
      return DecodeStatus::ok;
    }
    case CommandType::history: {
      present = false;
      command.has_limit = get_u64(root, "limit", command.limit, present, ok);
      get_bool(root, "reverse", command.reverse, ok);
      element since;
      if (root["since"].get(since) == simdjson::SUCCESS) {
        command.has_since = true;
        bool p2 = false;
        if (!get_string(since, "epoch", command.since_epoch, p2, ok) ||
            !get_u64(since, "offset", command.since_offset, p2, ok))
          return fail("\"since\" needs \"epoch\" (string) and \"offset\" (integer)");
      }
      if (!ok) return fail("bad field type in history");
      return DecodeStatus::ok;
    }
    default:
      return DecodeStatus::ok;
  }
}

}  // namespace duplex::wire
