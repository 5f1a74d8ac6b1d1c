#include "duplex/client/hub_session.hpp"

#include <algorithm>
#include <random>

#include "support/json.hpp"
#include "wire/commands.hpp"
#include "wire/server_frames.hpp"

namespace duplex::client {

namespace {

constexpr std::size_t max_channel_bytes = 255;
constexpr std::size_t max_idempotency_key_bytes = 128;
constexpr std::size_t max_data_depth = 32;
constexpr std::uint64_t max_ping_seconds = 24 * 3600;  // a hostile `ping` must not overflow time arithmetic

bool is_transient_error(int code) {
  return code == error_code::internal || code == error_code::too_many_requests || code == error_code::unavailable;
}

}  // namespace

struct HubSession::Subscription {
  std::string channel;
  SubscriptionHandlers handlers;
  SubscribeOptions options;
  SubscriptionState state = SubscriptionState::subscribing;
  bool active = true;       // false once removed (callbacks may still hold it)
  bool positioned = false;  // `position` is meaningful (something was delivered or a start was given)
  hub::StreamPosition position;
  std::uint64_t pending_id = 0;  // id of the subscribe in flight, 0 if none
  unsigned retry_attempt = 0;
  std::optional<TimePoint> retry_at;
  std::vector<Message> early;  // pushes that came before the subscribe reply
};

namespace {

std::string_view kind_name(hub::CommandType kind) {
  return kind == hub::CommandType::unknown ? "unknown" : wire::command_names[static_cast<std::size_t>(kind)];
}

}  // namespace

HubSession::HubSession(SessionOptions options, Random random)
    : options_(std::move(options)),
      random_(std::move(random)),
      parser_(std::make_unique<wire::ServerFrameParser>()) {
  if (!random_) {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device()};
    auto engine = std::make_shared<std::mt19937_64>(seed);
    random_ = [engine] { return (*engine)(); };
  }
}

HubSession::~HubSession() = default;

void HubSession::set_state_handlers(StateHandlers handlers) { state_handlers_ = std::move(handlers); }

// ---- rules ---------------------------------------------------------------------

Millis HubSession::full_jitter(Millis base, Millis cap, unsigned attempt, std::uint64_t random) {
  if (base.count() <= 0 || cap.count() <= 0) return Millis{0};
  const auto cap_ms = static_cast<std::uint64_t>(cap.count());
  auto ceiling = static_cast<std::uint64_t>(base.count());
  for (unsigned i = 0; i < attempt && ceiling < cap_ms; ++i) ceiling *= 2;
  ceiling = std::min(ceiling, cap_ms);
  return Millis{static_cast<Millis::rep>(random % (ceiling + 1))};
}

bool HubSession::should_reconnect(std::uint16_t code) {
  switch (code) {
    case 1002:  // protocol error
    case 1003:  // unsupported data
    case 1007:  // invalid payload
    case 1009:  // message too big
    case 1010:  // mandatory extension
      return false;
    case 4502:  // token expired without refresh: reconnect with a new token
      return true;
    default:
      break;
  }
  // PROTOCOL.md: 4000-4499 are worth a reconnect, 4500-4999 are final (the
  // same split for the 3xxx application range).
  if (code >= 4500 && code <= 4999) return false;
  if (code >= 3500 && code <= 3999) return false;
  return true;
}

std::optional<Error> HubSession::validate_channel(std::string_view channel) {
  if (channel.empty() || channel.size() > max_channel_bytes)
    return Error{error_code::invalid_argument, "channel name must be 1-255 bytes"};
  for (const char c : channel)
    if (c < 0x21 || c > 0x7E)
      return Error{error_code::invalid_argument, "channel name must be printable ASCII without spaces"};
  return std::nullopt;
}

std::optional<Error> HubSession::validate_publish(std::string_view channel, std::string_view data,
                                                  std::string_view idempotency_key, std::size_t max_data_bytes) {
  if (auto error = validate_channel(channel)) return error;
  if (data.size() > max_data_bytes)
    return Error{error_code::invalid_argument,
                 "data is " + std::to_string(data.size()) + " bytes, over the limit of " + std::to_string(max_data_bytes)};
  if (!hub::is_valid_json(data, max_data_depth))
    return Error{error_code::invalid_argument, "data is not one valid JSON value (at most 32 levels deep)"};
  if (idempotency_key.size() > max_idempotency_key_bytes)
    return Error{error_code::invalid_argument, "idempotency key is longer than 128 bytes"};
  return std::nullopt;
}

