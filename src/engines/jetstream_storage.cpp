#include "jetstream_storage.hpp"

#include <nats/nats.h>

#include <algorithm>
#include <charconv>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "history_rules.hpp"
#include "nats_broker.hpp"
#include "nats_support.hpp"
#include "redis_wire.hpp"

namespace duplex::engines::detail {

namespace {

constexpr const char* kEpochHeader = "Duplex-Epoch";
constexpr const char* kOffsetHeader = "Duplex-Offset";
// Two nodes racing for one channel's next offset: the loser waits a random
// while (up to 2^attempt ms, at most 64), reads the new top and tries
// again; this many losses in a row, or request_timeout, fail the publish.
constexpr int kMaxAttempts = 64;

void back_off(int attempt) {
  thread_local std::minstd_rand rng{std::random_device{}()};
  const unsigned cap = 1u << std::min(attempt, 6);
  std::this_thread::sleep_for(std::chrono::microseconds(rng() % (cap * 1000u + 1)));
}
// Last-message cache entries per worker; past it the cache starts over.
constexpr std::size_t kMaxCached = 100'000;
// A channel's older messages are purged (down to history.size and the top)
// every this many publications: its stream holds at most that many more.
constexpr std::uint64_t kTrimEvery = 32;

constexpr std::int64_t kNanosPerMilli = 1'000'000;

std::int64_t nanos(std::chrono::seconds s) { return s.count() * 1000 * kNanosPerMilli; }

std::string hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xF]);
  }
  return out;
}

std::string presence_key(const std::string& channel, const std::string& client) {
  return "c" + hex(channel) + ".c" + hex(client);
}

std::optional<std::uint64_t> parse_u64(const char* text) {
  if (!text) return std::nullopt;
  std::uint64_t value = 0;
  const std::string_view view(text);
  auto [end, ec] = std::from_chars(view.data(), view.data() + view.size(), value);
  if (ec != std::errc() || end != view.data() + view.size()) return std::nullopt;
  return value;
}

// One stored message of a channel: where it puts the channel's top, and
// the publication when offset > 0.
struct Stored : JetStreamTop {
  std::optional<Publication> publication;
};

std::optional<Stored> decode_stored(natsMsg* msg, std::uint64_t seq) {
  const char* epoch = nullptr;
  const char* offset = nullptr;
  if (natsMsgHeader_Get(msg, kEpochHeader, &epoch) != NATS_OK) return std::nullopt;
  if (natsMsgHeader_Get(msg, kOffsetHeader, &offset) != NATS_OK) return std::nullopt;
  auto number = parse_u64(offset);
  if (!number || !epoch || !*epoch) return std::nullopt;
  Stored out;
  out.seq = seq;
  out.epoch = epoch;
  out.offset = *number;
  if (out.offset > 0) {
    const std::string_view body(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
    out.publication = redis_wire::decode_entry(body);
    if (!out.publication || out.publication->offset != out.offset) return std::nullopt;
  }
  return out;
}

struct MsgDeleter {
  void operator()(natsMsg* m) const { natsMsg_Destroy(m); }
};
using MsgPtr = std::unique_ptr<natsMsg, MsgDeleter>;

}  // namespace

// The blocking half: everything here runs on a worker thread and calls
// nats.c synchronously (each call bounded by request_timeout).
struct JetStreamStorage::Blocking {
  JetStreamStorage& self;
  Worker& worker;

  std::string where() const { return "jetstream " + self.options_.url; }

  std::string failure(const std::string& what, natsStatus s, jsErrCode jerr = static_cast<jsErrCode>(0)) const {
    std::string text = where() + ": " + what + ": " + status_text(s);
    if (jerr != 0) text += " (JetStream error " + std::to_string(static_cast<int>(jerr)) + ")";
    if (s == NATS_NO_RESPONDERS) text += "; is JetStream enabled (nats-server -js)?";
    return text;
  }

  bool connected() const { return natsConnection_Status(self.conn_) == NATS_CONN_STATUS_CONNECTED; }
  std::string not_connected() const { return where() + ": not connected (reconnecting)"; }

  // --- streams

