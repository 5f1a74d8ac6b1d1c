// Drives the Autobahn fuzzingserver with our client: fetch the case count,
// run every case (echo each message back), then ask for the report.
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "duplex/duplex.hpp"

using namespace duplex;

namespace {
struct Args {
  std::string url = "ws://127.0.0.1:9001";
  std::string agent = "duplex";
  bool deflate = false;
  int only_case = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "--url" && i + 1 < argc) a.url = argv[++i];
    else if (s == "--agent" && i + 1 < argc) a.agent = argv[++i];
    else if (s == "--deflate") a.deflate = true;
    else if (s == "--case" && i + 1 < argc) a.only_case = std::atoi(argv[++i]);
    else if (s == "--help" || s == "-h") {
      std::printf("usage: autobahn_client [--url ws://HOST:PORT] [--agent NAME] [--deflate] [--case N]\n");
      std::exit(0);
    } else {
      std::fprintf(stderr, "autobahn_client: unknown argument %s\n", s.c_str());
      std::exit(2);
    }
  }
  while (!a.url.empty() && a.url.back() == '/') a.url.pop_back();
  return a;
}
}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  net::EventLoop loop;
  std::fprintf(stderr, "io: %s\n", net::to_string(loop.io()));  // which backend the reports are of
  net::ClientOptions options;
  options.websocket.max_frame_size = 64u << 20;
  options.websocket.max_message_size = 64u << 20;
  options.max_send_buffer = 256u << 20;
  options.timeouts.ping_interval = net::Millis{0};
  options.timeouts.handshake = net::Millis{20'000};
  options.timeouts.close = net::Millis{3'000};
  if (args.deflate) {
    options.deflate = true;
    options.deflate_offer.client_max_window_bits = true;
  }

  int case_count = 0;
  int current = 0;
  int failures = 0;
  std::function<void()> next;

  auto run = [&](const std::string& path, net::Handlers h) {
    h.on_error = [&](std::string_view error) {
      std::fprintf(stderr, "autobahn_client: %s: %.*s\n", path.c_str(), static_cast<int>(error.size()), error.data());
      ++failures;
      loop.post([&] { next(); });
    };
    auto done = h.on_close;
    h.on_close = [&, done](net::Connection& c, std::uint16_t code, std::string_view reason) {
      if (done) done(c, code, reason);
      loop.post([&] { next(); });
    };
    net::connect(loop, args.url + path, options, std::move(h));
  };

  enum class Stage { count, cases, report, done } stage = Stage::count;
  next = [&] {
    if (stage == Stage::count) {
      if (case_count <= 0) {
        std::fprintf(stderr, "autobahn_client: no case count from %s\n", args.url.c_str());
        loop.stop();
        return;
      }
      stage = Stage::cases;
      current = args.only_case ? args.only_case - 1 : 0;
    }
    if (stage == Stage::cases) {
      ++current;
      if (current > case_count || (args.only_case && current > args.only_case)) {
        stage = Stage::report;
        net::Handlers h;
        run("/updateReports?agent=" + args.agent, h);
        return;
      }
      std::fprintf(stderr, "\rcase %d/%d", current, case_count);
      net::Handlers h;
      h.on_message = [](net::Connection& c, protocol::Opcode kind, std::string_view payload) { c.send(payload, kind); };
      run("/runCase?case=" + std::to_string(current) + "&agent=" + args.agent, h);
      return;
    }
    if (stage == Stage::report) {
      stage = Stage::done;
      std::fprintf(stderr, "\nautobahn_client: %d cases run\n", case_count);
      loop.stop();
    }
  };

  net::Handlers count;
  count.on_message = [&](net::Connection&, protocol::Opcode, std::string_view payload) {
    case_count = std::atoi(std::string(payload).c_str());
  };
  run("/getCaseCount", count);
  loop.run();
  return failures == 0 && case_count > 0 ? 0 : 1;
}
