#include "nats_support.hpp"

namespace duplex::engines::detail {

std::string status_text(natsStatus s) {
  std::string text = natsStatus_GetText(s);
  const char* last = nats_GetLastError(nullptr);
  if (last && *last && text.find(last) == std::string::npos) text += std::string(" (") + last + ")";
  return text;
}

std::vector<std::string> split_urls(const std::string& urls) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= urls.size()) {
    std::size_t comma = urls.find(',', start);
    if (comma == std::string::npos) comma = urls.size();
    std::string url = urls.substr(start, comma - start);
    url.erase(0, url.find_first_not_of(" \t"));
    url.erase(url.find_last_not_of(" \t") + 1);
    if (!url.empty()) out.push_back(std::move(url));
    start = comma + 1;
  }
  return out;
}

natsStatus set_connection_options(natsOptions* opts, const std::vector<std::string>& urls, const std::string& name,
                                  std::chrono::milliseconds connect_timeout, std::chrono::milliseconds reconnect_wait,
                                  std::chrono::milliseconds ping_interval) {
  std::vector<const char*> servers;
  for (const auto& url : urls) servers.push_back(url.c_str());
  natsStatus s = natsOptions_SetServers(opts, servers.data(), static_cast<int>(servers.size()));
  auto check = [&s](natsStatus r) {
    if (s == NATS_OK) s = r;
  };
  if (!name.empty()) check(natsOptions_SetName(opts, name.c_str()));
  check(natsOptions_SetTimeout(opts, connect_timeout.count()));
  check(natsOptions_SetAllowReconnect(opts, true));
  check(natsOptions_SetMaxReconnect(opts, -1));
  check(natsOptions_SetReconnectWait(opts, reconnect_wait.count()));
  check(natsOptions_SetPingInterval(opts, ping_interval.count()));
  check(natsOptions_SetMaxPingsOut(opts, 3));
  return s;
}

}  // namespace duplex::engines::detail
