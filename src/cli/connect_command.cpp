// duplex connect: an interactive client, like wscat/websocat. stdin lines
// become messages; received messages go to stdout.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "commands.hpp"
#include "duplex/duplex.hpp"

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
};
}  // namespace

std::function<int()> add_connect_command(CLI::App& app) {
  auto args = std::make_shared<ConnectArgs>();
  CLI::App* cmd = app.add_subcommand("connect", "Connect to a WebSocket server: stdin lines are sent, messages printed");
  cmd->add_option("url", args->url, "ws:// or wss:// URL")->required();
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
