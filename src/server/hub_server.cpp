#include "duplex/server/hub_server.hpp"

#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include "duplex/engines/factory.hpp"
#include "duplex/config/config_file.hpp"
#include "support/json.hpp"
#include "support/log.hpp"
#include "duplex/hub/token.hpp"
#include "../config/config_fields.hpp"
#include "request_token.hpp"
#include "http_api.hpp"
#include "prometheus_metrics.hpp"
#include "duplex/protocol/http_response.hpp"
#include "duplex/server/fallback_sessions.hpp"

namespace duplex::transport {

namespace {

using protocol::HttpHeader;

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// duplex.v1 over WebSocket: one text message per command, reply or push.
class WebSocketTransport final : public hub::Transport {
 public:
  WebSocketTransport(net::Connection& c, hub::HubCounters& k) : connection(&c), counters(&k) {}
  // net::Connection never ends synchronously (its teardown is deferred to
  // the loop), which is what the Transport rule asks.
  void write(std::string_view encoded, std::uint64_t) override {
    count_out(encoded.size());
    connection->send(encoded, protocol::Opcode::text);
  }
  void write_shared(const net::PreparedMessage& frame) override {
    count_out(frame.payload().size());
    connection->send_prepared(frame);
  }
  void count_out(std::size_t bytes) {
    counters->messages_out.fetch_add(1, std::memory_order_relaxed);
    counters->bytes_out.fetch_add(bytes, std::memory_order_relaxed);
  }
  // The close frame follows the disconnect push through the same output queue.
  void request_close(std::uint16_t code, std::string_view reason) override { connection->close(code, reason); }
  std::string_view name() const override { return "websocket"; }

  net::Connection* connection;
  hub::HubCounters* counters;
  std::shared_ptr<hub::Session> session;
  hub::Admission admission;  // from the handshake, until open
};

std::string_view content_type_for(std::string_view path) {
  auto ends = [&](std::string_view ext) { return path.size() >= ext.size() && path.substr(path.size() - ext.size()) == ext; };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js") || ends(".mjs")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".json")) return "application/json";
  if (ends(".svg")) return "image/svg+xml";
  if (ends(".png")) return "image/png";
  if (ends(".ico")) return "image/x-icon";
  return "application/octet-stream";
}

bool safe_static_path(std::string_view path) {
  if (path.empty() || path.front() != '/' || path.size() > 200) return false;
  if (path.find("..") != std::string_view::npos || path.find("//") != std::string_view::npos) return false;
  for (char c : path)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '.' || c == '-' || c == '_')) return false;
  return true;
}

}  // namespace

WebRoot resolve_web_root(const std::string& configured) {
  if (!configured.empty()) return {configured, "web.root"};
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path installed = (exe.parent_path() / DUPLEX_INSTALLED_WEB_DIR).lexically_normal();
    if (fs::is_directory(installed, ec)) return {installed.string(), "install prefix"};
  }
  return {DUPLEX_WEB_ROOT, "build tree"};
}

// ---- HTTP routes -------------------------------------------------------------------

struct HubServer::Routes {
  HubServer& server;
  std::string web_root;
  std::unique_ptr<FallbackSessions> fallback = nullptr;  // SSE and long-polling sessions
  std::unique_ptr<HttpApi> api = nullptr;                 // /api/<method>

  // The configuration in force (reloaded on SIGHUP): hold it for the request.
  std::shared_ptr<const hub::HubConfig> config() const { return server.live_config(); }

  std::vector<HttpHeader> cors_headers(const protocol::HttpHead& head) const {
    std::vector<HttpHeader> h;
    const std::string_view origin = head.get("Origin");
    if (origin.empty()) return h;
    const auto cfg = config();
    for (const auto& allowed : cfg->web.cors_origins) {
      if (allowed == "*" || allowed == origin) {
        h.push_back({"Access-Control-Allow-Origin", allowed == "*" ? "*" : std::string(origin)});
        h.push_back({"Vary", "Origin"});
        break;
      }
    }
    return h;
  }

