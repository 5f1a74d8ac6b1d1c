// Small helpers every nats.c user in the engines needs: the text of a
// status (with nats.c's last error), and the server list of a URL setting.
#pragma once
#include <nats/nats.h>

#include <chrono>
#include <string>
#include <vector>

namespace duplex::engines::detail {

// "Timeout (nats: timeout)": the status and, when it adds to it, the last
// error nats.c recorded on this thread.
std::string status_text(natsStatus s);

// "nats://a:4222, nats://b:4222" -> {"nats://a:4222", "nats://b:4222"};
// empty entries dropped.
std::vector<std::string> split_urls(const std::string& urls);

// What every duplex connection to NATS sets alike: the servers `urls`, the
// connection's `name` (empty: none), the connect timeout, reconnecting for
// ever with a first wait of `reconnect_wait`, and a ping every
// `ping_interval` (three unanswered drop the connection). Returns the first
// failure (NATS_OK when all were set).
natsStatus set_connection_options(natsOptions* opts, const std::vector<std::string>& urls, const std::string& name,
                                  std::chrono::milliseconds connect_timeout, std::chrono::milliseconds reconnect_wait,
                                  std::chrono::milliseconds ping_interval);

}  // namespace duplex::engines::detail
