// The embedded durable engine (the default): SQLite in WAL mode at
// <data_dir>/duplex.db. One writer thread owns the write connection and
// applies queued publishes in batches, one transaction per batch; a
// publication is delivered and acknowledged only after its batch committed,
// so an acknowledged publish survives a process crash (synchronous=NORMAL)
// or a power loss (`fsync`: synchronous=FULL). History reads run on their own
// thread and connection, so a long read does not stall publishes.
//
// The epoch is created with the database and kept across restarts; offsets
// continue where they were. Presence lives in memory.
//
// Publication deliveries and `done` run on the writer thread, history `done`
// on the reader thread, join/leave deliveries on the caller's thread under
// the delivery lock: the deliver callback must not call back into the engine
// synchronously.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "duplex/engines/config.hpp"
#include "duplex/engines/engine.hpp"

namespace duplex::engines {

struct SqliteEngineOptions {
  std::string data_dir = "data";   // created if missing
  bool fsync = false;              // synchronous=FULL instead of NORMAL
  std::size_t max_batch = 1024;    // publishes per transaction
  // Publishes waiting for the writer; beyond this they fail at once with
  // `unavailable` instead of growing memory without bound.
  std::size_t max_queue = EngineConfig{}.max_in_flight;
  std::size_t max_queue_bytes = 256u << 20;  // data + publisher bytes waiting, same rule
  // Caps the database file (PRAGMA max_page_count); 0: SQLite's default.
  // A full database fails publishes with `unavailable`, like a full disk.
  std::uint32_t max_database_pages = 0;
  // Unix milliseconds; empty: the system clock. Tests inject one to step
  // over history TTLs and idempotency windows.
  std::function<std::int64_t()> clock;
};

class SqliteEngine final : public Engine {
 public:
  // Opens or creates the database. Throws std::runtime_error when the data
  // dir cannot be created or written, is used by another engine, or holds a
  // database of another schema version.
  explicit SqliteEngine(SqliteEngineOptions options);
  ~SqliteEngine() override;  // stop()
  SqliteEngine(const SqliteEngine&) = delete;
  SqliteEngine& operator=(const SqliteEngine&) = delete;

  void set_deliver(Deliver deliver) override;
  void publish(PublishRequest request, std::function<void(PublishResult)> done) override;
  void history(HistoryRequest request, std::function<void(HistoryResult)> done) override;
  void presence_add(const std::string& channel, const ClientInfo& client, bool announce) override;
  void presence_remove(const std::string& channel, const ClientInfo& client, bool announce) override;
  void presence(const std::string& channel, std::function<void(std::vector<ClientInfo>)> done) override;
  bool healthy() const override;
  // in_flight: publishes and history reads queued; refused: publishes refused
  // because the queue was full.
  EngineHealth health() const override;
  std::string name() const override { return "sqlite"; }
  // Commits and acknowledges every queued publish, answers queued history
  // reads, then stops the threads and closes the database. Later calls fail
  // with `unavailable`. From one of the engine's own callbacks it returns at
  // once (the queued work still completes); the engine must not be
  // destroyed from one of its callbacks.
  void stop() override;

  const std::string& epoch() const;
  const std::string& database_path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace duplex::engines
