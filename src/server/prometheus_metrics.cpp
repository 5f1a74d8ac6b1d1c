#include "prometheus_metrics.hpp"

#include <cstdio>
#include <string_view>

#include "duplex/hub/hub.hpp"
#include "duplex/server/fallback_sessions.hpp"

namespace duplex::transport {

// Prometheus text format 0.0.4: HELP and TYPE once per family, then its samples.
// Long on purpose: one family after another, in the order /metrics lists them
// and docs/OPERATIONS.md documents them.
std::string prometheus_metrics(hub::Hub& hub, const FallbackSessions* fallback) {
  const auto& k = hub.counters();
  std::string out;
  out.reserve(8192);
  auto family = [&](const char* name, const char* type, const char* help) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
  };
  auto sample = [&](const char* name, std::string_view labels, std::uint64_t value) {
    out += name;
    out += labels;
    out += ' ';
    out += std::to_string(value);
    out += '\n';
  };
  auto metric = [&](const char* name, const char* type, const char* help, std::uint64_t value) {
    family(name, type, help);
    sample(name, {}, value);
  };
  auto label_value = [](std::string_view v) {  // escaped for a label: \ " and newline
    std::string e;
    for (char ch : v) {
      if (ch == '\\' || ch == '"') e += '\\';
      if (ch == '\n') {
        e += "\\n";
        continue;
      }
      e += ch;
    }
    return e;
  };
  family("duplex_node_info", "gauge", "This node: its name and version (always 1).");
  sample("duplex_node_info", "{node=\"" + label_value(hub.node_name()) + "\",version=\"" DUPLEX_VERSION "\"}", 1);
  metric("duplex_start_time_seconds", "gauge", "When this node started (Unix seconds).",
         static_cast<std::uint64_t>(hub.started_ms() / 1000));
  metric("duplex_connections", "gauge", "Hub sessions open now.", k.connections.load());
  metric("duplex_connections_total", "counter", "Hub sessions opened.", k.connections_total.load());
  metric("duplex_subscriptions", "gauge", "Channel subscriptions now.", k.subscriptions.load());
  metric("duplex_commands_total", "counter", "Client commands received.", k.commands.load());
  metric("duplex_messages_in_total", "counter", "WebSocket messages received from clients.", k.messages_in.load());
  metric("duplex_messages_out_total", "counter", "WebSocket messages sent to clients (replies and pushes).",
         k.messages_out.load());
  metric("duplex_bytes_in_total", "counter", "Payload bytes of WebSocket messages received.", k.bytes_in.load());
  metric("duplex_bytes_out_total", "counter", "Payload bytes of WebSocket messages sent.", k.bytes_out.load());
  metric("duplex_messages_delivered_total", "counter", "Message pushes delivered to subscribers.", k.pushes.load());
  metric("duplex_publications_total", "counter", "Publications accepted.", k.publications.load());
  metric("duplex_command_errors_total", "counter", "Error replies sent.", k.errors.load());
  metric("duplex_resubscribes_total", "counter",
         "Subscribers told to resubscribe with recovery (the engine lost continuity).", k.resubscribes.load());
  metric("duplex_pending_deliveries", "gauge", "Engine events waiting for the event loops.",
         hub.pending_deliveries());
  metric("duplex_pending_deliveries_overflowed_total", "counter",
         "Engine events dropped: their loop had limits.max_pending_deliveries waiting (subscribers resubscribed).",
         k.deliveries_overflowed.load());
  metric("duplex_channels", "gauge", "Channels with subscribers on this node.", hub.channel_count());
  if (fallback) {
    metric("duplex_fallback_sessions", "gauge", "SSE and long-polling sessions open on this node.",
           fallback->session_count());
    metric("duplex_fallback_forwarded_total", "counter",
           "Fallback requests for another node's session, forwarded there through the engine.",
           fallback->forwarded_count());
  }
  const engines::EngineHealth health = hub.engine().health();
  metric("duplex_engine_healthy", "gauge", "1 if the engine accepts writes.", health.healthy ? 1 : 0);
  metric("duplex_engine_up", "gauge", "1 if the engine is healthy (as in EngineHealth).", health.healthy ? 1 : 0);
  metric("duplex_engine_backends_up", "gauge", "Storage/broker servers the engine is connected to.", health.backends_up);
  metric("duplex_engine_backends_total", "gauge", "Storage/broker servers the engine is configured with.",
         health.backends_total);
  metric("duplex_engine_reconnects_total", "counter", "Successful engine reconnects since start.", health.reconnects);
  metric("duplex_engine_errors_total", "counter", "Failed engine operations since start.", health.errors);
  metric("duplex_engine_in_flight", "gauge", "Engine operations accepted and not yet completed.", health.in_flight);
  metric("duplex_engine_refused_total", "counter", "Engine operations refused: engine.max_in_flight were in flight.",
         health.refused);
  // Per namespace: "" is every channel on the default options.
  struct NsFamily {
    const char* name;
    const char* type;
    const char* help;
    const std::atomic<std::uint64_t> hub::NamespaceCounters::*field;
  };
  static constexpr NsFamily ns_families[] = {
      {"duplex_namespace_publications_total", "counter", "Publications accepted, by namespace (\"\": defaults).",
       &hub::NamespaceCounters::publications},
      {"duplex_namespace_messages_delivered_total", "counter", "Message pushes delivered, by namespace.",
       &hub::NamespaceCounters::pushes},
      {"duplex_namespace_subscriptions", "gauge", "Channel subscriptions now, by namespace.",
       &hub::NamespaceCounters::subscriptions},
  };
  for (const auto& f : ns_families) {
    family(f.name, f.type, f.help);
    for (const auto& ns : k.namespaces)
      sample(f.name, "{namespace=\"" + label_value(ns->name) + "\"}", ((*ns).*(f.field)).load(std::memory_order_relaxed));
  }
  family("duplex_sessions_closed_total", "counter", "Hub sessions closed, by WebSocket close code.");
  for (std::size_t code = 0; code < k.closes.size(); ++code) {
    const std::uint64_t n = k.closes[code].load(std::memory_order_relaxed);
    if (n) sample("duplex_sessions_closed_total", "{code=\"" + std::to_string(code) + "\"}", n);
  }
  const auto& h = k.fanout_latency;
  family("duplex_fanout_seconds", "histogram",
         "Time from a publication reaching the hub to its write to every local subscriber.");
  std::uint64_t cumulative = 0;
  char line[128];
  for (std::size_t i = 0; i < h.buckets.size(); ++i) {
    cumulative += h.buckets[i].load(std::memory_order_relaxed);
    if (i < hub::FanoutLatency::bounds_ms.size())
      std::snprintf(line, sizeof line, "duplex_fanout_seconds_bucket{le=\"%g\"} %llu\n", hub::FanoutLatency::bounds_ms[i] / 1000.0,
                    static_cast<unsigned long long>(cumulative));
    else
      std::snprintf(line, sizeof line, "duplex_fanout_seconds_bucket{le=\"+Inf\"} %llu\n", static_cast<unsigned long long>(cumulative));
    out += line;
  }
  std::snprintf(line, sizeof line, "duplex_fanout_seconds_sum %.6f\nduplex_fanout_seconds_count %llu\n",
                static_cast<double>(h.sum_us.load()) / 1e6, static_cast<unsigned long long>(cumulative));
  out += line;
  return out;
}

}  // namespace duplex::transport
