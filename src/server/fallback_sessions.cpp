#include "duplex/server/fallback_sessions.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <deque>
#include <thread>

#include <simdjson.h>

#include "duplex/net/loop_timer.hpp"
#include "duplex/wire/command.hpp"
#include "support/json.hpp"
#include "duplex/protocol/http_response.hpp"
#include "request_token.hpp"

namespace duplex::transport {

using protocol::HttpHeader;

namespace {

std::string error_json(std::string_view message) {
  std::string out = "{\"error\":";
  hub::append_json_string(out, message);
  out += '}';
  return out;
}

// Runs `fn` on the connection's own loop (it may be another than the caller's).
void on_connection_loop(const std::shared_ptr<net::Connection>& c, std::function<void()> fn) {
  if (c->loop().running_in_this_thread()) return fn();
  c->loop().post(std::move(fn));
}

void respond(const std::shared_ptr<net::Connection>& c, int status, std::string body, std::vector<HttpHeader> headers) {
  on_connection_loop(c, [c, status, body = std::move(body), headers = std::move(headers)] {
    if (c->phase() != net::Connection::Phase::closed) c->http_respond(status, "application/json", body, headers);
  });
}

// Answers one request: a local connection, or a node that forwarded it.
using Responder = std::function<void(int status, std::string body)>;

Responder local_responder(std::shared_ptr<net::Connection> c, std::vector<HttpHeader> headers) {
  return [c = std::move(c), headers = std::move(headers)](int status, std::string body) { respond(c, status, std::move(body), headers); };
}

std::string sse_event(std::uint64_t seq, std::string_view data) {
  std::string out = "id: " + std::to_string(seq) + "\n";
  // The codec emits one line; split anyway so a stray newline cannot end the event early.
  std::size_t start = 0;
  for (;;) {
    const std::size_t nl = data.find('\n', start);
    out += "data: ";
    out += data.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    out += '\n';
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  out += '\n';
  return out;
}

bool parse_u64(std::string_view text, std::uint64_t& out) {
  if (text.empty() || text.size() > 19) return false;
  out = 0;
  for (char ch : text) {
    if (ch < '0' || ch > '9') return false;
    out = out * 10 + static_cast<std::uint64_t>(ch - '0');
  }
  return true;
}

}  // namespace

class FallbackSession;

// Where an SSE session's events go: the client's connection on this node,
// or a relay to the node that holds it.
struct StreamEnd {
  virtual ~StreamEnd() = default;
  // Writes one chunk; reports a closed or overflowing stream to the session.
  virtual void write(const std::shared_ptr<FallbackSession>& session, const std::shared_ptr<StreamEnd>& self, std::string chunk) = 0;
  virtual void end() = 0;
};

// One SSE or long-poll session. All members below `loop` are touched on
// `loop` only (the manager posts there).
class FallbackSession final : public hub::Transport, public std::enable_shared_from_this<FallbackSession> {
 public:
  enum class Kind : std::uint8_t { sse, poll };
  // A command POST waiting for its replies.
  struct PendingPost {
    Responder respond;
    std::vector<std::uint64_t> awaiting;  // command ids without a reply yet
    std::string replies;                  // the replies so far, comma-separated
    std::unique_ptr<net::LoopTimer> timer;
  };

  FallbackSession(FallbackSessions& owner, std::string session_id, Kind k, net::EventLoop& l)
      : manager(owner), id(std::move(session_id)), kind(k), loop(l),
        heartbeat(std::make_unique<net::LoopTimer>(l)), expiry(std::make_unique<net::LoopTimer>(l)),
        poll_timer(std::make_unique<net::LoopTimer>(l)) {}

  // ---- hub::Transport ----
  // None of these ends the session synchronously: the hub hears of it from a
  // posted finish_in_hub (the Transport rule).
  void write(std::string_view encoded, std::uint64_t reply_to) override { push(encoded, reply_to); }
  void write_shared(const net::PreparedMessage& frame) override { push(frame.payload(), 0); }
  std::string_view name() const override { return kind == Kind::sse ? "sse" : "long-poll"; }
  void request_close(std::uint16_t, std::string_view) override {
    // The disconnect push is already queued: let the client fetch it, then go.
    if (ended) return;
    ended = true;
    finish_posts();
    auto self = shared_from_this();
    loop.post([self] { self->finish_in_hub(); });
    if (kind == Kind::sse) {
      if (stream) {
        stream->end();
        stream.reset();
      }
      end_session();
    } else {
      if (!goodbye_owed && answered_through + 1 < next_seq) {
        // No poll was waiting for the disconnect push: the client collects it
        // with its next poll (a graceful shutdown waits for that).
        goodbye_owed = true;
        manager.goodbyes_owed_.fetch_add(1, std::memory_order_relaxed);
      }
      arm_expiry(std::chrono::milliseconds(5000));  // time to collect the disconnect push
    }
  }
  void goodbye_delivered() {
    if (!goodbye_owed) return;
    goodbye_owed = false;
    manager.goodbyes_owed_.fetch_sub(1, std::memory_order_relaxed);
  }