  // Creates the history stream unless it is known to exist with a
  // duplicate window of at least `window`; widens the window when a
  // namespace asks for more than it has (windows only grow).
  std::string ensure_stream(std::chrono::seconds window) {
    window = std::max(window, std::chrono::seconds(1));
    {
      std::lock_guard lock(self.stream_mutex_);
      if (self.stream_window_ >= window) return {};
    }
    const std::string name = self.stream_name();
    const std::string subjects = self.subject_of_prefix() + "*";
    const char* subject_list[] = {subjects.c_str()};
    jsStreamConfig config;
    jsStreamConfig_Init(&config);
    config.Name = name.c_str();
    config.Subjects = subject_list;
    config.SubjectsLen = 1;
    config.Storage = self.options_.storage == "memory" ? js_MemoryStorage : js_FileStorage;
    config.Replicas = static_cast<int64_t>(self.options_.replicas);
    config.MaxAge = nanos(self.options_.history_meta_ttl);
    jsStreamInfo* info = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    // The window the stream has (made by another node, or before a restart).
    std::chrono::seconds have{0};
    if (js_GetStreamInfo(&info, self.js_, name.c_str(), nullptr, &jerr) == NATS_OK && info) {
      have = std::chrono::seconds(info->Config->Duplicates / (1000 * kNanosPerMilli));
      jsStreamInfo_Destroy(info);
      info = nullptr;
    }
    const std::chrono::seconds wanted = std::max(have, window);
    // Nats-Msg-Id is remembered this long (never longer than messages live).
    config.Duplicates = nanos(wanted);
    if (config.MaxAge > 0) config.Duplicates = std::min(config.Duplicates, config.MaxAge);
    natsStatus s = NATS_OK;
    jerr = static_cast<jsErrCode>(0);
    if (have.count() == 0) {
      s = js_AddStream(&info, self.js_, &config, nullptr, &jerr);
      if (s != NATS_OK && jerr == JSStreamNameExistErr) {
        jerr = static_cast<jsErrCode>(0);
        s = js_UpdateStream(&info, self.js_, &config, nullptr, &jerr);
      }
    } else if (have < wanted) {
      s = js_UpdateStream(&info, self.js_, &config, nullptr, &jerr);
    }
    if (info) jsStreamInfo_Destroy(info);
    if (s != NATS_OK) return failure("cannot create or update stream " + name, s, jerr);
    std::lock_guard lock(self.stream_mutex_);
    self.stream_window_ = std::max(self.stream_window_, wanted);
    return {};
  }

  void forget_stream() {
    std::lock_guard lock(self.stream_mutex_);
    self.stream_window_ = std::chrono::seconds(0);
  }

  // Keeps the newest `keep` messages of `subject` (history.size plus the top).
  void trim(const std::string& subject, std::uint64_t keep) {
    jsOptions options;
    jsOptions_Init(&options);
    options.Stream.Purge.Subject = subject.c_str();
    options.Stream.Purge.Keep = keep;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (js_PurgeStream(self.js_, self.stream_name().c_str(), &options, &jerr) != NATS_OK) self.count_error();
  }

