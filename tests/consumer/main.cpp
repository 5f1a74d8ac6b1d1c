// Built against the installed library: computes the RFC 6455 sample accept
// key and round-trips a frame through the protocol core.
#include <cstdio>
#include <duplex/duplex.hpp>
#include <duplex/protocol/handshake.hpp>

struct Collect : duplex::protocol::EventHandler {
  std::string got;
  void on_message(duplex::protocol::Opcode, std::string_view payload) override { got = payload; }
};

int main() {
  const bool key_ok = duplex::protocol::compute_accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
  duplex::protocol::Limits limits;
  duplex::protocol::WebSocket client(duplex::protocol::Role::client, &limits);
  duplex::protocol::WebSocket server(duplex::protocol::Role::server, &limits);
  std::string wire, replies;
  client.send_text(wire, "consumer");
  Collect collect;
  server.receive(reinterpret_cast<std::uint8_t*>(wire.data()), wire.size(), collect, replies);
  const bool ok = key_ok && collect.got == "consumer";
  std::printf("consumer: %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
