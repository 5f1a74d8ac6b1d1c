#include "duplex/hub/token.hpp"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>

namespace {

using namespace duplex::hub;

constexpr std::int64_t now = 1'750'000'000;

// ---- helpers: keys, PEM files, hand-built tokens ---------------------------

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

Pkey generate_rsa(unsigned bits) {
  Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(bits)));
  if (!key) throw std::runtime_error("RSA keygen failed");
  return key;
}

Pkey generate_ec(const char* curve) {
  Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve));
  if (!key) throw std::runtime_error("EC keygen failed");
  return key;
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(length));
}

std::string private_pem(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) throw std::runtime_error("PEM");
  return bio_text(bio.get());
}

std::string public_pem(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (PEM_write_bio_PUBKEY(bio.get(), key) != 1) throw std::runtime_error("PEM");
  return bio_text(bio.get());
}

std::string b64url(std::string_view bytes) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
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

std::string b64url_decode(std::string_view text) {
  std::string out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    int v = c >= 'A' && c <= 'Z'   ? c - 'A'
            : c >= 'a' && c <= 'z' ? c - 'a' + 26
            : c >= '0' && c <= '9' ? c - '0' + 52
            : c == '-'             ? 62
                                   : 63;
    buffer = (buffer << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buffer >> bits) & 0xFF);
    }
    buffer &= (1u << bits) - 1;
  }
  return out;
}

std::string hmac(std::string_view key, std::string_view data) {
  unsigned char mac[32];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), mac, &length);
  return std::string(reinterpret_cast<char*>(mac), length);
}

// An HS256-signed token with any header and payload text.
std::string hs256_raw(std::string_view header_json, std::string_view payload_json, std::string_view secret) {
  std::string input = b64url(header_json) + "." + b64url(payload_json);
  return input + "." + b64url(hmac(secret, input));
}

constexpr std::string_view secret = "a-test-secret-of-reasonable-length-123";
constexpr std::string_view hs_header = R"({"alg":"HS256","typ":"JWT"})";

std::string hs256(std::string_view payload_json) { return hs256_raw(hs_header, payload_json, secret); }

std::vector<std::string> split(const std::string& token) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (;;) {
    const std::size_t dot = token.find('.', start);
    parts.push_back(token.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) return parts;
    start = dot + 1;
  }
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "duplex-token-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string write(const std::string& name, const std::string& contents) const {
    const auto file = path_ / name;
    std::ofstream(file, std::ios::binary) << contents;
    return file.string();
  }

 private:
  std::filesystem::path path_;
};

// Keys are slow to generate: once for the whole suite.
class TokenKeys : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    rsa_ = new Pkey(generate_rsa(2048));
    ec_ = new Pkey(generate_ec("P-256"));
  }
  static void TearDownTestSuite() {
    delete rsa_;
    delete ec_;
  }
  static EVP_PKEY* rsa() { return rsa_->get(); }
  static EVP_PKEY* ec() { return ec_->get(); }

 private:
  static inline Pkey* rsa_ = nullptr;
  static inline Pkey* ec_ = nullptr;
};

TokenClaims full_claims() {
  TokenClaims c;
  c.sub = "42";
  c.exp = now + 3600;
  c.nbf = now - 10;
  c.iat = now - 10;
  c.info = R"({"name":"Ada","tags":["x"]})";
  c.channels = {"chat:*", "user:#42"};
  c.publish = {"chat:**"};
  c.channel = "chat:lobby";
  return c;
}

void expect_same_claims(const TokenClaims& got, const TokenClaims& want) {
  EXPECT_EQ(got.sub, want.sub);
  EXPECT_EQ(got.exp, want.exp);
  EXPECT_EQ(got.nbf, want.nbf);
  EXPECT_EQ(got.iat, want.iat);
  EXPECT_EQ(got.info, want.info);
  EXPECT_EQ(got.channels, want.channels);
  EXPECT_EQ(got.publish, want.publish);
  EXPECT_EQ(got.channel, want.channel);
}

std::string header_of(const std::string& token) { return b64url_decode(split(token).at(0)); }

// ---- round trips -----------------------------------------------------------

