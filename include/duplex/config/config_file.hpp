// The TOML config file of `duplex serve` (docs/CONFIG.md; reference file:
// config/duplex.toml). Loading starts from the defaults in hub/config.hpp and
// overrides what the file sets. Unknown keys, wrong types and out-of-range
// values are errors with file:line:column, so a typo never silently falls
// back to a default.
#pragma once
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/hub/config.hpp"

namespace duplex::hub {

// Parses TOML text (no environment, no cross-field checks); `source_name`
// prefixes error messages ("duplex.toml:12:3: ..."). Throws std::runtime_error.
HubConfig parse_config(std::string_view toml_text, std::string_view source_name = "config");

// Reads `path`, parses it, applies the environment overrides and validates the
// result. Throws std::runtime_error.
HubConfig load_config_file(const std::string& path);

// Secrets from the environment win over the file (deployments keep secrets
// out of config files): DUPLEX_HMAC_SECRET -> auth.hmac_secret,
// DUPLEX_API_KEY -> api.key. Unset or empty variables change nothing.
void apply_env_overrides(HubConfig& config);

// Cross-field rules (join_leave needs presence, recovery needs history,
// history_size within limits.max_history_size, TLS certificate with its key,
// ...). Returns every problem found, one sentence each; empty when valid.
std::vector<std::string> config_problems(const HubConfig& config);
// Throws std::runtime_error listing config_problems() if there are any. Call
// it again after command-line flags have changed the config.
void validate_config(const HubConfig& config);
// The files the config names (server.tls.cert_file and key_file,
// auth.public_key_file) that cannot be opened for reading, one sentence each
// naming the key, the file and why ("server.tls.cert_file = "x.pem": cannot
// read it: No such file or directory"). Checked at start and on reload, before
// OpenSSL sees them, so the message is about the config, not the library.
std::vector<std::string> file_problems(const HubConfig& config);

// "250ms", "10s", "5m", "1h", "7d", or a sum such as "1h30m". Nullopt if
// malformed or out of range. Shared with command-line flags.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
// "512B", "64KiB", "1MiB", "1GiB" (binary units only: "KB" is ambiguous and
// refused). Nullopt if malformed or above 2^62.
std::optional<std::uint64_t> parse_size(std::string_view text);

}  // namespace duplex::hub
