// duplex.v1: JSON commands in, JSON replies and pushes out. Pushes are built
// by concatenation with `data` spliced in as received (validated, minified),
// so a publication is never re-encoded per subscriber.
#include <simdjson.h>

#include <algorithm>
#include <array>
#include <memory>
#include <new>

#include "duplex/hub/codec.hpp"
#include "support/json.hpp"

namespace duplex::hub {

namespace {

using simdjson::dom::element;

// Size is bounded by the transport (the frame); nesting by the parser, which
// refuses documents deeper than the codec's max_depth (limits.max_json_depth).
constexpr std::size_t max_supported_depth = 256;

// One parser per thread and depth (simdjson fixes the depth at allocation).
simdjson::dom::parser& thread_parser(std::size_t depth) {
  thread_local std::array<std::unique_ptr<simdjson::dom::parser>, max_supported_depth + 1> parsers;
  auto& parser = parsers[depth];
  if (!parser) {
    parser = std::make_unique<simdjson::dom::parser>();
    if (parser->allocate(64u << 10, depth) != simdjson::SUCCESS) throw std::bad_alloc();
  }
  return *parser;
}

CommandType command_type(std::string_view t) {
  if (t == "subscribe") return CommandType::subscribe;
  if (t == "publish") return CommandType::publish;
  if (t == "unsubscribe") return CommandType::unsubscribe;
  if (t == "ping") return CommandType::ping;
  if (t == "presence") return CommandType::presence;
  if (t == "history") return CommandType::history;
  if (t == "authenticate") return CommandType::authenticate;
  if (t == "refresh") return CommandType::refresh;
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

void append_u64(std::string& out, std::uint64_t v) { out += std::to_string(v); }

void append_connected_fields(std::string& out, const ConnectedInfo& info) {
  out += "\"client\":";
  append_json_string(out, info.client);
  out += ",\"user\":";
  append_json_string(out, info.user);
  if (info.expires > 0) {
    out += ",\"expires\":";
    out += std::to_string(info.expires);
  }
  out += ",\"node\":";
  append_json_string(out, info.node);
  out += ",\"ping\":";
  out += std::to_string(info.ping_seconds);
}

std::string reply_head(std::uint64_t id) {
  std::string out = "{\"type\":\"reply\",\"id\":";
  append_u64(out, id);
  return out;
}

class JsonCodec final : public Codec {
 public:
  JsonCodec() = default;
  explicit JsonCodec(std::size_t max_depth) : max_depth_(max_depth) {}
  std::string_view name() const override { return "duplex.v1"; }

  DecodeStatus decode(std::string_view frame, Command& command, std::string& error) const override {
    element root;
    const auto parsed = thread_parser(max_depth_).parse(frame.data(), frame.size()).get(root);
    if (parsed == simdjson::DEPTH_ERROR) {
      error = "JSON nested deeper than " + std::to_string(max_depth_) + " levels";
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

  std::string reply_error(std::uint64_t id, int code, std::string_view message) const override {
    std::string out = reply_head(id);
    out += ",\"error\":{\"code\":";
    out += std::to_string(code);
    out += ",\"message\":";
    append_json_string(out, message);
    out += "}}";
    return out;
  }

  std::string reply_empty(std::uint64_t id) const override { return reply_head(id) + ",\"result\":{}}"; }

  std::string reply_connected(std::uint64_t id, const ConnectedInfo& info) const override {
    std::string out = reply_head(id);
    out += ",\"result\":{";
    append_connected_fields(out, info);
    out += "}}";
    return out;
  }

  std::string reply_subscribe(std::uint64_t id, const SubscribeResult& r) const override {
    std::string out = reply_head(id);
    out += ",\"result\":{\"channel\":";
    append_json_string(out, r.channel);
    out += ",\"epoch\":";
    append_json_string(out, r.position.epoch);
    out += ",\"offset\":";
    append_u64(out, r.position.offset);
    out += r.recoverable ? ",\"recoverable\":true" : ",\"recoverable\":false";
    if (r.recover_requested) {
      out += r.recovered ? ",\"recovered\":true" : ",\"recovered\":false";
      out += ",\"publications\":[";
      bool first = true;
      for (const auto& p : r.publications) {
        if (!first) out += ',';
        first = false;
        append_publication_json(out, *p);
      }
      out += ']';
    }
    out += "}}";
    return out;
  }

  std::string reply_publish(std::uint64_t id, const StreamPosition& position, bool duplicate) const override {
    std::string out = reply_head(id);
    out += ",\"result\":{\"epoch\":";
    append_json_string(out, position.epoch);
    out += ",\"offset\":";
    append_u64(out, position.offset);
    if (duplicate) out += ",\"duplicate\":true";
    out += "}}";
    return out;
  }

  std::string reply_presence(std::uint64_t id, const std::vector<ClientInfo>& clients) const override {
    std::string out = reply_head(id);
    out += ",\"result\":{\"clients\":[";
    for (std::size_t i = 0; i < clients.size(); ++i) {
      if (i) out += ',';
      append_client_json(out, clients[i]);
    }
    out += "]}}";
    return out;
  }

  std::string reply_history(std::uint64_t id, const StreamPosition& top,
                            const std::vector<PublicationPtr>& publications) const override {
    std::string out = reply_head(id);
    out += ",\"result\":{\"epoch\":";
    append_json_string(out, top.epoch);
    out += ",\"offset\":";
    append_u64(out, top.offset);
    out += ",\"publications\":[";
    for (std::size_t i = 0; i < publications.size(); ++i) {
      if (i) out += ',';
      append_publication_json(out, *publications[i]);
    }
    out += "]}}";
    return out;
  }

  std::string reply_refresh(std::uint64_t id, std::int64_t expires) const override {
    std::string out = reply_head(id);
    out += ",\"result\":{";
    if (expires > 0) {
      out += "\"expires\":";
      out += std::to_string(expires);
    }
    out += "}}";
    return out;
  }

  std::string push_connected(const ConnectedInfo& info) const override {
    std::string out = "{\"type\":\"connected\",";
    append_connected_fields(out, info);
    out += '}';
    return out;
  }

  std::string push_message(std::string_view channel, std::string_view epoch, const Publication& p) const override {
    std::string out;
    out.reserve(80 + channel.size() + p.data.size() + p.publisher.size());
    out += "{\"type\":\"message\",\"channel\":";
    append_json_string(out, channel);
    out += ",\"epoch\":";
    append_json_string(out, epoch);
    out += ",\"offset\":";
    append_u64(out, p.offset);
    out += ",\"data\":";
    out += p.data.empty() ? std::string_view("null") : std::string_view(p.data);
    if (!p.publisher.empty()) {
      out += ",\"info\":";
      out += p.publisher;
    }
    out += '}';
    return out;
  }

  std::string push_join_leave(bool join, std::string_view channel, const ClientInfo& client) const override {
    std::string out = join ? "{\"type\":\"join\",\"channel\":" : "{\"type\":\"leave\",\"channel\":";
    append_json_string(out, channel);
    out += ",\"client\":";
    append_client_json(out, client);
    out += '}';
    return out;
  }

  std::string push_unsubscribe(std::string_view channel, int code, std::string_view reason) const override {
    std::string out = "{\"type\":\"unsubscribe\",\"channel\":";
    append_json_string(out, channel);
    out += ",\"code\":";
    out += std::to_string(code);
    out += ",\"reason\":";
    append_json_string(out, reason);
    out += '}';
    return out;
  }

  std::string push_refresh(std::int64_t expires) const override {
    return "{\"type\":\"refresh\",\"expires\":" + std::to_string(expires) + "}";
  }

  std::string push_disconnect(std::uint16_t code, std::string_view reason, bool reconnect) const override {
    std::string out = "{\"type\":\"disconnect\",\"code\":";
    out += std::to_string(code);
    out += ",\"reason\":";
    append_json_string(out, reason);
    out += reconnect ? ",\"reconnect\":true}" : ",\"reconnect\":false}";
    return out;
  }

 private:
  std::size_t max_depth_ = 64;
};

}  // namespace

const Codec& json_codec(std::size_t max_depth) {
  static const auto codecs = [] {
    std::array<std::unique_ptr<JsonCodec>, max_supported_depth + 1> all;
    for (std::size_t depth = 1; depth <= max_supported_depth; ++depth) all[depth] = std::make_unique<JsonCodec>(depth);
    return all;
  }();
  return *codecs[std::clamp<std::size_t>(max_depth, 1, max_supported_depth)];
}

void append_publication_json(std::string& out, const Publication& p) {
  out += "{\"offset\":";
  out += std::to_string(p.offset);
  out += ",\"data\":";
  out += p.data.empty() ? std::string_view("null") : std::string_view(p.data);
  if (!p.publisher.empty()) {
    out += ",\"info\":";
    out += p.publisher;
  }
  out += '}';
}

void append_client_json(std::string& out, const ClientInfo& c) {
  out += "{\"client\":";
  append_json_string(out, c.client);
  out += ",\"user\":";
  append_json_string(out, c.user);
  if (!c.info.empty()) {
    out += ",\"info\":";
    out += c.info;
  }
  out += '}';
}

std::string publisher_json(const ClientInfo& client) {
  std::string out;
  append_client_json(out, client);
  return out;
}

}  // namespace duplex::hub
