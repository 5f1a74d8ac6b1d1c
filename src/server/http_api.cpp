#include "http_api.hpp"

#include <simdjson.h>

#include <algorithm>
#include <mutex>
#include <optional>
#include <utility>

#include "duplex/engines/engine.hpp"
#include "duplex/hub/codec.hpp"
#include "duplex/hub/hub.hpp"
#include "duplex/hub/token.hpp"
#include "support/json.hpp"

namespace duplex::transport {

using protocol::HttpHeader;

namespace {

int http_status_for(int hub_code) {
  switch (hub_code) {
    case hub::error_code::unavailable: return 503;
    case hub::error_code::internal: return 500;
    case hub::error_code::unauthorized: return 401;
    case hub::error_code::permission_denied: return 403;
    default: return 400;
  }
}

void respond_later(net::Connection& c, int status, std::string body, std::vector<HttpHeader> headers) {
  auto conn = c.shared_from_this();
  c.loop().post([conn, status, body = std::move(body), headers = std::move(headers)] {
    conn->http_respond(status, "application/json", body, headers);
  });
}

}  // namespace

std::string api_error_json(int code, std::string_view message) {
  std::string out = "{\"error\":{\"code\":";
  out += std::to_string(code);
  out += ",\"message\":";
  hub::append_json_string(out, message);
  out += "}}";
  return out;
}

void HttpApi::handle(net::Connection& c, const net::HttpRequest& r, std::vector<HttpHeader> headers) {
  const auto cfg = config_();
  const std::string& key = cfg->api.key;
  if (key.empty()) return c.http_respond(404, "application/json", api_error_json(404, "the HTTP API is disabled (api.key)"), headers);
  std::string_view given = r.head.get("X-API-Key");
  const std::string_view auth = r.head.get("Authorization");
  if (given.empty() && auth.size() > 7 && protocol::iequals(auth.substr(0, 7), "apikey ")) given = auth.substr(7);
  if (!hub::constant_time_equals(given, key))
    return c.http_respond(401, "application/json", api_error_json(hub::error_code::unauthorized, "bad or missing API key"), headers);
  const std::string_view method = r.path.substr(5);
  if (method == "nodes" && (r.method == "GET" || r.method == "POST")) return nodes(c, std::move(headers));
  if (r.method != "POST")
    return c.http_respond(405, "application/json", api_error_json(hub::error_code::bad_request, "use POST"), headers);
  simdjson::dom::parser parser;
  Call call{c, {}, std::move(headers)};
  const std::string_view text = r.body.empty() ? std::string_view("{}") : r.body;
  if (parser.parse(text.data(), text.size()).get(call.body) != simdjson::SUCCESS || !call.body.is_object())
    return call.bad("the body must be a JSON object");
  static constexpr std::pair<std::string_view, void (HttpApi::*)(Call&)> methods[] = {
      {"publish", &HttpApi::publish},         {"broadcast", &HttpApi::broadcast}, {"presence", &HttpApi::presence},
      {"history", &HttpApi::history},         {"disconnect", &HttpApi::disconnect},
      {"unsubscribe", &HttpApi::unsubscribe}, {"channels", &HttpApi::channels},   {"info", &HttpApi::info},
  };
  for (const auto& [name, run] : methods)
    if (name == method) return (this->*run)(call);
  c.http_respond(404, "application/json", api_error_json(hub::error_code::unknown_command, "unknown API method"),
                 call.headers);
}

void HttpApi::Call::bad(std::string_view why) const {
  c.http_respond(400, "application/json", api_error_json(hub::error_code::bad_request, why), headers);
}

std::optional<std::string_view> HttpApi::Call::channel() const {
  std::string_view name;
  if (body["channel"].get(name) != simdjson::SUCCESS) return std::nullopt;
  return name;
}

void HttpApi::nodes(net::Connection& c, std::vector<HttpHeader> headers) {
  hub_.engine().nodes([conn = c.shared_from_this(), headers](std::vector<engines::NodeInfo> nodes) {
    std::sort(nodes.begin(), nodes.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    std::string out = "{\"nodes\":[";
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      const auto& n = nodes[i];
      if (i) out += ',';
      out += "{\"name\":" + hub::json_string(n.name) + ",\"started_ms\":" + std::to_string(n.started_ms) +
             ",\"updated_ms\":" + std::to_string(n.updated_ms) + ",\"connections\":" + std::to_string(n.connections) +
             ",\"subscriptions\":" + std::to_string(n.subscriptions) + ",\"channels\":" + std::to_string(n.channels) +
             ",\"publications_in\":" + std::to_string(n.publications_in) +
             ",\"pushes_out\":" + std::to_string(n.pushes_out) + "}";
    }
    out += "]}";
    respond_later(*conn, 200, std::move(out), headers);
  });
}

void HttpApi::publish(Call& call) {
  const auto channel = call.channel();
  simdjson::dom::element data;
  if (!channel || call.body["data"].get(data) != simdjson::SUCCESS) return call.bad("publish needs \"channel\" and \"data\"");
  std::string_view key_text;
  if (call.body["idempotency_key"].get(key_text)) {}  // optional field
  hub_.api_publish(std::string(*channel), simdjson::minify(data), std::string(key_text),
                  [conn = call.c.shared_from_this(), headers = call.headers](hub::ApiError e, hub::StreamPosition p, bool dup) {
                    if (e.code) return respond_later(*conn, http_status_for(e.code), api_error_json(e.code, e.message), headers);
                    std::string out = "{\"result\":{\"epoch\":" + hub::json_string(p.epoch) +
                                      ",\"offset\":" + std::to_string(p.offset) + (dup ? ",\"duplicate\":true" : "") + "}}";
                    respond_later(*conn, 200, std::move(out), headers);
                  });
}

void HttpApi::broadcast(Call& call) {
  simdjson::dom::array channels;
  simdjson::dom::element data;
  if (call.body["channels"].get(channels) != simdjson::SUCCESS || call.body["data"].get(data) != simdjson::SUCCESS)
    return call.bad("broadcast needs \"channels\" (array) and \"data\"");
  std::vector<std::string> names;
  for (auto el : channels) {
    std::string_view name;
    if (el.get(name) != simdjson::SUCCESS) return call.bad("\"channels\" must hold strings");
    names.emplace_back(name);
  }
  if (names.empty() || names.size() > 1000) return call.bad("\"channels\": 1 to 1000 names");
  struct Gather {
    std::mutex m;
    std::vector<std::string> parts;
    std::size_t left;
  };
  auto gather = std::make_shared<Gather>();
  gather->parts.resize(names.size());
  gather->left = names.size();
  const std::string payload = simdjson::minify(data);
  for (std::size_t i = 0; i < names.size(); ++i) {
    hub_.api_publish(names[i], payload, {}, [gather, i, conn = call.c.shared_from_this(), headers = call.headers](hub::ApiError e, hub::StreamPosition p, bool) {
      std::string part = e.code ? api_error_json(e.code, e.message)
                                : "{\"epoch\":" + hub::json_string(p.epoch) + ",\"offset\":" + std::to_string(p.offset) + "}";
      std::lock_guard lock(gather->m);
      gather->parts[i] = std::move(part);
      if (--gather->left) return;
      std::string out = "{\"result\":{\"responses\":[";
      for (std::size_t j = 0; j < gather->parts.size(); ++j) {
        if (j) out += ',';
        out += gather->parts[j];
      }
      out += "]}}";
      respond_later(*conn, 200, std::move(out), headers);
    });
  }
}

void HttpApi::presence(Call& call) {
  const auto channel = call.channel();
  if (!channel) return call.bad("presence needs \"channel\"");
  hub_.api_presence(std::string(*channel), [conn = call.c.shared_from_this(), headers = call.headers](hub::ApiError e, std::vector<hub::ClientInfo> clients) {
    if (e.code) return respond_later(*conn, http_status_for(e.code), api_error_json(e.code, e.message), headers);
    std::string out = "{\"result\":{\"clients\":[";
    for (std::size_t i = 0; i < clients.size(); ++i) {
      if (i) out += ',';
      hub::append_client_json(out, clients[i]);
    }
    out += "]}}";
    respond_later(*conn, 200, std::move(out), headers);
  });
}

void HttpApi::history(Call& call) {
  const auto channel = call.channel();
  if (!channel) return call.bad("history needs \"channel\"");
  std::uint64_t limit = hub_.config().limits.max_history_size;
  if (call.body["limit"].get(limit)) {}  // optional field
  bool reverse = false;
  if (call.body["reverse"].get(reverse)) {}  // optional field
  std::optional<hub::StreamPosition> since;
  simdjson::dom::element s;
  if (call.body["since"].get(s) == simdjson::SUCCESS) {
    std::string_view epoch;
    std::uint64_t offset = 0;
    if (s["epoch"].get(epoch) != simdjson::SUCCESS || s["offset"].get(offset) != simdjson::SUCCESS)
      return call.bad("\"since\" needs \"epoch\" and \"offset\"");
    since = hub::StreamPosition{std::string(epoch), offset};
  }
  hub_.api_history(std::string(*channel), limit, since, reverse,
                  [conn = call.c.shared_from_this(), headers = call.headers](hub::ApiError e, engines::HistoryResult h) {
                    if (e.code) return respond_later(*conn, http_status_for(e.code), api_error_json(e.code, e.message), headers);
                    std::string out = "{\"result\":{\"epoch\":" + hub::json_string(h.top.epoch) +
                                      ",\"offset\":" + std::to_string(h.top.offset) + ",\"publications\":[";
                    for (std::size_t i = 0; i < h.publications.size(); ++i) {
                      if (i) out += ',';
                      hub::append_publication_json(out, *h.publications[i]);
                    }
                    out += "]}}";
                    respond_later(*conn, 200, std::move(out), headers);
                  });
}

void HttpApi::disconnect(Call& call) {
  std::string_view user;
  if (call.body["user"].get(user) != simdjson::SUCCESS) return call.bad("disconnect needs \"user\"");
  bool reconnect = false;
  if (call.body["reconnect"].get(reconnect)) {}  // optional field
  std::string_view reason = reconnect ? "reconnect requested by the server" : "disconnected by the server";
  if (call.body["reason"].get(reason)) {}  // optional field
  hub_.api_disconnect(std::string(user), reconnect ? hub::disconnect_code::force_reconnect : hub::disconnect_code::disconnected,
                     std::string(reason.substr(0, 120)));
  return call.c.http_respond(200, "application/json", "{\"result\":{}}", call.headers);
}

void HttpApi::unsubscribe(Call& call) {
  const auto channel = call.channel();
  std::string_view user;
  if (call.body["user"].get(user) != simdjson::SUCCESS || !channel) return call.bad("unsubscribe needs \"user\" and \"channel\"");
  hub_.api_unsubscribe(std::string(user), std::string(*channel));
  return call.c.http_respond(200, "application/json", "{\"result\":{}}", call.headers);
}

void HttpApi::channels(Call& call) {
  std::string out = "{\"result\":{\"channels\":[";
  bool first = true;
  for (const auto& [name, count] : hub_.api_channels()) {
    if (!first) out += ',';
    first = false;
    out += "{\"channel\":" + hub::json_string(name) + ",\"subscribers\":" + std::to_string(count) + "}";
  }
  out += "]}}";
  return call.c.http_respond(200, "application/json", out, call.headers);
}

void HttpApi::info(Call& call) {
  const auto& k = hub_.counters();
  const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_).count();
  std::string out = "{\"result\":{\"node\":" + hub::json_string(hub_.node_name()) +
                    ",\"started_ms\":" + std::to_string(hub_.started_ms()) + ",\"version\":\"" DUPLEX_VERSION
                    "\",\"engine\":" + hub::json_string(hub_.engine().name()) +
                    ",\"engine_healthy\":" + (hub_.engine().healthy() ? "true" : "false") +
                    ",\"uptime\":" + std::to_string(uptime) + ",\"connections\":" + std::to_string(k.connections.load()) +
                    ",\"subscriptions\":" + std::to_string(k.subscriptions.load()) +
                    ",\"publications\":" + std::to_string(k.publications.load()) +
                    ",\"channels\":" + std::to_string(hub_.channel_count()) + "}}";
  return call.c.http_respond(200, "application/json", out, call.headers);
}

}  // namespace duplex::transport
