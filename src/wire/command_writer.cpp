#include <string>

#include "commands.hpp"
#include "support/json.hpp"

namespace duplex::wire {

using hub::append_json_string;
using hub::Command;
using hub::CommandType;

namespace {

void append_position(std::string& out, std::string_view epoch, std::uint64_t offset) {
  out += "\"epoch\":";
  append_json_string(out, epoch);
  out += ",\"offset\":";
  out += std::to_string(offset);
}

}  // namespace

std::string write_command(const Command& command) {
  std::string frame;
  frame.reserve(96 + command.data.size() + command.channel.size() + command.token.size());
  frame += "{\"type\":\"";
  frame += command.type == CommandType::unknown ? std::string_view("unknown")
                                                : command_names[static_cast<std::size_t>(command.type)];
  frame += "\",\"id\":";
  frame += std::to_string(command.id);
  const bool channel_command = command.type != CommandType::authenticate && command.type != CommandType::refresh &&
                               command.type != CommandType::ping && command.type != CommandType::unknown;
  if (channel_command) {
    frame += ",\"channel\":";
    append_json_string(frame, command.channel);
  }
  switch (command.type) {
    case CommandType::authenticate:
    case CommandType::refresh:
    case CommandType::subscribe:
      if (!command.token.empty()) {
        frame += ",\"token\":";
        append_json_string(frame, command.token);
      }
      if (command.type == CommandType::subscribe && command.recover) {
        frame += ",\"recover\":true,";
        append_position(frame, command.epoch, command.offset);
      }
      break;
    case CommandType::publish:
      frame += ",\"data\":";
      frame += command.data;  // validated JSON, spliced as is
      frame += ",\"idempotency_key\":";
      append_json_string(frame, command.idempotency_key);
      break;
    case CommandType::history:
      if (command.has_limit) {
        frame += ",\"limit\":";
        frame += std::to_string(command.limit);
      }
      if (command.has_since) {
        frame += ",\"since\":{";
        append_position(frame, command.since_epoch, command.since_offset);
        frame += '}';
      }
      if (command.reverse) frame += ",\"reverse\":true";
      break;
    case CommandType::unsubscribe:
    case CommandType::presence:
    case CommandType::ping:
    case CommandType::unknown:
      break;
  }
  frame += '}';
  return frame;
}

}  // namespace duplex::wire