  // One message of `stream`: the last on `subject` (seq 0) or the one at
  // stream sequence `seq`; nullopt in `out` when there is none. One that is
  // not a duplex publication (another writer's on our subjects) is an error.
  std::string read_message(const std::string& stream, const std::string& subject, std::uint64_t seq,
                           std::optional<Stored>& out) {
    natsMsg* raw = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const natsStatus s = seq == 0 ? js_GetLastMsg(&raw, self.js_, stream.c_str(), subject.c_str(), nullptr, &jerr)
                                  : js_GetMsg(&raw, self.js_, stream.c_str(), seq, nullptr, &jerr);
    MsgPtr msg(raw);
    out.reset();
    if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) return {};
    const std::string which = seq == 0 ? "the last message of " + subject
                                       : "message " + std::to_string(seq) + " of " + subject;
    if (s != NATS_OK) return failure("cannot read " + which, s, jerr);
    out = decode_stored(msg.get(), seq == 0 ? natsMsg_GetSequence(msg.get()) : seq);
    if (!out) return where() + ": " + which + " is not a duplex publication";
    return {};
  }

  enum class Append { stored, duplicate, conflict, stream_gone, failed };
  struct Appended {
    Append outcome = Append::failed;
    std::uint64_t seq = 0;  // the stored (or, for a duplicate, the original) message
    std::string error;
  };

  // Publishes one message carrying `epoch` and `offset` on `subject`,
  // expecting `after` as the subject's last message (none: no message).
  Appended append(const std::string& subject, const std::string& epoch, std::uint64_t offset, const std::string& body,
                  const std::optional<Stored>& after, const std::string& msg_id) {
    Appended out;
    natsMsg* raw = nullptr;
    natsStatus s = natsMsg_Create(&raw, subject.c_str(), nullptr, body.data(), static_cast<int>(body.size()));
    MsgPtr msg(raw);
    const std::string offset_text = std::to_string(offset);
    if (s == NATS_OK) s = natsMsgHeader_Set(msg.get(), kEpochHeader, epoch.c_str());
    if (s == NATS_OK) s = natsMsgHeader_Set(msg.get(), kOffsetHeader, offset_text.c_str());
    if (s != NATS_OK) {
      out.error = failure("cannot build a message", s);
      return out;
    }
    jsPubOptions options;
    jsPubOptions_Init(&options);
    options.MaxWait = self.options_.request_timeout.count();
    if (!msg_id.empty()) options.MsgId = msg_id.c_str();
    if (after) {
      options.ExpectLastSubjectSeq = after->seq;
    } else {
      options.ExpectNoMessage = true;
    }
    jsPubAck* ack = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    s = js_PublishMsg(&ack, self.js_, msg.get(), &options, &jerr);
    if (s == NATS_OK && ack) {
      out.outcome = ack->Duplicate ? Append::duplicate : Append::stored;
      out.seq = ack->Sequence;
    } else if (jerr == JSStreamWrongLastSequenceErr) {
      out.outcome = Append::conflict;
    } else if (jerr == JSStreamNotFoundErr || s == NATS_NO_RESPONDERS) {
      out.outcome = Append::stream_gone;
      out.error = failure("cannot publish to " + subject, s, jerr);
    } else {
      out.error = failure("cannot publish to " + subject, s == NATS_OK ? NATS_ERR : s, jerr);
    }
    if (ack) jsPubAck_Destroy(ack);
    return out;
  }

  // The channel's top as this worker knows it, or as the stream says.
  std::string top_of(const std::string& stream, const std::string& subject, std::optional<Stored>& out) {
    if (auto it = worker.last.find(subject); it != worker.last.end()) {
      out = Stored{it->second, std::nullopt};
      return {};
    }
    std::string error = read_message(stream, subject, 0, out);
    if (error.empty() && out) remember(subject, *out);
    return error;
  }

  void remember(const std::string& subject, const JetStreamTop& top) {
    if (worker.last.size() >= kMaxCached && !worker.last.count(subject)) worker.last.clear();
    worker.last[subject] = top;
  }

  // --- publish

  Published publish(const PublishRequest& request, std::int64_t now) {
    Published out;
    auto fail = [&](std::string why) {
      self.count_error();
      out.result.error = EngineErrc::unavailable;
      out.result.message = std::move(why) + "; not published";
      return out;
    };
    if (!connected()) return fail(not_connected());
    const std::string stream = self.stream_name();
    const std::string subject = self.subject_of(request.channel);
    const bool keyed = !request.idempotency_key.empty();
    std::string msg_id = !keyed
                                   ? std::string()
                                   : NatsBroker::escape(request.channel) + ":" + NatsBroker::escape(request.idempotency_key);
    const auto deadline = std::chrono::steady_clock::now() + self.options_.request_timeout;
    for (int attempt = 0; attempt < kMaxAttempts && std::chrono::steady_clock::now() < deadline; ++attempt) {
      if (std::string error = ensure_stream(request.history.idempotency_window); !error.empty()) return fail(error);
      std::optional<Stored> top;
      if (std::string error = top_of(stream, subject, top); !error.empty()) return fail(error);
      Publication publication;
      publication.offset = top ? top->offset + 1 : 1;
      publication.time_ms = now;
      publication.data = request.data;
      publication.publisher = request.publisher;
      const std::string epoch = top ? top->epoch : make_epoch();
      // Without a key the id claims the offset: of two nodes racing for it
      // only one is stored even where the server does not serialize
      // expected-sequence checks (clustered streams before nats-server
      // 2.9.21, nats-server#4320); the other sees a duplicate and retries.
      const std::string id = keyed ? msg_id : "o/" + NatsBroker::escape(request.channel) + "/" +
                                                  std::to_string(publication.offset);
      Appended appended = append(subject, epoch, publication.offset, redis_wire::encode_entry(publication), top, id);
      switch (appended.outcome) {
        case Append::stored: {
          remember(subject, Stored{{appended.seq, epoch, publication.offset}, std::nullopt});
          if (publication.offset % kTrimEvery == 0) trim(subject, request.history.size + 1);
          out.epoch = epoch;
          out.result.position = StreamPosition{epoch, publication.offset};
          out.publication = std::make_shared<const Publication>(std::move(publication));
          return out;
        }
        case Append::duplicate: {
          if (!keyed || appended.seq == 0) {
            // The offset went to another node (or the original of this key
            // is still being replicated: its position is not known yet).
            worker.last.erase(subject);
            back_off(attempt);
            continue;
          }
          std::optional<Stored> original;
          if (std::string error = read_message(stream, subject, appended.seq, original); !error.empty()) return fail(error);
          if (original && original->publication &&
              now - original->publication->time_ms >= seconds_to_ms(request.history.idempotency_window)) {
            // The stream remembers ids for its (widest) window, this
            // namespace's is shorter and over: a new publication, under an
            // id of its own that later repeats find through the same chain.
            msg_id += "#" + std::to_string(appended.seq);
            continue;
          }
          out.result.duplicate = true;
          if (original) {
            out.epoch = original->epoch;
            out.result.position = StreamPosition{original->epoch, original->offset};
          } else {
            // The original already left the history (history.size): the
            // key still holds, its offset is no longer known.
            out.epoch = epoch;
            out.result.position = StreamPosition{epoch, 0};
          }
          return out;
        }
        case Append::conflict:
          worker.last.erase(subject);  // another node published first
          back_off(attempt);
          continue;
        case Append::stream_gone:
          // The server lost the stream (restarted without its data): made
          // again, and the channel starts over in a new epoch.
          worker.last.erase(subject);
          forget_stream();
          if (attempt > 0) return fail(appended.error);
          continue;
        case Append::failed:
          worker.last.erase(subject);  // the message may or may not be stored
          return fail(appended.error);
      }
    }
    return fail(where() + ": other nodes kept taking " + subject + "'s next offset (" + std::to_string(kMaxAttempts) +
                " attempts or request_timeout)");
  }

  // --- history

  // The channel's top, writing its epoch marker when it has none.
  std::string top_or_marker(const HistoryOptions& history, const std::string& stream, const std::string& subject,
                            Stored& top) {
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      if (std::string error = ensure_stream(history.idempotency_window); !error.empty()) return error;
      std::optional<Stored> last;
      if (std::string error = read_message(stream, subject, 0, last); !error.empty()) return error;
      if (last) {
        remember(subject, *last);
        top = std::move(*last);
        return {};
      }
      const std::string epoch = make_epoch();
      // One marker per channel however many nodes race to write it.
      Appended marker = append(subject, epoch, 0, std::string(), std::nullopt, "m/" + subject);
      if (marker.outcome == Append::stored) {
        top = Stored{{marker.seq, epoch, 0}, std::nullopt};
        remember(subject, top);
        return {};
      }
      if (marker.outcome == Append::stream_gone) {
        forget_stream();
        continue;
      }
      if (marker.outcome == Append::duplicate) {
        back_off(attempt);  // the other node's marker is stored, and on its way to the replica we read
        continue;
      }
      if (marker.outcome != Append::conflict) return marker.error;
    }
    return where() + ": " + subject + " kept changing under " + std::to_string(kMaxAttempts) + " attempts";
  }

  // Every publication of `epoch` on `subject` up to stream sequence
  // `until`, in offset order, through an ordered consumer.
  std::string read_all(const std::string& stream, const std::string& subject, const std::string& epoch,
                       std::uint64_t until, std::vector<Publication>& out) {
    jsSubOptions sub_options;
    jsSubOptions_Init(&sub_options);
    sub_options.Stream = stream.c_str();
    sub_options.Ordered = true;
    sub_options.Config.DeliverPolicy = js_DeliverAll;
    jsOptions js_options;
    jsOptions_Init(&js_options);
    js_options.Wait = self.options_.request_timeout.count();
    natsSubscription* sub = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_SubscribeSync(&sub, self.js_, subject.c_str(), &js_options, &sub_options, &jerr);
    if (s != NATS_OK) return failure("cannot read the history of " + subject, s, jerr);
    std::string error;
    for (;;) {
      natsMsg* raw = nullptr;
      s = natsSubscription_NextMsg(&raw, sub, self.options_.request_timeout.count());
      MsgPtr msg(raw);
      if (s != NATS_OK) {
        error = failure("the history of " + subject + " stopped", s);
        break;
      }
      jsMsgMetaData* meta = nullptr;
      if (natsMsg_GetMetaData(&meta, msg.get()) != NATS_OK || !meta) continue;
      const std::uint64_t seq = meta->Sequence.Stream;
      const std::uint64_t pending = meta->NumPending;
      jsMsgMetaData_Destroy(meta);
      if (seq > until) break;
      auto stored = decode_stored(msg.get(), seq);
      if (stored && stored->epoch == epoch && stored->publication) out.push_back(std::move(*stored->publication));
      if (pending == 0 || seq == until) break;
    }
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    return error;
  }

  HistoryResult history(const HistoryRequest& request, std::int64_t now) {
    HistoryResult result;
    auto fail = [&](std::string why) {
      self.count_error();
      result.error = EngineErrc::unavailable;
      result.message = std::move(why);
      return result;
    };
    if (!connected()) return fail(not_connected());
    const std::string stream = self.stream_name();
    const std::string subject = self.subject_of(request.channel);
    Stored top;
    if (std::string error = top_or_marker(request.history, stream, subject, top); !error.empty()) return fail(error);
    result.top = StreamPosition{top.epoch, top.offset};
    const bool answerable = !request.since || since_is_answerable(*request.since, top.epoch, top.offset);
    std::vector<Publication> stored;
    if (request.limit > 0 && top.offset > 0 && answerable &&
        !(request.since && request.since->offset == top.offset)) {
      if (std::string error = read_all(stream, subject, top.epoch, top.seq, stored); !error.empty()) return fail(error);
    }
    const std::int64_t cutoff = ttl_cutoff_ms(now, request.history.ttl);
    std::vector<PublicationPtr> fresh;
    for (auto& p : stored) {
      if (p.time_ms < cutoff) continue;
      if (p.offset + request.history.size <= top.offset) continue;  // beyond history.size (the stream keeps one more)
      if (request.since && p.offset <= request.since->offset) continue;
      fresh.push_back(std::make_shared<const Publication>(std::move(p)));
    }
    auto& out = result.publications;
    if (request.since) {
      if (fresh.size() > request.limit) fresh.resize(request.limit);
      out = std::move(fresh);
      result.complete = answerable && covers_range(out, request.since->offset, top.offset);
    } else {
      const std::size_t keep = std::min(fresh.size(), request.limit);
      out.assign(fresh.end() - static_cast<std::ptrdiff_t>(keep), fresh.end());
      if (request.reverse) std::reverse(out.begin(), out.end());
      result.complete = top.offset == 0 || out.size() == top.offset;
    }
    return result;
  }

  // --- presence and registry

  // The bucket, opened (created) on first use.
  std::string bucket(__kvStore*& kv, const std::string& name, std::chrono::seconds ttl, kvStore*& out) {
    std::lock_guard lock(self.kv_mutex_);
    if (!kv) {
      kvConfig config;
      kvConfig_Init(&config);
      config.Bucket = name.c_str();
      config.History = 1;
      config.TTL = nanos(ttl);
      config.StorageType = self.options_.storage == "memory" ? js_MemoryStorage : js_FileStorage;
      config.Replicas = static_cast<int>(self.options_.replicas);
      natsStatus s = js_CreateKeyValue(&kv, self.js_, &config);
      if (s != NATS_OK) s = js_KeyValue(&kv, self.js_, name.c_str());  // made by another configuration
      if (s != NATS_OK) {
        kv = nullptr;
        return failure("cannot open bucket " + name, s);
      }
    }
    out = kv;
    return {};
  }

  std::string presence_bucket(kvStore*& out) {
    return bucket(self.presence_kv_, self.name_prefix_ + "_presence", self.options_.presence_ttl, out);
  }
  std::string nodes_bucket(kvStore*& out) {
    return bucket(self.nodes_kv_, self.name_prefix_ + "_nodes", self.options_.node_ttl, out);
  }

  bool add_presence(const std::string& channel, const ClientInfo& client) {
    kvStore* kv = nullptr;
    if (!connected() || !presence_bucket(kv).empty()) {
      self.count_error();
      return false;
    }
    const std::string key = presence_key(channel, client.client);
    const std::string value = redis_wire::encode_client(client);
    std::uint64_t revision = 0;
    if (kvStore_Create(&revision, kv, key.c_str(), value.data(), static_cast<int>(value.size())) == NATS_OK) return true;
    // It exists (another session of the same client, or this node's
    // refresh): put again to restart its TTL.
    if (kvStore_Put(&revision, kv, key.c_str(), value.data(), static_cast<int>(value.size())) != NATS_OK)
      self.count_error();
    return false;
  }

  bool remove_presence(const std::string& channel, const ClientInfo& client) {
    kvStore* kv = nullptr;
    if (!connected() || !presence_bucket(kv).empty()) {
      self.count_error();
      return false;
    }
    const std::string key = presence_key(channel, client.client);
    kvEntry* entry = nullptr;
    const natsStatus s = kvStore_Get(&entry, kv, key.c_str());
    if (entry) kvEntry_Destroy(entry);
    if (s != NATS_OK) {
      if (s != NATS_NOT_FOUND) self.count_error();
      return false;
    }
    if (kvStore_Delete(kv, key.c_str()) != NATS_OK) {
      self.count_error();
      return false;
    }
    return true;
  }

  // The values of the keys matching `pattern` (its initial state).
  bool watch_values(kvStore* kv, const std::string& pattern, std::vector<std::string>& values) {
    kvWatchOptions options;
    kvWatchOptions_Init(&options);
    options.IgnoreDeletes = true;
    options.Timeout = self.options_.request_timeout.count();
    kvWatcher* watcher = nullptr;
    if (kvStore_Watch(&watcher, kv, pattern.c_str(), &options) != NATS_OK) return false;
    bool ok = true;
    for (;;) {
      kvEntry* entry = nullptr;
      if (kvWatcher_Next(&entry, watcher, self.options_.request_timeout.count()) != NATS_OK) {
        ok = false;
        break;
      }
      if (!entry) break;  // the initial values are all in
      if (kvEntry_Operation(entry) == kvOp_Put) {
        values.emplace_back(static_cast<const char*>(kvEntry_Value(entry)),
                            static_cast<std::size_t>(kvEntry_ValueLen(entry)));
      }
      kvEntry_Destroy(entry);
    }
    kvWatcher_Destroy(watcher);
    return ok;
  }

  std::vector<ClientInfo> presence(const std::string& channel) {
    std::vector<ClientInfo> entries;
    kvStore* kv = nullptr;
    std::vector<std::string> values;
    if (!connected() || !presence_bucket(kv).empty() || !watch_values(kv, "c" + hex(channel) + ".*", values)) {
      self.count_error();
      return entries;
    }
    for (const auto& value : values)
      if (auto client = redis_wire::decode_client(value)) entries.push_back(std::move(*client));
    std::sort(entries.begin(), entries.end(), [](const ClientInfo& a, const ClientInfo& b) { return a.client < b.client; });
    return entries;
  }

  void heartbeat(const NodeInfo& node) {
    kvStore* kv = nullptr;
    if (!connected() || !nodes_bucket(kv).empty()) {
      self.count_error();
      return;
    }
    const std::string value = redis_wire::encode_node(node);
    std::uint64_t revision = 0;
    if (kvStore_Put(&revision, kv, ("n" + hex(node.name)).c_str(), value.data(), static_cast<int>(value.size())) !=
        NATS_OK)
      self.count_error();
  }

  std::vector<NodeInfo> nodes() {
    std::vector<NodeInfo> list;
    kvStore* kv = nullptr;
    std::vector<std::string> values;
    if (!connected() || !nodes_bucket(kv).empty() || !watch_values(kv, ">", values)) {
      self.count_error();
      return list;
    }
    for (const auto& value : values)
      if (auto node = redis_wire::decode_node(value)) list.push_back(std::move(*node));
    std::sort(list.begin(), list.end(), [](const NodeInfo& a, const NodeInfo& b) { return a.name < b.name; });
    return list;
  }
};

