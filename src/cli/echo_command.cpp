// duplex echo: a WebSocket echo server (also the Autobahn test target).
#include <asio/signal_set.hpp>
#include <cstdio>
#include <memory>

#include "commands.hpp"
#include "duplex/duplex.hpp"

namespace duplex::cli {

namespace {
struct EchoArgs {
  std::string listen = "127.0.0.1:8080";
  unsigned threads = 0;
  std::string tls_cert, tls_key;
  std::string deflate = "off";
  std::size_t max_message_size = 16u << 20;
  std::vector<std::string> subprotocols;
  unsigned ping_interval_s = 30;
};
}  // namespace

std::function<int()> add_echo_command(CLI::App& app) {
  auto args = std::make_shared<EchoArgs>();
  CLI::App* cmd = app.add_subcommand("echo", "Run a WebSocket echo server (text back as text, binary as binary)");
  cmd->add_option("--listen", args->listen, "Address and port to listen on (port 0 picks a free one)")
      ->capture_default_str();
  cmd->add_option("--threads", args->threads, "Event loops, one per thread (0 = one per core)")->capture_default_str();
  cmd->add_option("--tls-cert", args->tls_cert, "PEM certificate chain: serve wss://");
  cmd->add_option("--tls-key", args->tls_key, "PEM private key for --tls-cert");
  cmd->add_option("--deflate", args->deflate,
                  "permessage-deflate: off, shared (compress once, no context takeover) or dedicated "
                  "(a compressor per connection); --deflate alone means dedicated; omitted means off")
      ->expected(0, 1)
      ->default_str("dedicated")
      ->check(CLI::IsMember({"off", "shared", "dedicated", ""}));
  cmd->add_option("--max-message-size", args->max_message_size, "Largest message (and frame) accepted, in bytes")
      ->capture_default_str();
  cmd->add_option("--subprotocol", args->subprotocols, "A subprotocol to accept (repeatable)");
  cmd->add_option("--ping-interval", args->ping_interval_s, "Ping connections silent this many seconds (0 = never)")
      ->capture_default_str();
  return [args, cmd]() -> int {
    net::ServerOptions options;
    std::string error;
    if (!split_host_port(args->listen, options.host, options.port, error)) {
      std::fprintf(stderr, "duplex echo: %s\n", error.c_str());
      return 2;
    }
    if (args->tls_cert.empty() != args->tls_key.empty()) {
      std::fprintf(stderr, "duplex echo: --tls-cert and --tls-key go together\n");
      return 2;
    }
    options.threads = args->threads;
    options.tls.cert_file = args->tls_cert;
    options.tls.key_file = args->tls_key;
    options.websocket.max_frame_size = args->max_message_size;
    options.websocket.max_message_size = args->max_message_size;
    options.max_send_buffer = std::max<std::size_t>(options.max_send_buffer, 2 * args->max_message_size + 1024);
    options.subprotocols = args->subprotocols;
    options.timeouts.ping_interval = net::Millis{args->ping_interval_s * 1000};
    std::string mode = args->deflate.empty() ? "dedicated" : args->deflate;
    if (mode == "shared") options.deflate.mode = net::DeflateMode::shared;
    if (mode == "dedicated") options.deflate.mode = net::DeflateMode::dedicated;

    net::Handlers handlers;
    handlers.on_message = [](net::Connection& c, protocol::Opcode kind, std::string_view payload) {
      c.send(payload, kind);
    };
    net::Server server(options, handlers);
    server.listen();
    std::printf("listening on %s://%s:%u\n", options.tls.enabled() ? "wss" : "ws",
                options.host.find(':') != std::string::npos ? ("[" + options.host + "]").c_str() : options.host.c_str(),
                server.port());
    std::fflush(stdout);
    asio::signal_set signals(server.loops()[0]->io(), SIGINT, SIGTERM);
    signals.async_wait([&server](const asio::error_code& ec, int) {
      if (!ec) server.shutdown();
    });
    server.run();
    return 0;
  };
}

}  // namespace duplex::cli
