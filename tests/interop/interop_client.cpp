// Our client against a peer's echo server (Python websockets, Node ws):
// every message kind and size, fragmentation, ping/pong, close codes both ways.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "duplex/duplex.hpp"

using namespace duplex;

namespace {
struct Step {
  std::string name;
  protocol::Opcode kind = protocol::Opcode::text;
  std::string payload;
  std::vector<std::string> fragments;  // sent as a fragmented message when non-empty
  bool ping = false;
};

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 31 + 7) & 0xFF);
  return s;
}
}  // namespace

int main(int argc, char** argv) {
  std::string url;
  net::ClientOptions options;
  bool server_close = true;
  bool quick = false;
  options.deflate_offer.client_max_window_bits = true;
  auto window_bits = [&](const char* flag, const char* v) -> std::uint8_t {
    char* end = nullptr;
    long n = std::strtol(v, &end, 10);
    if (end == v || *end != '\0' || n < 8 || n > 15) {
      std::fprintf(stderr, "interop_client: %s needs a value 8..15, got '%s'\n", flag, v);
      std::exit(2);
    }
    return static_cast<std::uint8_t>(n);
  };
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "--ca-file" && i + 1 < argc) options.tls.ca_file = argv[++i];
    else if (s == "--deflate") options.deflate = true;
    else if (s == "--no-server-close") server_close = false;
    else if (s == "--quick") quick = true;
    else if (s == "--no-context-takeover") {
      options.deflate_offer.server_no_context_takeover = true;
      options.deflate_offer.client_no_context_takeover = true;
    } else if (s == "--server-window-bits" && i + 1 < argc) {
      options.deflate_offer.server_max_window_bits = window_bits("--server-window-bits", argv[++i]);
    } else if (s == "--client-window-bits" && i + 1 < argc) {
      options.deflate_offer.client_max_window_bits_value = window_bits("--client-window-bits", argv[++i]);
    } else if (s == "--help") {
      std::printf(
          "usage: interop_client URL [--ca-file F] [--deflate] [--no-server-close] [--quick]\n"
          "         [--no-context-takeover] [--server-window-bits N] [--client-window-bits N]\n"
          "  --quick                skip the 16 MiB and 70000-byte messages\n"
          "  --no-context-takeover  offer server_ and client_no_context_takeover\n"
          "  --server-window-bits N offer server_max_window_bits=N (8..15)\n"
          "  --client-window-bits N offer client_max_window_bits=N (8..15)\n");
      return 0;
    } else if (!s.empty() && s[0] == '-') {
      std::fprintf(stderr, "interop_client: unknown or incomplete option %s\n", s.c_str());
      return 2;
    } else url = s;
  }
  if (url.empty()) {
    std::fprintf(stderr, "interop_client: URL required\n");
    return 2;
  }
  options.websocket.max_frame_size = 32u << 20;
  options.websocket.max_message_size = 32u << 20;
  options.max_send_buffer = 64u << 20;

  std::vector<Step> steps;
  steps.push_back({"text", protocol::Opcode::text, "hello, world", {}, false});
  steps.push_back({"utf8 text", protocol::Opcode::text, "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80", {}, false});
  steps.push_back({"binary", protocol::Opcode::binary, std::string("\x00\x01\x02\xFF", 4), {}, false});
  steps.push_back({"empty text", protocol::Opcode::text, "", {}, false});
  steps.push_back({"empty binary", protocol::Opcode::binary, "", {}, false});
  for (std::size_t n : {125u, 126u, 65535u, 65536u, 16u << 20}) {
    if (quick && n > 65536u) continue;  // --quick: no 16 MiB message
    steps.push_back({"binary " + std::to_string(n) + " B", protocol::Opcode::binary, pattern(n), {}, false});
  }
  if (!quick) steps.push_back({"text 70000 B", protocol::Opcode::text, std::string(70000, 'x'), {}, false});
  steps.push_back({"fragmented text", protocol::Opcode::text, "caf\xC3\xA9 \xE2\x82\xAC!",
                   {"caf\xC3", "\xA9 \xE2", "\x82", "\xAC!"}, false});
  steps.push_back({"fragmented binary", protocol::Opcode::binary, pattern(3000),
                   {pattern(3000).substr(0, 1000), pattern(3000).substr(1000, 1000), pattern(3000).substr(2000)},
                   false});
  steps.push_back({"ping/pong", protocol::Opcode::text, "ping-payload", {}, true});

  net::EventLoop loop;
  std::size_t index = 0;
  int failed = 0;
  bool closing = false;
  bool client_close_done = false;

  std::function<void(net::Connection&)> send_step = [&](net::Connection& c) {
    const Step& s = steps[index];
    if (s.ping) {
      c.ping(s.payload);
    } else if (!s.fragments.empty()) {
      for (std::size_t i = 0; i < s.fragments.size(); ++i)
        c.send_fragment(s.fragments[i], i == 0 ? s.kind : protocol::Opcode::continuation, i + 1 == s.fragments.size());
    } else {
      c.send(s.payload, s.kind);
    }
  };
  auto advance = [&](net::Connection& c) {
    std::printf("ok   %s\n", steps[index].name.c_str());
    ++index;
    if (index < steps.size()) {
      send_step(c);
    } else {
      closing = true;
      c.close(4001, "bye");
    }
  };

  net::Handlers h;
  h.on_open = [&](net::Connection& c) {
    std::printf("ok   connected (compression %s)\n", c.compression_enabled() ? "on" : "off");
    send_step(c);
  };
  h.on_message = [&](net::Connection& c, protocol::Opcode kind, std::string_view payload) {
    if (closing || index >= steps.size()) return;
    const Step& s = steps[index];
    if (s.ping || kind != s.kind || payload != s.payload) {
      std::printf("FAIL %s: got %s message of %zu bytes\n", s.name.c_str(),
                  kind == protocol::Opcode::text ? "text" : "binary", payload.size());
      ++failed;
      c.close(1000);
      return;
    }
    advance(c);
  };
  h.on_pong = [&](net::Connection& c, std::string_view payload) {
    if (index < steps.size() && steps[index].ping) {
      if (payload != steps[index].payload) {
        std::printf("FAIL ping/pong: pong payload differs\n");
        ++failed;
      }
      advance(c);
    }
  };
  h.on_close = [&](net::Connection&, std::uint16_t code, std::string_view reason) {
    if (code == 4001) {
      std::printf("ok   close 4001 echoed\n");
      client_close_done = true;
    } else {
      std::printf("FAIL close: got %u %.*s, expected 4001\n", code, static_cast<int>(reason.size()), reason.data());
      ++failed;
    }
    if (!server_close || failed) {
      loop.stop();
      return;
    }
    // Second connection: the server closes first with 4002.
    net::Handlers h2;
    h2.on_open = [](net::Connection& c) { c.send_text("close-me 4002"); };
    h2.on_close = [&](net::Connection&, std::uint16_t code2, std::string_view reason2) {
      if (code2 == 4002 && reason2 == "server bye") {
        std::printf("ok   server-initiated close 4002\n");
      } else {
        std::printf("FAIL server close: got %u %.*s\n", code2, static_cast<int>(reason2.size()), reason2.data());
        ++failed;
      }
      loop.stop();
    };
    h2.on_error = [&](std::string_view e) {
      std::printf("FAIL second connection: %.*s\n", static_cast<int>(e.size()), e.data());
      ++failed;
      loop.stop();
    };
    net::connect(loop, url, options, h2);
  };
  h.on_error = [&](std::string_view e) {
    std::printf("FAIL connect: %.*s\n", static_cast<int>(e.size()), e.data());
    ++failed;
    loop.stop();
  };
  net::connect(loop, url, options, h);
  loop.run();
  if (!client_close_done && !failed) {
    std::printf("FAIL did not finish\n");
    ++failed;
  }
  std::printf("%s\n", failed ? "interop_client: FAILED" : "interop_client: all passed");
  return failed ? 1 : 0;
}