// ---- state ---------------------------------------------------------------------

ConnectionState HubSession::state() const {
  switch (phase_) {
    case Phase::idle: return ConnectionState::disconnected;
    case Phase::opening:
    case Phase::awaiting_token:
    case Phase::authenticating: return ConnectionState::connecting;
    case Phase::connected: return ConnectionState::connected;
    case Phase::closed: return ConnectionState::closed;
  }
  return ConnectionState::disconnected;
}

SubscriptionState HubSession::subscription_state(std::string_view channel) const {
  const auto sub = find_subscription(channel);
  return sub ? sub->state : SubscriptionState::unsubscribed;
}

std::optional<hub::StreamPosition> HubSession::position(std::string_view channel) const {
  const auto sub = find_subscription(channel);
  if (!sub || !sub->positioned) return std::nullopt;
  return sub->position;
}

HubSession::SubscriptionPtr HubSession::find_subscription(std::string_view channel) const {
  const auto it = subscriptions_.find(channel);
  return it == subscriptions_.end() ? nullptr : it->second;
}

bool HubSession::still_current(const SubscriptionPtr& sub) const {
  if (!sub->active) return false;
  const auto it = subscriptions_.find(sub->channel);
  return it != subscriptions_.end() && it->second == sub;
}

void HubSession::set_phase(Phase phase) {
  const Phase previous = phase_;
  phase_ = phase;
  if (phase == Phase::opening && previous != Phase::opening && state_handlers_.on_connecting)
    state_handlers_.on_connecting();
}

void HubSession::emit_disconnected(std::uint16_t code, std::string reason, bool will_reconnect, Millis delay) {
  if (!state_handlers_.on_disconnected) return;
  state_handlers_.on_disconnected(DisconnectedEvent{code, std::move(reason), will_reconnect, delay});
}

void HubSession::report_error(int code, std::string message) {
  if (state_handlers_.on_error) state_handlers_.on_error(Error{code, std::move(message)});
}

void HubSession::request_close(std::uint16_t code, std::string reason, bool reconnect) {
  if (close_requested_) return;
  close_requested_ = true;
  forced_close_ = ForcedClose{code, reason, reconnect};
  close_request_ = CloseRequest{code, std::move(reason)};
}

// ---- outputs ---------------------------------------------------------------------

std::vector<std::string> HubSession::take_outgoing() {
  std::vector<std::string> out;
  out.swap(outgoing_);
  return out;
}

std::optional<std::uint64_t> HubSession::take_token_request() {
  auto request = token_request_;
  token_request_.reset();
  return request;
}

std::optional<CloseRequest> HubSession::take_close_request() {
  auto request = std::move(close_request_);
  close_request_.reset();
  return request;
}

std::uint64_t HubSession::request_token() {
  token_request_id_ = next_seq_++;
  token_request_ = token_request_id_;
  return token_request_id_;
}

// ---- commands ---------------------------------------------------------------------

void HubSession::send_command(Command command, TimePoint now) {
  command.id = next_id_++;
  command.deadline = now + options_.command_timeout;
  hub::Command out;
  out.type = command.kind;
  out.id = command.id;
  out.channel = command.channel;
  if (command.kind == CommandKind::publish) {
    out.data = command.payload;
    out.idempotency_key = command.key;
  } else {
    out.token = command.payload;
  }
  out.recover = command.recover;
  out.epoch = command.since.epoch;
  out.offset = command.since.offset;
  out.has_limit = command.history.limit.has_value();
  out.limit = command.history.limit.value_or(0);
  out.has_since = command.history.since.has_value();
  if (out.has_since) {
    out.since_epoch = command.history.since->epoch;
    out.since_offset = command.history.since->offset;
  }
  out.reverse = command.history.reverse;
  outgoing_.push_back(wire::write_command(out));
  const std::uint64_t id = command.id;
  in_flight_.emplace(id, std::move(command));
}

