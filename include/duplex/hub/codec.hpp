// The hub's wire encoding, pluggable: the hub decodes commands and encodes
// replies and pushes only through this interface. `duplex.v1` is JSON
// (json_codec); a binary codec would be a second implementation selected by
// subprotocol, with no change to channel logic.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/wire/command.hpp"
#include "duplex/wire/types.hpp"

namespace duplex::hub {

class Codec {
 public:
  virtual ~Codec() = default;
  virtual std::string_view name() const = 0;
  // On bad_request, `command.id` is set when it could be read and `error` says why.
  virtual DecodeStatus decode(std::string_view frame, Command& command, std::string& error) const = 0;

  virtual std::string reply_error(std::uint64_t id, int code, std::string_view message) const = 0;
  virtual std::string reply_empty(std::uint64_t id) const = 0;
  virtual std::string reply_connected(std::uint64_t id, const ConnectedInfo& info) const = 0;
  virtual std::string reply_subscribe(std::uint64_t id, const SubscribeResult& result) const = 0;
  virtual std::string reply_publish(std::uint64_t id, const StreamPosition& position, bool duplicate) const = 0;
  virtual std::string reply_presence(std::uint64_t id, const std::vector<ClientInfo>& clients) const = 0;
  virtual std::string reply_history(std::uint64_t id, const StreamPosition& top,
                                    const std::vector<PublicationPtr>& publications) const = 0;
  virtual std::string reply_refresh(std::uint64_t id, std::int64_t expires) const = 0;

  virtual std::string push_connected(const ConnectedInfo& info) const = 0;
  virtual std::string push_message(std::string_view channel, std::string_view epoch, const Publication& p) const = 0;
  virtual std::string push_join_leave(bool join, std::string_view channel, const ClientInfo& client) const = 0;
  virtual std::string push_unsubscribe(std::string_view channel, int code, std::string_view reason) const = 0;
  virtual std::string push_refresh(std::int64_t expires) const = 0;
  virtual std::string push_disconnect(std::uint16_t code, std::string_view reason, bool reconnect) const = 0;
};

// The JSON codec of duplex.v1 (shared, stateless instances): commands nested
// deeper than `max_depth` (1..256, limits.max_json_depth) are refused.
const Codec& json_codec(std::size_t max_depth = 64);

// The publisher object {"client","user","info"} used in message pushes.
std::string publisher_json(const ClientInfo& client);
// The JSON forms shared by the codec and the HTTP API: a publication
// {"offset","data","info"} and a client {"client","user","info"}.
void append_publication_json(std::string& out, const Publication& p);
void append_client_json(std::string& out, const ClientInfo& c);

}  // namespace duplex::hub
