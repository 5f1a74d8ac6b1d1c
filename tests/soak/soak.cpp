// Soak load for a running `duplex serve` (scripts/soak starts the server):
// HubClients connect, subscribe to a few channels, publish messages that
// carry a unique id, drop their connection and recover, leave for good and
// are replaced by new ones. At the end every subscription is checked: the
// offsets it received are exactly the channel's, in order, with no gap and
// no duplicate from its first subscription on, and every acknowledged
// publish reached every subscriber that was there throughout.
//
//   soak --url ws://127.0.0.1:PORT/connection/websocket --secret S
//        [--seconds 600] [--clients 200] [--channels 20] [--rate 200]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "duplex/client/hub_client.hpp"
#include "duplex/hub/token.hpp"

using namespace duplex;
using namespace std::chrono_literals;

namespace {

struct Options {
  std::string url;
  std::string secret;
  std::string channel_prefix = "soak:c";
  double seconds = 600;
  std::size_t clients = 200;
  std::size_t channels = 20;
  double rate = 200;              // publishes per second, all clients together
  std::size_t channels_per_client = 3;
  double drop_every_s = 60;       // mean time between connection drops, per client
  double leave_every_s = 180;     // mean lifetime of a client before it leaves for good
};

struct Counters {
  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> publishes_sent{0};
  std::atomic<std::uint64_t> publishes_acked{0};
  std::atomic<std::uint64_t> publishes_duplicate_acks{0};
  std::atomic<std::uint64_t> publish_failures{0};
  std::atomic<std::uint64_t> publish_failures_closed{0};  // pending when their client left: expected
  std::atomic<std::uint64_t> drops{0};
  std::atomic<std::uint64_t> leaves{0};
  std::atomic<std::uint64_t> joins{0};
  std::atomic<std::uint64_t> deliveries{0};
  std::atomic<std::uint64_t> lost{0};
  std::atomic<std::uint64_t> duplicated{0};
  std::atomic<std::uint64_t> out_of_order{0};
  std::atomic<std::uint64_t> errors{0};
};

Counters counters;
std::mutex report_mutex;
int error_lines = 0;

void report_error(const std::string& what) {
  counters.errors++;
  std::lock_guard lock(report_mutex);
  if (error_lines++ < 50) std::fprintf(stderr, "soak: error: %s\n", what.c_str());
}

// Acknowledged publishes: channel -> offset -> publish id.
class AckLog {
 public:
  explicit AckLog(std::size_t channels) : by_channel_(channels) {}
  void record(std::size_t channel, std::uint64_t offset, std::uint64_t id, bool duplicate) {
    std::lock_guard lock(m_);
    auto [it, inserted] = by_channel_[channel].emplace(offset, id);
    if (!inserted && it->second != id)
      report_error("channel " + std::to_string(channel) + " offset " + std::to_string(offset) + " acked for ids " +
                   std::to_string(it->second) + " and " + std::to_string(id) + (duplicate ? " (duplicate ack)" : ""));
  }
  std::map<std::uint64_t, std::uint64_t> channel(std::size_t c) {
    std::lock_guard lock(m_);
    return by_channel_[c];
  }