void HubSession::enqueue(Command command) {
  queue_.push_back(std::move(command));
  while (queue_.size() > options_.max_queued_publishes) {
    Command oldest = std::move(queue_.front());
    queue_.pop_front();
    fail_command(oldest, Error{error_code::queue_overflow,
                               "dropped: more than " + std::to_string(options_.max_queued_publishes) +
                                   " commands waiting for a connection"});
  }
}

void HubSession::flush_queue(TimePoint now) {
  std::deque<Command> waiting;
  waiting.swap(queue_);
  for (auto& command : waiting) send_command(std::move(command), now);
}

void HubSession::fail_command(Command& command, const Error& error) {
  switch (command.kind) {
    case CommandKind::publish:
      if (command.on_publish) {
        Outcome<PublishResult> outcome;
        outcome.error = error;
        outcome.value.idempotency_key = command.key;
        command.on_publish(outcome);
      }
      break;
    case CommandKind::presence:
      if (command.on_presence) command.on_presence(Outcome<PresenceResult>{error, {}});
      break;
    case CommandKind::history:
      if (command.on_history) command.on_history(Outcome<HistoryResult>{error, {}});
      break;
    default:
      break;
  }
}

void HubSession::fail_all_commands(const Error& error) {
  std::vector<Command> failed;
  for (auto& [id, command] : in_flight_) failed.push_back(std::move(command));
  for (auto& command : queue_) failed.push_back(std::move(command));
  in_flight_.clear();
  queue_.clear();
  std::sort(failed.begin(), failed.end(), [](const Command& a, const Command& b) { return a.seq < b.seq; });
  for (auto& command : failed) fail_command(command, error);
}

void HubSession::send_authenticate(const std::string& token, TimePoint now) {
  Command command;
  command.kind = CommandKind::authenticate;
  command.seq = next_seq_++;
  command.payload = token;
  send_command(std::move(command), now);
}

void HubSession::send_subscribe(const SubscriptionPtr& sub, TimePoint now) {
  Command command;
  command.kind = CommandKind::subscribe;
  command.seq = next_seq_++;
  command.channel = sub->channel;
  command.payload = sub->options.token;
  if (sub->positioned) {
    command.recover = true;
    command.since = sub->position;
  }
  sub->pending_id = next_id_;  // send_command takes this id
  sub->retry_at.reset();
  sub->early.clear();
  send_command(std::move(command), now);
}

// ---- application API ---------------------------------------------------------------

std::optional<Error> HubSession::subscribe(std::string channel, SubscriptionHandlers handlers,
                                           SubscribeOptions options, TimePoint now) {
  if (auto error = validate_channel(channel)) return error;
  if (subscriptions_.contains(channel))
    return Error{error_code::already_subscribed, "already subscribed to " + channel};
  auto sub = std::make_shared<Subscription>();
  sub->channel = channel;
  sub->handlers = std::move(handlers);
  if (options.since) {
    sub->positioned = true;
    sub->position = *options.since;
  }
  sub->options = std::move(options);
  subscriptions_.emplace(std::move(channel), sub);
  if (phase_ == Phase::connected) send_subscribe(sub, now);
  return std::nullopt;
}

void HubSession::unsubscribe(std::string_view channel, TimePoint now) {
  const auto it = subscriptions_.find(channel);
  if (it == subscriptions_.end()) return;
  const SubscriptionPtr sub = it->second;
  const bool known_to_server =
      phase_ == Phase::connected && (sub->state == SubscriptionState::subscribed || sub->pending_id != 0);
  sub->active = false;
  sub->state = SubscriptionState::unsubscribed;
  subscriptions_.erase(it);
  if (known_to_server) {
    Command command;
    command.kind = CommandKind::unsubscribe;
    command.seq = next_seq_++;
    command.channel = sub->channel;
    send_command(std::move(command), now);
  }
}

