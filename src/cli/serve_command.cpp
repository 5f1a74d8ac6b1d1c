// `duplex serve`: the hub server (channels, presence, history, recovery,
// auth, HTTP API, demo page), configured by a TOML file and flags.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <thread>

#include "commands.hpp"
#include "duplex/config/config_file.hpp"
#include "support/log.hpp"
#include "duplex/net/error_log.hpp"
#include "duplex/server/hub_server.hpp"

namespace duplex::cli {

namespace {

struct ServeFlags {
  std::string config_file;
  std::string listen;
  unsigned threads = 0;
  bool threads_set = false;
  std::string engine;
  std::string data_dir;
  std::string hmac_secret;
  std::string api_key;
  bool allow_anonymous = false;
  std::string web_root;
  bool demo_tokens = false;
  std::string node;
  std::string log_level;
  std::string log_format;
  double shutdown_deadline = 5.0;
};

// The config file (or the environment without one), then the flags over it.
// At start and again on SIGHUP.
hub::HubConfig load_config(const ServeFlags& f) {
  hub::HubConfig config;
  if (f.config_file.empty())
    hub::apply_env_overrides(config);
  else
    config = hub::load_config_file(f.config_file);
  if (!f.listen.empty()) {
    std::string error;
    if (!split_host_port(f.listen, config.server.host, config.server.port, error))
      throw std::runtime_error("--listen: " + error);
  }
  if (f.threads_set) config.server.threads = f.threads;
  if (!f.engine.empty()) config.engine.type = f.engine;
  if (!f.data_dir.empty()) config.engine.data_dir = f.data_dir;
  if (!f.hmac_secret.empty()) config.auth.hmac_secret = f.hmac_secret;
  if (!f.api_key.empty()) config.api.key = f.api_key;
  if (f.allow_anonymous) {
    config.auth.allow_anonymous = true;
    config.namespace_defaults.allow_anonymous = true;
  }
  if (!f.web_root.empty()) config.web.root = f.web_root;
  if (f.demo_tokens) config.web.demo_tokens = true;
  if (!f.node.empty()) config.node_name = f.node;
  if (!f.log_level.empty()) config.log.level = f.log_level;
  if (!f.log_format.empty()) config.log.format = f.log_format;
  hub::validate_config(config);
  return config;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ", ";
    out += item;
  }
  return out;
}

// SIGHUP: re-read the config, apply what can change live, keep everything
// as it was if anything is wrong.
void reload(const ServeFlags& f, transport::HubServer& server) {
  const std::string source = f.config_file.empty() ? std::string("the environment") : f.config_file;
  hub::log::info("SIGHUP: reloading the configuration", {{"file", source}});
  try {
    const auto result = server.reload(load_config(f));
    if (!result.needs_restart.empty())
      hub::log::warn("SIGHUP: changed but needs a restart (old values stay in force)",
                     {{"settings", join(result.needs_restart)}});
    hub::log::info("SIGHUP: configuration reloaded",
                   {{"applied", result.applied.empty() ? std::string("nothing changed") : join(result.applied)}});
  } catch (const std::exception& e) {
    hub::log::error("SIGHUP: reload failed, still running with the previous configuration",
                    {{"file", source}, {"error", e.what()}});
  }
}

// What a new operator should hear about at start: a configuration that
// loads but cannot be what they meant.
void warn_about(const hub::HubConfig& config) {
  const bool can_verify_tokens = !config.auth.hmac_secret.empty() || !config.auth.public_key_file.empty();
  if (!can_verify_tokens && !config.auth.allow_anonymous)
    hub::log::warn("no client can connect: there is no token key (auth.hmac_secret or DUPLEX_HMAC_SECRET, "
                   "auth.public_key_file) and auth.allow_anonymous is false",
                   {});
  if (config.api.key.empty())
    hub::log::warn("the HTTP API is off (/api/* answers 404): set api.key or DUPLEX_API_KEY to enable it", {});
  const auto& redis = config.engine.redis;
  if ((config.engine.type == "redis" || config.engine.type == "nats") && redis.tls && !redis.tls_verify)
    hub::log::warn("engine.redis.tls_verify is false: the Redis servers' certificates and names are not checked, "
                   "anyone on the path can pose as them (for tests and self-signed servers only)",
                   {});
}

int serve(const ServeFlags& f) {
  hub::HubConfig config;
  // A configuration that cannot be used is a usage error (exit 2), like a bad flag.
  try {
    config = load_config(f);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "duplex serve: %s\n", e.what());
    return 2;
  }
  hub::log::configure(config.log.level, config.log.format);
  // What the network layer cannot return to a caller (a handler that threw) goes to the structured log.
  net::set_error_log([](std::string_view message) { hub::log::error("network", {{"error", std::string(message)}}); });
  warn_about(config);

