// A WebSocket echo server on ws://127.0.0.1:9001 (port from argv[1]).
#include <cstdio>
#include <cstdlib>
#include <duplex/duplex.hpp>

int main(int argc, char** argv) {
  duplex::net::ServerOptions options;
  options.port = static_cast<std::uint16_t>(argc > 1 ? std::atoi(argv[1]) : 9001);

  duplex::net::Handlers handlers;
  handlers.on_message = [](duplex::net::Connection& connection, duplex::protocol::Opcode kind,
                           std::string_view message) { connection.send(message, kind); };

  duplex::net::Server server(options, handlers);
  server.listen();
  std::printf("listening on ws://127.0.0.1:%u\n", server.port());
  std::fflush(stdout);
  server.run();
}