std::optional<Error> HubSession::publish(std::string channel, std::string data, PublishCallback done,
                                         PublishOptions options, TimePoint now) {
  if (auto error = validate_publish(channel, data, options.idempotency_key, options_.max_data_bytes)) return error;
  Command command;
  command.kind = CommandKind::publish;
  command.seq = next_seq_++;
  command.channel = std::move(channel);
  command.payload = std::move(data);
  command.key = options.idempotency_key.empty() ? new_idempotency_key() : std::move(options.idempotency_key);
  command.on_publish = std::move(done);
  if (phase_ == Phase::connected) send_command(std::move(command), now);
  else enqueue(std::move(command));
  return std::nullopt;
}

std::optional<Error> HubSession::presence(std::string channel, PresenceCallback done, TimePoint now) {
  if (auto error = validate_channel(channel)) return error;
  Command command;
  command.kind = CommandKind::presence;
  command.seq = next_seq_++;
  command.channel = std::move(channel);
  command.on_presence = std::move(done);
  if (phase_ == Phase::connected) send_command(std::move(command), now);
  else enqueue(std::move(command));
  return std::nullopt;
}

std::optional<Error> HubSession::history(std::string channel, HistoryOptions options, HistoryCallback done,
                                         TimePoint now) {
  if (auto error = validate_channel(channel)) return error;
  Command command;
  command.kind = CommandKind::history;
  command.seq = next_seq_++;
  command.channel = std::move(channel);
  command.history = std::move(options);
  command.on_history = std::move(done);
  if (phase_ == Phase::connected) send_command(std::move(command), now);
  else enqueue(std::move(command));
  return std::nullopt;
}

void HubSession::close(TimePoint) {
  if (phase_ == Phase::closed) return;
  const bool transport_up = phase_ != Phase::idle;
  phase_ = Phase::closed;
  if (transport_up) request_close(session_close::normal, "client closed", false);
  token_request_.reset();
  token_request_id_ = 0;
  ping_ = Millis{0};
  for (auto& [channel, sub] : subscriptions_) {
    sub->state = SubscriptionState::subscribing;
    sub->pending_id = 0;
    sub->early.clear();
  }
  emit_disconnected(session_close::normal, "client closed", false, Millis{0});
  fail_all_commands(Error{error_code::closed, "client closed"});
}

std::string HubSession::new_idempotency_key() {
  static constexpr char hex[] = "0123456789abcdef";
  std::uint64_t bits = random_();
  std::string key(16, '0');
  for (auto& c : key) {
    c = hex[bits & 15];
    bits >>= 4;
  }
  return key;
}

// ---- transport events ---------------------------------------------------------------

void HubSession::on_transport_connecting(TimePoint) {
  if (phase_ == Phase::closed) attempt_ = 0;  // connect() again after a stop starts a fresh backoff
  forced_close_.reset();
  disconnect_push_.reset();
  close_requested_ = false;
  close_request_.reset();
  outgoing_.clear();
  token_request_.reset();
  token_request_id_ = 0;
  set_phase(Phase::opening);
}

void HubSession::on_transport_open(TimePoint now) {
  if (phase_ == Phase::closed) {
    close_request_ = CloseRequest{session_close::normal, "client closed"};
    return;
  }
  if (phase_ == Phase::idle) set_phase(Phase::opening);
  if (phase_ != Phase::opening) return;
  last_frame_at_ = now;
  if (options_.use_token_provider) {
    phase_ = Phase::awaiting_token;
    token_for_refresh_ = false;
    token_deadline_ = now + options_.command_timeout;
    request_token();
  } else {
    phase_ = Phase::authenticating;
    send_authenticate(options_.token, now);
  }
}

void HubSession::on_token(std::uint64_t request, TokenResult result, TimePoint now) {
  if (request == 0 || request != token_request_id_) return;
  token_request_id_ = 0;
  if (token_for_refresh_) {
    if (phase_ != Phase::connected) return;
    if (!result.error.empty()) {
      report_error(error_code::token_unavailable, "token refresh failed: " + result.error);
      return;
    }
    Command command;
    command.kind = CommandKind::refresh;
    command.seq = next_seq_++;
    command.payload = std::move(result.token);
    send_command(std::move(command), now);
    return;
  }
  if (phase_ != Phase::awaiting_token) return;
  if (!result.error.empty()) {
    report_error(error_code::token_unavailable, "token provider failed: " + result.error);
    request_close(session_close::auth_failed, "token unavailable", true);
    return;
  }
  phase_ = Phase::authenticating;
  send_authenticate(result.token, now);
}