JetStreamStorage::JetStreamStorage(asio::io_context& io, JetStreamOptions options, ClockMs clock)
    : io_(io), options_(std::move(options)), clock_(std::move(clock)), presence_timer_(io) {
  name_prefix_ = options_.subject_prefix;
  std::replace(name_prefix_.begin(), name_prefix_.end(), '.', '_');
}

JetStreamStorage::~JetStreamStorage() { stop(); }

std::string JetStreamStorage::validate(const JetStreamOptions& options) {
  if (split_urls(options.url).empty()) return "engine.nats.url is empty";
  if (options.subject_prefix.empty()) return "engine.nats.subject_prefix is empty";
  for (char c : options.subject_prefix) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-' || c == '.';
    if (!ok)
      return "engine.nats.subject_prefix '" + options.subject_prefix +
             "': with storage = \"jetstream\" it names streams and buckets, so only letters, digits, '_', '-' and "
             "'.' are allowed";
  }
  if (options.subject_prefix.front() == '.' || options.subject_prefix.back() == '.' ||
      options.subject_prefix.find("..") != std::string::npos)
    return "engine.nats.subject_prefix '" + options.subject_prefix + "' has an empty token";
  if (options.storage != "file" && options.storage != "memory")
    return "engine.nats.jetstream_storage '" + options.storage + "': expected \"file\" or \"memory\"";
  if (options.replicas < 1 || options.replicas > 5) return "engine.nats.jetstream_replicas must be 1 to 5";
  return {};
}

