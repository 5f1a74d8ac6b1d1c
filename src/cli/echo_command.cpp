// duplex echo: a WebSocket echo server (also the Autobahn test target).
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <thread>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "commands.hpp"
#include "duplex/duplex.hpp"
#include "duplex/config/config_file.hpp"
#include "duplex/protocol/frame.hpp"

namespace duplex::cli {

namespace {

// The bounds of --max-send-buffer (those of the hub's server.max_send_buffer)
// and of --max-message-size (those of server.websocket.max_message_size).
constexpr std::uint64_t min_send_buffer = 1u << 10, max_send_buffer_bound = 1u << 30;
constexpr std::uint64_t min_message_size = protocol::max_control_payload, max_message_size_bound = 1u << 30;

// A size flag: plain bytes ("1048576") or with a binary unit ("64KiB",
// "1MiB", "1GiB"), within [min, max]. False with a message on error.
bool parse_size_flag(const char* flag, const std::string& text, std::uint64_t min, std::uint64_t max,
                     std::uint64_t& out, std::string& error) {
  std::optional<std::uint64_t> bytes;
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos)
    bytes = text.size() <= 18 ? std::optional<std::uint64_t>(std::stoull(text)) : std::nullopt;
  else
    bytes = hub::parse_size(text);
  if (!bytes) {
    error = std::string(flag) + " " + text + ": expected bytes, or a size such as 64KiB, 1MiB, 1GiB";
    return false;
  }
  if (*bytes < min || *bytes > max) {
    error = std::string(flag) + " " + text + ": must be between " + std::to_string(min) + " and " +
            std::to_string(max) + " bytes";
    return false;
  }
  out = *bytes;
  return true;
}

// What one connection may owe is --max-send-buffer, and an echo (or a
// broadcast copy) is queued whole: a message is echoed only if its frame
// fits in the buffer, with room left for the control frames the peer may be
// owed meanwhile (one pong, as owed pongs coalesce, and a close frame).
// Compressed frames of incompressible data are a little larger than the
// message (stored blocks), so the largest messages are sent uncompressed,
// which RFC 7692 allows for any message: every accepted message fits.
struct EchoBudget {
  static constexpr std::size_t reserved = protocol::max_frame_header_size + 2 * (2 + protocol::max_control_payload);
  std::size_t send_buffer = 1u << 20;
  // Largest message whose uncompressed frame fits.
  static std::size_t largest_message(std::size_t send_buffer) { return send_buffer - reserved; }
  // Up to this size a compressed frame fits whatever the data (the
  // expansion bound the protocol core allows compressed frames, n/64 + 1 KiB).
  std::size_t largest_compressible() const {
    const std::size_t room = largest_message(send_buffer);
    return room <= 1024 ? 0 : (room - 1024) / 65 * 64;
  }
  protocol::Compress compress_for(std::size_t size) const {
    return size <= largest_compressible() ? protocol::Compress::automatic : protocol::Compress::no;
  }
};

struct EchoArgs {
  std::string listen = "127.0.0.1:8080";
  unsigned threads = 0;
  std::string tls_cert, tls_key;
  std::string deflate = "off";
  std::string io = "auto";
  std::string max_send_buffer = std::to_string(net::ServerOptions{}.max_send_buffer);  // the library's 1 MiB
  std::string max_message_size;  // empty: the largest the send buffer can echo
  unsigned ring_buffers = net::RingBuffers{}.count;
  std::string ring_buffer_size = std::to_string(net::RingBuffers{}.size);
  std::vector<std::string> subprotocols;
  unsigned ping_interval_s = 30;
  bool broadcast = false;
  bool reuse_port = false;
  unsigned window_bits = 15;
  int mem_level = 8;
  int level = 6;
  std::size_t deflate_min_size = 64;
};

// --io-uring-buffers and --io-uring-buffer-size, within RingBuffers' bounds.
bool parse_ring_flags(const EchoArgs& args, net::RingBuffers& out, std::string& error) {
  out.count = args.ring_buffers;
  if (!out.count_valid()) {
    error = "--io-uring-buffers " + std::to_string(args.ring_buffers) + ": must be " + net::RingBuffers::count_rule();
    return false;
  }
  std::uint64_t size = 0;
  if (!parse_size_flag("--io-uring-buffer-size", args.ring_buffer_size, net::RingBuffers::min_size,
                       net::RingBuffers::max_size, size, error))
    return false;
  out.size = static_cast<std::size_t>(size);
  return true;
}

// --broadcast: a message received on path P goes to every connection on P.
// Each loop keeps its own subscriber lists (touched only by its thread); a
// message is encoded once and the same bytes are posted to the other loops.
class Broadcaster {
 public:
  void attach(net::Server& server, const protocol::DeflateTuning* tuning, EchoBudget budget) {
    budget_ = budget;
    loops_ = server.loops();
    rooms_.resize(loops_.size());
    pending_.resize(loops_.size());
    drain_posted_.assign(loops_.size(), 0);
    tuning_ = tuning;
  }
  // An open connection keeps no HTTP state, so each member remembers its
  // room (path) itself, in user_data.
  struct Member {
    std::string path;
    std::size_t index;
  };
  void join(net::Connection& c) {
    auto* m = new Member{std::string(c.target()), 0};
    auto& room = rooms_[index_of(c.loop())][m->path];
    m->index = room.size();
    c.user_data = m;
    room.push_back(&c);
  }
  void leave(net::Connection& c) {
    std::unique_ptr<Member> m(static_cast<Member*>(c.user_data));
    c.user_data = nullptr;
    if (!m) return;
    auto& rooms = rooms_[index_of(c.loop())];
    auto it = rooms.find(m->path);
    if (it == rooms.end()) return;
    auto& room = it->second;
    const std::size_t i = m->index;
    if (i >= room.size() || room[i] != &c) return;
    if (i + 1 < room.size()) {  // move the last member into the hole
      room[i] = room.back();
      static_cast<Member*>(room[i]->user_data)->index = i;
    }
    room.pop_back();
    if (room.empty()) rooms.erase(it);
  }
  void publish(net::Connection& from, protocol::Opcode kind, std::string_view payload) {
    const bool compressible = budget_.compress_for(payload.size()) == protocol::Compress::automatic;
    auto message = std::make_shared<const net::PreparedMessage>(kind, payload, compressible ? tuning_ : nullptr);
    const std::size_t here = index_of(from.loop());
    const std::string& path = static_cast<Member*>(from.user_data)->path;
    for (std::size_t i = 0; i < loops_.size(); ++i) {
      if (i == here) {
        enqueue(i, path, message);
      } else {
        loops_[i]->post([this, i, path, message] { enqueue(i, path, message); });
      }
    }
  }