ReconnectDecision HubSession::on_transport_closed(std::uint16_t code, std::string_view reason, TimePoint) {
  token_request_.reset();
  token_request_id_ = 0;
  outgoing_.clear();
  close_request_.reset();
  close_requested_ = false;
  ping_ = Millis{0};

  // Unacknowledged publishes (same idempotency key) and reads go out again
  // after the reconnect, in their original order; subscriptions resubscribe.
  std::vector<Command> again;
  for (auto& [id, command] : in_flight_) {
    if (command.kind == CommandKind::publish || command.kind == CommandKind::presence ||
        command.kind == CommandKind::history)
      again.push_back(std::move(command));
  }
  in_flight_.clear();
  for (auto& command : queue_) again.push_back(std::move(command));
  queue_.clear();
  std::sort(again.begin(), again.end(), [](const Command& a, const Command& b) { return a.seq < b.seq; });
  for (auto& command : again) enqueue(std::move(command));
  for (auto& [channel, sub] : subscriptions_) {
    sub->state = SubscriptionState::subscribing;
    sub->pending_id = 0;
    sub->retry_at.reset();
    sub->early.clear();
  }

  if (phase_ == Phase::closed) {  // close() already failed what was pending and told the application
    forced_close_.reset();
    disconnect_push_.reset();
    return {};
  }
  bool reconnect = false;
  std::uint16_t final_code = code;
  std::string final_reason(reason);
  if (forced_close_) {
    final_code = forced_close_->code;
    final_reason = forced_close_->reason;
    reconnect = forced_close_->reconnect;
  } else {
    if (disconnect_push_) {
      final_code = disconnect_push_->code;
      final_reason = disconnect_push_->reason;
      reconnect = disconnect_push_->reconnect;
    } else {
      reconnect = should_reconnect(code);
    }
    // A fixed token that expired would only be refused again.
    if (final_code == session_close::token_expired && !options_.use_token_provider) reconnect = false;
  }
  forced_close_.reset();
  disconnect_push_.reset();

  if (reconnect) {
    const Millis delay = full_jitter(options_.backoff_base, options_.backoff_cap, attempt_, random_());
    ++attempt_;
    phase_ = Phase::idle;
    emit_disconnected(final_code, std::move(final_reason), true, delay);
    if (phase_ == Phase::closed) return {};  // the handler closed the client
    return {true, delay};
  }
  phase_ = Phase::closed;
  std::string message = "disconnected (" + std::to_string(final_code) + " " + final_reason + ")";
  emit_disconnected(final_code, std::move(final_reason), false, Millis{0});
  fail_all_commands(Error{error_code::closed, std::move(message)});
  return {};
}

void HubSession::tick(TimePoint now) {
  // Command timeouts. Reads fail; anything whose outcome must not be lost
  // (publish, subscribe, authenticate, ...) means the connection is stale:
  // drop it, reconnect and resend.
  std::vector<Command> expired_reads;
  std::string_view stale_command;
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    switch (it->second.kind) {
      case CommandKind::presence:
      case CommandKind::history:
        expired_reads.push_back(std::move(it->second));
        it = in_flight_.erase(it);
        break;
      case CommandKind::unsubscribe:
        it = in_flight_.erase(it);
        break;
      default:
        if (stale_command.empty()) stale_command = kind_name(it->second.kind);
        ++it;
        break;
    }
  }
  if (!stale_command.empty())
    request_close(session_close::stale, "no reply to " + std::string(stale_command) + " within the command timeout",
                  true);

  if (token_request_id_ != 0 && now >= token_deadline_) {
    token_request_id_ = 0;
    token_request_.reset();
    if (token_for_refresh_) {
      report_error(error_code::token_unavailable, "token provider did not answer a refresh in time");
    } else if (phase_ == Phase::awaiting_token) {
      report_error(error_code::token_unavailable, "token provider did not answer in time");
      request_close(session_close::auth_failed, "token unavailable", true);
    }
  }

  if (phase_ == Phase::connected) {
    if (ping_.count() > 0) {
      if (now - last_frame_at_ > ping_ + options_.ping_timeout) {
        request_close(session_close::stale, "no frame from the server within ping + ping_timeout", true);
      } else if (now >= next_ping_at_) {
        Command ping;
        ping.kind = CommandKind::ping;
        ping.seq = next_seq_++;
        send_command(std::move(ping), now);
        next_ping_at_ = now + ping_;
      }
    }
    for (auto& [channel, sub] : subscriptions_)
      if (sub->state == SubscriptionState::subscribing && sub->pending_id == 0 && sub->retry_at &&
          *sub->retry_at <= now)
        send_subscribe(sub, now);
  }

  for (auto& command : expired_reads)
    fail_command(command, Error{error_code::timeout, "no reply within the command timeout"});
}