  // ---- events ----
  void push(std::string_view data, std::uint64_t reply_to) {
    if (terminated || overflowed) return;
    if (reply_to && !posts.empty() && take_reply(data, reply_to)) return;
    if (kind == Kind::poll && !ring.empty() &&
        (ring_bytes + data.size() > manager.limits_.max_buffer_bytes || ring.size() >= manager.limits_.max_buffer_events))
      return slow_consumer();
    Event e{next_seq++, std::string(data)};
    ring_bytes += e.data.size();
    ring.push_back(std::move(e));
    while (!ring.empty() && (ring_bytes > manager.limits_.max_buffer_bytes || ring.size() > manager.limits_.max_buffer_events)) {
      ring_bytes -= ring.front().data.size();
      ring.pop_front();
    }
    if (kind == Kind::sse) {
      if (stream) write_stream(sse_event(ring.back().seq, ring.back().data));
    } else if (waiting) {
      answer_poll();
    }
  }
  // A long-poll client that does not collect its events is cut off like a
  // WebSocket over max_send_buffer: the session leaves the hub and its last
  // event is the disconnect push (1008, reconnect and recover).
  void slow_consumer() {
    overflowed = true;
    ring.clear();
    std::string bye = manager.hub_.codec().push_disconnect(hub::disconnect_code::slow, "send buffer overflow", true);
    ring_bytes = bye.size();
    ring.push_back(Event{next_seq++, std::move(bye)});
    manager.hub_.count_close(hub::disconnect_code::slow);
    ended = true;
    finish_posts();
    auto self = shared_from_this();
    loop.post([self] { self->finish_in_hub(); });  // not from inside the hub's fan-out
    if (waiting) answer_poll();
    else arm_expiry(std::chrono::milliseconds(5000));  // time to collect the disconnect push
  }

  // ---- replies to POSTed commands ----
  // A reply for a command of a POST still open goes into that POST's response.
  bool take_reply(std::string_view data, std::uint64_t reply_id) {
    for (const auto& post : posts) {
      auto it = std::find(post->awaiting.begin(), post->awaiting.end(), reply_id);
      if (it == post->awaiting.end()) continue;
      if (!post->replies.empty() && post->replies.size() + data.size() > manager.limits_.max_buffer_bytes) {
        // The response would outgrow the send buffer: answer with what it
        // has; this reply and the missing ones go on the stream.
        finish_post(post);
        return false;
      }
      post->awaiting.erase(it);
      if (!post->replies.empty()) post->replies += ',';
      post->replies += data;
      if (post->awaiting.empty()) finish_post(post);
      return true;
    }
    return false;
  }
  void finish_post(std::shared_ptr<PendingPost> post) {
    auto it = std::find(posts.begin(), posts.end(), post);
    if (it == posts.end()) return;
    posts.erase(it);
    if (post->timer) post->timer->cancel();
    std::string body = "{\"replies\":[" + post->replies + "]";
    if (!post->awaiting.empty()) {
      // Their replies come later on the stream / in a poll.
      body += ",\"pending\":[";
      for (std::size_t i = 0; i < post->awaiting.size(); ++i) body += (i ? "," : "") + std::to_string(post->awaiting[i]);
      body += ']';
    }
    body += '}';
    post->respond(200, std::move(body));
  }
  void finish_posts() {
    while (!posts.empty()) finish_post(posts.front());
  }

  // The sequence of the oldest event still kept (next_seq if none).
  std::uint64_t first_kept() const { return ring.empty() ? next_seq : ring.front().seq; }