  void handle(net::Connection& c, const net::HttpRequest& r) {
    auto headers = cors_headers(r.head);
    if (r.method == "OPTIONS") {
      if (!headers.empty()) {
        headers.push_back({"Access-Control-Allow-Methods", "GET, POST, OPTIONS"});
        headers.push_back({"Access-Control-Allow-Headers", "Authorization, Content-Type, X-API-Key"});
        headers.push_back({"Access-Control-Max-Age", "600"});
      }
      return c.http_respond(204, {}, {}, headers);
    }
    if (fallback && fallback->handle(c, r, headers)) return;
    if (r.path.starts_with("/api/")) return api->handle(c, r, std::move(headers));
    if (r.method != "GET" && r.method != "HEAD") return c.http_respond(405, "text/plain", "method not allowed\n", headers);
    if (r.path == "/healthz") return c.http_respond(200, "text/plain", "ok\n");
    if (r.path == "/readyz") {
      const bool ready = server.hub_->engine().healthy();
      return c.http_respond(ready ? 200 : 503, "text/plain", ready ? "ready\n" : "engine unavailable\n");
    }
    if (r.path == "/metrics") return c.http_respond(200, "text/plain; version=0.0.4", prometheus_metrics(*server.hub_, fallback.get()));
    if (r.path == "/demo/token") return demo_token(c, r, std::move(headers));
    if (r.path == "/connection/websocket")
      return c.http_respond(426, "text/plain", "this endpoint needs a WebSocket upgrade\n",
                            {{"Upgrade", "websocket"}, {"Sec-WebSocket-Version", "13"}});
    static_file(c, r);
  }

  void static_file(net::Connection& c, const net::HttpRequest& r) {
    std::string_view path = r.path;
    if (path == "/") path = "/index.html";
    if (!safe_static_path(path)) return c.http_respond(404, "text/plain", "not found\n");
    std::ifstream in(web_root + std::string(path), std::ios::binary);
    if (!in) return c.http_respond(404, "text/plain", "not found\n");
    std::ostringstream body;
    body << in.rdbuf();
    c.http_respond(200, content_type_for(path), body.str(), {{"Cache-Control", "no-cache"}});
  }

  void demo_token(net::Connection& c, const net::HttpRequest& r, std::vector<HttpHeader> headers) {
    const auto cfg = config();
    if (!cfg->web.demo_tokens || cfg->auth.hmac_secret.empty())
      return c.http_respond(404, "text/plain", "demo tokens are off (web.demo_tokens)\n");
    std::string user;
    if (!protocol::query_param(r.query, "user", user) || user.empty() || user.size() > 64 ||
        !hub::is_valid_json(hub::json_string(user)) || user.find_first_of("#,:\"\\") != std::string::npos)
      return c.http_respond(400, "application/json", api_error_json(hub::error_code::bad_request,
                                                                  "user: 1-64 characters, none of # , : \" \\"), headers);
    hub::TokenClaims claims;
    claims.sub = user;
    claims.exp = unix_now() + cfg->web.demo_token_ttl.count();
    claims.iat = unix_now();
    claims.info = "{\"name\":" + hub::json_string(user) + "}";
    const std::string token = hub::sign_token_hs256(hub::make_claims_json(claims), cfg->auth.hmac_secret);
    std::string body = "{\"token\":" + hub::json_string(token) + ",\"user\":" + hub::json_string(user) + "}";
    headers.push_back({"Cache-Control", "no-store"});
    c.http_respond(200, "application/json", body, headers);
  }

};

// ---- server ------------------------------------------------------------------------

// Every live WebSocket session: connections still open when the loops are
// destroyed are dropped without callbacks, so their sessions are freed here.
struct HubServer::SessionRegistry {
  std::mutex mutex;
  std::unordered_set<WebSocketTransport*> live;
  WebSocketTransport* create(net::Connection& c, hub::HubCounters& counters) {
    auto* s = new WebSocketTransport(c, counters);
    std::lock_guard lock(mutex);
    live.insert(s);
    return s;
  }
  void destroy(WebSocketTransport* s) {
    {
      std::lock_guard lock(mutex);
      live.erase(s);
    }
    delete s;
  }
  ~SessionRegistry() {
    for (auto* s : live) delete s;
  }
};

