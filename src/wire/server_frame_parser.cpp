#include "server_frames.hpp"

#include <new>

namespace duplex::wire {

namespace od = simdjson::ondemand;
using simdjson::error_code;
using simdjson::SUCCESS;

namespace {

bool is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// The exact text of a value: objects and arrays as a whole, scalars as their
// token (without the whitespace simdjson keeps after it).
error_code raw_json_of(od::value& value, std::string& out) {
  od::json_type type;
  if (auto e = value.type().get(type)) return e;
  std::string_view raw;
  if (type == od::json_type::object) {
    od::object object;
    if (auto e = value.get_object().get(object)) return e;
    if (auto e = object.raw_json().get(raw)) return e;
  } else if (type == od::json_type::array) {
    od::array array;
    if (auto e = value.get_array().get(array)) return e;
    if (auto e = array.raw_json().get(raw)) return e;
  } else {
    raw = value.raw_json_token();
  }
  while (!raw.empty() && is_json_space(raw.back())) raw.remove_suffix(1);
  out.assign(raw);
  return SUCCESS;
}

error_code read_string(od::value& value, std::string& out) {
  std::string_view s;
  if (auto e = value.get_string().get(s)) return e;
  out.assign(s);
  return SUCCESS;
}

// {"client":..,"user":..,"info":..}
error_code read_client_info(od::value& value, hub::ClientInfo& out) {
  od::object object;
  if (auto e = value.get_object().get(object)) return e;
  for (auto field_result : object) {
    od::field field;
    if (auto e = std::move(field_result).get(field)) return e;
    std::string_view key;
    if (auto e = field.unescaped_key().get(key)) return e;
    od::value v = field.value();
    if (key == "client") {
      if (auto e = read_string(v, out.client)) return e;
    } else if (key == "user") {
      if (auto e = read_string(v, out.user)) return e;
    } else if (key == "info") {
      if (auto e = raw_json_of(v, out.info)) return e;
    }
  }
  return SUCCESS;
}

error_code read_publication(od::value& value, RawPublication& out) {
  od::object object;
  if (auto e = value.get_object().get(object)) return e;
  for (auto field_result : object) {
    od::field field;
    if (auto e = std::move(field_result).get(field)) return e;
    std::string_view key;
    if (auto e = field.unescaped_key().get(key)) return e;
    od::value v = field.value();
    if (key == "offset") {
      if (auto e = v.get_uint64().get(out.offset)) return e;
    } else if (key == "data") {
      if (auto e = raw_json_of(v, out.data)) return e;
    } else if (key == "info") {
      if (auto e = raw_json_of(v, out.info)) return e;
    }
  }
  if (out.data.empty()) out.data = "null";
  return SUCCESS;
}

template <class Item, class ReadItem>
error_code read_list(od::value& value, std::vector<Item>& out, ReadItem read_item) {
  od::array array;
  if (auto e = value.get_array().get(array)) return e;
  for (auto item_result : array) {
    od::value item;
    if (auto e = std::move(item_result).get(item)) return e;
    if (out.size() >= ServerFrameParser::max_list_items) return simdjson::CAPACITY;
    Item parsed;
    if (auto e = read_item(item, parsed)) return e;
    out.push_back(std::move(parsed));
  }
  return SUCCESS;
}

error_code read_error(od::value& value, ServerFrame& out) {
  od::object object;
  if (auto e = value.get_object().get(object)) return e;
  for (auto field_result : object) {
    od::field field;
    if (auto e = std::move(field_result).get(field)) return e;
    std::string_view key;
    if (auto e = field.unescaped_key().get(key)) return e;
    od::value v = field.value();
    if (key == "code") {
      if (auto e = v.get_int64().get(out.error_code)) return e;
    } else if (key == "message") {
      if (auto e = read_string(v, out.error_message)) return e;
    }
  }
  out.has_error = true;
  return SUCCESS;
}

// Fields of the frame itself (top) or of a reply's result; unknown ones are skipped.
error_code read_fields(od::object& object, ServerFrame& out, bool top) {
  for (auto field_result : object) {
    od::field field;
    if (auto e = std::move(field_result).get(field)) return e;
    std::string_view key;
    if (auto e = field.unescaped_key().get(key)) return e;
    od::value v = field.value();
    error_code e = SUCCESS;
    if (top && key == "type") {
      e = read_string(v, out.type);
    } else if (top && key == "id") {
      std::uint64_t id = 0;
      e = v.get_uint64().get(id);
      if (!e) out.id = id;
    } else if (top && key == "result") {
      od::object result;
      e = v.get_object().get(result);
      if (!e) e = read_fields(result, out, false);
      if (!e) out.has_result = true;
    } else if (top && key == "error") {
      e = read_error(v, out);
    } else if (key == "channel") {
      e = read_string(v, out.channel);
    } else if (key == "epoch") {
      e = read_string(v, out.epoch);
    } else if (key == "offset") {
      std::uint64_t offset = 0;
      e = v.get_uint64().get(offset);
      if (!e) out.offset = offset;
    } else if (key == "data") {
      std::string data;
      e = raw_json_of(v, data);
      if (!e) out.data = std::move(data);
    } else if (key == "info") {
      e = raw_json_of(v, out.info);
    } else if (key == "recoverable") {
      e = v.get_bool().get(out.recoverable);
    } else if (key == "recovered") {
      bool recovered = false;
      e = v.get_bool().get(recovered);
      if (!e) out.recovered = recovered;
    } else if (key == "duplicate") {
      e = v.get_bool().get(out.duplicate);
    } else if (key == "publications") {
      e = read_list(v, out.publications, read_publication);
    } else if (key == "clients") {
      e = read_list(v, out.clients, read_client_info);
    } else if (key == "client") {
      od::json_type type;
      e = v.type().get(type);
      if (!e) e = type == od::json_type::object ? read_client_info(v, out.client_info) : read_string(v, out.client_id);
    } else if (key == "user") {
      e = read_string(v, out.user);
    } else if (key == "node") {
      e = read_string(v, out.node);
    } else if (key == "expires") {
      std::int64_t expires = 0;
      e = v.get_int64().get(expires);
      if (!e) out.expires = expires;
    } else if (key == "ping") {
      std::uint64_t ping = 0;
      e = v.get_uint64().get(ping);
      if (!e) out.ping = ping;
    } else if (key == "code") {
      std::int64_t code = 0;
      e = v.get_int64().get(code);
      if (!e) out.code = code;
    } else if (key == "reason") {
      e = read_string(v, out.reason);
    } else if (key == "reconnect") {
      bool reconnect = false;
      e = v.get_bool().get(reconnect);
      if (!e) out.reconnect = reconnect;
    }
    if (e) return e;
  }
  return SUCCESS;
}

}  // namespace

ServerFrameParser::ServerFrameParser() {
  // Only the depth matters here; capacity grows with the largest frame seen.
  if (validator_.allocate(4096, max_depth) || walker_.allocate(4096, max_depth)) throw std::bad_alloc();
}

bool ServerFrameParser::parse(std::string_view text, ServerFrame& out, std::string& error) {
  out = ServerFrame{};
  if (text.size() > max_frame_bytes) {
    error = "frame too large";
    return false;
  }
  buffer_.assign(text);
  buffer_.append(simdjson::SIMDJSON_PADDING, ' ');
  // Full validation first: the walk below only looks at what it needs.
  simdjson::dom::element root;
  if (auto e = validator_.parse(reinterpret_cast<const std::uint8_t*>(buffer_.data()), text.size(), false).get(root)) {
    error = std::string("invalid JSON: ") + simdjson::error_message(e);
    return false;
  }
  if (!root.is_object()) {
    error = "frame is not a JSON object";
    return false;
  }
  od::document document;
  if (auto e = walker_.iterate(simdjson::padded_string_view(buffer_.data(), text.size(), buffer_.size())).get(document)) {
    error = std::string("invalid JSON: ") + simdjson::error_message(e);
    return false;
  }
  od::object object;
  error_code e = document.get_object().get(object);
  if (!e) e = read_fields(object, out, true);
  if (e) {
    error = std::string("unexpected field type: ") + simdjson::error_message(e);
    return false;
  }
  if (out.type.empty()) {
    error = "frame without a type";
    return false;
  }
  return true;
}

}  // namespace duplex::wire