std::string JetStreamStorage::stream_name() const { return name_prefix_ + "_history"; }

std::string JetStreamStorage::subject_of_prefix() const { return options_.subject_prefix + ".hist."; }

std::string JetStreamStorage::subject_of(const std::string& channel) const {
  return subject_of_prefix() + NatsBroker::escape(channel);
}

void JetStreamStorage::start() {
  if (started_ || stopped_) return;
  started_ = true;
  natsOptions* opts = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  auto check = [&s](natsStatus r) {
    if (s == NATS_OK) s = r;
  };
  check(set_connection_options(opts, split_urls(options_.url), options_.name, options_.connect_timeout,
                               options_.reconnect_wait, options_.ping_interval));
  // With a connected callback the first connect retries in the background
  // (without one, nats.c would retry inside natsConnection_Connect, for ever).
  check(natsOptions_SetRetryOnFailedConnect(
      opts, true, [](natsConnection*, void*) {}, nullptr));
  check(natsOptions_SetReconnectedCB(
      opts,
      [](natsConnection*, void* closure) {
        static_cast<JetStreamStorage*>(closure)->reconnects_.fetch_add(1, std::memory_order_relaxed);
      },
      this));
  if (s == NATS_OK) s = natsConnection_Connect(&conn_, opts);
  if (opts) natsOptions_Destroy(opts);
  if (s == NATS_OK || s == NATS_NOT_YET_CONNECTED) {
    jsOptions js_options;
    jsOptions_Init(&js_options);
    js_options.Wait = options_.request_timeout.count();
    s = natsConnection_JetStream(&js_, conn_, &js_options);
  }
  if (s != NATS_OK) count_error();  // every operation fails with "not connected" then
  for (std::size_t i = 0; i < kWorkers; ++i) {
    auto worker = std::make_unique<Worker>();
    Worker* raw = worker.get();
    worker->thread = std::thread([this, raw] { run_worker(*raw); });
    workers_.push_back(std::move(worker));
  }
  arm_presence_refresh();
}