HubServer::HubServer(hub::HubConfig config) : config_(std::move(config)), sessions_(std::make_shared<SessionRegistry>()) {
  config_.server.subprotocols = {"duplex.v1"};
  // One WebSocket message is one command: never reassemble or inflate more
  // than the hub would accept (a 16 MiB default message limit let each
  // connection make the server buffer 16 MiB before the hub said 1009).
  config_.server.websocket.max_message_size =
      std::min(config_.server.websocket.max_message_size, config_.limits.max_command_bytes);
  auto verifier = hub::TokenVerifier::from_config(config_.auth);
  auto engine = engines::make_engine(config_.engine);
  web_root_ = resolve_web_root(config_.web.root);
  routes_ = std::make_unique<Routes>(Routes{*this, web_root_.dir});

  net::Handlers h;
  h.on_upgrade = [this](net::Connection& c, const protocol::UpgradeRequest&, const protocol::HttpHead& head,
                        net::UpgradeDecision& decision) {
    hub::Admission admission = hub_->admit(session_request(head, protocol::target_query(c.target())));
    if (!admission.admitted()) return decision.reject(admission.status, admission.reason);
    auto transport = sessions_->create(c, hub_->counters());
    transport->admission = std::move(admission);
    c.user_data = transport;
  };
  h.on_open = [this](net::Connection& c) {
    auto* transport = static_cast<WebSocketTransport*>(c.user_data);
    if (!transport) {
      transport = sessions_->create(c, hub_->counters());
      c.user_data = transport;
    }
    transport->session = hub_->open(c.loop(), *transport, transport->admission);
    transport->admission = {};
  };
  h.on_message = [this](net::Connection& c, protocol::Opcode kind, std::string_view payload) {
    auto* transport = static_cast<WebSocketTransport*>(c.user_data);
    if (!transport || !transport->session) return;
    auto& k = hub_->counters();
    k.messages_in.fetch_add(1, std::memory_order_relaxed);
    k.bytes_in.fetch_add(payload.size(), std::memory_order_relaxed);
    if (kind != protocol::Opcode::text) {
      hub_->disconnect(*transport->session, hub::disconnect_code::bad_request, "duplex.v1 uses text frames");
      return;
    }
    hub_->command(*transport->session, payload);
  };
  h.on_close = [this](net::Connection& c, std::uint16_t code, std::string_view) {
    hub_->count_close(code);
    auto* transport = static_cast<WebSocketTransport*>(c.user_data);
    c.user_data = nullptr;
    if (!transport) return;
    if (transport->session) hub_->closed(*transport->session);
    sessions_->destroy(transport);
  };
  h.on_http = [this](net::Connection& c, const net::HttpRequest& r) { routes_->handle(c, r); };

  server_ = std::make_unique<net::Server>(config_.server, std::move(h));
  hub_ = std::make_unique<hub::Hub>(config_, std::move(engine), std::move(verifier), server_->loops());
  config_.node_name = hub_->node_name();  // the default (hostname-pid) filled in
  routes_->api = std::make_unique<HttpApi>(*hub_, [this] { return live_config(); });
  live_.store(std::make_shared<const hub::HubConfig>(config_));
  hub_->start();
  FallbackLimits fallback_limits;
  fallback_limits.max_buffer_bytes = config_.server.max_send_buffer;
  const hub::FallbackConfig& fc = config_.fallback;
  fallback_limits.max_buffer_events = fc.max_buffer_events;
  fallback_limits.max_sessions = fc.max_sessions;
  fallback_limits.max_commands_per_request = fc.max_commands_per_request;
  fallback_limits.sse_heartbeat = fc.sse_heartbeat;
  fallback_limits.sse_grace = fc.sse_grace;
  fallback_limits.poll_wait = fc.poll_wait;
  fallback_limits.poll_idle = fc.poll_idle;
  fallback_limits.post_reply_timeout = fc.post_reply_timeout;
  routes_->fallback = std::make_unique<FallbackSessions>(*hub_, fallback_limits);
}

HubServer::~HubServer() {
  stop();
  routes_->fallback.reset();  // its timers live on the loops: before them
  hub_.reset();     // its timers live on the loops: before them
  server_.reset();  // destroys the loops, dropping connections still open
  sessions_.reset();
}

void HubServer::start() {
  server_->listen();
  thread_ = std::thread([this] { server_->run(); });
}

void HubServer::run() { server_->run(); }

void HubServer::wait() {
  if (thread_.joinable()) thread_.join();
}

