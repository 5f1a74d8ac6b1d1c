// The in-memory engine: offsets, history, idempotency keys and presence in
// this process only. Every instance has a new random epoch (its history
// starts empty), so clients that recover across a restart learn that
// history was lost. Publishes are applied and delivered on the caller's
// thread; `done` runs inline, after the delivery. Deliveries are made under
// the channel's lock: the deliver callback must not call back into the
// engine synchronously (the hub only posts to its loops).
//
// Memory stays bounded: at most history.size publications per channel
// (expired ones are dropped on the channel's next publish and never
// returned), idempotency keys until their window ends, and one offset per
// channel ever published (offsets are never reused within an epoch).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "duplex/engines/engine.hpp"

namespace duplex::engines {

struct MemoryEngineOptions {
  // Unix milliseconds; empty: the system clock. Tests inject one to step
  // over history TTLs and idempotency windows.
  std::function<std::int64_t()> clock;
};

class MemoryEngine final : public Engine {
 public:
  explicit MemoryEngine(MemoryEngineOptions options = {});
  ~MemoryEngine() override;
  MemoryEngine(const MemoryEngine&) = delete;
  MemoryEngine& operator=(const MemoryEngine&) = delete;

  void set_deliver(Deliver deliver) override;
  void publish(PublishRequest request, std::function<void(PublishResult)> done) override;
  void history(HistoryRequest request, std::function<void(HistoryResult)> done) override;
  void presence_add(const std::string& channel, const ClientInfo& client, bool announce) override;
  void presence_remove(const std::string& channel, const ClientInfo& client, bool announce) override;
  void presence(const std::string& channel, std::function<void(std::vector<ClientInfo>)> done) override;
  std::string name() const override { return "memory"; }

  const std::string& epoch() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace duplex::engines