void JetStreamStorage::stop() {
  if (stopped_) return;
  stopped_ = true;
  presence_timer_.cancel();
  // Closing first ends the calls in flight at once; the jobs still queued
  // then run with live = false and fail.
  if (conn_) natsConnection_Close(conn_);
  for (auto& worker : workers_) {
    {
      std::lock_guard lock(worker->mutex);
      worker->stopping = true;
    }
    worker->wake.notify_all();
  }
  for (auto& worker : workers_)
    if (worker->thread.joinable()) worker->thread.join();
  if (presence_kv_) kvStore_Destroy(presence_kv_);
  if (nodes_kv_) kvStore_Destroy(nodes_kv_);
  presence_kv_ = nodes_kv_ = nullptr;
  if (js_) jsCtx_Destroy(js_);
  js_ = nullptr;
  if (conn_) natsConnection_Destroy(conn_);
  conn_ = nullptr;
}

std::size_t JetStreamStorage::backends_up() const {
  return conn_ && !stopped_ && natsConnection_Status(conn_) == NATS_CONN_STATUS_CONNECTED ? 1 : 0;
}

std::size_t JetStreamStorage::worker_of(const std::string& channel) const {
  return std::hash<std::string>{}(channel) % kWorkers;
}

void JetStreamStorage::enqueue(std::size_t index, Job job) {
  if (!started_ || stopped_ || !js_) {
    job(false);
    return;
  }
  Worker& worker = *workers_[index];
  {
    std::lock_guard lock(worker.mutex);
    worker.jobs.push_back(std::move(job));
  }
  worker.wake.notify_one();
}

