// libFuzzer target: JWT verification and channel patterns.
//
// Byte 0 picks the mode (mod 3), the rest is its input:
//   0: the bytes are a token, checked by verifiers with an HMAC secret, a
//      fixed EC P-256 public key, and both. Results must agree with each other.
//   1: the bytes are "header\npayload" (or only a payload, with the usual
//      header), HS256-signed with the test secret so the claims parser is
//      reached. Claims that verify must survive make_claims_json unchanged.
//   2: the bytes are "pattern\nchannel" for channel_pattern_matches, checked
//      against a memoized reference matcher on short inputs.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/hub/channel_pattern.hpp"
#include "duplex/hub/token.hpp"

using namespace duplex::hub;

namespace {

constexpr std::string_view secret = "fuzz-secret";
// Its private half signed the ES256 seeds in fuzz/corpus/token.
constexpr std::string_view ec_public_pem =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYx9r1twnVCfV7lGTirmRWG9x27ej\n"
    "eJ3CiMmLWm7jgXS0x9EeNgcOAHzHmwucL+YUBYSKA9dp46fTG2YJ6xrTqg==\n"
    "-----END PUBLIC KEY-----\n";
constexpr std::int64_t now = 1'750'000'000;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_token invariant violated: %s\n", what);
    std::abort();
  }
}

struct Verifiers {
  TokenVerifier hmac = TokenVerifier::from_secret(secret);
  TokenVerifier ec = TokenVerifier::from_public_key_pem(ec_public_pem);
  TokenVerifier both = TokenVerifier::from_public_key_pem(ec_public_pem, secret);
};

const Verifiers& verifiers() {
  static const Verifiers instance;
  return instance;
}

bool has_claims(TokenError e) {
  return e == TokenError::none || e == TokenError::expired || e == TokenError::not_yet_valid;
}

bool same_claims(const TokenClaims& a, const TokenClaims& b) {
  return a.sub == b.sub && a.exp == b.exp && a.nbf == b.nbf && a.iat == b.iat && a.info == b.info &&
         a.channels == b.channels && a.publish == b.publish && a.channel == b.channel;
}

void check_consistent(const TokenVerifier& verifier, std::string_view token) {
  TokenClaims claims, ignoring;
  const TokenError e = verifier.verify(token, now, claims);
  const TokenError without_exp = verifier.verify_ignoring_expiry(token, now, ignoring);
  if (e == TokenError::expired) {
    check(without_exp == TokenError::none || without_exp == TokenError::missing_subject, "expired vs ignoring exp");
  } else {
    check(e == without_exp, "verify vs verify_ignoring_expiry");
  }
  if (!has_claims(e)) check(same_claims(claims, TokenClaims{}), "claims cleared on failure");
  check(!to_string(e).empty(), "error text");
}

void fuzz_token(std::string_view token) {
  const auto& v = verifiers();
  TokenClaims a, b, c;
  const TokenError by_hmac = v.hmac.verify(token, now, a);
  const TokenError by_ec = v.ec.verify(token, now, b);
  const TokenError by_both = v.both.verify(token, now, c);
  // A token good for one key is good for the verifier holding both keys, and
  // never for a verifier with only the other key.
  if (by_hmac == TokenError::none) {
    check(by_both == TokenError::none && same_claims(a, c), "hmac-good token with both keys");
    check(by_ec == TokenError::unsupported_algorithm, "hmac-good token with the EC key");
  }
  if (by_ec == TokenError::none) {
    check(by_both == TokenError::none && same_claims(b, c), "ec-good token with both keys");
    check(by_hmac == TokenError::unsupported_algorithm, "ec-good token with the secret");
  }
  check_consistent(v.both, token);
}

std::string base64url(std::string_view bytes) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (const unsigned char c : bytes) {
    buffer = (buffer << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += alphabet[(buffer >> bits) & 63];
    }
    buffer &= (1u << bits) - 1;
  }
  if (bits > 0) out += alphabet[(buffer << (6 - bits)) & 63];
  return out;
}

std::string hs256_token(std::string_view header, std::string_view payload) {
  std::string token = base64url(header) + "." + base64url(payload);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(token.data()),
       token.size(), mac, &length);
  return token + "." + base64url(std::string_view(reinterpret_cast<const char*>(mac), length));
}

void fuzz_signed(std::string_view input) {
  std::string_view header = R"({"alg":"HS256","typ":"JWT"})";
  std::string_view payload = input;
  if (const auto newline = input.find('\n'); newline != std::string_view::npos) {
    header = input.substr(0, newline);
    payload = input.substr(newline + 1);
  }
  const std::string token = hs256_token(header, payload);
  const auto& v = verifiers();
  TokenClaims claims;
  const TokenError e = v.hmac.verify(token, now, claims);
  check(e != TokenError::bad_signature, "correctly signed token has a bad signature");
  check_consistent(v.hmac, token);
  if (!has_claims(e)) return;
  // Claims re-encoded by make_claims_json verify to the same claims.
  const std::string again = sign_token_hs256(make_claims_json(claims), secret);
  if (again.size() > max_token_bytes) return;
  TokenClaims reparsed;
  const TokenError e2 = v.hmac.verify(again, now, reparsed);
  check(e2 == e, "re-encoded claims verify differently");
  check(same_claims(claims, reparsed), "re-encoded claims differ");
}

// Reference: the obvious recursive definition, memoized.
bool reference_match(std::string_view p, std::string_view c, std::size_t i, std::size_t j,
                     std::vector<signed char>& memo) {
  signed char& slot = memo[i * (c.size() + 1) + j];
  if (slot >= 0) return slot != 0;
  bool result;
  if (i == p.size()) {
    result = j == c.size();
  } else if (p[i] == '*') {
    std::size_t k = i;
    while (k < p.size() && p[k] == '*') ++k;
    const bool any = k - i >= 2;
    result = false;
    for (std::size_t end = j;; ++end) {  // the wildcard takes c[j, end)
      if (reference_match(p, c, k, end, memo)) {
        result = true;
        break;
      }
      if (end == c.size() || (!any && c[end] == ':')) break;
    }
  } else {
    result = j < c.size() && p[i] == c[j] && reference_match(p, c, i + 1, j + 1, memo);
  }
  slot = result ? 1 : 0;
  return result;
}

void fuzz_pattern(std::string_view input) {
  std::string_view pattern = input;
  std::string_view channel;
  if (const auto newline = input.find('\n'); newline != std::string_view::npos) {
    pattern = input.substr(0, newline);
    channel = input.substr(newline + 1);
  }
  const bool matched = channel_pattern_matches(pattern, channel);
  if (pattern.size() > max_channel_pattern_length) {
    check(!matched, "overlong pattern matched");
    return;
  }
  if (pattern.size() <= 64 && channel.size() <= 256) {
    std::vector<signed char> memo((pattern.size() + 1) * (channel.size() + 1), -1);
    check(matched == reference_match(pattern, channel, 0, 0, memo), "pattern disagrees with the reference");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 3) {
    case 0: fuzz_token(input); break;
    case 1: fuzz_signed(input); break;
    default: fuzz_pattern(input); break;
  }
  return 0;
}
