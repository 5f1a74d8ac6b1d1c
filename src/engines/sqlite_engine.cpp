#include "duplex/engines/sqlite_engine.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <limits>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine_clock.hpp"
#include "history_rules.hpp"
#include "presence_registry.hpp"
#include "sqlite_db.hpp"

namespace duplex::engines {

namespace {

constexpr std::int64_t kSchemaVersion = 1;
// Expired idempotency keys and TTL-expired history rows are deleted this
// often (clock time), by the writer, in a transaction of their own.
constexpr std::int64_t kPurgeIntervalMs = 5'000;
constexpr auto kWriterIdleWake = std::chrono::seconds(1);

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS channels(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  top INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS publications(
  channel_id INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  time_ms INTEGER NOT NULL,
  data BLOB NOT NULL,
  publisher BLOB NOT NULL,
  PRIMARY KEY(channel_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency_keys(
  channel_id INTEGER NOT NULL,
  key TEXT NOT NULL,
  seq INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL,
  PRIMARY KEY(channel_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_keys_expiry ON idempotency_keys(expires_ms);
)sql";

std::int64_t to_sql(std::uint64_t value) {
  return static_cast<std::int64_t>(std::min<std::uint64_t>(value, std::numeric_limits<std::int64_t>::max()));
}

std::uint64_t from_sql(std::int64_t value) { return value < 0 ? 0 : static_cast<std::uint64_t>(value); }

// mkdir -p, then insist on a writable directory: the error names the path
// and the reason, since this is what an operator sees at startup.
void prepare_data_dir(const std::string& data_dir) {
  namespace fs = std::filesystem;
  if (data_dir.empty()) throw std::runtime_error("sqlite engine: engine.data_dir is empty");
  std::error_code error;
  const fs::path dir(data_dir);
  if (fs::exists(dir, error) && !fs::is_directory(dir, error)) {
    throw std::runtime_error("sqlite engine: data dir '" + data_dir + "' exists and is not a directory");
  }
  fs::create_directories(dir, error);
  if (error) {
    throw std::runtime_error("sqlite engine: cannot create data dir '" + data_dir + "': " + error.message());
  }
  if (::access(data_dir.c_str(), W_OK | X_OK) != 0) {
    throw std::runtime_error("sqlite engine: data dir '" + data_dir + "' is not writable: " +
                             std::strerror(errno));
  }
}

// Two engines on one database would hand out the same offsets: the second
// one is refused. The kernel drops the lock when the process dies.
int lock_data_dir(const std::string& data_dir) {
  const std::string path = data_dir + "/duplex.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw std::runtime_error("sqlite engine: cannot open lock file '" + path + "': " + std::strerror(errno));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int saved = errno;
    ::close(fd);
    if (saved == EWOULDBLOCK) {
      throw std::runtime_error("sqlite engine: data dir '" + data_dir +
                               "' is in use by another engine (lock held on " + path + ")");
    }
    throw std::runtime_error("sqlite engine: cannot lock '" + path + "': " + std::strerror(saved));
  }
  return fd;
}

struct PendingPublish {
  PublishRequest request;
  std::function<void(PublishResult)> done;
};

std::size_t queued_size(const PublishRequest& request) {
  return request.data.size() + request.publisher.size();
}

struct PendingHistory {
  HistoryRequest request;
  std::function<void(HistoryResult)> done;
};

// The writer's view of a channel. `top` is authoritative while cached: only
// the writer assigns offsets.
struct CachedChannel {
  std::int64_t id = 0;
  std::uint64_t top = 0;
  int batch_index = -1;  // into the current batch's touched list, -1 if untouched
  // TTL bookkeeping for the periodic purge: rows older than ttl_ms may exist.
  bool expiry_pending = false;
  std::int64_t ttl_ms = 0;
  std::int64_t newest_ms = 0;
};

using ChannelCache = std::unordered_map<std::string, CachedChannel>;

struct TouchedChannel {
  ChannelCache::value_type* entry = nullptr;  // node pointers survive rehashing
  std::uint64_t committed_top = 0;
  std::uint64_t trim_through = 0;  // delete history rows with seq <= this
};

}  // namespace

struct SqliteEngine::Impl {
  SqliteEngineOptions options;
  std::string db_path;
  std::string epoch;
  int lock_fd = -1;

  // ---- writer thread (owns everything in this block once started) ----
  struct WriteStatements {
    sqlite::Statement begin, commit, rollback;
    sqlite::Statement find_channel, insert_channel, update_top;
    sqlite::Statement insert_publication, trim_publications, expire_publications;
    sqlite::Statement find_key, upsert_key, purge_keys;
  };
  std::unique_ptr<sqlite::Connection> write_db;
  std::unique_ptr<WriteStatements> write;
  ChannelCache channels;
  std::vector<TouchedChannel> touched;
  std::vector<PublishResult> results;
  std::vector<PublicationPtr> applied;
  std::int64_t last_purge_ms = 0;

  std::mutex queue_mutex;
  std::condition_variable queue_cv;
  std::deque<PendingPublish> queue;
  std::size_t queued_bytes = 0;
  bool writer_stopping = false;
  std::thread writer;

  // ---- reader thread ----
  struct ReadStatements {
    sqlite::Statement begin, commit;
    sqlite::Statement find_channel, since, newest;
  };
  std::unique_ptr<sqlite::Connection> read_db;
  std::unique_ptr<ReadStatements> read;
  std::mutex read_mutex;
  std::condition_variable read_cv;
  std::deque<PendingHistory> read_queue;
  bool reader_stopping = false;
  std::thread reader;

  // ---- delivery and presence ----
  // Held around every delivery, so one channel's events go out one at a time
  // and join/leave never overtake each other.
  std::mutex deliver_mutex;
  Deliver deliver;
  ChannelEvent scratch;  // reused for publications: no per-publish epoch copy
  detail::PresenceRegistry presence;

  std::atomic<bool> healthy{true};
  std::atomic<std::uint64_t> refused{0};  // publishes refused: the queue was full
  std::mutex stop_mutex;
  bool stopped = false;

  explicit Impl(SqliteEngineOptions engine_options) : options(std::move(engine_options)) {
    if (options.max_batch == 0) options.max_batch = 1;
    prepare_data_dir(options.data_dir);
    db_path = options.data_dir + "/duplex.db";
    lock_fd = lock_data_dir(options.data_dir);
    try {
      open_write_connection();
      open_read_connection();
    } catch (const sqlite::Error& error) {
      close_storage();
      throw std::runtime_error("sqlite engine: " + db_path + ": " + error.what());
    } catch (...) {
      close_storage();
      throw;
    }
    scratch.kind = ChannelEvent::Kind::publication;
    scratch.epoch = epoch;
    last_purge_ms = now_ms();
    writer = std::thread([this] { run_writer(); });
    try {
      reader = std::thread([this] { run_reader(); });
    } catch (...) {
      stop();
      throw;
    }
  }

  ~Impl() { stop(); }

  std::int64_t now_ms() const { return options.clock ? options.clock() : detail::system_now_ms(); }

  void open_write_connection() {
    write_db = std::make_unique<sqlite::Connection>(db_path);
    sqlite3_busy_timeout(write_db->handle(), 5000);
    {
      auto mode = write_db->prepare("PRAGMA journal_mode=WAL");
      sqlite::Use use(mode);
      if (!use->step() || use->column_blob(0) != "wal") {
        throw std::runtime_error("sqlite engine: " + db_path + ": cannot switch to WAL journal mode");
      }
    }
    write_db->exec(options.fsync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    // A burst can grow the WAL; after a checkpoint it is cut back to this.
    write_db->exec("PRAGMA journal_size_limit=67108864");
    if (options.max_database_pages > 0) {
      write_db->exec("PRAGMA max_page_count=" + std::to_string(options.max_database_pages));
    }
    write_db->exec("BEGIN IMMEDIATE");
    try {
      write_db->exec(kSchema);
      auto get = write_db->prepare("SELECT value FROM meta WHERE key=?1");
      auto read_meta = [&](const char* key) -> std::optional<std::string> {
        sqlite::Use use(get);
        use->bind_text(1, key);
        if (!use->step()) return std::nullopt;
        return use->column_blob(0);
      };
      auto put = write_db->prepare("INSERT INTO meta(key, value) VALUES(?1, ?2)");
      auto write_meta = [&](const char* key, const std::string& value) {
        sqlite::Use use(put);
        use->bind_text(1, key).bind_text(2, value);
        use->run();
      };
      const auto version = read_meta("schema_version");
      if (!version) {
        epoch = detail::make_epoch();
        write_meta("schema_version", std::to_string(kSchemaVersion));
        write_meta("epoch", epoch);
      } else if (*version != std::to_string(kSchemaVersion)) {
        throw std::runtime_error("sqlite engine: " + db_path + " has schema version " + *version +
                                 "; this duplex reads version " + std::to_string(kSchemaVersion));
      } else {
        auto stored = read_meta("epoch");
        if (!stored || stored->empty()) {
          throw std::runtime_error("sqlite engine: " + db_path + " has no epoch in its meta table");
        }
        epoch = std::move(*stored);
      }
      write_db->exec("COMMIT");
    } catch (...) {
      write_db->exec("ROLLBACK");
      throw;
    }
    auto& db = *write_db;
    write = std::make_unique<WriteStatements>(WriteStatements{
        db.prepare("BEGIN"),
        db.prepare("COMMIT"),
        db.prepare("ROLLBACK"),
        db.prepare("SELECT id, top FROM channels WHERE name=?1"),
        db.prepare("INSERT INTO channels(name, top) VALUES(?1, 0)"),
        db.prepare("UPDATE channels SET top=?1 WHERE id=?2"),
        db.prepare("INSERT INTO publications(channel_id, seq, time_ms, data, publisher) VALUES(?1, ?2, ?3, ?4, ?5)"),
        db.prepare("DELETE FROM publications WHERE channel_id=?1 AND seq<=?2"),
        db.prepare("DELETE FROM publications WHERE channel_id=?1 AND time_ms<?2"),
        db.prepare("SELECT seq, expires_ms FROM idempotency_keys WHERE channel_id=?1 AND key=?2"),
        db.prepare("INSERT OR REPLACE INTO idempotency_keys(channel_id, key, seq, expires_ms) VALUES(?1, ?2, ?3, ?4)"),
        db.prepare("DELETE FROM idempotency_keys WHERE expires_ms<=?1"),
    });
  }

  void open_read_connection() {
    read_db = std::make_unique<sqlite::Connection>(db_path);
    sqlite3_busy_timeout(read_db->handle(), 5000);
    read_db->exec("PRAGMA query_only=1");
    auto& db = *read_db;
    read = std::make_unique<ReadStatements>(ReadStatements{
        db.prepare("BEGIN"),
        db.prepare("COMMIT"),
        db.prepare("SELECT id, top FROM channels WHERE name=?1"),
        db.prepare("SELECT seq, time_ms, data, publisher FROM publications"
                   " WHERE channel_id=?1 AND seq>?2 AND time_ms>=?3 ORDER BY seq LIMIT ?4"),
        db.prepare("SELECT seq, time_ms, data, publisher FROM publications"
                   " WHERE channel_id=?1 AND time_ms>=?2 ORDER BY seq DESC LIMIT ?3"),
    });
  }

  // Statements first: a connection closes only once its statements are gone.
  void close_storage() {
    read.reset();
    read_db.reset();
    write.reset();
    write_db.reset();
    if (lock_fd >= 0) {
      ::close(lock_fd);
      lock_fd = -1;
    }
  }

  // From any thread, also from a completion (on the writer or the reader):
  // then the threads finish what is queued on their own, and a later stop()
  // from another thread (the destructor's) joins them and closes the
  // database.
  void stop() {
    std::lock_guard stop_lock(stop_mutex);
    if (!stopped) {
      stopped = true;
      {
        std::lock_guard lock(queue_mutex);
        writer_stopping = true;
      }
      queue_cv.notify_all();
      {
        std::lock_guard lock(read_mutex);
        reader_stopping = true;
      }
      read_cv.notify_all();
    }
    // On one of the two threads, join neither: the other one may be waiting
    // for stop_mutex in a stop() of its own.
    const auto self = std::this_thread::get_id();
    if (writer.get_id() == self || reader.get_id() == self) return;
    if (writer.joinable()) writer.join();
    if (reader.joinable()) reader.join();
    close_storage();
  }

  // ---- writer ----

  void run_writer() {
    std::vector<PendingPublish> batch;
    batch.reserve(std::min<std::size_t>(options.max_batch, 4096));
    for (;;) {
      {
        std::unique_lock lock(queue_mutex);
        queue_cv.wait_for(lock, kWriterIdleWake, [&] { return !queue.empty() || writer_stopping; });
        if (queue.empty() && writer_stopping) break;
        const std::size_t count = std::min(queue.size(), options.max_batch);
        for (std::size_t i = 0; i < count; ++i) {
          queued_bytes -= queued_size(queue.front().request);
          batch.push_back(std::move(queue.front()));
          queue.pop_front();
        }
      }
      if (!batch.empty()) apply_batch(batch);
      batch.clear();
      purge_if_due();
    }
  }

  void rollback_if_open() noexcept {
    if (sqlite3_get_autocommit(write_db->handle())) return;  // SQLite already rolled back
    try {
      sqlite::Use(write->rollback)->run();
    } catch (...) {
    }
  }

  CachedChannel& channel_for(const std::string& name) {
    auto it = channels.find(name);
    if (it == channels.end()) {
      CachedChannel loaded;
      bool found = false;
      {
        sqlite::Use find(write->find_channel);
        find->bind_text(1, name);
        if (find->step()) {
          found = true;
          loaded.id = find->column_int64(0);
          loaded.top = from_sql(find->column_int64(1));
        }
      }
      if (!found) {
        sqlite::Use insert(write->insert_channel);
        insert->bind_text(1, name);
        insert->run();
        loaded.id = sqlite3_last_insert_rowid(write_db->handle());
      }
      it = channels.emplace(name, loaded).first;
    }
    CachedChannel& channel = it->second;
    if (channel.batch_index < 0) {
      channel.batch_index = static_cast<int>(touched.size());
      touched.push_back(TouchedChannel{&*it, channel.top, 0});
    }
    return channel;
  }

  void apply_one(PendingPublish& pending, PublishResult& result, PublicationPtr& applied_publication,
                 std::int64_t now) {
    PublishRequest& request = pending.request;
    CachedChannel& channel = channel_for(request.channel);
    const bool keyed = !request.idempotency_key.empty();
    if (keyed) {
      sqlite::Use find(write->find_key);
      find->bind(1, channel.id).bind_text(2, request.idempotency_key);
      if (find->step() && find->column_int64(1) > now) {
        result.duplicate = true;
        result.position = StreamPosition{epoch, from_sql(find->column_int64(0))};
        return;
      }
    }
    const std::uint64_t offset = ++channel.top;
    const HistoryOptions& history = request.history;
    TouchedChannel& touch = touched[static_cast<std::size_t>(channel.batch_index)];
    touch.trim_through = std::max(touch.trim_through, history.size >= offset ? 0 : offset - history.size);
    if (history.ttl.count() > 0) {
      channel.expiry_pending = true;
      channel.ttl_ms = detail::seconds_to_ms(history.ttl);
      channel.newest_ms = now;
    }

    auto publication = std::make_shared<Publication>();
    publication->offset = offset;
    publication->data = std::move(request.data);
    publication->publisher = std::move(request.publisher);
    publication->time_ms = now;
    if (history.size > 0) {
      sqlite::Use insert(write->insert_publication);
      insert->bind(1, channel.id).bind(2, to_sql(offset)).bind(3, now);
      insert->bind_blob(4, publication->data).bind_blob(5, publication->publisher);
      insert->run();
    }
    if (keyed) {
      sqlite::Use upsert(write->upsert_key);
      upsert->bind(1, channel.id).bind_text(2, request.idempotency_key).bind(3, to_sql(offset));
      upsert->bind(4, now + detail::seconds_to_ms(history.idempotency_window));
      upsert->run();
    }
    result.position = StreamPosition{epoch, offset};
    applied_publication = std::move(publication);
  }

  void finish_touched_channels() {
    for (const TouchedChannel& touch : touched) {
      const CachedChannel& channel = touch.entry->second;
      if (channel.top != touch.committed_top) {
        sqlite::Use update(write->update_top);
        update->bind(1, to_sql(channel.top)).bind(2, channel.id);
        update->run();
      }
      if (touch.trim_through > 0) {
        sqlite::Use trim(write->trim_publications);
        trim->bind(1, channel.id).bind(2, to_sql(touch.trim_through));
        trim->run();
      }
    }
  }

  void apply_batch(std::vector<PendingPublish>& batch) {
    const std::int64_t now = now_ms();
    results.assign(batch.size(), PublishResult{});
    applied.assign(batch.size(), nullptr);
    touched.clear();
    std::string failure;
    EngineErrc failure_code = EngineErrc::ok;
    try {
      sqlite::Use(write->begin)->run();
      for (std::size_t i = 0; i < batch.size(); ++i) apply_one(batch[i], results[i], applied[i], now);
      finish_touched_channels();
      sqlite::Use(write->commit)->run();
    } catch (const sqlite::Error& error) {
      failure_code = EngineErrc::unavailable;
      failure = std::string("sqlite: ") + error.what();
    } catch (const std::exception& error) {
      failure_code = EngineErrc::internal;
      failure = std::string("sqlite engine: ") + error.what();
    }

    if (failure_code != EngineErrc::ok) {
      rollback_if_open();
      // The cached tops and channel ids of this batch were rolled back with
      // it: forget them, the next publish reloads what was committed.
      for (const TouchedChannel& touch : touched) {
        const std::string name = touch.entry->first;
        channels.erase(name);
      }
      touched.clear();
      healthy.store(false, std::memory_order_relaxed);
      for (auto& pending : batch) {
        PublishResult result;
        result.error = failure_code;
        result.message = failure;
        if (pending.done) pending.done(std::move(result));
      }
      return;
    }
    for (const TouchedChannel& touch : touched) touch.entry->second.batch_index = -1;
    touched.clear();
    healthy.store(true, std::memory_order_relaxed);

    {
      std::lock_guard lock(deliver_mutex);
      if (deliver) {
        for (std::size_t i = 0; i < batch.size(); ++i) {
          if (!applied[i]) continue;
          scratch.channel.assign(batch[i].request.channel);
          scratch.publication = std::move(applied[i]);
          deliver(scratch);
        }
        scratch.publication.reset();
      }
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (batch[i].done) batch[i].done(std::move(results[i]));
    }
    applied.clear();
  }

  void purge_if_due() {
    const std::int64_t now = now_ms();
    if (now - last_purge_ms < kPurgeIntervalMs) return;
    last_purge_ms = now;
    try {
      sqlite::Use(write->begin)->run();
      {
        sqlite::Use purge(write->purge_keys);
        purge->bind(1, now);
        purge->run();
      }
      for (auto& [name, channel] : channels) {
        if (!channel.expiry_pending) continue;
        const std::int64_t cutoff = now - channel.ttl_ms;
        sqlite::Use expire(write->expire_publications);
        expire->bind(1, channel.id).bind(2, cutoff);
        expire->run();
        if (channel.newest_ms < cutoff) channel.expiry_pending = false;  // nothing left to expire
      }
      sqlite::Use(write->commit)->run();
    } catch (const std::exception&) {
      // Purging is housekeeping: expired rows are filtered on read anyway.
      rollback_if_open();
    }
  }

  // ---- reader ----

  void run_reader() {
    for (;;) {
      PendingHistory job;
      {
        std::unique_lock lock(read_mutex);
        read_cv.wait(lock, [&] { return !read_queue.empty() || reader_stopping; });
        if (read_queue.empty()) break;
        job = std::move(read_queue.front());
        read_queue.pop_front();
      }
      HistoryResult result = read_history(job.request);
      if (job.done) job.done(std::move(result));
    }
  }

  static PublicationPtr publication_from_row(sqlite::Statement& row) {
    auto publication = std::make_shared<Publication>();
    publication->offset = from_sql(row.column_int64(0));
    publication->time_ms = row.column_int64(1);
    publication->data = row.column_blob(2);
    publication->publisher = row.column_blob(3);
    return publication;
  }

  HistoryResult read_history(const HistoryRequest& request) {
    HistoryResult result;
    result.top.epoch = epoch;
    const std::int64_t cutoff = detail::ttl_cutoff_ms(now_ms(), request.history.ttl);
    const std::int64_t limit = to_sql(request.limit);
    try {
      // One read transaction: the top and the rows come from one snapshot.
      sqlite::Use(read->begin)->run();
      struct EndRead {
        Impl& impl;
        ~EndRead() {
          try {
            sqlite::Use(impl.read->commit)->run();
          } catch (...) {
          }
        }
      } end_read{*this};

      std::int64_t channel_id = 0;
      {
        sqlite::Use find(read->find_channel);
        find->bind_text(1, request.channel);
        if (find->step()) {
          channel_id = find->column_int64(0);
          result.top.offset = from_sql(find->column_int64(1));
        }
      }
      const std::uint64_t top = result.top.offset;
      auto& out = result.publications;
      if (request.since) {
        const StreamPosition& since = *request.since;
        if (!detail::since_is_answerable(since, epoch, top)) return result;
        if (channel_id != 0 && limit > 0) {
          sqlite::Use rows(read->since);
          rows->bind(1, channel_id).bind(2, to_sql(since.offset)).bind(3, cutoff).bind(4, limit);
          while (rows->step()) out.push_back(publication_from_row(*rows));
        }
        result.complete = detail::covers_range(out, since.offset, top);
      } else {
        if (channel_id != 0 && limit > 0) {
          sqlite::Use rows(read->newest);
          rows->bind(1, channel_id).bind(2, cutoff).bind(3, limit);
          while (rows->step()) out.push_back(publication_from_row(*rows));
          if (!request.reverse) std::reverse(out.begin(), out.end());
        }
        result.complete = top == 0 || out.size() == top;
      }
    } catch (const std::exception& error) {
      HistoryResult failed;
      failed.error = EngineErrc::unavailable;
      failed.message = std::string("sqlite: ") + error.what();
      failed.top.epoch = epoch;
      return failed;
    }
    return result;
  }

  void deliver_presence(ChannelEvent::Kind kind, const std::string& channel, const ClientInfo& client) {
    if (!deliver) return;
    ChannelEvent event;
    event.kind = kind;
    event.channel = channel;
    event.client = client;
    deliver(event);
  }
};

SqliteEngine::SqliteEngine(SqliteEngineOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

SqliteEngine::~SqliteEngine() { stop(); }

const std::string& SqliteEngine::epoch() const { return impl_->epoch; }
const std::string& SqliteEngine::database_path() const { return impl_->db_path; }

void SqliteEngine::set_deliver(Deliver deliver) {
  std::lock_guard lock(impl_->deliver_mutex);
  impl_->deliver = std::move(deliver);
}

void SqliteEngine::publish(PublishRequest request, std::function<void(PublishResult)> done) {
  PublishResult refused;
  {
    std::unique_lock lock(impl_->queue_mutex);
    auto& queue = impl_->queue;
    if (impl_->writer_stopping) {
      refused.message = "sqlite engine is stopped";
    } else if (queue.size() >= impl_->options.max_queue ||
               impl_->queued_bytes + queued_size(request) > impl_->options.max_queue_bytes) {
      refused.message = "sqlite engine is overloaded: " + std::to_string(queue.size()) + " publishes (" +
                        std::to_string(impl_->queued_bytes) + " bytes) waiting for the disk";
      impl_->refused.fetch_add(1, std::memory_order_relaxed);
    } else {
      // The writer only sleeps on an empty queue: wake it only then.
      const bool wake = queue.empty();
      impl_->queued_bytes += queued_size(request);
      queue.push_back(PendingPublish{std::move(request), std::move(done)});
      lock.unlock();
      if (wake) impl_->queue_cv.notify_one();
      return;
    }
  }
  refused.error = EngineErrc::unavailable;
  if (done) done(std::move(refused));
}

void SqliteEngine::history(HistoryRequest request, std::function<void(HistoryResult)> done) {
  {
    std::unique_lock lock(impl_->read_mutex);
    if (!impl_->reader_stopping) {
      const bool wake = impl_->read_queue.empty();
      impl_->read_queue.push_back(PendingHistory{std::move(request), std::move(done)});
      lock.unlock();
      if (wake) impl_->read_cv.notify_one();
      return;
    }
  }
  HistoryResult refused;
  refused.error = EngineErrc::unavailable;
  refused.message = "sqlite engine is stopped";
  refused.top.epoch = impl_->epoch;
  if (done) done(std::move(refused));
}

void SqliteEngine::presence_add(const std::string& channel, const ClientInfo& client, bool announce) {
  std::lock_guard lock(impl_->deliver_mutex);
  if (impl_->presence.add(channel, client) && announce) {
    impl_->deliver_presence(ChannelEvent::Kind::join, channel, client);
  }
}

void SqliteEngine::presence_remove(const std::string& channel, const ClientInfo& client, bool announce) {
  std::lock_guard lock(impl_->deliver_mutex);
  if (impl_->presence.remove(channel, client.client) && announce) {
    impl_->deliver_presence(ChannelEvent::Kind::leave, channel, client);
  }
}

void SqliteEngine::presence(const std::string& channel, std::function<void(std::vector<ClientInfo>)> done) {
  auto entries = impl_->presence.list(channel);
  if (done) done(std::move(entries));
}

bool SqliteEngine::healthy() const { return impl_->healthy.load(std::memory_order_relaxed); }

EngineHealth SqliteEngine::health() const {
  EngineHealth h;
  h.healthy = healthy();
  h.backends_up = h.healthy ? 1 : 0;
  {
    std::lock_guard lock(impl_->queue_mutex);
    h.in_flight = impl_->queue.size();
  }
  {
    std::lock_guard lock(impl_->read_mutex);
    h.in_flight += impl_->read_queue.size();
  }
  h.refused = impl_->refused.load(std::memory_order_relaxed);
  return h;
}

void SqliteEngine::stop() { impl_->stop(); }

}  // namespace duplex::engines
