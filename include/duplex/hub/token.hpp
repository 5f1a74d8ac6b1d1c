// Connection tokens: JWTs (RFC 7519) signed with HS256, RS256 or ES256,
// verified and minted with OpenSSL directly. The claims and their meaning are
// in docs/PROTOCOL.md "Tokens (JWT)". Tokens are credentials: never log them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/hub/config.hpp"

namespace duplex::hub {

inline constexpr std::size_t max_token_bytes = 8u << 10;
inline constexpr std::size_t max_token_json_depth = 32;
// Leeway for clocks that run slightly apart (nbf and iat only; exp is strict).
inline constexpr std::int64_t token_clock_leeway_seconds = 60;

struct TokenClaims {
  std::string sub;                       // user id
  std::optional<std::int64_t> exp, nbf, iat;
  std::string info;                      // raw JSON of the `info` claim, or empty
  std::vector<std::string> channels;     // subscribe patterns
  std::vector<std::string> publish;      // publish patterns
  std::string channel;                   // subscribe tokens: the one channel granted
};

enum class TokenError : std::uint8_t {
  none,
  malformed,              // not three strict base64url segments of JSON objects, or a claim of the wrong type
  unsupported_algorithm,  // alg is none, unknown, or not the configured key's
  bad_signature,
  expired,                // exp <= now
  not_yet_valid,          // nbf or iat more than the leeway in the future
  missing_subject,        // no `sub` claim
  no_key_configured,
};

// Short human text, e.g. "token expired".
std::string_view to_string(TokenError error);

// Checks tokens against the keys in [auth]. Immutable once built, so one
// verifier may be shared by every thread.
class TokenVerifier {
 public:
  // Nothing configured: every token fails with no_key_configured.
  TokenVerifier() = default;

  // Reads auth.hmac_secret (HS256) and/or auth.public_key_file (a PEM public
  // key or certificate: RSA >= 2048 bits => RS256, EC P-256 => ES256).
  // Throws std::runtime_error naming the file when it cannot be used.
  static TokenVerifier from_config(const AuthConfig& auth);
  // The same from values in memory (tests, embedding).
  static TokenVerifier from_secret(std::string_view hmac_secret);
  static TokenVerifier from_public_key_pem(std::string_view pem, std::string_view hmac_secret = {});

  bool configured() const;

  // Verifies the signature, then the claims at `now_unix`: nbf and iat with
  // the leeway, exp strictly. `out` holds the claims when the result is none,
  // expired or not_yet_valid, and is cleared otherwise. Checks run in this
  // order: no key, malformed, algorithm, signature, claim types, nbf/iat, exp,
  // sub.
  TokenError verify(std::string_view token, std::int64_t now_unix, TokenClaims& out) const;
  // The same without the exp check: tells an expired but otherwise good token
  // apart, and lets a refresh compare subjects.
  TokenError verify_ignoring_expiry(std::string_view token, std::int64_t now_unix, TokenClaims& out) const;

  struct PublicKey;  // the OpenSSL key and its algorithm (token.cpp)

 private:
  TokenError check(std::string_view token, std::int64_t now_unix, bool check_expiry, TokenClaims& out) const;

  std::string hmac_secret_;
  std::shared_ptr<const PublicKey> public_key_;
};

// Minting, for `duplex token`, tests and the demo token endpoint. The payload
// is used as given (build it with make_claims_json).
std::string sign_token_hs256(std::string_view payload_json, std::string_view secret);
// RS256 for RSA keys, ES256 for EC P-256 keys (PEM private key, PKCS#8 or
// traditional). Throws std::runtime_error on a key it cannot use.
std::string sign_token_pem(std::string_view payload_json, const std::string& private_key_pem);

// The payload JSON for `claims`: sub always, the rest when set (`info` is
// spliced raw, so it must already be valid JSON).
std::string make_claims_json(const TokenClaims& claims);

// Equal bytes, in time independent of where they differ (only the lengths
// may show). For HMACs and API keys.
bool constant_time_equals(std::string_view a, std::string_view b);

}  // namespace duplex::hub