// ---- frames from the server -------------------------------------------------------------

void HubSession::on_text(std::string_view text, TimePoint now) {
  if (phase_ == Phase::idle || phase_ == Phase::closed) return;  // a frame from a transport we gave up
  last_frame_at_ = now;
  wire::ServerFrame frame;
  std::string error;
  if (!parser_->parse(text, frame, error)) {
    ++malformed_frames_;
    report_error(error_code::bad_frame, "ignored a malformed frame from the server: " + error);
    return;
  }
  const std::string& type = frame.type;
  if (type == "reply") {
    if (!frame.id) {
      ++malformed_frames_;
      report_error(error_code::bad_frame, "ignored a reply without an id");
      return;
    }
    const auto it = in_flight_.find(*frame.id);
    if (it == in_flight_.end()) return;  // late (timed out) or never sent: nothing waits for it
    Command command = std::move(it->second);
    in_flight_.erase(it);
    handle_reply(std::move(command), frame, now);
  } else if (type == "message") {
    handle_message(frame);
  } else if (type == "join" || type == "leave") {
    const auto sub = find_subscription(frame.channel);
    if (!sub || sub->state != SubscriptionState::subscribed) return;
    const auto& handler = type == "join" ? sub->handlers.on_join : sub->handlers.on_leave;
    if (handler) handler(sub->channel, frame.client_info);
  } else if (type == "unsubscribe") {
    const auto it = subscriptions_.find(frame.channel);
    if (it == subscriptions_.end()) return;
    const SubscriptionPtr sub = it->second;
    const int code = static_cast<int>(frame.code.value_or(0));
    if (code >= 2500 && code < 3000 && phase_ == Phase::connected) {
      // The server lost continuity: resubscribe from our position, recovering the gap.
      sub->state = SubscriptionState::subscribing;
      send_subscribe(sub, now);
      return;
    }
    sub->active = false;
    sub->state = SubscriptionState::unsubscribed;
    subscriptions_.erase(it);
    if (sub->handlers.on_unsubscribed)
      sub->handlers.on_unsubscribed(
          UnsubscribedEvent{sub->channel, static_cast<int>(frame.code.value_or(0)), std::move(frame.reason)});
  } else if (type == "refresh") {
    if (phase_ == Phase::connected && options_.use_token_provider && token_request_id_ == 0) {
      token_for_refresh_ = true;
      token_deadline_ = now + options_.command_timeout;
      request_token();
    }
  } else if (type == "disconnect") {
    const auto code = static_cast<std::uint16_t>(std::clamp<std::int64_t>(frame.code.value_or(0), 0, 65535));
    disconnect_push_ = ForcedClose{code, std::move(frame.reason), frame.reconnect.value_or(should_reconnect(code))};
  } else if (type == "connected") {
    if (phase_ == Phase::opening || phase_ == Phase::awaiting_token || phase_ == Phase::authenticating)
      handle_connected(frame, now);
  }
  // Other types: newer than this client; ignored.
}