TEST(TokenHs256, RoundTripKeepsEveryClaim) {
  const TokenClaims want = full_claims();
  const std::string token = sign_token_hs256(make_claims_json(want), secret);
  EXPECT_EQ(split(token).size(), 3u);
  EXPECT_EQ(header_of(token), R"({"alg":"HS256","typ":"JWT"})");
  TokenClaims got;
  ASSERT_EQ(TokenVerifier::from_secret(secret).verify(token, now, got), TokenError::none);
  expect_same_claims(got, want);
}

TEST(TokenHs256, FromConfigUsesTheSecret) {
  AuthConfig auth;
  auth.hmac_secret = std::string(secret);
  const auto verifier = TokenVerifier::from_config(auth);
  EXPECT_TRUE(verifier.configured());
  TokenClaims got;
  EXPECT_EQ(verifier.verify(sign_token_hs256(R"({"sub":"7"})", secret), now, got), TokenError::none);
  EXPECT_EQ(got.sub, "7");
  EXPECT_EQ(verifier.verify(sign_token_hs256(R"({"sub":"7"})", "another secret"), now, got),
            TokenError::bad_signature);
  EXPECT_EQ(got.sub, "");  // cleared on failure
}

TEST_F(TokenKeys, Rs256RoundTripThroughPemFiles) {
  TempDir dir;
  AuthConfig auth;
  auth.public_key_file = dir.write("public.pem", public_pem(rsa()));
  const auto verifier = TokenVerifier::from_config(auth);
  const TokenClaims want = full_claims();
  const std::string token = sign_token_pem(make_claims_json(want), private_pem(rsa()));
  EXPECT_EQ(header_of(token), R"({"alg":"RS256","typ":"JWT"})");
  EXPECT_EQ(b64url_decode(split(token).at(2)).size(), 256u);
  TokenClaims got;
  ASSERT_EQ(verifier.verify(token, now, got), TokenError::none);
  expect_same_claims(got, want);
}

TEST_F(TokenKeys, Es256RoundTripWithRawSignature) {
  TempDir dir;
  AuthConfig auth;
  auth.public_key_file = dir.write("public.pem", public_pem(ec()));
  const auto verifier = TokenVerifier::from_config(auth);
  const TokenClaims want = full_claims();
  const std::string token = sign_token_pem(make_claims_json(want), private_pem(ec()));
  EXPECT_EQ(header_of(token), R"({"alg":"ES256","typ":"JWT"})");
  // RFC 7518 §3.4: r || s, 64 bytes, not DER.
  EXPECT_EQ(b64url_decode(split(token).at(2)).size(), 64u);
  TokenClaims got;
  ASSERT_EQ(verifier.verify(token, now, got), TokenError::none);
  expect_same_claims(got, want);
  // ECDSA signatures are randomized; each must verify.
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(verifier.verify(sign_token_pem(R"({"sub":"x"})", private_pem(ec())), now, got), TokenError::none);
  }
}

TEST_F(TokenKeys, PublicKeyAndSecretTogetherAcceptBoth) {
  const auto verifier = TokenVerifier::from_public_key_pem(public_pem(ec()), secret);
  TokenClaims got;
  EXPECT_EQ(verifier.verify(sign_token_pem(R"({"sub":"a"})", private_pem(ec())), now, got), TokenError::none);
  EXPECT_EQ(verifier.verify(sign_token_hs256(R"({"sub":"b"})", secret), now, got), TokenError::none);
  EXPECT_EQ(got.sub, "b");
}

TEST_F(TokenKeys, CertificateIsAcceptedAsPublicKey) {
  std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), X509_free);
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_set_pubkey(cert.get(), ec());
  ASSERT_GT(X509_sign(cert.get(), ec(), EVP_sha256()), 0);
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_X509(bio.get(), cert.get());
  const auto verifier = TokenVerifier::from_public_key_pem(bio_text(bio.get()));
  TokenClaims got;
  EXPECT_EQ(verifier.verify(sign_token_pem(R"({"sub":"c"})", private_pem(ec())), now, got), TokenError::none);
}

// ---- RFC 7515 Appendix A.1 -------------------------------------------------

