#include "ordered_delivery.hpp"

#include <utility>

namespace duplex::engines::detail {

OrderedDelivery::OrderedDelivery(OrderedDeliveryOptions options, Callbacks callbacks)
    : options_(options), callbacks_(std::move(callbacks)) {
  if (options_.max_held == 0) options_.max_held = 1;
}

void OrderedDelivery::add(const std::string& channel) { channels_.try_emplace(channel); }

void OrderedDelivery::remove(const std::string& channel) {
  pending_.erase(channel);
  channels_.erase(channel);
}

bool OrderedDelivery::tracked(const std::string& channel) const { return channels_.count(channel) != 0; }

bool OrderedDelivery::baselined(const std::string& channel) const {
  auto it = channels_.find(channel);
  return it != channels_.end() && it->second.baselined;
}

std::size_t OrderedDelivery::held(const std::string& channel) const {
  auto it = channels_.find(channel);
  return it == channels_.end() ? 0 : it->second.held.size();
}

void OrderedDelivery::reset(const std::string& channel) {
  auto it = channels_.find(channel);
  if (it == channels_.end()) return;
  pending_.erase(channel);
  it->second = Channel{};
}

bool OrderedDelivery::has_gap(const Channel& state) const {
  return state.baselined && !state.held.empty() && state.held.begin()->first > state.delivered + 1;
}

void OrderedDelivery::unpend(const std::string& channel, const Channel& state) {
  if (has_gap(state))
    pending_.insert(channel);
  else
    pending_.erase(channel);
}

void OrderedDelivery::set_baseline(const std::string& channel, const std::string& epoch, std::uint64_t offset,
                                   TimePoint now) {
  (void)now;
  Channel& state = channels_[channel];
  if (state.baselined && state.epoch == epoch) {
    // A second baseline in the same epoch never moves delivery backwards.
    if (offset <= state.delivered) return;
  }
  state.baselined = true;
  state.epoch = epoch;
  state.delivered = offset;
  state.fill_id = 0;
  for (auto it = state.held.begin(); it != state.held.end();) {
    Held& entry = it->second;
    if (it->first <= offset || (!entry.epoch.empty() && entry.epoch != epoch)) {
      it = state.held.erase(it);
    } else {
      entry.epoch.clear();
      ++it;
    }
  }
  drain(channel, state);
}

void OrderedDelivery::accept(const std::string& channel, const std::string& epoch, PublicationPtr publication,
                             TimePoint now) {
  if (!publication) return;
  auto it = channels_.find(channel);
  if (it == channels_.end()) return;
  Channel& state = it->second;
  const std::uint64_t offset = publication->offset;

  if (!state.baselined) {
    // Before the baseline nothing is known: keep arrivals (bounded; the
    // lowest go first, they are the likeliest to fall under the baseline,
    // and a gap they leave is filled from history).
    if (state.held.count(offset) != 0) {
      ++stats_.duplicates;
      return;
    }
    state.held.emplace(offset, Held{std::move(publication), now, epoch, false});
    while (state.held.size() > options_.max_held) state.held.erase(state.held.begin());
    return;
  }

  if (epoch != state.epoch) {
    // History was lost (or replaced) behind this channel: offsets of the two
    // epochs cannot be compared. Subscribers recover; the arrival stays as an
    // early arrival for the next baseline.
    resubscribe(channel, state);
    state.held.emplace(offset, Held{std::move(publication), now, epoch, false});
    return;
  }

  if (offset <= state.delivered || state.held.count(offset) != 0) {
    ++stats_.duplicates;
    return;
  }
  if (offset == state.delivered + 1) {
    // The common case: in order. It may also close a gap.
    state.delivered = offset;
    ++stats_.delivered;
    if (callbacks_.deliver) callbacks_.deliver(channel, state.epoch, publication);
    if (!state.held.empty()) drain(channel, state);
    return;
  }
  state.held.emplace(offset, Held{std::move(publication), now, std::string(), false});
  if (state.held.size() > options_.max_held) {
    resubscribe(channel, state);
    return;
  }
  drain(channel, state);
}

void OrderedDelivery::drain(const std::string& channel, Channel& state) {
  while (!state.held.empty()) {
    auto first = state.held.begin();
    if (first->first <= state.delivered) {
      state.held.erase(first);
      continue;
    }
    if (first->first != state.delivered + 1) break;
    PublicationPtr publication = std::move(first->second.publication);
    const bool from_fill = first->second.from_fill;
    state.held.erase(first);
    state.delivered = publication->offset;
    ++stats_.delivered;
    if (from_fill)
      ++stats_.filled;
    else
      ++stats_.reordered;
    if (callbacks_.deliver) callbacks_.deliver(channel, state.epoch, publication);
  }
  unpend(channel, state);
}

void OrderedDelivery::resubscribe(const std::string& channel, Channel& state) {
  ++stats_.resubscribes;
  pending_.erase(channel);
  state = Channel{};
  if (callbacks_.resubscribe) callbacks_.resubscribe(channel);
}

std::optional<OrderedDelivery::TimePoint> OrderedDelivery::next_deadline() const {
  std::optional<TimePoint> next;
  for (const auto& channel : pending_) {
    auto it = channels_.find(channel);
    if (it == channels_.end()) continue;
    const Channel& state = it->second;
    if (state.fill_id != 0 || !has_gap(state)) continue;
    const TimePoint due = state.held.begin()->second.arrived + options_.reorder_window;
    if (!next || due < *next) next = due;
  }
  return next;
}

void OrderedDelivery::tick(TimePoint now) {
  std::vector<FillRequest> requests;
  for (const auto& channel : pending_) {
    auto it = channels_.find(channel);
    if (it == channels_.end()) continue;
    Channel& state = it->second;
    if (state.fill_id != 0 || !has_gap(state)) continue;
    if (state.held.begin()->second.arrived + options_.reorder_window > now) continue;
    FillRequest request;
    request.channel = channel;
    request.epoch = state.epoch;
    request.from = state.delivered + 1;
    // Up to the newest held offset: one read closes every gap seen so far.
    request.to = state.held.rbegin()->first - 1;
    request.id = next_fill_id_++;
    state.fill_id = request.id;
    state.fill_to = request.to;
    requests.push_back(std::move(request));
  }
  stats_.fills += requests.size();
  for (const auto& request : requests)
    if (callbacks_.fill) callbacks_.fill(request);
}

void OrderedDelivery::filled(const std::string& channel, std::uint64_t id,
                             const std::vector<PublicationPtr>& publications, bool complete, TimePoint now) {
  auto it = channels_.find(channel);
  if (it == channels_.end()) return;
  Channel& state = it->second;
  if (id == 0 || state.fill_id != id) return;  // stale: the channel was reset or re-baselined since
  state.fill_id = 0;
  if (!complete) {
    resubscribe(channel, state);
    return;
  }
  for (const auto& publication : publications) {
    if (!publication || publication->offset <= state.delivered) continue;
    state.held.try_emplace(publication->offset, Held{publication, now, std::string(), true});
  }
  drain(channel, state);
  // "Complete" yet the range is still not covered (offsets missing from the
  // answer): nothing more can be read, subscribers recover.
  if (state.delivered < state.fill_to) resubscribe(channel, state);
}

}  // namespace duplex::engines::detail
