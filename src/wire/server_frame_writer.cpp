#include <string>

#include "server_frames.hpp"
#include "support/json.hpp"

namespace duplex::wire {

using hub::append_json_string;
using hub::ClientInfo;
using hub::ConnectedInfo;
using hub::Publication;
using hub::PublicationPtr;
using hub::StreamPosition;
using hub::SubscribeResult;

namespace {

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

}  // namespace

std::string reply_error(std::uint64_t id, int code, std::string_view message) {
  std::string out = reply_head(id);
  out += ",\"error\":{\"code\":";
  out += std::to_string(code);
  out += ",\"message\":";
  append_json_string(out, message);
  out += "}}";
  return out;
}

std::string reply_empty(std::uint64_t id) { return reply_head(id) + ",\"result\":{}}"; }

std::string reply_connected(std::uint64_t id, const ConnectedInfo& info) {
  std::string out = reply_head(id);
  out += ",\"result\":{";
  append_connected_fields(out, info);
  out += "}}";
  return out;
}

std::string reply_subscribe(std::uint64_t id, const SubscribeResult& r) {
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

std::string reply_publish(std::uint64_t id, const StreamPosition& position, bool duplicate) {
  std::string out = reply_head(id);
  out += ",\"result\":{\"epoch\":";
  append_json_string(out, position.epoch);
  out += ",\"offset\":";
  append_u64(out, position.offset);
  if (duplicate) out += ",\"duplicate\":true";
  out += "}}";
  return out;
}

std::string reply_presence(std::uint64_t id, const std::vector<ClientInfo>& clients) {
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
                          const std::vector<PublicationPtr>& publications) {
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

std::string reply_refresh(std::uint64_t id, std::int64_t expires) {
  std::string out = reply_head(id);
  out += ",\"result\":{";
  if (expires > 0) {
    out += "\"expires\":";
    out += std::to_string(expires);
  }
  out += "}}";
  return out;
}

std::string push_connected(const ConnectedInfo& info) {
  std::string out = "{\"type\":\"connected\",";
  append_connected_fields(out, info);
  out += '}';
  return out;
}

std::string push_message(std::string_view channel, std::string_view epoch, const Publication& p) {
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

std::string push_join_leave(bool join, std::string_view channel, const ClientInfo& client) {
  std::string out = join ? "{\"type\":\"join\",\"channel\":" : "{\"type\":\"leave\",\"channel\":";
  append_json_string(out, channel);
  out += ",\"client\":";
  append_client_json(out, client);
  out += '}';
  return out;
}

std::string push_unsubscribe(std::string_view channel, int code, std::string_view reason) {
  std::string out = "{\"type\":\"unsubscribe\",\"channel\":";
  append_json_string(out, channel);
  out += ",\"code\":";
  out += std::to_string(code);
  out += ",\"reason\":";
  append_json_string(out, reason);
  out += '}';
  return out;
}

std::string push_refresh(std::int64_t expires) {
  return "{\"type\":\"refresh\",\"expires\":" + std::to_string(expires) + "}";
}

std::string push_disconnect(std::uint16_t code, std::string_view reason, bool reconnect) {
  std::string out = "{\"type\":\"disconnect\",\"code\":";
  out += std::to_string(code);
  out += ",\"reason\":";
  append_json_string(out, reason);
  out += reconnect ? ",\"reconnect\":true}" : ",\"reconnect\":false}";
  return out;
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

}  // namespace duplex::wire