TEST(TokenHs256, Rfc7515AppendixA1Vector) {
  const std::string key = b64url_decode(
      "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow");
  const std::string input =
      "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
      ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
  const std::string signature = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
  // The signature bytes of the RFC are HMAC-SHA256 over the signing input.
  const unsigned char expected_bytes[] = {116, 24,  223, 180, 151, 153, 224, 37, 79,  250, 96,
                                          125, 216, 173, 187, 186, 22,  212, 37, 77,  105, 214,
                                          191, 240, 91,  88,  5,   88,  83,  132, 141, 121};
  EXPECT_EQ(b64url_decode(signature), std::string(reinterpret_cast<const char*>(expected_bytes), 32));
  EXPECT_EQ(hmac(key, input), b64url_decode(signature));

  const auto verifier = TokenVerifier::from_secret(key);
  const std::string token = input + "." + signature;
  TokenClaims got;
  // exp is 1300819380 (March 2011): good signature, expired today.
  EXPECT_EQ(verifier.verify(token, now, got), TokenError::expired);
  EXPECT_EQ(got.exp, 1300819380);
  // Before its exp the signature and time pass; the vector has no `sub`.
  EXPECT_EQ(verifier.verify(token, 1300819379, got), TokenError::missing_subject);
  // One changed signature byte: bad signature, whatever the time.
  std::string tampered = input + ".eBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
  EXPECT_EQ(verifier.verify(tampered, 1300819379, got), TokenError::bad_signature);
  EXPECT_EQ(verifier.verify(tampered, now, got), TokenError::bad_signature);
}

// ---- tampering, algorithms -------------------------------------------------

TEST_F(TokenKeys, TamperedPayloadOrSignatureIsRejected) {
  const auto hs = TokenVerifier::from_secret(secret);
  const auto ec_verifier = TokenVerifier::from_public_key_pem(public_pem(ec()));
  const auto rsa_verifier = TokenVerifier::from_public_key_pem(public_pem(rsa()));
  const std::string other_payload = b64url(R"({"sub":"admin"})");
  TokenClaims got;
  for (const auto& [verifier, token] :
       {std::pair{&hs, sign_token_hs256(R"({"sub":"42"})", secret)},
        std::pair{&ec_verifier, sign_token_pem(R"({"sub":"42"})", private_pem(ec()))},
        std::pair{&rsa_verifier, sign_token_pem(R"({"sub":"42"})", private_pem(rsa()))}}) {
    ASSERT_EQ(verifier->verify(token, now, got), TokenError::none);
    auto parts = split(token);
    EXPECT_EQ(verifier->verify(parts[0] + "." + other_payload + "." + parts[2], now, got), TokenError::bad_signature);
    std::string flipped = parts[2];
    flipped[0] = flipped[0] == 'A' ? 'B' : 'A';
    EXPECT_EQ(verifier->verify(parts[0] + "." + parts[1] + "." + flipped, now, got), TokenError::bad_signature);
    EXPECT_EQ(verifier->verify(parts[0] + "." + parts[1] + ".", now, got), TokenError::bad_signature);
    EXPECT_EQ(verifier->verify(parts[0] + "." + parts[1] + "." + parts[2].substr(4), now, got),
              TokenError::bad_signature);
  }
}

TEST_F(TokenKeys, AlgNoneAndUnknownAlgorithmsAreRejected) {
  const auto verifier = TokenVerifier::from_public_key_pem(public_pem(rsa()), secret);
  TokenClaims got;
  const std::string payload = b64url(R"({"sub":"42"})");
  for (const char* header : {R"({"alg":"none","typ":"JWT"})", R"({"alg":"none"})", R"({"alg":"None"})",
                             R"({"alg":"hs256"})", R"({"alg":"HS512"})", R"({"alg":"RS384"})", R"({"alg":"PS256"})",
                             R"({"alg":"ES384"})", R"({"alg":""})"}) {
    SCOPED_TRACE(header);
    EXPECT_EQ(verifier.verify(b64url(header) + "." + payload + ".", now, got), TokenError::unsupported_algorithm);
    // Even with an HMAC that would match under HS256.
    EXPECT_EQ(verifier.verify(hs256_raw(header, R"({"sub":"42"})", secret), now, got),
              TokenError::unsupported_algorithm);
  }
}

