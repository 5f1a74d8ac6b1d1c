#include "redis_wire.hpp"

#include <charconv>
#include <memory>

namespace duplex::engines::redis_wire {

namespace {

// Reads a decimal number followed by `separator`; advances `in`.
template <class Int>
bool take_number(std::string_view& in, char separator, Int& value) {
  const auto end = in.find(separator);
  if (end == std::string_view::npos || end == 0) return false;
  const auto [ptr, ec] = std::from_chars(in.data(), in.data() + end, value);
  if (ec != std::errc{} || ptr != in.data() + end) return false;
  in.remove_prefix(end + 1);
  return true;
}

// Reads "<length>:<bytes>"; advances `in`.
bool take_counted(std::string_view& in, std::string& out) {
  std::size_t length = 0;
  if (!take_number(in, ':', length) || length > in.size()) return false;
  out.assign(in.substr(0, length));
  in.remove_prefix(length);
  return true;
}

void append_counted(std::string& out, std::string_view bytes) {
  out += std::to_string(bytes.size());
  out += ':';
  out += bytes;
}

}  // namespace

std::string encode_entry(const Publication& publication) {
  std::string out;
  out.reserve(publication.data.size() + publication.publisher.size() + 40);
  out += std::to_string(publication.offset);
  out += ':';
  out += std::to_string(publication.time_ms);
  out += ':';
  append_counted(out, publication.publisher);
  out += publication.data;
  return out;
}

std::optional<Publication> decode_entry(std::string_view entry) {
  Publication publication;
  if (!take_number(entry, ':', publication.offset)) return std::nullopt;
  if (!take_number(entry, ':', publication.time_ms)) return std::nullopt;
  if (!take_counted(entry, publication.publisher)) return std::nullopt;
  publication.data.assign(entry);
  return publication;
}

std::string encode_publication(const std::string& epoch, const Publication& publication) {
  return "p" + epoch + ":" + encode_entry(publication);
}

std::string encode_client(const ClientInfo& client) {
  std::string out;
  append_counted(out, client.client);
  append_counted(out, client.user);
  out += client.info;
  return out;
}

std::optional<ClientInfo> decode_client(std::string_view encoded) {
  ClientInfo client;
  if (!take_counted(encoded, client.client)) return std::nullopt;
  if (!take_counted(encoded, client.user)) return std::nullopt;
  client.info.assign(encoded);
  return client;
}

std::string encode_join(const ClientInfo& client) { return "j" + encode_client(client); }
std::string encode_leave(const ClientInfo& client) { return "l" + encode_client(client); }

std::optional<Message> decode_message(std::string_view message) {
  if (message.empty()) return std::nullopt;
  const char kind = message.front();
  message.remove_prefix(1);
  Message out;
  if (kind == 'p') {
    const auto colon = message.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    out.epoch.assign(message.substr(0, colon));
    auto publication = decode_entry(message.substr(colon + 1));
    if (!publication) return std::nullopt;
    out.kind = ChannelEvent::Kind::publication;
    out.publication = std::make_shared<const Publication>(std::move(*publication));
    return out;
  }
  if (kind == 'j' || kind == 'l') {
    auto client = decode_client(message);
    if (!client) return std::nullopt;
    out.kind = kind == 'j' ? ChannelEvent::Kind::join : ChannelEvent::Kind::leave;
    out.client = std::move(*client);
    return out;
  }
  return std::nullopt;
}

std::string encode_node(const NodeInfo& node) {
  std::string out;
  for (const std::uint64_t value :
       {static_cast<std::uint64_t>(node.started_ms), static_cast<std::uint64_t>(node.updated_ms), node.connections,
        node.subscriptions, node.channels, node.publications_in, node.pushes_out}) {
    out += std::to_string(value);
    out += ' ';
  }
  out += node.name;
  return out;
}

std::optional<NodeInfo> decode_node(std::string_view encoded) {
  NodeInfo node;
  std::uint64_t started = 0;
  std::uint64_t updated = 0;
  if (!take_number(encoded, ' ', started) || !take_number(encoded, ' ', updated) ||
      !take_number(encoded, ' ', node.connections) || !take_number(encoded, ' ', node.subscriptions) ||
      !take_number(encoded, ' ', node.channels) || !take_number(encoded, ' ', node.publications_in) ||
      !take_number(encoded, ' ', node.pushes_out)) {
    return std::nullopt;
  }
  node.started_ms = static_cast<std::int64_t>(started);
  node.updated_ms = static_cast<std::int64_t>(updated);
  node.name.assign(encoded);
  return node;
}

}  // namespace duplex::engines::redis_wire