 private:
  std::mutex m_;
  std::vector<std::map<std::uint64_t, std::uint64_t>> by_channel_;
};

std::uint64_t id_in(const std::string& data) {
  const auto at = data.find("\"id\":");
  if (at == std::string::npos) return 0;
  return std::strtoull(data.c_str() + at + 5, nullptr, 10);
}

// What one subscription of one client received.
struct Track {
  std::size_t channel = 0;
  bool subscribed = false;
  std::string epoch;
  std::uint64_t base = 0;           // the channel's offset at the first subscription
  std::uint64_t last = 0;           // highest offset received (or base)
  std::vector<std::uint64_t> ids;   // ids[offset - base - 1], 0 = not received
  std::set<std::uint64_t> missing;  // offsets skipped over so far
};

class SoakClient {
 public:
  SoakClient(const Options& options, std::uint64_t number, std::vector<std::size_t> channels)
      : number_(number) {
    client::HubClientOptions o;
    o.url = options.url;
    hub::TokenClaims claims;
    claims.sub = "soak-" + std::to_string(number);
    claims.exp = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                     .count() +
                 24 * 3600;
    o.token = hub::sign_token_hs256(hub::make_claims_json(claims), options.secret);
    o.backoff_base = 100ms;
    o.backoff_cap = 2000ms;
    o.command_timeout = 30'000ms;
    o.max_queued_publishes = 100'000;
    client_ = std::make_unique<client::HubClient>(std::move(o));
    client::StateHandlers state;
    state.on_connected = [](const client::ConnectedEvent&) { counters.connections++; };
    state.on_error = [this](const client::Error& e) {
      report_error("client " + std::to_string(number_) + ": " + std::to_string(e.code) + " " + e.message);
    };
    client_->set_state_handlers(std::move(state));
    for (auto c : channels) {
      tracks_.push_back(std::make_unique<Track>());
      tracks_.back()->channel = c;
    }
    for (std::size_t i = 0; i < channels.size(); ++i)
      if (auto refused = client_->subscribe(options.channel_prefix + std::to_string(channels[i]), handlers(*tracks_[i])))
        report_error("subscribe refused: " + refused->message);
    client_->connect();
  }

  const std::vector<std::unique_ptr<Track>>& tracks() const { return tracks_; }
  std::mutex& mutex() { return m_; }
  client::HubClient& hub() { return *client_; }
  std::uint64_t number() const { return number_; }
  void close() { client_->close(); }

 private:
  client::SubscriptionHandlers handlers(Track& t) {
    client::SubscriptionHandlers h;
    h.on_subscribed = [this, &t](const client::SubscribedEvent& e) {
      std::lock_guard lock(m_);
      if (!t.subscribed) {
        t.subscribed = true;
        t.epoch = e.position.epoch;
        t.base = t.last = e.position.offset;
        return;
      }
      if (e.position.epoch != t.epoch) report_error(where(t) + " epoch changed to " + e.position.epoch);
      if (!e.recovering || !e.recovered) report_error(where(t) + " resubscribed without recovering everything");
    };
    h.on_message = [this, &t](const client::Message& m) {
      std::lock_guard lock(m_);
      counters.deliveries++;
      if (!t.subscribed) {
        report_error(where(t) + " message before subscribed");
        return;
      }
      const auto offset = m.offset;
      if (offset <= t.base) {
        counters.duplicated++;
        return;
      }
      const auto index = offset - t.base - 1;
      if (t.ids.size() <= index) t.ids.resize(index + 1, 0);
      if (offset > t.last) {
        for (auto o = t.last + 1; o < offset; ++o) t.missing.insert(o);
        t.last = offset;
        t.ids[index] = id_in(m.data);
      } else if (t.missing.erase(offset)) {
        counters.out_of_order++;
        t.ids[index] = id_in(m.data);
      } else {
        counters.duplicated++;
      }
    };
    h.on_gap = [this, &t](const client::GapEvent& g) {
      report_error(where(t) + " gap after offset " + std::to_string(g.last_seen.offset) + ", resumed at " +
                   std::to_string(g.resumed_at.offset));
    };
    h.on_error = [this, &t](const std::string&, const client::Error& e, bool will_retry) {
      report_error(where(t) + " subscribe error " + std::to_string(e.code) + " " + e.message +
                   (will_retry ? " (retrying)" : ""));
    };
    h.on_unsubscribed = [this, &t](const client::UnsubscribedEvent& e) {
      report_error(where(t) + " unsubscribed by the server: " + std::to_string(e.code) + " " + e.reason);
    };
    return h;
  }
  std::string where(const Track& t) const {
    return "client " + std::to_string(number_) + " channel " + std::to_string(t.channel);
  }

