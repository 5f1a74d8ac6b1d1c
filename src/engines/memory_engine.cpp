#include "duplex/engines/memory_engine.hpp"

#include <algorithm>
#include <array>
#include <deque>
#include <functional>
#include <mutex>
#include <unordered_map>

#include "engine_clock.hpp"
#include "history_rules.hpp"
#include "idempotency_cache.hpp"
#include "presence_registry.hpp"

namespace duplex::engines {

namespace {

// Channels are spread over shards so publishers to different channels rarely
// share a lock; one shard's lock covers assign + store + deliver, which keeps
// each channel's deliveries in offset order and one at a time.
constexpr std::size_t kShardCount = 16;

struct ChannelState {
  std::uint64_t top = 0;
  // Contiguous offsets ending at `top`; null while empty, so channels without
  // history cost no deque.
  std::unique_ptr<std::deque<PublicationPtr>> history;
};

struct Shard {
  std::mutex mutex;
  std::unordered_map<std::string, ChannelState> channels;
  detail::IdempotencyCache idempotency;
  // Reused for every publication delivered from this shard: no per-publish
  // copy of the channel name's allocation or the epoch.
  ChannelEvent scratch;
};

}  // namespace

struct MemoryEngine::Impl {
  std::string epoch = detail::make_epoch();
  detail::ClockMs clock;
  Deliver deliver;
  std::array<Shard, kShardCount> shards;
  detail::PresenceRegistry presence;

  std::int64_t now_ms() const { return clock ? clock() : detail::system_now_ms(); }

  Shard& shard_for(const std::string& channel) {
    return shards[std::hash<std::string>{}(channel) % kShardCount];
  }

  static void store(ChannelState& channel, const PublicationPtr& publication,
                    const HistoryOptions& options, std::int64_t now_ms) {
    if (options.size == 0) {
      channel.history.reset();
      return;
    }
    if (!channel.history) channel.history = std::make_unique<std::deque<PublicationPtr>>();
    auto& kept = *channel.history;
    kept.push_back(publication);
    while (kept.size() > options.size) kept.pop_front();
    const auto cutoff = detail::ttl_cutoff_ms(now_ms, options.ttl);
    while (!kept.empty() && kept.front()->time_ms < cutoff) kept.pop_front();
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

MemoryEngine::MemoryEngine(MemoryEngineOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->clock = std::move(options.clock);
  for (auto& shard : impl_->shards) {
    shard.scratch.kind = ChannelEvent::Kind::publication;
    shard.scratch.epoch = impl_->epoch;
  }
}

MemoryEngine::~MemoryEngine() = default;

const std::string& MemoryEngine::epoch() const { return impl_->epoch; }

void MemoryEngine::set_deliver(Deliver deliver) { impl_->deliver = std::move(deliver); }

void MemoryEngine::publish(PublishRequest request, std::function<void(PublishResult)> done) {
  const std::int64_t now = impl_->now_ms();
  Shard& shard = impl_->shard_for(request.channel);
  PublishResult result;
  {
    std::lock_guard lock(shard.mutex);
    auto [it, inserted] = shard.channels.try_emplace(std::move(request.channel));
    const std::string& channel_name = it->first;
    ChannelState& channel = it->second;
    const bool keyed = !request.idempotency_key.empty();
    if (keyed) {
      shard.idempotency.purge(now);
      if (auto first = shard.idempotency.find(channel_name, request.idempotency_key, now)) {
        result.duplicate = true;
        result.position = StreamPosition{impl_->epoch, *first};
      }
    }
    if (!result.duplicate) {
      const std::uint64_t offset = ++channel.top;
      auto publication = std::make_shared<Publication>();
      publication->offset = offset;
      publication->data = std::move(request.data);
      publication->publisher = std::move(request.publisher);
      publication->time_ms = now;
      PublicationPtr stored = std::move(publication);
      Impl::store(channel, stored, request.history, now);
      if (keyed) {
        shard.idempotency.record(channel_name, request.idempotency_key, offset,
                                 now + detail::seconds_to_ms(request.history.idempotency_window));
      }
      if (impl_->deliver) {
        shard.scratch.channel.assign(channel_name);
        shard.scratch.publication = std::move(stored);
        impl_->deliver(shard.scratch);
        shard.scratch.publication.reset();
      }
      result.position = StreamPosition{impl_->epoch, offset};
    }
  }
  if (done) done(std::move(result));
}

void MemoryEngine::history(HistoryRequest request, std::function<void(HistoryResult)> done) {
  const std::int64_t now = impl_->now_ms();
  const std::int64_t cutoff = detail::ttl_cutoff_ms(now, request.history.ttl);
  Shard& shard = impl_->shard_for(request.channel);
  HistoryResult result;
  result.top.epoch = impl_->epoch;
  {
    std::lock_guard lock(shard.mutex);
    auto it = shard.channels.find(request.channel);
    const std::uint64_t top = it == shard.channels.end() ? 0 : it->second.top;
    const std::deque<PublicationPtr>* kept =
        it == shard.channels.end() ? nullptr : it->second.history.get();
    result.top.offset = top;
    auto& out = result.publications;

    if (request.since) {
      const StreamPosition& since = *request.since;
      const bool answerable = detail::since_is_answerable(since, impl_->epoch, top);
      if (answerable && kept && !kept->empty() && request.limit > 0) {
        const std::uint64_t first = kept->front()->offset;
        // Offsets in `kept` are contiguous: index straight to since + 1.
        std::size_t index = since.offset + 1 >= first ? static_cast<std::size_t>(since.offset + 1 - first) : 0;
        for (; index < kept->size() && out.size() < request.limit; ++index) {
          const auto& publication = (*kept)[index];
          if (publication->time_ms >= cutoff) out.push_back(publication);
        }
      }
      result.complete = answerable && detail::covers_range(out, since.offset, top);
    } else {
      if (kept && request.limit > 0) {
        for (auto pos = kept->rbegin(); pos != kept->rend() && out.size() < request.limit; ++pos) {
          if ((*pos)->time_ms >= cutoff) out.push_back(*pos);
        }
        if (!request.reverse) std::reverse(out.begin(), out.end());
      }
      result.complete = top == 0 || out.size() == top;
    }
  }
  if (done) done(std::move(result));
}

void MemoryEngine::presence_add(const std::string& channel, const ClientInfo& client, bool announce) {
  Shard& shard = impl_->shard_for(channel);
  std::lock_guard lock(shard.mutex);  // orders join/leave with this channel's publications
  if (impl_->presence.add(channel, client) && announce) {
    impl_->deliver_presence(ChannelEvent::Kind::join, channel, client);
  }
}

void MemoryEngine::presence_remove(const std::string& channel, const ClientInfo& client, bool announce) {
  Shard& shard = impl_->shard_for(channel);
  std::lock_guard lock(shard.mutex);
  if (impl_->presence.remove(channel, client.client) && announce) {
    impl_->deliver_presence(ChannelEvent::Kind::leave, channel, client);
  }
}

void MemoryEngine::presence(const std::string& channel, std::function<void(std::vector<ClientInfo>)> done) {
  auto entries = impl_->presence.list(channel);
  if (done) done(std::move(entries));
}

}  // namespace duplex::engines
