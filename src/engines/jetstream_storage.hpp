// History, idempotency keys, presence and the node registry in NATS
// JetStream (engine.nats.storage = "jetstream"), so a cluster of hub nodes
// needs only NATS: the same offsets, epochs, recovery and idempotency rules
// as the Redis storage. See docs/ENGINES.md, "History on JetStream".
//
// One stream, <P>_history (P: subject_prefix with '.' as '_'), subjects
// <P>.hist.<escaped channel>. Each message is one publication: headers
// Duplex-Epoch and Duplex-Offset, body the Redis entry (redis_wire.hpp).
// Every 32nd publication of a channel purges its subject down to
// history.size + 1 messages (the history and the top); reads never return
// more than history.size. A channel's messages do not depend on its
// namespace's settings, so a reload that changes them keeps its history.
//
// A publish reads the channel's last message (cached per worker after the
// first time) and publishes offset + 1 with Nats-Expected-Last-Subject-
// Sequence: two nodes racing for an offset cannot both win; the loser
// reads again and retries. The first message of a channel (none on its
// subject) starts a new random epoch: a channel whose messages all aged
// out (history_meta_ttl) or whose stream was lost starts over in a new
// epoch, never at an old offset. A history read of an unknown channel
// writes an epoch marker (offset 0), so its subscribers' epoch holds.
// Idempotency keys are Nats-Msg-Id: the stream's duplicate window is the
// widest idempotency_window any namespace asked for (it only grows); a
// duplicate's position is read back from the original's message, and an
// original older than its own namespace's window does not count (the
// publish goes out under the id "<id>#<original's sequence>").
//
// Presence: KV bucket <P>_presence (TTL presence_ttl, refreshed every third
// of it by the node that added the entry), keys c<hex channel>.c<hex
// client>. Registry: KV bucket <P>_nodes (TTL node_ttl), keys n<hex name>.
//
// Threading: the blocking nats.c JetStream calls run on kWorkers threads,
// each channel always on the same one (its publishes stay in order); every
// callback is posted to the owner's io_context. Methods are called on that
// io_context's thread (as ChannelStores says); the counters on any.
#pragma once
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "channel_stores.hpp"
#include "engine_clock.hpp"

struct __natsConnection;
struct __jsCtx;
struct __kvStore;

namespace duplex::engines::detail {

struct JetStreamOptions {
  std::string url = "nats://127.0.0.1:4222";  // comma-separated for a cluster
  std::string subject_prefix = "duplex";
  std::string name;              // the connection's name as the server shows it
  std::string storage = "file";  // "file" or "memory"
  std::size_t replicas = 1;
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds request_timeout{5000};
  std::chrono::milliseconds reconnect_wait{250};
  std::chrono::milliseconds ping_interval{2000};  // three unanswered drop the connection
  std::chrono::seconds history_meta_ttl{0};
  std::chrono::seconds presence_ttl{60};
  std::chrono::seconds node_ttl{10};
};

// Where a channel's stream ends: the stream sequence of its last message,
// that message's epoch and offset (0: the epoch marker).
struct JetStreamTop {
  std::uint64_t seq = 0;
  std::string epoch;
  std::uint64_t offset = 0;
};

class JetStreamStorage final : public ChannelStores {
 public:
  static constexpr std::size_t kWorkers = 4;

  JetStreamStorage(asio::io_context& io, JetStreamOptions options, ClockMs clock);
  ~JetStreamStorage() override;
  JetStreamStorage(const JetStreamStorage&) = delete;
  JetStreamStorage& operator=(const JetStreamStorage&) = delete;

  // A malformed URL or prefix is an error (returned); a server that is down
  // is not (the connection retries in the background).
  static std::string validate(const JetStreamOptions& options);

  void start() override;
  void stop() override;

  void store(PublishRequest request, std::function<void(Published)> done) override;
  void history(HistoryRequest request, std::function<void(HistoryResult)> done) override;
  void add_presence(const std::string& channel, const ClientInfo& client, std::function<void(bool)> done) override;
  void remove_presence(const std::string& channel, const ClientInfo& client, std::function<void(bool)> done) override;
  void presence(const std::string& channel, std::function<void(std::vector<ClientInfo>)> done) override;
  void node_heartbeat(const NodeInfo& self) override;
  void nodes(std::function<void(std::vector<NodeInfo>)> done) override;

  std::size_t shard_count() const override { return 1; }
  std::size_t backends_up() const override;
  std::uint64_t reconnects() const override { return reconnects_.load(std::memory_order_relaxed); }
  std::uint64_t errors() const override { return errors_.load(std::memory_order_relaxed); }
  void count_error() override { errors_.fetch_add(1, std::memory_order_relaxed); }

  // The stream and subject a channel's history lives on (tests, docs).
  std::string stream_name() const;
  std::string subject_of(const std::string& channel) const;

 private:
  std::string subject_of_prefix() const;  // "<P>.hist."

  // A job runs on its worker with `live` false once the storage stopped
  // (it must then fail its operation without calling nats.c).
  using Job = std::function<void(bool live)>;
  struct Worker {
    std::mutex mutex;
    std::condition_variable wake;
    std::deque<Job> jobs;
    bool stopping = false;
    std::thread thread;
    // The last message of each channel this worker published or read
    // (subject -> its top); bounded, cleared when full.
    std::unordered_map<std::string, JetStreamTop> last;
  };
  struct Blocking;  // the nats.c calls, on a worker

  void enqueue(std::size_t worker, Job job);
  std::size_t worker_of(const std::string& channel) const;
  void run_worker(Worker& worker);
  template <class F>
  void reply(F&& f) {
    asio::post(io_, std::forward<F>(f));
  }
  void arm_presence_refresh();

  asio::io_context& io_;
  JetStreamOptions options_;
  ClockMs clock_;
  std::string name_prefix_;  // subject_prefix with '.' as '_' (stream and bucket names)
  __natsConnection* conn_ = nullptr;
  __jsCtx* js_ = nullptr;
  std::mutex kv_mutex_;  // around opening the buckets (any worker may be first)
  __kvStore* presence_kv_ = nullptr;
  __kvStore* nodes_kv_ = nullptr;
  std::mutex stream_mutex_;
  std::chrono::seconds stream_window_{0};  // the stream's duplicate window as last set; 0: not known to exist
  std::vector<std::unique_ptr<Worker>> workers_;
  bool started_ = false;
  bool stopped_ = false;
  std::atomic<std::uint64_t> reconnects_{0};
  std::atomic<std::uint64_t> errors_{0};
  // Presence entries this node added, re-put every presence_ttl / 3.
  std::map<std::pair<std::string, std::string>, ClientInfo> own_presence_;
  asio::steady_timer presence_timer_;
};

}  // namespace duplex::engines::detail