  std::uint64_t number_;
  std::mutex m_;
  std::vector<std::unique_ptr<Track>> tracks_;
  std::unique_ptr<client::HubClient> client_;
};

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return false;
    const std::string value = argv[++i];
    if (arg == "--url") o.url = value;
    else if (arg == "--secret") o.secret = value;
    else if (arg == "--seconds") o.seconds = std::stod(value);
    else if (arg == "--clients") o.clients = std::stoul(value);
    else if (arg == "--channels") o.channels = std::stoul(value);
    else if (arg == "--rate") o.rate = std::stod(value);
    else if (arg == "--drop-every") o.drop_every_s = std::stod(value);
    else if (arg == "--leave-every") o.leave_every_s = std::stod(value);
    else if (arg == "--channel-prefix") o.channel_prefix = value;
    else return false;
  }
  return !o.url.empty() && !o.secret.empty() && o.clients > 0 && o.channels > 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  try {
    if (!parse(argc, argv, options)) {
      std::fprintf(stderr,
                   "usage: soak --url WS_URL --secret HMAC_SECRET [--seconds 600] [--clients 200] [--channels 20]\n"
                   "            [--rate 200] [--drop-every 60] [--leave-every 180] [--channel-prefix soak:c]\n");
      return 2;
    }
  } catch (const std::exception&) {
    std::fprintf(stderr, "soak: bad number in arguments\n");
    return 2;
  }
  options.channels_per_client = std::min(options.channels_per_client, options.channels);

  std::mt19937_64 random(std::random_device{}());
  AckLog acks(options.channels);
  std::atomic<std::uint64_t> next_id{1};
  std::uint64_t next_client = 1;
  std::vector<std::unique_ptr<SoakClient>> alive;
  std::vector<std::unique_ptr<SoakClient>> departed;

  auto pick_channels = [&] {
    std::vector<std::size_t> all(options.channels);
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
    std::shuffle(all.begin(), all.end(), random);
    all.resize(options.channels_per_client);
    return all;
  };
  auto join = [&] { alive.push_back(std::make_unique<SoakClient>(options, next_client++, pick_channels())); };
  for (std::size_t i = 0; i < options.clients; ++i) join();

  // Every tick: the publishes due at --rate, and drops and departures at
  // their mean rates, spread over random clients.
  constexpr auto tick = 50ms;
  const double tick_s = std::chrono::duration<double>(tick).count();
  const double drop_p = tick_s / options.drop_every_s;
  const double leave_p = tick_s / options.leave_every_s;
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  double publish_credit = 0;
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                               std::chrono::duration<double>(options.seconds));
  auto next_tick = start;
  auto next_progress = start + 30s;
  while (std::chrono::steady_clock::now() < end) {
    next_tick += tick;
    std::this_thread::sleep_until(next_tick);
    publish_credit += options.rate * tick_s;
    while (publish_credit >= 1) {
      publish_credit -= 1;
      auto& c = *alive[random() % alive.size()];
      const auto channel = c.tracks()[random() % c.tracks().size()]->channel;
      const auto id = next_id++;
      const std::string data = "{\"id\":" + std::to_string(id) + ",\"client\":" + std::to_string(c.number()) + "}";
      counters.publishes_sent++;
      const auto refused = c.hub().publish(options.channel_prefix + std::to_string(channel), data,
                      [&acks, channel, id](const client::Outcome<client::PublishResult>& o) {
                        if (o.ok()) {
                          counters.publishes_acked++;
                          if (o.value.duplicate) counters.publishes_duplicate_acks++;
                          acks.record(channel, o.value.offset, id, o.value.duplicate);
                        } else if (o.error->code == client::error_code::closed) {
                          counters.publish_failures_closed++;
                        } else {
                          counters.publish_failures++;
                          report_error("publish " + std::to_string(id) + " failed: " + std::to_string(o.error->code) +
                                       " " + o.error->message);
                        }
                      });
      if (refused) {
        counters.publish_failures++;
        report_error("publish " + std::to_string(id) + " refused: " + refused->message);
      }
    }
    for (auto& c : alive)
      if (unit(random) < drop_p) {
        counters.drops++;
        c->hub().drop_connection_for_test();
      }
    for (std::size_t i = 0; i < alive.size(); ++i)
      if (unit(random) < leave_p) {
        counters.leaves++;
        alive[i]->close();
        departed.push_back(std::move(alive[i]));
        alive[i] = std::make_unique<SoakClient>(options, next_client++, pick_channels());
        counters.joins++;
      }
    if (std::chrono::steady_clock::now() >= next_progress) {
      next_progress += 30s;
      std::printf("soak: %.0fs connections %llu acked %llu deliveries %llu errors %llu\n",
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                  static_cast<unsigned long long>(counters.connections.load()),
                  static_cast<unsigned long long>(counters.publishes_acked.load()),
                  static_cast<unsigned long long>(counters.deliveries.load()),
                  static_cast<unsigned long long>(counters.errors.load()));
      std::fflush(stdout);
    }
  }

  // Drain: wait for outstanding acks, then for every subscriber to reach the
  // highest acknowledged offset of each of its channels.
  const auto drain_deadline = std::chrono::steady_clock::now() + 60s;
  auto settled = [&] {
    return counters.publishes_acked + counters.publish_failures + counters.publish_failures_closed >=
           counters.publishes_sent;
  };
  while (!settled() && std::chrono::steady_clock::now() < drain_deadline) std::this_thread::sleep_for(100ms);
  std::vector<std::map<std::uint64_t, std::uint64_t>> acked(options.channels);
  for (std::size_t c = 0; c < options.channels; ++c) acked[c] = acks.channel(c);
  auto caught_up = [&] {
    for (auto& c : alive) {
      std::lock_guard lock(c->mutex());
      for (auto& t : c->tracks())
        if (!acked[t->channel].empty() && t->last < acked[t->channel].rbegin()->first) return false;
    }
    return true;
  };
  while (!caught_up() && std::chrono::steady_clock::now() < drain_deadline) std::this_thread::sleep_for(100ms);
  for (auto& c : alive) c->close();
  for (auto& c : departed) c->close();

  // Check. Subscribers still here at the end were subscribed throughout from
  // their first subscription: each must hold every acked publish after its
  // base. Departed ones are checked for order up to where they stopped.
  std::uint64_t checked = 0;
  std::uint64_t id_mismatch = 0;
  auto check = [&](SoakClient& c, bool throughout) {
    std::lock_guard lock(c.mutex());
    for (auto& t : c.tracks()) {
      if (!t->subscribed) {
        if (throughout) report_error("client " + std::to_string(c.number()) + " never subscribed");
        continue;
      }
      counters.lost += t->missing.size();
      if (!throughout) continue;
      for (auto it = acked[t->channel].upper_bound(t->base); it != acked[t->channel].end(); ++it) {
        ++checked;
        const auto index = it->first - t->base - 1;
        const auto got = index < t->ids.size() ? t->ids[index] : 0;
        if (got == 0) {
          if (it->first > t->last) counters.lost++;  // below last it is already in `missing`
        } else if (got != it->second) {
          ++id_mismatch;
          report_error("client " + std::to_string(c.number()) + " channel " + std::to_string(t->channel) + " offset " +
                       std::to_string(it->first) + " carried id " + std::to_string(got) + ", acked as " +
                       std::to_string(it->second));
        }
      }
    }
  };
  for (auto& c : alive) check(*c, true);
  for (auto& c : departed) check(*c, false);

  std::printf("soak report\n");
  std::printf("  duration_s               %.0f\n", options.seconds);
  std::printf("  clients (concurrent)     %zu\n", options.clients);
  std::printf("  channels                 %zu\n", options.channels);
  std::printf("  rate (publishes/s)       %.0f\n", options.rate);
  auto line = [](const char* name, std::uint64_t v) {
    std::printf("  %-24s %llu\n", name, static_cast<unsigned long long>(v));
  };
  line("connections made", counters.connections);
  line("connection drops", counters.drops);
  line("clients left", counters.leaves);
  line("clients joined", counters.joins);
  line("publishes sent", counters.publishes_sent);
  line("publishes acked", counters.publishes_acked);
  line("duplicate acks", counters.publishes_duplicate_acks);
  line("publish failures", counters.publish_failures);
  line("failed as closed (left)", counters.publish_failures_closed);
  line("messages received", counters.deliveries);
  line("deliveries checked", checked);
  line("lost", counters.lost);
  line("duplicated", counters.duplicated);
  line("out-of-order", counters.out_of_order);
  line("id mismatches", id_mismatch);
  line("errors", counters.errors);
  std::fflush(stdout);
  departed.clear();
  alive.clear();
  const bool clean = counters.lost == 0 && counters.duplicated == 0 && counters.out_of_order == 0 &&
                     counters.errors == 0 && checked > 0;
  std::printf("soak: %s\n", clean ? "PASS" : "FAIL");
  return clean ? 0 : 1;
}