  // Signals are taken by one thread with sigwait, so no loop thread is interrupted.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // Writes to a closed peer fail with EPIPE instead of killing the process
  // (OpenSSL writes to TLS sockets without MSG_NOSIGNAL).
  ::signal(SIGPIPE, SIG_IGN);

  transport::HubServer server(config);
  server.start();
  hub::log::info("duplex serve listening",
                 {{"host", config.server.host}, {"port", server.port()}, {"engine", server.hub().engine().name()},
                  {"node", server.hub().node_name()}, {"threads", server.loop_count()},
                  {"io", net::to_string(server.io())}});
  if (!server.io_fallback_reason().empty())
    hub::log::warn("io_uring is not available: the loops run on epoll", {{"reason", server.io_fallback_reason()}});
  const auto& web = server.web_root();
  std::error_code web_error;
  if (std::filesystem::is_directory(web.dir, web_error))
    hub::log::info("serving web files", {{"dir", web.dir}, {"from", web.source}});
  else
    hub::log::warn("the web directory does not exist: / and /duplex.js answer 404 (set web.root or --web-root)",
                   {{"dir", web.dir}, {"from", web.source}});
  std::printf("duplex serve: http://%s:%u/ (WebSocket ws://%s:%u/connection/websocket)\n", config.server.host.c_str(),
              server.port(), config.server.host.c_str(), server.port());
  std::fflush(stdout);
  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      reload(f, server);
      continue;
    }
    hub::log::info("shutting down", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
    break;
  }
  server.shutdown(net::Millis{static_cast<long>(f.shutdown_deadline * 1000)});
  server.wait();  // clients closed (or the deadline passed)
  server.stop();  // waits for the loops, then makes pending publishes durable
  hub::log::info("stopped", {});
  return 0;
}

}  // namespace

std::function<int()> add_serve_command(CLI::App& app) {
  auto flags = std::make_shared<ServeFlags>();
  auto* cmd = app.add_subcommand("serve", "Run the hub: channels, presence, history, recovery, auth, HTTP API, demo page");
  cmd->footer(
      "Options on the command line override the config file (docs/CONFIG.md).\n"
      "Exit status: 0 after SIGTERM/SIGINT; 2 when the configuration cannot be used (missing or invalid file,\n"
      "unreadable TLS or key file); 1 when the server cannot start otherwise (e.g. the address is in use).\n"
      "Clients connect to ws://HOST:PORT/connection/websocket (docs/PROTOCOL.md); the demo page is at /.\n"
      "SIGTERM/SIGINT: every client gets close 1001 with a disconnect push, pending publishes are made durable, exit 0.\n"
      "SIGHUP: re-reads the config file (flags still override) and applies TLS certificates, log settings, token keys,\n"
      "origins, the API key and the per-operation limits live; other changes are logged as needing a restart.");
  // No CLI::ExistingFile check: its failure exits 105; load_config names the file and exits 2.
  cmd->add_option("-c,--config", flags->config_file, "TOML config file (see config/duplex.toml)");
  cmd->add_option("-l,--listen", flags->listen, "HOST:PORT to listen on (default 127.0.0.1:8080)");
  cmd->add_option("-t,--threads", flags->threads, "event loops (0 = one per core)")
      ->each([flags](const std::string&) { flags->threads_set = true; });
  cmd->add_option("--engine", flags->engine,
                  "storage engine: sqlite (durable, default) or memory; redis and nats are set in the config file")
      ->check(CLI::IsMember({"sqlite", "memory"}));
  cmd->add_option("--data-dir", flags->data_dir, "sqlite engine: directory for duplex.db");
  cmd->add_option("--hmac-secret", flags->hmac_secret, "HS256 secret for tokens (or env DUPLEX_HMAC_SECRET)");
  cmd->add_option("--api-key", flags->api_key, "enables the HTTP API with this key (or env DUPLEX_API_KEY)");
  cmd->add_flag("--allow-anonymous", flags->allow_anonymous, "accept connections without a token");
  cmd->add_option("--web-root", flags->web_root, "directory served at / (default: <dir of this binary>/../share/duplex/web when it exists, "
                  "else the build tree's web/)");
  cmd->add_flag("--demo-tokens", flags->demo_tokens, "GET /demo/token?user=NAME mints tokens (development only)");
  cmd->add_option("--node", flags->node, "node name (default hostname-pid)");
  cmd->add_option("--log-level", flags->log_level, "trace, debug, info, warn, error");
  cmd->add_option("--log-format", flags->log_format, "text or json");
  cmd->add_option("--shutdown-deadline", flags->shutdown_deadline, "seconds to wait for clients to close on SIGTERM");
  return [flags] { return serve(*flags); };
}

}  // namespace duplex::cli
