// Values the hub, its engines and its clients share: publications, stream
// positions and client identities. Plain data, no behaviour.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace duplex::hub {

// Where a channel's stream stands: the epoch changes only when history was
// lost; offsets grow by one per publication, starting at 1.
struct StreamPosition {
  std::string epoch;
  std::uint64_t offset = 0;
  bool operator==(const StreamPosition&) const = default;
};

// Who is connected: shown in presence, join/leave pushes and publisher info.
struct ClientInfo {
  std::string client;  // connection id, unique per node and time
  std::string user;    // the token's `sub`; empty for anonymous
  std::string info;    // raw JSON from the token's `info` claim, or empty
};

// One message in a channel's stream.
struct Publication {
  std::uint64_t offset = 0;
  std::string data;       // raw JSON value, validated before it got here
  std::string publisher;  // raw JSON object {"user":..,"client":..,"info":..}, or empty (API)
  std::int64_t time_ms = 0;  // Unix milliseconds when it was accepted (history TTL)
};

using PublicationPtr = std::shared_ptr<const Publication>;

// What the connected reply and push say about the connection.
struct ConnectedInfo {
  std::string client;
  std::string user;
  std::int64_t expires = 0;  // 0: none
  std::string node;
  int ping_seconds = 0;
};

// What a subscribe reply says.
struct SubscribeResult {
  std::string channel;
  StreamPosition position;
  bool recoverable = false;
  bool recover_requested = false;
  bool recovered = false;
  std::vector<PublicationPtr> publications;
};

}  // namespace duplex::hub
