#include "redis_sentinels.hpp"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <charconv>

namespace duplex::engines::detail {

namespace {

constexpr std::size_t kMaxHostLength = 255;
constexpr std::size_t kMaxSwitchMessage = 1024;

bool valid_host(std::string_view host) {
  if (host.empty() || host.size() > kMaxHostLength) return false;
  return std::all_of(host.begin(), host.end(), [](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == ':' ||
           c == '-' || c == '_';
  });
}

std::optional<int> valid_port(std::string_view text) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  int port = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (ec != std::errc{} || end != text.data() + text.size() || port <= 0 || port > 65535) return std::nullopt;
  return port;
}

std::optional<RedisNodeAddress> make_address(std::string_view host, std::string_view port) {
  const auto number = valid_port(port);
  if (!valid_host(host) || !number) return std::nullopt;
  return RedisNodeAddress{std::string(host), *number};
}

}  // namespace

std::optional<RedisNodeAddress> parse_master_address(const redisReply* reply, std::string& why) {
  if (!reply || reply->type == REDIS_REPLY_NIL) {
    why = "does not know the master";
    return std::nullopt;
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    why = std::string(reply->str, std::min<std::size_t>(reply->len, 200));
    return std::nullopt;
  }
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 || reply->element[0]->type != REDIS_REPLY_STRING ||
      reply->element[1]->type != REDIS_REPLY_STRING) {
    why = "gave a malformed master address";
    return std::nullopt;
  }
  auto address = make_address({reply->element[0]->str, reply->element[0]->len},
                              {reply->element[1]->str, reply->element[1]->len});
  if (!address) why = "gave a malformed master address";
  return address;
}

std::optional<RedisNodeAddress> parse_switch_master(std::string_view message, std::string_view master_name) {
  if (message.size() > kMaxSwitchMessage) return std::nullopt;
  std::string_view fields[5];
  std::size_t count = 0;
  while (!message.empty()) {
    const auto space = message.find(' ');
    if (count == 5) return std::nullopt;  // more than five fields
    fields[count++] = message.substr(0, space);
    message = space == std::string_view::npos ? std::string_view{} : message.substr(space + 1);
  }
  if (count != 5 || fields[0] != master_name) return std::nullopt;
  return make_address(fields[3], fields[4]);
}

RedisSentinels::RedisSentinels(asio::io_context& io, const RedisConfig& config) : master_name_(config.sentinel_master) {
  for (const auto& address : config.sentinels) {
    auto options = [&] {
      RedisConnectionOptions o = redis_connection_options(config, parse_redis_address(address));
      o.username.clear();  // a sentinel has its own password, no ACL user
      o.password = config.sentinel_password;
      return o;
    };
    Sentinel sentinel;
    sentinel.query = std::make_unique<RedisConnection>(io, options());
    sentinel.events = std::make_unique<RedisConnection>(io, options());
    RedisConnection* events = sentinel.events.get();
    events->set_on_ready([events] { events->pubsub_command({"SUBSCRIBE", "+switch-master"}); });
    events->set_on_push([this](redisReply* reply) {
      if (stopped_ || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) return;
      const redisReply* kind = reply->element[0];
      const redisReply* payload = reply->element[2];
      if (kind->type != REDIS_REPLY_STRING || std::string_view(kind->str, kind->len) != "message" ||
          payload->type != REDIS_REPLY_STRING)
        return;
      const auto master = parse_switch_master({payload->str, payload->len}, master_name_);
      if (!master) return;
      for (const auto& listener : listeners_) listener(*master);
    });
    sentinels_.push_back(std::move(sentinel));
  }
}

RedisSentinels::~RedisSentinels() { stop(); }

void RedisSentinels::start() {
  for (auto& sentinel : sentinels_) {
    sentinel.query->start();
    sentinel.events->start();
  }
}

void RedisSentinels::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& sentinel : sentinels_) {
    sentinel.query->stop();
    sentinel.events->stop();
  }
}

void RedisSentinels::find_master(RedisConnection::Found found) {
  if (stopped_ || sentinels_.empty()) return found("", 0, "engine stopped");
  ask(preferred_, 0, std::make_shared<std::string>(), std::move(found));
}

void RedisSentinels::ask(std::size_t index, std::size_t asked, std::shared_ptr<std::string> errors,
                         RedisConnection::Found found) {
  if (stopped_) return found("", 0, "engine stopped");
  if (asked == sentinels_.size()) return found("", 0, "no sentinel names " + label() + ": " + *errors);
  RedisConnection& sentinel = *sentinels_[index].query;
  sentinel.command({"SENTINEL", "get-master-addr-by-name", master_name_},
                   [this, index, asked, errors, found = std::move(found)](redisReply* reply, const std::string& error) {
                     std::string why;
                     std::optional<RedisNodeAddress> master;
                     if (reply) master = parse_master_address(reply, why);
                     else why = error;
                     if (master) {
                       preferred_ = index;
                       return found(master->host, master->port, "");
                     }
                     const std::string& who = sentinels_[index].query->address();
                     *errors += (errors->empty() ? "" : "; ") + std::string("sentinel ") + who + ": " + why;
                     ask((index + 1) % sentinels_.size(), asked + 1, errors, found);
                   });
}

std::vector<std::string> redis_targets(const RedisConfig& config) {
  if (config.sentinels.empty()) return config.addresses;
  return {std::string()};
}

void follow_sentinels(RedisConnection& connection, RedisSentinels& sentinels) {
  connection.set_locate([&sentinels](RedisConnection::Found found) { sentinels.find_master(std::move(found)); },
                        sentinels.label());
  sentinels.on_switch([&connection](const RedisNodeAddress& master) { connection.follow_master(master.host, master.port); });
}

}  // namespace duplex::engines::detail