void HubSession::handle_reply(Command command, wire::ServerFrame& frame, TimePoint now) {
  std::optional<Error> error;
  if (frame.has_error) error = Error{static_cast<int>(frame.error_code), std::move(frame.error_message)};
  else if (!frame.has_result) error = Error{error_code::bad_frame, "reply without result or error"};

  switch (command.kind) {
    case CommandKind::authenticate:
      // A token in the URL or a header got a `connected` push before this
      // reply, which is then "already authenticated": the session stands.
      if (phase_ == Phase::connected) break;
      if (error) handle_auth_error(*error);
      else handle_connected(frame, now);
      break;
    case CommandKind::subscribe: {
      const auto sub = find_subscription(command.channel);
      if (!sub || sub->pending_id != command.id) break;  // unsubscribed (or resubscribed) meanwhile
      sub->pending_id = 0;
      if (error) {
        sub->early.clear();
        if (is_transient_error(error->code)) {
          sub->retry_at = now + full_jitter(options_.backoff_base, options_.backoff_cap, sub->retry_attempt++, random_());
          if (sub->handlers.on_error) sub->handlers.on_error(sub->channel, *error, true);
        } else {
          sub->active = false;
          sub->state = SubscriptionState::unsubscribed;
          subscriptions_.erase(sub->channel);
          if (sub->handlers.on_error) sub->handlers.on_error(sub->channel, *error, false);
          if (sub->handlers.on_unsubscribed)
            sub->handlers.on_unsubscribed(UnsubscribedEvent{sub->channel, error->code, error->message});
        }
        break;
      }
      handle_subscribe_reply(command, frame, now);
      break;
    }
    case CommandKind::publish:
      if (command.on_publish) {
        Outcome<PublishResult> outcome;
        outcome.error = std::move(error);
        outcome.value.idempotency_key = std::move(command.key);
        if (outcome.ok()) {
          outcome.value.epoch = std::move(frame.epoch);
          outcome.value.offset = frame.offset.value_or(0);
          outcome.value.duplicate = frame.duplicate;
        }
        command.on_publish(outcome);
      }
      break;
    case CommandKind::presence:
      if (command.on_presence) {
        Outcome<PresenceResult> outcome;
        outcome.error = std::move(error);
        if (outcome.ok()) outcome.value.clients = std::move(frame.clients);
        command.on_presence(outcome);
      }
      break;
    case CommandKind::history:
      if (command.on_history) {
        Outcome<HistoryResult> outcome;
        outcome.error = std::move(error);
        if (outcome.ok()) {
          outcome.value.position = {std::move(frame.epoch), frame.offset.value_or(0)};
          outcome.value.publications.reserve(frame.publications.size());
          for (auto& p : frame.publications)
            outcome.value.publications.push_back(hub::Publication{p.offset, std::move(p.data), std::move(p.info), 0});
        }
        command.on_history(outcome);
      }
      break;
    case CommandKind::refresh:
      if (error) report_error(error->code, "token refresh refused: " + error->message);
      else if (frame.expires && state_handlers_.on_token_refreshed) state_handlers_.on_token_refreshed(*frame.expires);
      break;
    case CommandKind::unsubscribe:
    case CommandKind::ping:
    case CommandKind::unknown:  // never sent
      break;
  }
}

void HubSession::handle_connected(wire::ServerFrame& frame, TimePoint now) {
  phase_ = Phase::connected;
  attempt_ = 0;
  const std::uint64_t ping_seconds = std::min(frame.ping.value_or(0), max_ping_seconds);
  ping_ = std::chrono::duration_cast<Millis>(std::chrono::seconds(ping_seconds));
  last_frame_at_ = now;
  next_ping_at_ = now + ping_;
  if (state_handlers_.on_connected)
    state_handlers_.on_connected(
        ConnectedEvent{std::move(frame.client_id), std::move(frame.user), std::move(frame.node), frame.expires, ping_seconds});
  if (phase_ != Phase::connected) return;  // the handler closed the client
  // Resubscribe first, so that our own queued publishes come back to us
  // after the recovered ones.
  for (auto& [channel, sub] : subscriptions_)
    if (sub->state == SubscriptionState::subscribing && sub->pending_id == 0) send_subscribe(sub, now);
  flush_queue(now);
}

void HubSession::handle_auth_error(const Error& error) {
  report_error(error.code, "authentication failed: " + error.message);
  if (error.code == error_code::unauthorized)
    request_close(session_close::invalid_token, "authentication refused: " + error.message, false);
  else if (error.code == error_code::token_expired)
    request_close(session_close::token_expired, "token expired", options_.use_token_provider);
  else
    request_close(session_close::auth_failed, "authentication failed: " + error.message, true);
}