void HubServer::shutdown(net::Millis deadline) {
  // Every transport the same way: the disconnect push and the transport's
  // close first (WebSocket close after the push, SSE stream ended after it,
  // a waiting poll answered with it), then the server closes what is left.
  const auto until = std::chrono::steady_clock::now() + deadline;
  hub_->drain(hub::disconnect_code::shutdown, "server shutting down", deadline);
  // A long-poll client between two polls collects its push with the next
  // one: serve it first (Hub::admit refuses new sessions meanwhile).
  if (routes_->fallback) routes_->fallback->wait_for_goodbyes(until);
  const auto left = std::chrono::duration_cast<net::Millis>(until - std::chrono::steady_clock::now());
  server_->shutdown(hub::disconnect_code::shutdown, std::max(left, net::Millis{100}));
}

HubServer::ReloadResult HubServer::reload(hub::HubConfig next) {
  std::lock_guard lock(reload_mutex_);
  hub::validate_config(next);
  const auto current = live_config();
  if (next.node_name.empty()) next.node_name = current->node_name;
  ReloadResult result;
  // Prepare everything that can fail before changing anything.
  if (!hub::log::parse_level(next.log.level)) throw std::runtime_error("log.level: unknown level \"" + next.log.level + "\"");
  if (!hub::log::parse_format(next.log.format)) throw std::runtime_error("log.format: unknown format \"" + next.log.format + "\"");
  auto verifier = hub::TokenVerifier::from_config(next.auth);  // throws naming the file
  const auto& old_tls = current->server.tls;
  const auto& new_tls = next.server.tls;
  const bool tls_reloadable = old_tls.enabled() && new_tls.enabled();
  if (tls_reloadable) {
    // The last step that can fail: a new OpenSSL context is built and swapped in (or nothing).
    server_->reload_tls(new_tls);
    result.applied.push_back("server.tls (certificate and key re-read" +
                             std::string(new_tls.min_version != old_tls.min_version ? ", min_version" : "") +
                             (new_tls.ciphers != old_tls.ciphers ? ", ciphers" : "") + ")");
  } else if (old_tls.enabled() != new_tls.enabled()) {
    result.needs_restart.push_back("server.tls (turning TLS on or off)");
  }

  // Nothing below throws.
  // `next` as the constructor would have adjusted it, so that only what the
  // file (or a flag) changed compares unequal.
  hub::HubConfig effective = next;
  effective.server.websocket.max_message_size =
      std::min(next.server.websocket.max_message_size, next.limits.max_command_bytes);
  // Every changed field of config/config_fields: applied live or reported as
  // needing a restart, by its reload class; [server.tls] was handled above.
  namespace fields = hub::config_fields;
  auto live = std::make_shared<hub::HubConfig>(*current);
  for (const fields::ConfigField& field : fields::fields()) {
    if (field.reload == fields::Reload::tls || fields::equal(field, effective, *current)) continue;
    if (field.reload == fields::Reload::live) {
      result.applied.push_back(field.key);
      fields::assign(field.get(*live), field.get(effective));
    } else {
      result.needs_restart.push_back(field.key);
    }
  }
  // The live fields' consumers: the logger, the hub (token verifier, limits,
  // origins); the rest (api.key, web.*) are read from live_config() per request.
  hub::log::configure(next.log.level, next.log.format);
  hub_->reload(std::move(verifier), next.limits, next.auth.allowed_origins);
  if (tls_reloadable) live->server.tls = new_tls;
  live_.store(std::move(live), std::memory_order_release);

  // [namespaces.<name>] tables are not rows of the table: compared whole.
  auto ns_equal = [](const hub::NamespaceOptions& a, const hub::NamespaceOptions& b) {
    return std::all_of(fields::namespace_fields().begin(), fields::namespace_fields().end(),
                       [&](const fields::NamespaceField& field) { return fields::equal(field, a, b); });
  };
  bool namespaces_changed = next.namespaces.size() != current->namespaces.size();
  for (const auto& [name, options] : next.namespaces) {
    auto it = current->namespaces.find(name);
    if (it == current->namespaces.end() || !ns_equal(options, it->second)) namespaces_changed = true;
  }
  if (namespaces_changed) result.needs_restart.push_back("namespaces");
  return result;
}

void HubServer::stop() {
  if (stopped_) return;
  stopped_ = true;
  server_->stop();
  if (thread_.joinable()) thread_.join();
  hub_->stop();
}

}  // namespace duplex::transport