TEST_F(TokenKeys, AlgorithmConfusionIsRejected) {
  const std::string rsa_public = public_pem(rsa());
  const std::string ec_public = public_pem(ec());
  TokenClaims got;
  // The classic attack: HS256 "signed" with the server's public key as secret.
  const auto rsa_only = TokenVerifier::from_public_key_pem(rsa_public);
  EXPECT_EQ(rsa_only.verify(sign_token_hs256(R"({"sub":"42"})", rsa_public), now, got),
            TokenError::unsupported_algorithm);
  const auto ec_only = TokenVerifier::from_public_key_pem(ec_public);
  EXPECT_EQ(ec_only.verify(sign_token_hs256(R"({"sub":"42"})", ec_public), now, got),
            TokenError::unsupported_algorithm);
  // With an HMAC secret configured too, the public key is still no secret.
  const auto both = TokenVerifier::from_public_key_pem(rsa_public, secret);
  EXPECT_EQ(both.verify(sign_token_hs256(R"({"sub":"42"})", rsa_public), now, got), TokenError::bad_signature);
  // The other way round: a public-key algorithm against an HMAC-only verifier.
  const auto hs_only = TokenVerifier::from_secret(secret);
  EXPECT_EQ(hs_only.verify(sign_token_pem(R"({"sub":"42"})", private_pem(rsa())), now, got),
            TokenError::unsupported_algorithm);
  EXPECT_EQ(hs_only.verify(hs256_raw(R"({"alg":"RS256"})", R"({"sub":"42"})", secret), now, got),
            TokenError::unsupported_algorithm);
  // RSA token against an EC key and vice versa.
  EXPECT_EQ(ec_only.verify(sign_token_pem(R"({"sub":"42"})", private_pem(rsa())), now, got),
            TokenError::unsupported_algorithm);
  EXPECT_EQ(rsa_only.verify(sign_token_pem(R"({"sub":"42"})", private_pem(ec())), now, got),
            TokenError::unsupported_algorithm);
  // An ES256 token whose header claims ES256 but is signed by another EC key.
  const auto other_ec = generate_ec("P-256");
  EXPECT_EQ(ec_only.verify(sign_token_pem(R"({"sub":"42"})", private_pem(other_ec.get())), now, got),
            TokenError::bad_signature);
}

// ---- time ------------------------------------------------------------------

TEST(TokenTime, ExpIsStrict) {
  const auto verifier = TokenVerifier::from_secret(secret);
  TokenClaims got;
  const std::string token = hs256(R"({"sub":"42","exp":)" + std::to_string(now) + "}");
  EXPECT_EQ(verifier.verify(token, now - 1, got), TokenError::none);
  EXPECT_EQ(verifier.verify(token, now, got), TokenError::expired);
  EXPECT_EQ(got.sub, "42");  // claims are kept for an expired token
  EXPECT_EQ(verifier.verify(token, now + 1000, got), TokenError::expired);
  EXPECT_EQ(verifier.verify_ignoring_expiry(token, now + 1000, got), TokenError::none);
  EXPECT_EQ(got.exp, now);
  // No exp: never expires.
  EXPECT_EQ(verifier.verify(hs256(R"({"sub":"42"})"), INT64_MAX, got), TokenError::none);
  EXPECT_FALSE(got.exp.has_value());
}

TEST(TokenTime, NbfAndIatHaveLeeway) {
  const auto verifier = TokenVerifier::from_secret(secret);
  TokenClaims got;
  for (const char* claim : {"nbf", "iat"}) {
    SCOPED_TRACE(claim);
    auto with = [&](std::int64_t t) {
      return hs256(std::string(R"({"sub":"42",")") + claim + "\":" + std::to_string(t) + "}");
    };
    EXPECT_EQ(verifier.verify(with(now + 60), now, got), TokenError::none);
    EXPECT_EQ(verifier.verify(with(now + 61), now, got), TokenError::not_yet_valid);
    EXPECT_EQ(got.sub, "42");
    EXPECT_EQ(verifier.verify(with(now - 100000), now, got), TokenError::none);
    EXPECT_EQ(verifier.verify(with(INT64_MAX), INT64_MIN, got), TokenError::not_yet_valid);
    EXPECT_EQ(verifier.verify(with(INT64_MIN), INT64_MAX, got), TokenError::none);
  }
  // Not yet valid wins over expired (the clocks disagree, a new token won't help).
  EXPECT_EQ(verifier.verify(hs256(R"({"sub":"1","nbf":2000,"exp":1000})"), 500, got), TokenError::not_yet_valid);
}

