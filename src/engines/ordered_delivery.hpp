// The NATS engine's reorder and gap-fill stage. Sans-I/O: no threads, no
// sockets, no clock of its own (every call that needs the time is given it).
//
// NATS core subjects are at-most-once and two nodes' publishes to one
// channel race: offsets N and N+1 are assigned in Redis in that order, but a
// third node may receive N+1 first, or never receive N. Per channel this
// stage takes publications as they arrive and hands them on strictly in
// offset order, each once:
//
//   - a channel starts unbaselined; set_baseline(epoch, offset) says "every
//     offset up to here is in history, deliver from offset + 1 on". Arrivals
//     before the baseline are held and sorted out when it comes;
//   - an offset at or below the last delivered one is a duplicate: dropped;
//   - a later offset waits up to `reorder_window` for the missing ones; when
//     the window expires (tick) a gap fill is requested: the engine reads the
//     range from history and answers with filled();
//   - an unfillable gap, an epoch change or more than `max_held` waiting
//     publications in one channel: the channel's subscribers must resubscribe
//     (the resubscribe callback), and the channel is reset to unbaselined
//     (the engine reads a new baseline and calls set_baseline again).
//
// Callbacks run synchronously inside the call that caused them and must not
// call back into this object.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "duplex/engines/engine.hpp"

namespace duplex::engines::detail {

struct OrderedDeliveryOptions {
  std::chrono::milliseconds reorder_window{500};
  std::size_t max_held = 10'000;  // publications waiting per channel
};

class OrderedDelivery {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;

  // Read publications from `from` to `to` (inclusive) of `channel` in epoch
  // `epoch`; answer with filled(channel, id, ...).
  struct FillRequest {
    std::string channel;
    std::string epoch;
    std::uint64_t from = 0;
    std::uint64_t to = 0;
    std::uint64_t id = 0;
  };

  struct Callbacks {
    std::function<void(const std::string& channel, const std::string& epoch, const PublicationPtr&)> deliver;
    std::function<void(const FillRequest&)> fill;
    std::function<void(const std::string& channel)> resubscribe;
  };

  struct Stats {
    std::uint64_t delivered = 0;
    std::uint64_t duplicates = 0;     // dropped: at or below the delivered offset, or already held
    std::uint64_t reordered = 0;      // held, then delivered once the gap before it closed
    std::uint64_t fills = 0;          // fill requests
    std::uint64_t filled = 0;         // publications delivered from fills
    std::uint64_t resubscribes = 0;
  };

  OrderedDelivery(OrderedDeliveryOptions options, Callbacks callbacks);

  // Starts tracking `channel` (unbaselined) if it is not tracked yet.
  void add(const std::string& channel);
  // Stops tracking; a fill in flight for it is ignored when it answers.
  void remove(const std::string& channel);
  bool tracked(const std::string& channel) const;
  bool baselined(const std::string& channel) const;

  // Everything up to (epoch, offset) reaches subscribers through history:
  // delivery continues from offset + 1. Held arrivals of another epoch or at
  // or below `offset` are dropped. Tracks the channel if it was not.
  void set_baseline(const std::string& channel, const std::string& epoch, std::uint64_t offset, TimePoint now);
  // Forgets the channel's baseline and held publications (no callback).
  void reset(const std::string& channel);

  // A publication as it arrived. Ignored for untracked channels.
  void accept(const std::string& channel, const std::string& epoch, PublicationPtr publication, TimePoint now);

  // Requests fills for gaps older than the reorder window.
  void tick(TimePoint now);
  // When tick() next has something to do (nullopt: nothing waits).
  std::optional<TimePoint> next_deadline() const;

  // The answer to fill request `id`: the publications read (any order, any
  // of the range) and whether they cover the whole range in the request's
  // epoch. Incomplete: resubscribe. Stale ids are ignored.
  void filled(const std::string& channel, std::uint64_t id, const std::vector<PublicationPtr>& publications,
              bool complete, TimePoint now);

  std::size_t held(const std::string& channel) const;
  const Stats& stats() const { return stats_; }

 private:
  struct Held {
    PublicationPtr publication;
    TimePoint arrived;
    std::string epoch;  // only set before the baseline
    bool from_fill = false;
  };
  struct Channel {
    bool baselined = false;
    std::string epoch;
    std::uint64_t delivered = 0;
    std::map<std::uint64_t, Held> held;
    std::uint64_t fill_id = 0;  // 0: no fill in flight
    std::uint64_t fill_to = 0;  // the fill in flight ends here
  };

  void drain(const std::string& channel, Channel& state);
  void hold(const std::string& channel, Channel& state, std::uint64_t offset, Held entry);
  void resubscribe(const std::string& channel, Channel& state);
  bool has_gap(const Channel& state) const;
  void unpend(const std::string& channel, const Channel& state);

  OrderedDeliveryOptions options_;
  Callbacks callbacks_;
  std::unordered_map<std::string, Channel> channels_;
  // Channels holding publications behind a gap (what tick() looks at).
  std::unordered_set<std::string> pending_;
  std::uint64_t next_fill_id_ = 1;
  Stats stats_;
};

}  // namespace duplex::engines::detail