 private:
  std::size_t index_of(const net::EventLoop& loop) const {
    for (std::size_t i = 0; i < loops_.size(); ++i)
      if (loops_[i] == &loop) return i;
    return 0;
  }
  // Messages for a room wait until the loop's next turn, then each member
  // gets all of them back to back: one write per member however many were
  // published meanwhile (a loop that falls behind catches up by batching,
  // as uWebSockets' topic tree does, instead of one send per message).
  using Batch = std::vector<std::shared_ptr<const net::PreparedMessage>>;
  void enqueue(std::size_t loop, const std::string& path, std::shared_ptr<const net::PreparedMessage> message) {
    pending_[loop][path].push_back(std::move(message));
    if (drain_posted_[loop]) return;
    drain_posted_[loop] = 1;
    loops_[loop]->post([this, loop] { drain(loop); });
  }
  void drain(std::size_t loop) {
    drain_posted_[loop] = 0;
    std::unordered_map<std::string, Batch> pending;
    pending.swap(pending_[loop]);
    for (const auto& [path, batch] : pending) {
      auto it = rooms_[loop].find(path);
      if (it == rooms_[loop].end()) continue;
      // Copy: a send may close a slow consumer, which leaves the room.
      std::vector<net::Connection*> targets = it->second;
      for (net::Connection* c : targets)
        for (const auto& message : batch) {
          if (budget_.compress_for(message->payload().size()) == protocol::Compress::automatic)
            c->send_prepared(*message);
          else
            c->send(message->payload(), message->kind(), protocol::Compress::no);  // see EchoBudget
        }
    }
  }
  std::vector<net::EventLoop*> loops_;
  std::vector<std::unordered_map<std::string, std::vector<net::Connection*>>> rooms_;
  std::vector<std::unordered_map<std::string, Batch>> pending_;  // per loop, by path
  std::vector<char> drain_posted_;                               // per loop
  const protocol::DeflateTuning* tuning_ = nullptr;
  EchoBudget budget_;
};
}  // namespace

