// duplex token: mints a connection token (JWT) for development and scripts.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"
#include "support/json.hpp"
#include "duplex/hub/token.hpp"

namespace duplex::cli {

namespace {
constexpr std::int64_t max_ttl_seconds = std::int64_t{10} * 366 * 24 * 3600;

struct TokenArgs {
  std::string user;
  std::string secret;
  std::string private_key_file;
  std::int64_t ttl = 3600;
  std::vector<std::string> channels;
  std::vector<std::string> publish;
  std::string info;
  std::string channel;
};

// "a,b" -> a, b; "\," is a comma inside a pattern (personal channels list
// users with commas: dm:#42\,57). Empty items are dropped.
std::vector<std::string> split_patterns(const std::vector<std::string>& options) {
  std::vector<std::string> patterns;
  for (const auto& option : options) {
    std::string current;
    for (std::size_t i = 0; i < option.size(); ++i) {
      if (option[i] == '\\' && i + 1 < option.size() && option[i + 1] == ',') {
        current += ',';
        ++i;
      } else if (option[i] == ',') {
        if (!current.empty()) patterns.push_back(std::move(current));
        current.clear();
      } else {
        current += option[i];
      }
    }
    if (!current.empty()) patterns.push_back(std::move(current));
  }
  return patterns;
}

bool read_file(const std::string& path, std::string& contents) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return false;
  contents.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  return !file.bad();
}
}  // namespace

std::function<int()> add_token_command(CLI::App& app) {
  auto args = std::make_shared<TokenArgs>();
  CLI::App* cmd = app.add_subcommand("token", "Mint a connection token (JWT) and print it on stdout");
  cmd->add_option("-u,--user", args->user, "User id: the token's `sub` claim")->required();
  auto* secret = cmd->add_option("--secret", args->secret,
                                 "HS256 shared secret (the server's auth.hmac_secret); default: env "
                                 "DUPLEX_HMAC_SECRET, which keeps it out of the process list");
  auto* key = cmd->add_option("--private-key", args->private_key_file,
                              "PEM private key: RS256 for RSA (2048+ bits), ES256 for EC P-256 "
                              "(the server holds the public key, auth.public_key_file)");
  secret->excludes(key);
  cmd->add_option("--ttl", args->ttl, "Lifetime in seconds (`exp` = now + ttl); 0: no expiry")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{0}, max_ttl_seconds));
  cmd->add_option("--channels", args->channels,
                  "Patterns the user may subscribe to, comma-separated or repeated "
                  "(`*` any run without ':', `**` any run; write \\, for a comma inside one)");
  cmd->add_option("--publish", args->publish, "Patterns the user may publish to (same syntax as --channels)");
  cmd->add_option("--info", args->info, "JSON shown to others in presence and as publisher info, e.g. '{\"name\":\"Ada\"}'");
  cmd->add_option("--channel", args->channel, "Make a subscribe token granting this one channel");
  cmd->footer(
      "Examples:\n"
      "  duplex token --user 42 --secret S --channels 'chat:*,user:#42' --publish 'chat:*'\n"
      "  DUPLEX_HMAC_SECRET=S duplex token --user 42 --ttl 0 --info '{\"name\":\"Ada\"}'\n"
      "  duplex token --user 42 --private-key key.pem --channels 'dm:#42\\,57,chat:**'\n"
      "  duplex token --user 42 --secret S --channel 'dm:#42,57'   (a subscribe token)\n"
      "Keys: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out key.pem\n"
      "      openssl pkey -in key.pem -pubout -out public.pem");

  return [args]() -> int {
    if (args->secret.empty() && args->private_key_file.empty()) {
      if (const char* env = std::getenv("DUPLEX_HMAC_SECRET")) args->secret = env;
    }
    if (args->secret.empty() && args->private_key_file.empty()) {
      std::fprintf(stderr, "duplex token: give --secret (or set DUPLEX_HMAC_SECRET) or --private-key\n");
      return 2;
    }
    if (!args->info.empty() && !hub::is_valid_json(args->info)) {
      std::fprintf(stderr, "duplex token: --info is not valid JSON (at most 32 levels deep)\n");
      return 2;
    }

    hub::TokenClaims claims;
    claims.sub = args->user;
    const std::int64_t now =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    claims.iat = now;
    if (args->ttl > 0) claims.exp = now + args->ttl;
    claims.info = args->info;
    claims.channels = split_patterns(args->channels);
    claims.publish = split_patterns(args->publish);
    claims.channel = args->channel;
    const std::string payload = hub::make_claims_json(claims);

    std::string token;
    if (!args->private_key_file.empty()) {
      std::string pem;
      if (!read_file(args->private_key_file, pem)) {
        std::fprintf(stderr, "duplex token: cannot read --private-key %s\n", args->private_key_file.c_str());
        return 2;
      }
      try {
        token = hub::sign_token_pem(payload, pem);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "duplex token: --private-key %s: %s\n", args->private_key_file.c_str(), e.what());
        return 2;
      }
    } else {
      token = hub::sign_token_hs256(payload, args->secret);
    }
    std::fwrite(token.data(), 1, token.size(), stdout);
    std::fputc('\n', stdout);
    return std::fflush(stdout) == 0 ? 0 : 1;
  };
}

}  // namespace duplex::cli
