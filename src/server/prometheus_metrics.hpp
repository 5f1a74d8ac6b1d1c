// /metrics: the node's counters in the Prometheus text format 0.0.4 (the
// families are listed in docs/OPERATIONS.md and charted by
// docs/grafana/duplex-dashboard.json).
#pragma once
#include <string>

namespace duplex::hub {
class Hub;
}

namespace duplex::transport {

class FallbackSessions;

// `fallback`: the SSE and long-polling sessions, or null when they are off.
std::string prometheus_metrics(hub::Hub& hub, const FallbackSessions* fallback);

}  // namespace duplex::transport
