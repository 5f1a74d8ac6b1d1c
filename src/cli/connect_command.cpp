// duplex connect: an interactive client, like wscat/websocat. stdin lines
// become messages; received messages go to stdout. With --hub it speaks the
// hub protocol (duplex.v1) through client::HubClient instead: subscribe,
// publish, presence and history from the terminal.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "commands.hpp"
#include "duplex/client/hub_client.hpp"
#include "duplex/duplex.hpp"
#include "support/json.hpp"

namespace duplex::cli {

namespace {
struct ConnectArgs {
  std::string url;
  std::vector<std::string> headers;
  std::vector<std::string> subprotocols;
  bool binary = false;
  std::string ca_file;
  bool insecure = false;
  bool deflate = false;
  std::string origin;
  std::size_t max_message_size = 16u << 20;
  // --hub mode
  std::string hub_url;
  std::string token;
  std::vector<std::string> subscribe;
  std::string publish;
  std::string presence;
  std::string history;
};

// ---- --hub ----------------------------------------------------------------------

volatile std::sig_atomic_t interrupted = 0;
void on_interrupt(int) { interrupted = 1; }

void print_line(const std::string& line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

std::string publication_line(std::string_view channel, std::uint64_t offset, std::string_view data) {
  std::string line = "{\"channel\":";
  hub::append_json_string(line, channel);
  line += ",\"offset\":";
  line += std::to_string(offset);
  line += ",\"data\":";
  line += data;
  line += '}';
  return line;
}

void print_error(const char* what, const client::Error& error) {
  std::fprintf(stderr, "%s: error %d: %s\n", what, error.code, error.message.c_str());
}

// Subscribes, queries and publishes as asked; runs until interrupted, until
// the server refuses us for good, or (with nothing to follow) until every
// answer and acknowledgement is in.
// Long on purpose: the whole `duplex connect` session in the order the user
// sees it.
int run_hub(const ConnectArgs& args, const net::ClientOptions& net_options) {
  client::HubClientOptions options;
  options.url = args.hub_url;
  options.token = args.token;
  options.tls = net_options.tls;
  options.headers = net_options.headers;
  options.origin = net_options.origin;
  options.max_message_size = args.max_message_size;

  std::mutex mutex;
  std::condition_variable wake;
  int outstanding = 0;     // presence/history answers and publish acknowledgements not yet in
  bool input_done = args.publish.empty();
  bool closed_for_good = false;
  bool ever_connected = false;  // until then a lost connection means "cannot connect": exit 2
  int status = 0;
  auto finish_one = [&] {
    std::lock_guard lock(mutex);
    --outstanding;
    wake.notify_all();
  };

  client::HubClient hub(options);
  client::StateHandlers state;
  state.on_connecting = [] { std::fprintf(stderr, "connecting\n"); };
  state.on_connected = [&](const client::ConnectedEvent& e) {
    std::fprintf(stderr, "connected (client %s, user \"%s\", node %s)\n", e.client.c_str(), e.user.c_str(),
                 e.node.c_str());
    std::lock_guard lock(mutex);
    ever_connected = true;
  };
  state.on_disconnected = [&](const client::DisconnectedEvent& e) {
    {
      // The first attempt failed (no server, refused handshake or token):
      // say so and exit 2 rather than retry for ever against a wrong URL.
      // Once connected, a lost connection is retried with backoff.
      std::lock_guard lock(mutex);
      if (!ever_connected) {
        std::fprintf(stderr, "duplex connect: cannot connect to %s: %u %s\n", args.hub_url.c_str(), e.code,
                     e.reason.c_str());
        closed_for_good = true;
        status = 2;
        wake.notify_all();
        return;
      }
    }
    if (e.will_reconnect) {
      std::fprintf(stderr, "disconnected: %u %s; reconnecting in %lld ms\n", e.code, e.reason.c_str(),
                   static_cast<long long>(e.reconnect_delay.count()));
      return;
    }
    std::fprintf(stderr, "closed: %u %s\n", e.code, e.reason.c_str());
    std::lock_guard lock(mutex);
    closed_for_good = true;
    if (e.code != 1000) status = 1;
    wake.notify_all();
  };
  state.on_error = [](const client::Error& e) { print_error("hub", e); };
  hub.set_state_handlers(state);

  auto subscription = [](bool print_messages) {
    client::SubscriptionHandlers h;
    if (print_messages)
      h.on_message = [](const client::Message& m) { print_line(publication_line(m.channel, m.offset, m.data)); };
    h.on_subscribed = [](const client::SubscribedEvent& e) {
      std::fprintf(stderr, "subscribed to %s at %s:%llu%s\n", e.channel.c_str(), e.position.epoch.c_str(),
                   static_cast<unsigned long long>(e.position.offset),
                   e.recovering ? (e.recovered ? " (recovered)" : " (not recovered)") : "");
    };
    h.on_gap = [](const client::GapEvent& e) {
      std::fprintf(stderr, "gap on %s: messages after %s:%llu are lost (reload state); resumed at %s:%llu\n",
                   e.channel.c_str(), e.last_seen.epoch.c_str(), static_cast<unsigned long long>(e.last_seen.offset),
                   e.resumed_at.epoch.c_str(), static_cast<unsigned long long>(e.resumed_at.offset));
    };
    h.on_error = [](const std::string& channel, const client::Error& e, bool will_retry) {
      std::fprintf(stderr, "subscribe %s: error %d: %s%s\n", channel.c_str(), e.code, e.message.c_str(),
                   will_retry ? " (retrying)" : "");
    };
    h.on_unsubscribed = [](const client::UnsubscribedEvent& e) {
      std::fprintf(stderr, "unsubscribed from %s: %d %s\n", e.channel.c_str(), e.code, e.reason.c_str());
    };
    return h;
  };
  std::vector<std::string> subscribed;
  auto ensure_subscribed = [&](const std::string& channel, bool print_messages) -> bool {
    for (const auto& s : subscribed)
      if (s == channel) return true;
    if (auto error = hub.subscribe(channel, subscription(print_messages))) {
      print_error(("subscribe " + channel).c_str(), *error);
      return false;
    }
    subscribed.push_back(channel);
    return true;
  };
  for (const auto& channel : args.subscribe)
    if (!ensure_subscribed(channel, true)) return 2;

  // presence and history need a subscription to the channel.
  if (!args.presence.empty()) {
    if (!ensure_subscribed(args.presence, false)) return 2;
    ++outstanding;
    hub.presence(args.presence, [&, channel = args.presence](const client::Outcome<client::PresenceResult>& o) {
      if (!o.ok()) {
        print_error(("presence " + channel).c_str(), *o.error);
      } else {
        std::string line = "{\"presence\":";
        hub::append_json_string(line, channel);
        line += ",\"clients\":[";
        for (std::size_t i = 0; i < o.value.clients.size(); ++i) {
          const auto& c = o.value.clients[i];
          if (i) line += ',';
          line += "{\"client\":";
          hub::append_json_string(line, c.client);
          line += ",\"user\":";
          hub::append_json_string(line, c.user);
          if (!c.info.empty()) {
            line += ",\"info\":";
            line += c.info;
          }
          line += '}';
        }
        line += "]}";
        print_line(line);
      }
      finish_one();
    });
  }
  if (!args.history.empty()) {
    if (!ensure_subscribed(args.history, false)) return 2;
    ++outstanding;
    hub.history(args.history, {}, [&, channel = args.history](const client::Outcome<client::HistoryResult>& o) {
      if (!o.ok()) print_error(("history " + channel).c_str(), *o.error);
      else
        for (const auto& p : o.value.publications) print_line(publication_line(channel, p.offset, p.data));
      finish_one();
    });
  }
  if (!args.publish.empty()) {
    if (auto error = client::HubSession::validate_channel(args.publish)) {
      print_error("publish", *error);
      return 2;
    }
  }

  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  hub.connect();

  if (!args.publish.empty()) {
    // stdin is read on its own thread so that a signal or a final close can
    // end the command while a read blocks.
    std::thread([&, channel = args.publish] {
      std::string line;
      while (std::getline(std::cin, line)) {
        std::string data = hub::is_valid_json(line) ? line : hub::json_string(line);
        {
          std::lock_guard lock(mutex);
          ++outstanding;
        }
        auto error = hub.publish(channel, std::move(data), [&](const client::Outcome<client::PublishResult>& o) {
          if (!o.ok()) print_error("publish", *o.error);
          finish_one();
        });
        if (error) {
          print_error("publish", *error);
          finish_one();
        }
      }
      std::lock_guard lock(mutex);
      input_done = true;
      wake.notify_all();
    }).detach();
  }

  // With --publish, the end of stdin ends the command (once every publish is
  // acknowledged), --subscribe or not, as in plain WebSocket mode. Without it,
  // subscriptions (and a bare connection) are followed until interrupted.
  const bool follow = args.publish.empty() && (!args.subscribe.empty() || (args.presence.empty() && args.history.empty()));
  std::unique_lock lock(mutex);
  while (!interrupted && !closed_for_good && (follow || !input_done || outstanding > 0))
    wake.wait_for(lock, std::chrono::milliseconds(100));
  const int result = interrupted ? 0 : status;
  lock.unlock();
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(result);  // the detached stdin reader may still be blocked in read()
}

}  // namespace

// Long on purpose: every option of `duplex connect` with its help text, in
// --help's order.
std::function<int()> add_connect_command(CLI::App& app) {
  auto args = std::make_shared<ConnectArgs>();
  CLI::App* cmd = app.add_subcommand(
      "connect",
      "Connect to a WebSocket server: stdin lines are sent, messages printed.\n"
      "With --hub URL, talk to a duplex hub (protocol duplex.v1) instead: every message of the\n"
      "--subscribe'd channels is printed on stdout as one JSON line {\"channel\",\"offset\",\"data\"};\n"
      "with --publish CH each stdin line is published to CH (a line that is not JSON is sent as a\n"
      "JSON string); --presence and --history print their answer as JSON lines. Connection state\n"
      "goes to stderr. Once connected, reconnects with backoff and recovers missed messages by itself.\n"
      "Ends: with --publish, when stdin ends and every publish is acknowledged (also with --subscribe);\n"
      "otherwise --subscribe follows until SIGINT/SIGTERM, and --presence/--history end after their answer.\n"
      "Exit status: 0 (done or interrupted), 1 (closed by the server for good), 2 (the first connection\n"
      "failed: no server, handshake or token refused; bad arguments).\n"
      "  duplex connect --hub ws://127.0.0.1:8080/connection/websocket --token $T --subscribe chat:general\n"
      "  echo '{\"text\":\"hi\"}' | duplex connect --hub ws://127.0.0.1:8080/connection/websocket --token $T --publish chat:general");
  cmd->add_option("url", args->url, "ws:// or wss:// URL (plain WebSocket mode)");
  auto* hub_option = cmd->add_option("--hub", args->hub_url, "ws:// or wss:// URL of a duplex hub: use the hub protocol");
  cmd->add_option("--token", args->token, "Hub: JWT to authenticate with (omit for anonymous)")->needs(hub_option);
  cmd->add_option("--subscribe", args->subscribe, "Hub: channel to subscribe to and print (repeatable)")
      ->needs(hub_option);
  cmd->add_option("--publish", args->publish, "Hub: publish each stdin line to this channel")->needs(hub_option);
  cmd->add_option("--presence", args->presence, "Hub: print who is subscribed to this channel")->needs(hub_option);
  cmd->add_option("--history", args->history, "Hub: print this channel's retained messages")->needs(hub_option);
  cmd->add_option("-H,--header", args->headers, "Extra request header \"Name: value\" (repeatable)");
  cmd->add_option("--subprotocol", args->subprotocols, "Subprotocol to offer (repeatable)");
  cmd->add_flag("--binary", args->binary, "Send lines as binary messages");
  cmd->add_option("--ca-file", args->ca_file, "PEM CA bundle to verify the server with (wss://)");
  cmd->add_flag("--insecure", args->insecure, "Do not verify the server certificate (testing only)");
  cmd->add_flag("--deflate", args->deflate, "Offer permessage-deflate");
  cmd->add_option("--origin", args->origin, "Origin header to send");
  cmd->add_option("--max-message-size", args->max_message_size, "Largest message accepted, in bytes")
      ->capture_default_str();
  return [args]() -> int {
    if (args->url.empty() == args->hub_url.empty()) {
      std::fprintf(stderr, "duplex connect: give either a URL or --hub URL\n");
      return 2;
    }
    net::ClientOptions options;
    for (const auto& h : args->headers) {
      const auto colon = h.find(':');
      if (colon == std::string::npos || colon == 0) {
        std::fprintf(stderr, "duplex connect: header must look like \"Name: value\", got \"%s\"\n", h.c_str());
        return 2;
      }
      std::string value = h.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.erase(0, 1);
      options.headers.push_back({h.substr(0, colon), value});
    }
    options.subprotocols = args->subprotocols;
    options.tls.ca_file = args->ca_file;
    options.tls.verify_peer = !args->insecure;
    options.deflate = args->deflate;
    options.origin = args->origin;
    options.websocket.max_frame_size = args->max_message_size;
    options.websocket.max_message_size = args->max_message_size;
    if (!args->hub_url.empty()) {
      if (args->binary || args->deflate || !args->subprotocols.empty()) {
        std::fprintf(stderr, "duplex connect: --binary, --deflate and --subprotocol do not apply to --hub\n");
        return 2;
      }
      return run_hub(*args, options);
    }

    net::EventLoop loop;
    int status = 1;
    std::atomic<bool> opened{false};
    std::weak_ptr<net::Connection> weak;
    const auto kind = args->binary ? protocol::Opcode::binary : protocol::Opcode::text;
    std::thread input;

    net::Handlers handlers;
    handlers.on_open = [&](net::Connection& c) {
      opened = true;
      if (!c.subprotocol().empty())
        std::fprintf(stderr, "connected (subprotocol %.*s)\n", static_cast<int>(c.subprotocol().size()),
                     c.subprotocol().data());
      else std::fprintf(stderr, "connected\n");
      // stdin is read on its own thread; each line is posted to the loop.
      input = std::thread([&loop, w = c.weak_from_this(), kind] {
        std::string line;
        while (std::getline(std::cin, line)) net::Connection::post_send(w, line, kind);
        loop.post([w] {
          if (auto conn = w.lock()) conn->close(protocol::close_code::normal, "");
        });
      });
    };
    handlers.on_message = [](net::Connection&, protocol::Opcode, std::string_view payload) {
      std::fwrite(payload.data(), 1, payload.size(), stdout);
      std::fputc('\n', stdout);
      std::fflush(stdout);
    };
    handlers.on_close = [&](net::Connection&, std::uint16_t code, std::string_view reason) {
      std::fprintf(stderr, "closed: %u %.*s\n", code, static_cast<int>(reason.size()), reason.data());
      status = (code == protocol::close_code::normal || code == protocol::close_code::no_status) ? 0 : 1;
      loop.stop();
    };
    handlers.on_error = [&](std::string_view error) {
      std::fprintf(stderr, "duplex connect: %.*s\n", static_cast<int>(error.size()), error.data());
      status = 2;
      loop.stop();
    };
    auto connection = net::connect(loop, args->url, options, handlers);
    weak = connection;
    connection.reset();
    loop.run();
    if (input.joinable()) {
      // The server may close while we still wait for stdin: don't block on it.
      input.detach();
    }
    std::fflush(stdout);
    std::_Exit(status);  // the detached stdin reader may still be blocked in read()
  };
}

}  // namespace duplex::cli
