// Small helpers every nats.c user in the engines needs: the text of a
// status (with nats.c's last error), and the server list of a URL setting.
#pragma once
#include <nats/nats.h>

#include <string>
#include <vector>

namespace duplex::engines::detail {

// "Timeout (nats: timeout)": the status and, when it adds to it, the last
// error nats.c recorded on this thread.
std::string status_text(natsStatus s);

// "nats://a:4222, nats://b:4222" -> {"nats://a:4222", "nats://b:4222"};
// empty entries dropped.
std::vector<std::string> split_urls(const std::string& urls);

}  // namespace duplex::engines::detail
