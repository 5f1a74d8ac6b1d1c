// duplex.v1, the hub's JSON codec: the Codec interface over the wire
// library, which reads commands and writes replies and pushes
// (src/wire/commands.hpp, src/wire/server_frames.hpp).
#include <algorithm>
#include <array>
#include <memory>

#include "duplex/hub/codec.hpp"
#include "wire/commands.hpp"
#include "wire/server_frames.hpp"

namespace duplex::hub {

namespace {

class JsonCodec final : public Codec {
 public:
  explicit JsonCodec(std::size_t max_depth) : max_depth_(max_depth) {}
  std::string_view name() const override { return "duplex.v1"; }

  DecodeStatus decode(std::string_view frame, Command& command, std::string& error) const override {
    return wire::decode_command(frame, max_depth_, command, error);
  }

  std::string reply_error(std::uint64_t id, int code, std::string_view message) const override {
    return wire::reply_error(id, code, message);
  }
  std::string reply_empty(std::uint64_t id) const override { return wire::reply_empty(id); }
  std::string reply_connected(std::uint64_t id, const ConnectedInfo& info) const override {
    return wire::reply_connected(id, info);
  }
  std::string reply_subscribe(std::uint64_t id, const SubscribeResult& result) const override {
    return wire::reply_subscribe(id, result);
  }
  std::string reply_publish(std::uint64_t id, const StreamPosition& position, bool duplicate) const override {
    return wire::reply_publish(id, position, duplicate);
  }
  std::string reply_presence(std::uint64_t id, const std::vector<ClientInfo>& clients) const override {
    return wire::reply_presence(id, clients);
  }
  std::string reply_history(std::uint64_t id, const StreamPosition& top,
                            const std::vector<PublicationPtr>& publications) const override {
    return wire::reply_history(id, top, publications);
  }
  std::string reply_refresh(std::uint64_t id, std::int64_t expires) const override {
    return wire::reply_refresh(id, expires);
  }

  std::string push_connected(const ConnectedInfo& info) const override { return wire::push_connected(info); }
  std::string push_message(std::string_view channel, std::string_view epoch, const Publication& p) const override {
    return wire::push_message(channel, epoch, p);
  }
  std::string push_join_leave(bool join, std::string_view channel, const ClientInfo& client) const override {
    return wire::push_join_leave(join, channel, client);
  }
  std::string push_unsubscribe(std::string_view channel, int code, std::string_view reason) const override {
    return wire::push_unsubscribe(channel, code, reason);
  }
  std::string push_refresh(std::int64_t expires) const override { return wire::push_refresh(expires); }
  std::string push_disconnect(std::uint16_t code, std::string_view reason, bool reconnect) const override {
    return wire::push_disconnect(code, reason, reconnect);
  }

 private:
  std::size_t max_depth_;
};

}  // namespace

const Codec& json_codec(std::size_t max_depth) {
  static const auto codecs = [] {
    std::array<std::unique_ptr<JsonCodec>, wire::max_command_depth + 1> all;
    for (std::size_t depth = 1; depth <= wire::max_command_depth; ++depth) all[depth] = std::make_unique<JsonCodec>(depth);
    return all;
  }();
  return *codecs[std::clamp<std::size_t>(max_depth, 1, wire::max_command_depth)];
}

void append_publication_json(std::string& out, const Publication& p) { wire::append_publication_json(out, p); }
void append_client_json(std::string& out, const ClientInfo& c) { wire::append_client_json(out, c); }

std::string publisher_json(const ClientInfo& client) {
  std::string out;
  wire::append_client_json(out, client);
  return out;
}

}  // namespace duplex::hub