void HubSession::handle_subscribe_reply(const Command& command, wire::ServerFrame& frame, TimePoint) {
  const auto sub = find_subscription(command.channel);
  sub->state = SubscriptionState::subscribed;
  sub->retry_attempt = 0;
  const hub::StreamPosition resumed_at{frame.epoch, frame.offset.value_or(0)};
  SubscribedEvent subscribed{sub->channel, resumed_at, frame.recoverable, command.recover,
                             command.recover && frame.recovered.value_or(false)};
  std::optional<GapEvent> gap;
  std::vector<wire::RawPublication> recovered;
  if (subscribed.recovered) {
    recovered = std::move(frame.publications);
    if (!sub->positioned || sub->position.epoch != resumed_at.epoch) {
      // Recovered from another epoch is not a recovery: treat as lost.
      subscribed.recovered = false;
      recovered.clear();
    }
  }
  if (command.recover && !subscribed.recovered) {
    gap = GapEvent{sub->channel, sub->position, resumed_at};
    sub->position = resumed_at;
  } else if (!command.recover) {
    sub->position = resumed_at;
  }
  sub->positioned = true;
  std::vector<Message> early = std::move(sub->early);
  sub->early.clear();

  if (sub->handlers.on_subscribed) sub->handlers.on_subscribed(subscribed);
  if (!still_current(sub)) return;
  if (gap && sub->handlers.on_gap) {
    sub->handlers.on_gap(*gap);
    if (!still_current(sub)) return;
  }
  for (auto& publication : recovered) {
    Message message{sub->channel, resumed_at.epoch, publication.offset, std::move(publication.data),
                    std::move(publication.info)};
    if (!deliver(sub, message)) return;
  }
  // Recovery is complete up to the reply's position; anything short of it
  // is a gap the server did not admit.
  if (subscribed.recovered && sub->position.offset < resumed_at.offset) {
    GapEvent missing{sub->channel, sub->position, resumed_at};
    sub->position = resumed_at;
    if (sub->handlers.on_gap) {
      sub->handlers.on_gap(missing);
      if (!still_current(sub)) return;
    }
  }
  for (auto& message : early)
    if (!deliver(sub, message)) return;
}

void HubSession::handle_message(wire::ServerFrame& frame) {
  const auto sub = find_subscription(frame.channel);
  if (!sub) return;
  Message message{sub->channel, std::move(frame.epoch), frame.offset.value_or(0),
                  frame.data ? std::move(*frame.data) : std::string("null"), std::move(frame.info)};
  if (sub->state == SubscriptionState::subscribed) {
    deliver(sub, message);
  } else if (sub->pending_id != 0 && sub->early.size() < options_.max_early_messages) {
    // Before the subscribe reply: held, merged after the recovered ones. One
    // over the limit is dropped; the offset jump reports it as a gap.
    sub->early.push_back(std::move(message));
  }
}

bool HubSession::deliver(const SubscriptionPtr& sub, Message& message) {
  if (message.offset != 0) {
    std::optional<GapEvent> gap;
    if (!sub->positioned) {
      sub->position = {message.epoch, message.offset};
      sub->positioned = true;
    } else if (!message.epoch.empty() && !sub->position.epoch.empty() && message.epoch != sub->position.epoch) {
      // The stream restarted under us (history lost on the server).
      gap = GapEvent{sub->channel, sub->position, {message.epoch, message.offset - 1}};
      sub->position = {message.epoch, message.offset};
    } else if (message.offset <= sub->position.offset) {
      ++duplicates_dropped_;
      return true;
    } else {
      if (message.offset > sub->position.offset + 1)
        gap = GapEvent{sub->channel, sub->position, {sub->position.epoch, message.offset - 1}};
      sub->position.offset = message.offset;
      if (sub->position.epoch.empty()) sub->position.epoch = message.epoch;
    }
    if (gap && sub->handlers.on_gap) {
      sub->handlers.on_gap(*gap);
      if (!still_current(sub)) return false;
    }
  }
  if (message.epoch.empty()) message.epoch = sub->position.epoch;
  if (sub->handlers.on_message) sub->handlers.on_message(message);
  return still_current(sub);
}

}  // namespace duplex::client