TEST(TokenTime, FractionalAndHugeDates) {
  const auto verifier = TokenVerifier::from_secret(secret);
  TokenClaims got;
  EXPECT_EQ(verifier.verify(hs256(R"({"sub":"1","exp":1000.9})"), 0, got), TokenError::none);
  EXPECT_EQ(got.exp, 1000);
  EXPECT_EQ(verifier.verify(hs256(R"({"sub":"1","exp":18446744073709551615})"), now, got), TokenError::none);
  EXPECT_EQ(got.exp, INT64_MAX);
  EXPECT_EQ(verifier.verify(hs256(R"({"sub":"1","exp":1e300})"), now, got), TokenError::none);
  EXPECT_EQ(got.exp, INT64_MAX);
  EXPECT_EQ(verifier.verify(hs256(R"({"sub":"1","exp":-1e300})"), now, got), TokenError::expired);
}

// ---- malformed input ---------------------------------------------------------

TEST(TokenMalformed, SegmentsAndBase64) {
  const auto verifier = TokenVerifier::from_secret(secret);
  const std::string good = hs256(R"({"sub":"42"})");
  const auto parts = split(good);
  TokenClaims got;
  ASSERT_EQ(verifier.verify(good, now, got), TokenError::none);
  for (const std::string& bad : {
           std::string(),
           std::string("."),
           std::string(".."),
           std::string("..."),
           parts[0],
           parts[0] + "." + parts[1],
           good + ".",
           good + "." + parts[2],
           parts[0] + "=." + parts[1] + "." + parts[2],       // padding
           parts[0] + "." + parts[1] + "." + parts[2] + "=",  // padding
           parts[0] + " ." + parts[1] + "." + parts[2],       // whitespace
           parts[0] + "." + parts[1] + "\n." + parts[2],
           "+" + parts[0].substr(1) + "." + parts[1] + "." + parts[2],  // standard alphabet
           parts[0] + "." + "/" + parts[1].substr(1) + "." + parts[2],
           parts[0] + "." + parts[1] + "." + parts[2].substr(2),  // length % 4 == 1
           parts[0] + "." + parts[1] + "." + parts[2] + "*",
       }) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(verifier.verify(bad, now, got), TokenError::malformed);
  }
  // Well-formed base64url, but a 33-byte HS256 signature.
  EXPECT_EQ(verifier.verify(good + "A", now, got), TokenError::bad_signature);
  // Non-canonical: the unused low bits of the last character must be zero.
  // "e30" is "{}"; "e31" decodes to the same bytes with a stray bit.
  EXPECT_EQ(verifier.verify(hs256_raw(hs_header, "{}", secret), now, got), TokenError::missing_subject);
  EXPECT_EQ(b64url("{}"), "e30");
  const std::string header_b64 = b64url(hs_header);
  const std::string sig = b64url(hmac(secret, header_b64 + ".e31"));
  EXPECT_EQ(verifier.verify(header_b64 + ".e31." + sig, now, got), TokenError::malformed);
}

TEST(TokenMalformed, HeaderAndPayloadJson) {
  const auto verifier = TokenVerifier::from_secret(secret);
  TokenClaims got;
  for (const char* header : {"", "not json", "[]", R"("HS256")", R"({"alg":"HS256")", R"({"typ":"JWT"})",
                             R"({"alg":256})", R"({"alg":"HS256","typ":"JWS"})", R"({"alg":"HS256","typ":1})",
                             R"({"alg":"HS256","alg":"HS256"})", R"({"alg":"HS256","crit":["exp"]})",
                             R"({"alg":"HS256"} {})"}) {
    SCOPED_TRACE(header);
    EXPECT_EQ(verifier.verify(hs256_raw(header, R"({"sub":"42"})", secret), now, got), TokenError::malformed);
  }
  EXPECT_EQ(verifier.verify(hs256_raw(R"({"alg":"HS256","kid":"k1"})", R"({"sub":"42"})", secret), now, got),
            TokenError::none);
  for (const char* payload : {"", "not json", "[]", "42", R"("sub")", R"({"sub":"42")", R"({"sub":"42"}x)", "null"}) {
    SCOPED_TRACE(payload);
    EXPECT_EQ(verifier.verify(hs256(payload), now, got), TokenError::malformed);
  }
}