// Long on purpose: every option of `duplex echo` with its help text, in
// --help's order.
std::function<int()> add_echo_command(CLI::App& app) {
  auto args = std::make_shared<EchoArgs>();
  CLI::App* cmd = app.add_subcommand("echo", "Run a WebSocket echo server (text back as text, binary as binary)");
  cmd->add_option("--listen", args->listen, "Address and port to listen on (port 0 picks a free one)")
      ->capture_default_str();
  cmd->add_option("--threads", args->threads, "Event loops, one per thread (0 = one per core)")->capture_default_str();
  cmd->add_option("--io", args->io,
                  "Event loop backend: auto (DUPLEX_IO decides; unset: io_uring where the kernel allows it, else "
                  "epoll), epoll or io_uring (an error where io_uring is unavailable)")
      ->check(CLI::IsMember({"auto", "epoll", "io_uring"}))
      ->capture_default_str();
  cmd->add_option("--io-uring-buffers", args->ring_buffers,
                  "io_uring: provided receive buffers per event loop, a power of two from 16 to 32768 (the hub's "
                  "server.io_uring_buffers)")
      ->capture_default_str();
  cmd->add_option("--io-uring-buffer-size", args->ring_buffer_size,
                  "io_uring: bytes per receive buffer, 1KiB..1MiB; a frame larger than one is assembled from "
                  "several (server.io_uring_buffer_size)")
      ->type_name("SIZE")
      ->capture_default_str();
  cmd->add_flag("--reuse-port", args->reuse_port,
                "Share the port with other processes that also pass --reuse-port (SO_REUSEPORT; the kernel "
                "spreads connections). Without it, a port in use is an error");
  cmd->add_option("--tls-cert", args->tls_cert, "PEM certificate chain: serve wss://");
  cmd->add_option("--tls-key", args->tls_key, "PEM private key for --tls-cert");
  // default_str is the value of a bare --deflate (expected 0..1), not the
  // default: option_text keeps CLI11 from showing it as "=dedicated".
  cmd->add_option("--deflate", args->deflate,
                  "permessage-deflate MODE: off (the default: --deflate omitted), shared (compress once, no "
                  "context takeover) or dedicated (a compressor per connection); --deflate without MODE means "
                  "dedicated")
      ->expected(0, 1)
      ->default_str("dedicated")
      ->option_text("[MODE:{off,shared,dedicated}]=off")
      ->check(CLI::IsMember({"off", "shared", "dedicated", ""}));
  cmd->add_option("--max-send-buffer", args->max_send_buffer,
                  "Bytes one connection may owe (queued, not yet taken by the kernel), 1KiB..1GiB; over it the "
                  "connection is closed with 1008 (a client that does not read its echoes). Bytes or KiB/MiB/GiB; "
                  "the default is the library's (1 MiB)")
      ->type_name("SIZE")
      ->capture_default_str();
  cmd->add_option("--max-message-size", args->max_message_size,
                  "Largest message (and frame) accepted, larger -> 1009. An echo is queued whole, so it must fit "
                  "in the send buffer: at most --max-send-buffer minus 268 B (a frame header, a pong and a close "
                  "frame), which is the default; raise --max-send-buffer to echo larger messages (17MiB for 16 MiB)")
      ->type_name("SIZE")
      ->default_str(std::to_string(EchoBudget::largest_message(net::ServerOptions{}.max_send_buffer)) +
                    " (--max-send-buffer - 268)");
  cmd->add_option("--subprotocol", args->subprotocols, "A subprotocol to accept (repeatable)");
  cmd->add_option("--ping-interval", args->ping_interval_s, "Ping connections silent this many seconds (0 = never)")
      ->capture_default_str();
  cmd->add_option("--deflate-window-bits", args->window_bits, "Compressor window, 8..15 (dedicated mode)")
      ->check(CLI::Range(8, 15))
      ->capture_default_str();
  cmd->add_option("--deflate-mem-level", args->mem_level, "zlib memLevel 1..9: memory against speed")
      ->check(CLI::Range(1, 9))
      ->capture_default_str();
  cmd->add_option("--deflate-level", args->level, "zlib compression level 1..9")
      ->check(CLI::Range(1, 9))
      ->capture_default_str();
  cmd->add_option("--deflate-min-size", args->deflate_min_size, "Messages smaller than this are sent uncompressed")
      ->capture_default_str();
  cmd->add_flag("--broadcast", args->broadcast,
                "Instead of echoing, send every message to all connections on the same path (raw fan-out)");
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
    for (const auto& [flag, file] : {std::pair{"--tls-cert", args->tls_cert}, std::pair{"--tls-key", args->tls_key}}) {
      if (file.empty() || ::access(file.c_str(), R_OK) == 0) continue;
      std::fprintf(stderr, "duplex echo: %s %s: cannot read it: %s\n", flag, file.c_str(), std::strerror(errno));
      return 2;
    }
    options.threads = args->threads;
    options.io = *net::parse_io_backend(args->io);
    options.reuse_port = args->reuse_port;
    if (!parse_ring_flags(*args, options.ring_buffers, error)) {
      std::fprintf(stderr, "duplex echo: %s\n", error.c_str());
      return 2;
    }
    options.tls.cert_file = args->tls_cert;
    options.tls.key_file = args->tls_key;
    std::uint64_t send_buffer = 0, max_message = 0;
    if (!parse_size_flag("--max-send-buffer", args->max_send_buffer, min_send_buffer, max_send_buffer_bound,
                         send_buffer, error)) {
      std::fprintf(stderr, "duplex echo: %s\n", error.c_str());
      return 2;
    }
    const std::uint64_t largest_echo = EchoBudget::largest_message(send_buffer);
    if (args->max_message_size.empty()) {
      max_message = largest_echo;
    } else if (!parse_size_flag("--max-message-size", args->max_message_size, min_message_size,
                                max_message_size_bound, max_message, error)) {
      std::fprintf(stderr, "duplex echo: %s\n", error.c_str());
      return 2;
    }
    if (max_message > largest_echo) {
      // Refused rather than raised behind the user's back: the buffer is the
      // memory bound per connection they asked for.
      std::fprintf(stderr,
                   "duplex echo: --max-message-size %llu cannot be echoed within --max-send-buffer %llu (an echo is "
                   "queued whole): use --max-send-buffer %llu or more, or a smaller --max-message-size\n",
                   static_cast<unsigned long long>(max_message), static_cast<unsigned long long>(send_buffer),
                   static_cast<unsigned long long>(max_message + EchoBudget::reserved));
      return 2;
    }
    options.max_send_buffer = static_cast<std::size_t>(send_buffer);
    options.websocket.max_frame_size = static_cast<std::size_t>(max_message);
    options.websocket.max_message_size = static_cast<std::size_t>(max_message);
    const EchoBudget budget{options.max_send_buffer};
    options.subprotocols = args->subprotocols;
    options.timeouts.ping_interval = net::Millis{args->ping_interval_s * 1000};
    std::string mode = args->deflate.empty() ? "dedicated" : args->deflate;
    if (mode == "shared") {
      // Shared: compress once per message, keep no zlib state per connection
      // in either direction (clients are asked not to keep context either).
      options.deflate.mode = net::DeflateMode::shared;
      options.deflate.client_no_context_takeover = true;
    }
    if (mode == "dedicated") options.deflate.mode = net::DeflateMode::dedicated;
    options.deflate.server_max_window_bits = static_cast<std::uint8_t>(args->window_bits);
    options.deflate.tuning.mem_level = args->mem_level;
    options.deflate.tuning.level = args->level;
    options.deflate.tuning.min_size = args->deflate_min_size;

    net::Handlers handlers;
    auto broadcaster = std::make_shared<Broadcaster>();
    if (args->broadcast) {
      handlers.on_open = [broadcaster](net::Connection& c) { broadcaster->join(c); };
      handlers.on_close = [broadcaster](net::Connection& c, std::uint16_t, std::string_view) { broadcaster->leave(c); };
      handlers.on_message = [broadcaster](net::Connection& c, protocol::Opcode kind, std::string_view payload) {
        broadcaster->publish(c, kind, payload);
      };
    } else {
      handlers.on_message = [budget](net::Connection& c, protocol::Opcode kind, std::string_view payload) {
        c.send(payload, kind, budget.compress_for(payload.size()));
      };
    }
    net::Server server(options, handlers);
    broadcaster->attach(server, options.deflate.mode == net::DeflateMode::shared ? &options.deflate.tuning : nullptr,
                        budget);
    server.listen();
    std::printf("listening on %s://%s:%u\n", options.tls.enabled() ? "wss" : "ws",
                options.host.find(':') != std::string::npos ? ("[" + options.host + "]").c_str() : options.host.c_str(),
                server.port());
    std::fprintf(stderr, "io: %s\n", net::to_string(server.loops().front()->io()));
    if (!server.loops().front()->io_fallback_reason().empty())
      std::fprintf(stderr, "io_uring is not available (%s): the loops run on epoll\n",
                   server.loops().front()->io_fallback_reason().c_str());
    std::fflush(stdout);
    // SIGINT/SIGTERM are taken by one thread with sigwait (blocked in every
    // other thread, the loops' included, which start after this): a graceful
    // shutdown, then run() returns.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::atomic<bool> finished{false};
    std::thread signal_watcher([&] {
      int sig = 0;
      while (sigwait(&signals, &sig) != 0) {
      }
      if (!finished) server.shutdown();
    });
    server.run();
    finished = true;
    pthread_kill(signal_watcher.native_handle(), SIGTERM);  // wakes it if no signal came
    signal_watcher.join();
    return 0;
  };
}

}  // namespace duplex::cli
