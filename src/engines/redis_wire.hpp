// What the Redis-backed engines store and send, in one place: history
// entries, presence entries, node registry entries and the messages on a
// channel's pub/sub channel. The publish script (redis_scripts.hpp) builds
// the same bytes in Lua; the NATS engine sends the same messages over NATS.
//
//   entry        = <offset>:<time_ms>:<publisher length>:<publisher><data>
//   publication  = "p" <epoch> ":" entry
//   client       = <client length>:<client><user length>:<user><info>
//   join / leave = "j" client / "l" client
//   node         = <started> <updated> <connections> <subscriptions>
//                  <channels> <publications_in> <pushes_out> <name>
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "duplex/engines/engine.hpp"

namespace duplex::engines::redis_wire {

std::string encode_entry(const Publication& publication);
std::optional<Publication> decode_entry(std::string_view entry);

std::string encode_publication(const std::string& epoch, const Publication& publication);

std::string encode_client(const ClientInfo& client);
std::optional<ClientInfo> decode_client(std::string_view encoded);
std::string encode_join(const ClientInfo& client);
std::string encode_leave(const ClientInfo& client);

// A message received on a channel's pub/sub channel: a publication (kind,
// epoch, publication) or a join/leave (kind, client).
struct Message {
  ChannelEvent::Kind kind = ChannelEvent::Kind::publication;
  std::string epoch;
  PublicationPtr publication;
  ClientInfo client;
};
std::optional<Message> decode_message(std::string_view message);

std::string encode_node(const NodeInfo& node);
std::optional<NodeInfo> decode_node(std::string_view encoded);

}  // namespace duplex::engines::redis_wire
