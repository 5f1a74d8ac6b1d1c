// Connects to a WebSocket server, sends "hello", prints the reply, closes.
#include <cstdio>
#include <duplex/duplex.hpp>

int main(int argc, char** argv) {
  const char* url = argc > 1 ? argv[1] : "ws://127.0.0.1:9001/";
  duplex::net::EventLoop loop;
  int status = 1;

  duplex::net::Handlers handlers;
  handlers.on_open = [](duplex::net::Connection& c) { c.send_text("hello"); };
  handlers.on_message = [&](duplex::net::Connection& c, duplex::protocol::Opcode, std::string_view message) {
    std::printf("%.*s\n", static_cast<int>(message.size()), message.data());
    status = message == "hello" ? 0 : 1;
    c.close();
  };
  handlers.on_close = [&](duplex::net::Connection&, std::uint16_t, std::string_view) { loop.stop(); };
  handlers.on_error = [&](std::string_view error) {
    std::fprintf(stderr, "error: %.*s\n", static_cast<int>(error.size()), error.data());
    loop.stop();
  };

  duplex::net::connect(loop, url, {}, handlers);
  loop.run();
  return status;
}