void JetStreamStorage::run_worker(Worker& worker) {
  for (;;) {
    Job job;
    bool live = true;
    {
      std::unique_lock lock(worker.mutex);
      worker.wake.wait(lock, [&] { return worker.stopping || !worker.jobs.empty(); });
      if (worker.jobs.empty()) return;
      job = std::move(worker.jobs.front());
      worker.jobs.pop_front();
      live = !worker.stopping;
    }
    job(live);
  }
}

void JetStreamStorage::store(PublishRequest request, std::function<void(Published)> done) {
  const std::int64_t now = clock_ ? clock_() : system_now_ms();
  const std::size_t index = worker_of(request.channel);
  enqueue(index, [this, index, now, request = std::move(request), done = std::move(done)](bool live) mutable {
    Published out;
    if (live) {
      out = Blocking{*this, *workers_[index]}.publish(request, now);
    } else {
      out.result.error = EngineErrc::unavailable;
      out.result.message = "jetstream " + options_.url + ": stopped; not published";
    }
    reply([done = std::move(done), out = std::move(out)]() mutable {
      if (done) done(std::move(out));
    });
  });
}

void JetStreamStorage::history(HistoryRequest request, std::function<void(HistoryResult)> done) {
  const std::int64_t now = clock_ ? clock_() : system_now_ms();
  const std::size_t index = worker_of(request.channel);
  enqueue(index, [this, index, now, request = std::move(request), done = std::move(done)](bool live) mutable {
    HistoryResult result;
    if (live) {
      result = Blocking{*this, *workers_[index]}.history(request, now);
    } else {
      result.error = EngineErrc::unavailable;
      result.message = "jetstream " + options_.url + ": stopped";
    }
    reply([done = std::move(done), result = std::move(result)]() mutable {
      if (done) done(std::move(result));
    });
  });
}

