// Built against the installed library with duplex::client only: drives the
// hub client's sans-I/O session to its first frame (authenticate), and
// constructs the socket-driving HubClient on a loop without connecting.
#include <cstdio>
#include <string>

#include "duplex/client/hub_client.hpp"
#include "duplex/client/hub_session.hpp"
#include "duplex/net/event_loop.hpp"

int main() {
  duplex::client::SessionOptions options;
  options.token = "t";
  duplex::client::HubSession session(options);
  const auto now = duplex::client::Clock::now();
  session.on_transport_connecting(now);
  session.on_transport_open(now);
  const auto frames = session.take_outgoing();
  const bool session_ok = frames.size() == 1 && frames[0].find("\"authenticate\"") != std::string::npos;

  duplex::net::EventLoop loop;
  duplex::client::HubClientOptions client_options;
  client_options.url = "ws://127.0.0.1:1/connection/websocket";
  duplex::client::HubClient client(loop, client_options);
  const bool client_ok = client.state() == duplex::client::ConnectionState::disconnected;

  const bool ok = session_ok && client_ok;
  std::printf("client consumer: %s\n", ok ? "ok" : "FAILED");
  if (!session_ok) std::printf("first frame: %s\n", frames.empty() ? "(none)" : frames[0].c_str());
  return ok ? 0 : 1;
}