  // ---- SSE ----
  void write_stream(std::string chunk) {
    auto s = stream;
    s->write(shared_from_this(), s, std::move(chunk));
  }
  // Like a WebSocket over max_send_buffer: the session ends (1008) and the
  // client, whose resume then gets 404, reconnects and recovers.
  void stream_overflowed(const std::shared_ptr<StreamEnd>& c) {
    if (stream != c || terminated) return;
    stream.reset();
    overflowed = true;
    manager.hub_.count_close(hub::disconnect_code::slow);
    terminate();
  }
  void attach_stream(std::shared_ptr<StreamEnd> c, std::uint64_t last_seen, bool resume) {
    if (terminated) return c->end();
    if (stream && stream != c) stream->end();
    stream = std::move(c);
    expiry->cancel();
    std::string first = "retry: 2000\nevent: session\ndata: {\"session\":\"" + id + "\"}\n\n";
    if (resume && last_seen + 1 < first_kept()) {
      // The events after `last_seen` are gone: the client starts over and
      // recovers through the hub's channel recovery.
      first += "data: " + manager.hub_.codec().push_disconnect(hub::disconnect_code::force_reconnect, "events lost, reconnect", true) + "\n\n";
      write_stream(std::move(first));
      stream->end();
      stream.reset();
      terminate();
      return;
    }
    for (const auto& e : ring)
      if (e.seq > last_seen) first += sse_event(e.seq, e.data);
    write_stream(std::move(first));
    arm_heartbeat();
  }
  void arm_heartbeat() {
    heartbeat->start(manager.limits_.sse_heartbeat, [self = shared_from_this()] {
      if (!self->stream || self->terminated) return;
      self->write_stream(": ping\n\n");
      self->arm_heartbeat();
    });
  }
  void stream_lost(const std::shared_ptr<StreamEnd>& c) {
    if (stream != c) return;
    stream.reset();
    heartbeat->cancel();
    arm_expiry(manager.limits_.sse_grace);
  }

  // ---- long-poll ----
  void poll(Responder c, std::uint64_t last) {
    if (terminated) return c(404, error_json("no such session"));
    while (!ring.empty() && ring.front().seq <= last) {
      ring_bytes -= ring.front().data.size();
      ring.pop_front();
    }
    if (waiting) answer_poll();  // one poll at a time: the older gets what there is
    waiting = std::move(c);
    if (!overflowed && last + 1 < first_kept()) {
      // Events after `last` were dropped (the client fell too far behind).
      auto c2 = std::move(waiting);
      waiting = nullptr;
      std::string body = "[{\"id\":" + std::to_string(next_seq) + ",\"data\":" +
                         manager.hub_.codec().push_disconnect(hub::disconnect_code::force_reconnect, "events lost, reconnect", true) + "}]";
      c2(200, std::move(body));
      terminate();
      return;
    }
    expiry->cancel();
    if (!ring.empty() || ended) return answer_poll();
    poll_timer->start(manager.limits_.poll_wait, [self = shared_from_this()] {
      if (self->waiting) self->answer_poll();
    });
  }
  void answer_poll() {
    poll_timer->cancel();
    std::string body = "[";
    for (const auto& e : ring) {
      if (body.size() > 1) body += ',';
      body += "{\"id\":" + std::to_string(e.seq) + ",\"data\":" + e.data + "}";
    }
    body += ']';
    auto c = std::move(waiting);
    waiting = nullptr;
    answered_through = next_seq - 1;  // every event kept went out in this answer
    c(200, std::move(body));
    goodbye_delivered();
    if (ended && ring.empty()) return end_session();
    arm_expiry(ended ? std::min(idle_timeout, std::chrono::milliseconds(5000)) : idle_timeout);
  }

  // ---- lifetime ----
  void arm_expiry(std::chrono::milliseconds after) {
    expiry->start(after, [self = shared_from_this()] {
      self->terminate();
    });
  }
  void finish_in_hub() {
    if (client) manager.hub_.closed(*client);
    client.reset();
  }
  // Gone for good: out of the hub and the map.
  void terminate() {
    if (terminated) return;
    ended = true;
    finish_in_hub();
    end_session();
  }
  void end_session() {
    terminated = true;
    goodbye_delivered();  // or never will be
    finish_posts();
    heartbeat->cancel();
    expiry->cancel();
    poll_timer->cancel();
    if (waiting) {
      auto c = std::move(waiting);
      waiting = nullptr;
      c(404, error_json("no such session"));
    }
    if (stream) {
      auto s = std::move(stream);
      s->end();
    }
    manager.forget(id);
  }

  struct Event {
    std::uint64_t seq;
    std::string data;
  };