TEST(TokenMalformed, JsonDepthIsLimited) {
  const auto verifier = TokenVerifier::from_secret(secret);
  TokenClaims got;
  auto nested = [](int depth) {
    return R"({"sub":"1","info":)" + std::string(static_cast<std::size_t>(depth), '[') +
           std::string(static_cast<std::size_t>(depth), ']') + "}";
  };
  EXPECT_EQ(verifier.verify(hs256(nested(20)), now, got), TokenError::none);
  EXPECT_EQ(got.info, std::string(20, '[') + std::string(20, ']'));
  EXPECT_EQ(verifier.verify(hs256(nested(40)), now, got), TokenError::malformed);
}

TEST(TokenMalformed, ClaimsOfTheWrongTypeOrRepeated) {
  const auto verifier = TokenVerifier::from_secret(secret);
  TokenClaims got;
  for (const char* payload : {
           R"({"sub":42})", R"({"sub":null})", R"({"sub":["42"]})", R"({"sub":"42","exp":"1800000000"})",
           R"({"sub":"42","exp":null})", R"({"sub":"42","nbf":true})", R"({"sub":"42","iat":{}})",
           R"({"sub":"42","channels":"chat:*"})", R"({"sub":"42","channels":["chat:*",1]})",
           R"({"sub":"42","channels":[["a"]]})", R"({"sub":"42","publish":{"a":1}})", R"({"sub":"42","channel":5})",
           R"({"sub":"42","sub":"admin"})", R"({"sub":"42","exp":1,"exp":9999999999})",
           R"({"sub":"42","channels":[],"channels":["**"]})", R"({"sub":"42","info":1,"info":2})"}) {
    SCOPED_TRACE(payload);
    EXPECT_EQ(verifier.verify(hs256(payload), now, got), TokenError::malformed);
  }
}

TEST(TokenClaimsParsing, SubjectRules) {
  const auto verifier = TokenVerifier::from_secret(secret);
  TokenClaims got;
  EXPECT_EQ(verifier.verify(hs256(R"({"name":"x"})"), now, got), TokenError::missing_subject);
  EXPECT_EQ(verifier.verify(hs256(R"({})"), now, got), TokenError::missing_subject);
  EXPECT_EQ(verifier.verify(hs256(R"({"sub":""})"), now, got), TokenError::none);
  EXPECT_EQ(got.sub, "");
  // Unknown claims are ignored; `info` may be any JSON and comes back minified.
  EXPECT_EQ(verifier.verify(hs256(R"({"iss":"me","sub":"u\u00e9","info": [1, {"a" : null}] ,"aud":["x"]})"), now,
                            got),
            TokenError::none);
  EXPECT_EQ(got.sub, "u\xC3\xA9");
  EXPECT_EQ(got.info, R"([1,{"a":null}])");
  EXPECT_EQ(verifier.verify(hs256(R"({"sub":"1","info":"text"})"), now, got), TokenError::none);
  EXPECT_EQ(got.info, R"("text")");
}

TEST(TokenMalformed, SizeLimit) {
  const auto verifier = TokenVerifier::from_secret(secret);
  TokenClaims got;
  auto token_with_padding = [](std::size_t n) {
    return hs256(R"({"sub":"1","pad":")" + std::string(n, 'x') + "\"}");
  };
  // Find the largest padding that fits in max_token_bytes.
  std::size_t n = 5000;
  while (token_with_padding(n + 1).size() <= max_token_bytes) ++n;
  const std::string fits = token_with_padding(n);
  ASSERT_LE(fits.size(), max_token_bytes);
  EXPECT_EQ(verifier.verify(fits, now, got), TokenError::none);
  const std::string too_big = token_with_padding(n + 3);
  ASSERT_GT(too_big.size(), max_token_bytes);
  EXPECT_EQ(verifier.verify(too_big, now, got), TokenError::malformed);
  EXPECT_EQ(verifier.verify(std::string(1 << 20, 'a'), now, got), TokenError::malformed);
}

