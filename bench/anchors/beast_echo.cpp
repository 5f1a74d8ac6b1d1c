// An anchor for scripts/bench-compare: a Boost.Beast WebSocket echo server,
// written the way Beast's own websocket_server_async example is (one session
// object per connection, async_read -> async_write -> async_read), on a
// single-threaded io_context. Text comes back as text, binary as binary.
//
//   beast_echo [--address A] [--port P | P]     (port 0 picks a free one)
//
// Prints "listening on ws://ADDRESS:PORT" once it accepts connections.
// permessage-deflate is off (Beast's default). Replies are not fragmented
// (auto_fragment(false)): uWebSockets' load_test expects one frame per reply.
#include <boost/asio/dispatch.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = boost::asio::ip::tcp;

namespace {

void fail(beast::error_code ec, const char* what) {
  // Peers going away are the normal end of a benchmark run: stay quiet.
  if (ec == net::error::operation_aborted || ec == net::error::connection_reset || ec == net::error::eof ||
      ec == beast::error::timeout || ec == net::error::broken_pipe)
    return;
  std::fprintf(stderr, "beast_echo: %s: %s\n", what, ec.message().c_str());
}

// Echoes every message back.
class session : public std::enable_shared_from_this<session> {
  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buffer_;

 public:
  explicit session(tcp::socket&& socket) : ws_(std::move(socket)) {}

  void run() {
    // Start on the connection's strand.
    net::dispatch(ws_.get_executor(), beast::bind_front_handler(&session::on_run, shared_from_this()));
  }

  void on_run() {
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "beast_echo"); }));
    ws_.auto_fragment(false);
    ws_.read_message_max(100 * 1024 * 1024);
    ws_.async_accept(beast::bind_front_handler(&session::on_accept, shared_from_this()));
  }

  void on_accept(beast::error_code ec) {
    if (ec) return fail(ec, "accept");
    do_read();
  }

  void do_read() { ws_.async_read(buffer_, beast::bind_front_handler(&session::on_read, shared_from_this())); }

  void on_read(beast::error_code ec, std::size_t) {
    if (ec == websocket::error::closed) return;
    if (ec) return fail(ec, "read");
    ws_.text(ws_.got_text());
    ws_.async_write(buffer_.data(), beast::bind_front_handler(&session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t) {
    if (ec) return fail(ec, "write");
    buffer_.consume(buffer_.size());
    do_read();
  }
};

// Accepts connections and starts a session for each.
class listener : public std::enable_shared_from_this<listener> {
  net::io_context& ioc_;
  tcp::acceptor acceptor_;

 public:
  listener(net::io_context& ioc, const tcp::endpoint& endpoint) : ioc_(ioc), acceptor_(ioc) {
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(net::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(net::socket_base::max_listen_connections);
  }

  unsigned short port() const { return acceptor_.local_endpoint().port(); }

  void run() { do_accept(); }

 private:
  void do_accept() {
    acceptor_.async_accept(net::make_strand(ioc_), beast::bind_front_handler(&listener::on_accept, shared_from_this()));
  }

  void on_accept(beast::error_code ec, tcp::socket socket) {
    if (ec) {
      fail(ec, "accept");
    } else {
      std::make_shared<session>(std::move(socket))->run();
    }
    do_accept();
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string address = "127.0.0.1";
  unsigned long port = 0;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--port") && i + 1 < argc) {
      port = std::strtoul(argv[++i], nullptr, 10);
    } else if (!std::strcmp(argv[i], "--address") && i + 1 < argc) {
      address = argv[++i];
    } else if (argv[i][0] >= '0' && argv[i][0] <= '9') {
      port = std::strtoul(argv[i], nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: beast_echo [--address A] [--port P | P]\n");
      return 2;
    }
  }
  if (port > 65535) {
    std::fprintf(stderr, "beast_echo: bad port\n");
    return 2;
  }
  try {
    net::io_context ioc{1};
    auto l = std::make_shared<listener>(
        ioc, tcp::endpoint{net::ip::make_address(address), static_cast<unsigned short>(port)});
    l->run();
    std::printf("listening on ws://%s:%u\n", address.c_str(), static_cast<unsigned>(l->port()));
    std::fflush(stdout);
    net::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&ioc](const beast::error_code&, int) { ioc.stop(); });
    ioc.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "beast_echo: %s\n", e.what());
    return 1;
  }
  return 0;
}