  FallbackSessions& manager;
  const std::string id;
  const Kind kind;
  net::EventLoop& loop;
  std::shared_ptr<hub::Session> client;
  std::deque<Event> ring;
  std::size_t ring_bytes = 0;
  std::uint64_t next_seq = 1;
  std::shared_ptr<StreamEnd> stream;   // SSE
  Responder waiting;  // long-poll
  std::chrono::milliseconds idle_timeout{60000};
  std::unique_ptr<net::LoopTimer> heartbeat;
  std::unique_ptr<net::LoopTimer> expiry;
  std::unique_ptr<net::LoopTimer> poll_timer;
  std::vector<std::shared_ptr<PendingPost>> posts;  // in arrival order
  std::uint64_t answered_through = 0;  // long-poll: the last event seq a poll answer carried
  bool goodbye_owed = false;           // long-poll: closed, its disconnect push not yet collected
  bool overflowed = false;  // cut off as a slow consumer: no more events
  bool ended = false;       // the hub closed it (or it expired)
  bool terminated = false;  // out of the map
};

// A request forwarded to a session's node, waiting on this node for the answer.
struct FallbackSessions::Forwarded {
  std::shared_ptr<net::Connection> conn;
  std::vector<HttpHeader> cors;               // for a relayed stream: its response headers
  std::unique_ptr<net::LoopTimer> timer;  // on conn's loop
  bool streaming = false;                     // a relayed SSE stream has begun (conn's loop)
  std::string node, session;                  // where the stream comes from
};

// The engine may call its node-message handler on its own thread until it
// stops; the handler reaches the manager only while it exists.
struct FallbackSessions::NodeLink {
  std::mutex mutex;
  FallbackSessions* manager;
};

namespace {

// The client's connection is on this node.
struct LocalStream final : StreamEnd {
  LocalStream(std::shared_ptr<net::Connection> c, std::size_t max_buffer) : conn(std::move(c)), limit(max_buffer) {}
  void write(const std::shared_ptr<FallbackSession>& session, const std::shared_ptr<StreamEnd>& self, std::string chunk) override {
    on_connection_loop(conn, [session, self, c = conn, limit = limit, chunk = std::move(chunk)] {
      // A stream the client does not read fills the connection's send buffer
      // (server.max_send_buffer), which then closes it: a slow consumer.
      const bool overflow = c->buffered_amount() + chunk.size() > limit;
      if (c->http_stream_write(chunk) == net::SendStatus::closed)
        session->loop.post([session, self, overflow] { overflow ? session->stream_overflowed(self) : session->stream_lost(self); });
    });
  }
  void end() override {
    on_connection_loop(conn, [c = conn] { c->http_end_stream(); });
  }
  std::shared_ptr<net::Connection> conn;
  const std::size_t limit;
};

// The client's connection is on another node (which opened the stream and
// forwarded it here): chunks travel as node messages.
struct RemoteStream final : StreamEnd {
  RemoteStream(engines::Engine& e, std::string n, std::uint64_t r) : engine(e), node(std::move(n)), request(r) {}
  void write(const std::shared_ptr<FallbackSession>&, const std::shared_ptr<StreamEnd>&, std::string chunk) override {
    std::string message = "{\"op\":\"chunk\",\"req\":" + std::to_string(request) + ",\"data\":";
    hub::append_json_string(message, chunk);
    message += '}';
    engine.send_to_node(node, std::move(message));
  }
  void end() override { engine.send_to_node(node, "{\"op\":\"end\",\"req\":" + std::to_string(request) + "}"); }
  engines::Engine& engine;
  const std::string node;
  const std::uint64_t request;
};

}  // namespace

FallbackSessions::FallbackSessions(hub::Hub& hub, FallbackLimits limits)
    : hub_(hub), limits_(limits), link_(std::make_shared<NodeLink>()) {
  link_->manager = this;
  hub_.engine().set_node_message_handler([link = link_](std::string payload) {
    std::lock_guard lock(link->mutex);
    if (link->manager) link->manager->on_node_message(payload);
  });
}

FallbackSessions::~FallbackSessions() {
  {
    std::lock_guard lock(link_->mutex);
    link_->manager = nullptr;
  }
  {
    std::lock_guard lock(forward_mutex_);
    for (auto& [request, f] : forwarded_) f->timer.reset();
    forwarded_.clear();
  }
  // The loops are stopped: free timers while their loops still exist.
  std::lock_guard lock(mutex_);
  for (auto& [id, s] : sessions_) {
    s->heartbeat.reset();
    s->expiry.reset();
    s->poll_timer.reset();
    for (auto& p : s->posts) p->timer.reset();
    s->posts.clear();
    s->client.reset();
    s->stream.reset();
    s->waiting = nullptr;
  }
  sessions_.clear();
}

void FallbackSessions::wait_for_goodbyes(std::chrono::steady_clock::time_point deadline) const {
  while (goodbyes_owed_.load(std::memory_order_relaxed) > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

std::size_t FallbackSessions::session_count() const {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

std::shared_ptr<FallbackSession> FallbackSessions::find(std::string_view id) const {
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(std::string(id));
  return it == sessions_.end() ? nullptr : it->second;
}

void FallbackSessions::forget(const std::string& id) {
  std::shared_ptr<FallbackSession> keep;  // destroyed outside the lock
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  keep = std::move(it->second);
  sessions_.erase(it);
}

std::string FallbackSessions::new_id() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) throw std::runtime_error("RAND_bytes failed");
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  // The owning node, so that any node can route the session's requests.
  const std::string& node = hub_.node_name();
  const bool url_safe = !node.empty() && node.size() <= 64 && std::all_of(node.begin(), node.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.';
  });
  if (url_safe) out += "." + node;
  return out;
}

std::string FallbackSessions::remote_owner(std::string_view id) const {
  const auto dot = id.find('.');
  if (dot == std::string_view::npos || dot + 1 == id.size()) return {};
  const std::string_view node = id.substr(dot + 1);
  return node == hub_.node_name() ? std::string() : std::string(node);
}

void FallbackSessions::forward(net::Connection& c, const std::string& node, std::string request,
                               const std::vector<HttpHeader>& cors, std::chrono::milliseconds timeout, std::string session) {
  auto f = std::make_shared<Forwarded>();
  f->session = std::move(session);
  f->conn = c.shared_from_this();
  f->cors = cors;
  f->timer = std::make_unique<net::LoopTimer>(c.loop());
  std::uint64_t number;
  {
    std::lock_guard lock(forward_mutex_);
    number = next_forward_++;
    forwarded_[number] = f;
  }
  std::string message = "{\"op\":" + request.substr(1);  // request: {"...
  message.insert(message.size() - 1, ",\"from\":" + hub::json_string(hub_.node_name()) + ",\"req\":" + std::to_string(number));
  if (!hub_.engine().send_to_node(node, std::move(message))) {
    std::lock_guard lock(forward_mutex_);
    forwarded_.erase(number);
    return c.http_respond(503, "application/json", error_json("the session's node cannot be reached"), cors);
  }
  f->node = node;
  f->timer->start(timeout, [this, number] {
    std::shared_ptr<Forwarded> late;
    {
      std::lock_guard lock(forward_mutex_);
      auto it = forwarded_.find(number);
      if (it == forwarded_.end() || it->second->streaming) return;
      late = std::move(it->second);
      forwarded_.erase(it);
    }
    respond(late->conn, 504, error_json("the session's node did not answer"), late->cors);
  });
}

FallbackSessions::Responder FallbackSessions::node_responder(std::string node, std::uint64_t request) const {
  return [engine = &hub_.engine(), node = std::move(node), request](int status, std::string body) {
    std::string message = "{\"op\":\"res\",\"req\":" + std::to_string(request) + ",\"status\":" + std::to_string(status) + ",\"body\":";
    hub::append_json_string(message, body);
    message += '}';
    engine->send_to_node(node, std::move(message));
  };
}

// Runs on the engine's thread.
void FallbackSessions::on_node_message(std::string_view payload) {
  simdjson::dom::parser parser;
  simdjson::dom::element m;
  if (parser.parse(payload.data(), payload.size()).get(m) != simdjson::SUCCESS) return;
  std::string_view op, from, session, kind, body;
  std::uint64_t request = 0, last = 0, status = 0;
  if (m["op"].get(op) != simdjson::SUCCESS || m["req"].get(request) != simdjson::SUCCESS) return;
  if (op == "res") {
    if (m["status"].get(status) != simdjson::SUCCESS || m["body"].get(body) != simdjson::SUCCESS) return;
    std::shared_ptr<Forwarded> f;
    {
      std::lock_guard lock(forward_mutex_);
      auto it = forwarded_.find(request);
      if (it == forwarded_.end()) return;  // timed out already
      f = std::move(it->second);
      forwarded_.erase(it);
    }
    on_connection_loop(f->conn, [f, status = static_cast<int>(status), text = std::string(body)] {
      f->timer->cancel();
      if (f->conn->phase() != net::Connection::Phase::closed) f->conn->http_respond(status, "application/json", text, f->cors);
    });
    return;
  }
  if (op == "chunk" || op == "end") {
    // A relayed SSE stream: the session's node sends its chunks here.
    std::shared_ptr<Forwarded> f;
    {
      std::lock_guard lock(forward_mutex_);
      auto it = forwarded_.find(request);
      if (it == forwarded_.end()) return;
      f = it->second;
      if (op == "end") forwarded_.erase(it);
    }
    std::string data;
    if (op == "chunk" && m["data"].get(body) == simdjson::SUCCESS) data = std::string(body);
    on_connection_loop(f->conn, [this, f, request, end = op == "end", data = std::move(data)] {
      f->timer->cancel();
      auto& c = *f->conn;
      if (!f->streaming) {
        f->streaming = true;
        if (c.phase() != net::Connection::Phase::closed) c.http_begin_stream(200, "text/event-stream", f->cors);
      }
      if (end) return c.http_end_stream();
      const bool overflow = c.buffered_amount() + data.size() > limits_.max_buffer_bytes;
      if (c.http_stream_write(data) == net::SendStatus::closed) {
        {
          std::lock_guard lock(forward_mutex_);
          if (!forwarded_.erase(request)) return;
        }
        // The client is gone (or too slow): the session's node lets go of the stream.
        hub_.engine().send_to_node(f->node, "{\"op\":\"gone\",\"req\":" + std::to_string(request) + ",\"session\":" +
                                                hub::json_string(f->session) + ",\"overflow\":" + (overflow ? "true" : "false") + "}");
      }
    });
    return;
  }
  if (m["session"].get(session) != simdjson::SUCCESS) return;
  if (op == "gone") {
    bool overflow = false;
    if (m["overflow"].get(overflow)) {}  // optional field
    auto s = find(session);
    if (!s) return;
    s->loop.post([s, request, overflow] {
      auto* remote = dynamic_cast<RemoteStream*>(s->stream.get());
      if (!remote || remote->request != request) return;
      auto current = s->stream;
      overflow ? s->stream_overflowed(current) : s->stream_lost(current);
    });
    return;
  }
  if (m["from"].get(from) != simdjson::SUCCESS || m["kind"].get(kind) != simdjson::SUCCESS) return;
  Responder answer = node_responder(std::string(from), request);
  auto s = find(session);
  if (!s || s->kind != (kind == "sse" ? FallbackSession::Kind::sse : FallbackSession::Kind::poll))
    return answer(404, error_json("no such session"));
  if (op == "post") {
    if (m["body"].get(body) != simdjson::SUCCESS) return answer(400, error_json("no body"));
    std::vector<std::string> lines;
    int error_status = 0;
    if (std::string why = split_commands(body, lines, error_status); !why.empty()) return answer(error_status, error_json(why));
    return run_commands(std::move(s), std::move(lines), std::move(answer));
  }
  if (op == "sse" && m["last"].get(last) == simdjson::SUCCESS) {
    bool resume = false;
    if (m["resume"].get(resume)) {}  // optional field
    auto remote = std::make_shared<RemoteStream>(hub_.engine(), std::string(from), request);
    s->loop.post([s, remote, last, resume] { s->attach_stream(remote, last, resume); });
    return;
  }
  if (op == "poll" && m["last"].get(last) == simdjson::SUCCESS) {
    s->loop.post([s, answer = std::move(answer), last]() mutable { s->poll(std::move(answer), last); });
    return;
  }
  answer(400, error_json("bad forwarded request"));
}

bool FallbackSessions::handle(net::Connection& c, const net::HttpRequest& r, const std::vector<HttpHeader>& cors) {
  constexpr std::string_view sse_prefix = "/connection/sse", poll_prefix = "/connection/poll";
  const bool is_sse = r.path.starts_with(sse_prefix), is_poll = r.path.starts_with(poll_prefix);
  if (!is_sse && !is_poll) return false;
  const std::string_view rest = r.path.substr(is_sse ? sse_prefix.size() : poll_prefix.size());
  // Opening a session goes through Hub::admit, which checks the Origin itself.
  if (is_sse && rest.empty()) {
    if (r.method != "GET") return c.http_respond(405, "application/json", error_json("use GET"), cors), true;
    open_sse(c, r, cors);
    return true;
  }
  if (is_poll && rest == "/open") {
    if (r.method != "POST") return c.http_respond(405, "application/json", error_json("use POST"), cors), true;
    open_poll(c, r, cors);
    return true;
  }
  // Every later request of a session too (a command POST, a poll, an SSE
  // resume), as the WebSocket upgrade would be checked.
  if (!hub_.allows_origin(r.head.get("Origin"), r.head.get("Host")))
    return c.http_respond(403, "application/json", error_json("origin not allowed"), cors), true;
  if (rest.size() < 2 || rest[0] != '/') return c.http_respond(404, "application/json", error_json("not found"), cors), true;
  const std::string_view id = rest.substr(1);
  if (std::string owner = remote_owner(id); !owner.empty() && (r.method == "POST" || (is_poll && r.method == "GET"))) {
    // Another node's session (no sticky sessions): forwarded through the engine.
    std::string request = std::string("{\"") + (r.method == "POST" ? "post" : "poll") + "\",\"kind\":\"" + (is_sse ? "sse" : "poll") +
                          "\",\"session\":" + hub::json_string(id);
    std::chrono::milliseconds timeout = limits_.post_reply_timeout;
    if (r.method == "POST") {
      request += ",\"body\":";
      hub::append_json_string(request, r.body);
    } else {
      std::string last_text;
      std::uint64_t last = 0;
      if (protocol::query_param(r.query, "last", last_text) && !parse_u64(last_text, last))
        return c.http_respond(400, "application/json", error_json("last: a sequence number"), cors), true;
      request += ",\"last\":" + std::to_string(last);
      timeout = limits_.poll_wait;
    }
    request += '}';
    forward(c, owner, std::move(request), cors, timeout + std::chrono::milliseconds(5000));
    return true;
  }
  auto s = find(id);
  if (!s || s->kind != (is_sse ? FallbackSession::Kind::sse : FallbackSession::Kind::poll))
    return c.http_respond(404, "application/json", error_json("no such session"), cors), true;
  if (r.method == "POST") {
    commands(c, std::move(s), r.body, cors);
    return true;
  }
  if (is_poll && r.method == "GET") {
    std::string last_text;
    std::uint64_t last = 0;
    if (protocol::query_param(r.query, "last", last_text) && !parse_u64(last_text, last))
      return c.http_respond(400, "application/json", error_json("last: a sequence number"), cors), true;
    s->loop.post([s, responder = local_responder(c.shared_from_this(), cors), last]() mutable { s->poll(std::move(responder), last); });
    return true;
  }
  c.http_respond(405, "application/json", error_json("method not allowed"), cors);
  return true;
}

void FallbackSessions::open_sse(net::Connection& c, const net::HttpRequest& r, const std::vector<HttpHeader>& cors) {
  std::string session_id, last_text;
  std::uint64_t last = 0;
  bool has_last = false;
  if (protocol::query_param(r.query, "last_event_id", last_text)) has_last = true;
  else if (const std::string_view h = r.head.get("Last-Event-ID"); !h.empty()) {
    last_text = std::string(h);
    has_last = true;
  }
  if (has_last && !parse_u64(last_text, last))
    return c.http_respond(400, "application/json", error_json("Last-Event-ID: a sequence number"), cors);
  auto headers = cors;
  headers.push_back({"Cache-Control", "no-cache"});
  headers.push_back({"X-Accel-Buffering", "no"});

  if (protocol::query_param(r.query, "session", session_id)) {
    // A resume opens no session, so Hub::admit does not see it.
    if (!hub_.allows_origin(r.head.get("Origin"), r.head.get("Host")))
      return c.http_respond(403, "application/json", error_json("origin not allowed"), cors);
    auto s = find(session_id);
    if (!s) {
      if (std::string owner = remote_owner(session_id); !owner.empty()) {
        // Another node's session: it sends the stream here through the engine.
        std::string request = "{\"sse\",\"kind\":\"sse\",\"session\":" + hub::json_string(session_id) +
                              ",\"last\":" + std::to_string(last) + ",\"resume\":" + (has_last ? "true" : "false") + "}";
        return forward(c, owner, std::move(request), headers, limits_.post_reply_timeout, session_id);
      }
    }
    if (!s || s->kind != FallbackSession::Kind::sse)
      return c.http_respond(404, "application/json", error_json("no such session (expired): open a new one"), cors);
    c.http_begin_stream(200, "text/event-stream", headers);
    s->loop.post([s, stream = std::make_shared<LocalStream>(c.shared_from_this(), limits_.max_buffer_bytes), last, has_last] { s->attach_stream(stream, last, has_last); });
    return;
  }
  const hub::Admission admission = hub_.admit(session_request(r.head, r.query));
  if (!admission.admitted()) return c.http_respond(admission.status, "application/json", error_json(admission.reason), cors);
  if (session_count() >= limits_.max_sessions) return c.http_respond(503, "application/json", error_json("too many sessions"), cors);
  auto s = std::make_shared<FallbackSession>(*this, new_id(), FallbackSession::Kind::sse, c.loop());
  {
    std::lock_guard lock(mutex_);
    sessions_[s->id] = s;
  }
  c.http_begin_stream(200, "text/event-stream", headers);
  s->attach_stream(std::make_shared<LocalStream>(c.shared_from_this(), limits_.max_buffer_bytes), 0, false);
  s->client = hub_.open(c.loop(), *s, admission);
}

void FallbackSessions::open_poll(net::Connection& c, const net::HttpRequest& r, const std::vector<HttpHeader>& cors) {
  const hub::Admission admission = hub_.admit(session_request(r.head, r.query));
  if (!admission.admitted()) return c.http_respond(admission.status, "application/json", error_json(admission.reason), cors);
  std::chrono::milliseconds idle = limits_.poll_idle;
  std::string idle_text;
  std::uint64_t idle_ms = 0;
  if (protocol::query_param(r.query, "idle_timeout", idle_text)) {
    // A client may ask to be forgotten sooner (never later) than the default.
    if (!parse_u64(idle_text, idle_ms) || idle_ms < 1000)
      return c.http_respond(400, "application/json", error_json("idle_timeout: milliseconds, at least 1000"), cors);
    idle = std::min(idle, std::chrono::milliseconds(idle_ms));
  }
  if (session_count() >= limits_.max_sessions) return c.http_respond(503, "application/json", error_json("too many sessions"), cors);
  auto s = std::make_shared<FallbackSession>(*this, new_id(), FallbackSession::Kind::poll, c.loop());
  s->idle_timeout = idle;
  {
    std::lock_guard lock(mutex_);
    sessions_[s->id] = s;
  }
  s->client = hub_.open(c.loop(), *s, admission);
  s->arm_expiry(idle);
  c.http_respond(200, "application/json", "{\"session\":\"" + s->id + "\"}", cors);
}

// Splits a command POST's body into its lines; empty and an error text if it cannot be run.
std::string FallbackSessions::split_commands(std::string_view body, std::vector<std::string>& lines, int& status) const {
  std::size_t start = 0;
  while (start < body.size()) {
    std::size_t nl = body.find('\n', start);
    if (nl == std::string_view::npos) nl = body.size();
    std::string_view line = body.substr(start, nl - start);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    if (!line.empty()) lines.emplace_back(line);
    if (lines.size() > limits_.max_commands_per_request) {
      status = 413;
      return "too many commands in one request";
    }
    start = nl + 1;
  }
  if (lines.empty()) {
    status = 400;
    return "no command in the body";
  }
  return {};
}

void FallbackSessions::commands(net::Connection& c, std::shared_ptr<FallbackSession> s, std::string_view body,
                                const std::vector<HttpHeader>& cors) {
  std::vector<std::string> lines;
  int status = 0;
  if (std::string why = split_commands(body, lines, status); !why.empty())
    return c.http_respond(status, "application/json", error_json(why), cors);
  run_commands(std::move(s), std::move(lines), local_responder(c.shared_from_this(), cors));
}

void FallbackSessions::run_commands(std::shared_ptr<FallbackSession> s, std::vector<std::string> lines, Responder responder) {
  s->loop.post([s, lines = std::move(lines), responder = std::move(responder)]() mutable {
    if (s->ended || !s->client) return responder(404, error_json("no such session"));
    if (s->kind == FallbackSession::Kind::poll && !s->waiting) s->arm_expiry(s->idle_timeout);
    // The response waits for the replies of the commands that have an id
    // (the hub replies to each; a malformed one ends the session instead).
    auto post = std::make_shared<FallbackSession::PendingPost>();
    post->respond = std::move(responder);
    for (const auto& line : lines) {
      hub::Command cmd;
      std::string why;
      if (s->manager.hub_.codec().decode(line, cmd, why) != hub::DecodeStatus::malformed && cmd.id) post->awaiting.push_back(cmd.id);
    }
    s->posts.push_back(post);
    for (const auto& line : lines) {
      if (!s->client) break;
      s->manager.hub_.command(*s->client, line);
    }
    if (post->awaiting.empty() || !s->client) return s->finish_post(post);
    post->timer = std::make_unique<net::LoopTimer>(s->loop);
    post->timer->start(s->manager.limits_.post_reply_timeout, [s, post] {
      s->finish_post(post);
    });
  });
}

}  // namespace duplex::transport