void JetStreamStorage::add_presence(const std::string& channel, const ClientInfo& client,
                                    std::function<void(bool)> done) {
  own_presence_[{channel, client.client}] = client;
  const std::size_t index = worker_of(channel);
  enqueue(index, [this, index, channel, client, done = std::move(done)](bool live) mutable {
    const bool added = live && Blocking{*this, *workers_[index]}.add_presence(channel, client);
    reply([done = std::move(done), added] {
      if (done) done(added);
    });
  });
}

void JetStreamStorage::remove_presence(const std::string& channel, const ClientInfo& client,
                                       std::function<void(bool)> done) {
  own_presence_.erase({channel, client.client});
  const std::size_t index = worker_of(channel);
  enqueue(index, [this, index, channel, client, done = std::move(done)](bool live) mutable {
    const bool removed = live && Blocking{*this, *workers_[index]}.remove_presence(channel, client);
    reply([done = std::move(done), removed] {
      if (done) done(removed);
    });
  });
}

void JetStreamStorage::presence(const std::string& channel, std::function<void(std::vector<ClientInfo>)> done) {
  const std::size_t index = worker_of(channel);
  enqueue(index, [this, index, channel, done = std::move(done)](bool live) mutable {
    std::vector<ClientInfo> entries;
    if (live) entries = Blocking{*this, *workers_[index]}.presence(channel);
    reply([done = std::move(done), entries = std::move(entries)]() mutable {
      if (done) done(std::move(entries));
    });
  });
}

void JetStreamStorage::node_heartbeat(const NodeInfo& self) {
  enqueue(0, [this, self](bool live) {
    if (live) Blocking{*this, *workers_[0]}.heartbeat(self);
  });
}

void JetStreamStorage::nodes(std::function<void(std::vector<NodeInfo>)> done) {
  enqueue(0, [this, done = std::move(done)](bool live) mutable {
    std::vector<NodeInfo> list;
    if (live) list = Blocking{*this, *workers_[0]}.nodes();
    reply([done = std::move(done), list = std::move(list)]() mutable {
      if (done) done(std::move(list));
    });
  });
}

void JetStreamStorage::arm_presence_refresh() {
  if (stopped_) return;
  const auto period = std::max<std::int64_t>(seconds_to_ms(options_.presence_ttl) / 3, 100);
  presence_timer_.expires_after(std::chrono::milliseconds(period));
  presence_timer_.async_wait([this](const asio::error_code& ec) {
    if (ec || stopped_) return;
    // Re-put quietly: an entry that expired while NATS was unreachable
    // comes back without a second join.
    const auto own = own_presence_;
    for (const auto& [key, client] : own) add_presence(key.first, client, {});
    arm_presence_refresh();
  });
}

}  // namespace duplex::engines::detail