// ---- configuration -----------------------------------------------------------

TEST(TokenConfig, NoKeyConfigured) {
  const TokenVerifier verifier;
  EXPECT_FALSE(verifier.configured());
  TokenClaims got;
  EXPECT_EQ(verifier.verify(hs256(R"({"sub":"42"})"), now, got), TokenError::no_key_configured);
  EXPECT_EQ(verifier.verify("garbage", now, got), TokenError::no_key_configured);
  const auto from_empty = TokenVerifier::from_config(AuthConfig{});
  EXPECT_FALSE(from_empty.configured());
  EXPECT_EQ(from_empty.verify(hs256(R"({"sub":"42"})"), now, got), TokenError::no_key_configured);
}

void expect_config_error(const AuthConfig& auth, const std::string& needle) {
  try {
    (void)TokenVerifier::from_config(auth);
    ADD_FAILURE() << "no exception for " << auth.public_key_file;
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(auth.public_key_file), std::string::npos) << message;
    EXPECT_NE(message.find(needle), std::string::npos) << message;
  }
}

TEST_F(TokenKeys, UnusableKeyFilesAreNamedInTheError) {
  TempDir dir;
  AuthConfig auth;
  auth.public_key_file = dir.write("missing-dir-marker", "") + ".does-not-exist";
  expect_config_error(auth, "cannot open");
  auth.public_key_file = dir.write("garbage.pem", "hello\n");
  expect_config_error(auth, "no PEM public key");
  auth.public_key_file = dir.write("private.pem", private_pem(ec()));
  expect_config_error(auth, "private key");
  auth.public_key_file = dir.write("p384.pem", public_pem(generate_ec("P-384").get()));
  expect_config_error(auth, "P-256");
  auth.public_key_file = dir.write("rsa1024.pem", public_pem(generate_rsa(1024).get()));
  expect_config_error(auth, "2048");
  const auto ed = Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  auth.public_key_file = dir.write("ed25519.pem", public_pem(ed.get()));
  expect_config_error(auth, "neither RSA");
}

TEST_F(TokenKeys, SigningWithUnusableKeysThrows) {
  EXPECT_THROW(sign_token_pem("{}", "not a key"), std::runtime_error);
  EXPECT_THROW(sign_token_pem("{}", public_pem(ec())), std::runtime_error);
  EXPECT_THROW(sign_token_pem("{}", private_pem(generate_ec("P-384").get())), std::runtime_error);
  EXPECT_THROW(sign_token_hs256("{}", ""), std::runtime_error);
}

// ---- building claims, comparing secrets --------------------------------------

TEST(TokenClaimsJson, MinimalAndEscaped) {
  TokenClaims claims;
  claims.sub = "a\"b\\c";
  EXPECT_EQ(make_claims_json(claims), R"({"sub":"a\"b\\c"})");
  claims = full_claims();
  EXPECT_EQ(make_claims_json(claims),
            R"({"sub":"42","exp":1750003600,"nbf":1749999990,"iat":1749999990,"info":{"name":"Ada","tags":["x"]},)"
            R"("channels":["chat:*","user:#42"],"publish":["chat:**"],"channel":"chat:lobby"})");
}

TEST(TokenErrors, HumanText) {
  EXPECT_EQ(to_string(TokenError::expired), "token expired");
  EXPECT_EQ(to_string(TokenError::bad_signature), "bad token signature");
  EXPECT_EQ(to_string(TokenError::no_key_configured), "no token key configured");
}

TEST(TokenConstantTime, Equals) {
  EXPECT_TRUE(constant_time_equals("", ""));
  EXPECT_TRUE(constant_time_equals("secret", "secret"));
  EXPECT_FALSE(constant_time_equals("secret", "secreT"));
  EXPECT_FALSE(constant_time_equals("secret", "secret2"));
  EXPECT_FALSE(constant_time_equals("", "x"));
  EXPECT_FALSE(constant_time_equals(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
}

}  // namespace
