#include "duplex/hub/token.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <simdjson.h>

#include <array>
#include <climits>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "support/json.hpp"

namespace duplex::hub {

enum class TokenAlgorithm : std::uint8_t { hs256, rs256, es256 };

struct TokenVerifier::PublicKey {
  EVP_PKEY* key = nullptr;
  TokenAlgorithm algorithm = TokenAlgorithm::rs256;
  PublicKey(EVP_PKEY* k, TokenAlgorithm a) : key(k), algorithm(a) {}
  PublicKey(const PublicKey&) = delete;
  PublicKey& operator=(const PublicKey&) = delete;
  ~PublicKey() { EVP_PKEY_free(key); }
};

namespace {

constexpr std::size_t hs256_signature_bytes = 32;
constexpr std::size_t es256_coordinate_bytes = 32;  // r and s, each left-padded
constexpr int min_rsa_bits = 2048;

// ---- OpenSSL plumbing ----------------------------------------------------

struct EvpPkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, EcdsaSigFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;

// A failed OpenSSL call leaves entries in this thread's error queue, which
// would confuse the next SSL_get_error on the same thread (the network loops
// verify tokens too): always leave the queue empty.
struct OpenSslErrorScope {
  OpenSslErrorScope() = default;
  OpenSslErrorScope(const OpenSslErrorScope&) = delete;
  OpenSslErrorScope& operator=(const OpenSslErrorScope&) = delete;
  ~OpenSslErrorScope() { ERR_clear_error(); }
};

std::string openssl_reason() {
  const unsigned long code = ERR_peek_last_error();
  if (code == 0) return "unknown OpenSSL error";
  std::array<char, 256> text{};
  ERR_error_string_n(code, text.data(), text.size());
  return text.data();
}

// Never prompt on the terminal for a passphrase: encrypted keys just fail.
int no_passphrase(char*, int, int, void*) { return 0; }

BioPtr memory_bio(std::string_view pem) {
  if (pem.size() > static_cast<std::size_t>(INT_MAX)) throw std::runtime_error("key is too large");
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) throw std::runtime_error("out of memory");
  return bio;
}

bool is_ec_p256(EVP_PKEY* key) {
  std::array<char, 64> name{};
  std::size_t length = 0;
  if (EVP_PKEY_get_group_name(key, name.data(), name.size(), &length) != 1) return false;
  const std::string_view group(name.data(), length);
  return group == "prime256v1" || group == "P-256" || group == "secp256r1";
}

// RS256 for RSA of at least 2048 bits, ES256 for EC P-256; else a reason.
std::optional<TokenAlgorithm> algorithm_for_key(EVP_PKEY* key, std::string& why_not) {
  if (EVP_PKEY_is_a(key, "RSA")) {
    if (EVP_PKEY_get_bits(key) < min_rsa_bits) {
      why_not = "RSA key has " + std::to_string(EVP_PKEY_get_bits(key)) + " bits; at least 2048 are required";
      return std::nullopt;
    }
    return TokenAlgorithm::rs256;
  }
  if (EVP_PKEY_is_a(key, "EC")) {
    if (!is_ec_p256(key)) {
      why_not = "EC key is not on curve P-256 (ES256)";
      return std::nullopt;
    }
    return TokenAlgorithm::es256;
  }
  why_not = "key is neither RSA (RS256) nor EC P-256 (ES256)";
  return std::nullopt;
}

std::string_view algorithm_name(TokenAlgorithm algorithm) {
  switch (algorithm) {
    case TokenAlgorithm::hs256: return "HS256";
    case TokenAlgorithm::rs256: return "RS256";
    case TokenAlgorithm::es256: return "ES256";
  }
  return "";
}

// ---- base64url (RFC 4648 §5, unpadded as JWS requires) -------------------

constexpr char base64url_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int base64url_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

std::string base64url_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  std::uint32_t buffer = 0;
  int bits = 0;
  for (const char c : bytes) {
    buffer = (buffer << 8) | static_cast<unsigned char>(c);
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += base64url_alphabet[(buffer >> bits) & 63];
    }
    buffer &= (1u << bits) - 1;
  }
  if (bits > 0) out += base64url_alphabet[(buffer << (6 - bits)) & 63];
  return out;
}

// Strict: only the URL-safe alphabet, no padding, no whitespace, and the
// unused low bits of the last character must be zero, so every byte string
// has exactly one accepted encoding.
bool base64url_decode(std::string_view text, std::string& out) {
  out.clear();
  if (text.size() % 4 == 1) return false;
  out.reserve(text.size() / 4 * 3 + 2);
  std::uint32_t buffer = 0;
  int bits = 0;
  for (const char c : text) {
    const int value = base64url_value(c);
    if (value < 0) return false;
    buffer = (buffer << 6) | static_cast<std::uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buffer >> bits) & 0xFF);
    }
    buffer &= (1u << bits) - 1;
  }
  return buffer == 0;
}

// ---- JSON ------------------------------------------------------------------

// One parser per thread, sized once for the largest token and depth-limited.
simdjson::dom::parser& token_json_parser() {
  thread_local simdjson::dom::parser parser = [] {
    simdjson::dom::parser p;
    if (p.allocate(max_token_bytes, max_token_json_depth) != simdjson::SUCCESS) throw std::bad_alloc();
    return p;
  }();
  return parser;
}

bool parse_object(std::string_view text, simdjson::padded_string& storage, simdjson::dom::object& object) {
  storage = simdjson::padded_string(text);
  return token_json_parser().parse(storage).get_object().get(object) == simdjson::SUCCESS;
}

// NumericDate (RFC 7519 §2): integer or fractional seconds; fractions are
// dropped and values beyond the int64 range saturate.
bool numeric_date(simdjson::dom::element value, std::int64_t& out) {
  switch (value.type()) {
    case simdjson::dom::element_type::INT64:
      out = value.get_int64().value_unsafe();
      return true;
    case simdjson::dom::element_type::UINT64:
      out = std::numeric_limits<std::int64_t>::max();
      return true;
    case simdjson::dom::element_type::DOUBLE: {
      const double d = std::floor(value.get_double().value_unsafe());
      if (!std::isfinite(d)) return false;
      if (d >= 9.2e18) {
        out = std::numeric_limits<std::int64_t>::max();
      } else if (d <= -9.2e18) {
        out = std::numeric_limits<std::int64_t>::min();
      } else {
        out = static_cast<std::int64_t>(d);
      }
      return true;
    }
    default:
      return false;
  }
}

bool string_array(simdjson::dom::element value, std::vector<std::string>& out) {
  simdjson::dom::array array;
  if (value.get_array().get(array) != simdjson::SUCCESS) return false;
  for (simdjson::dom::element item : array) {
    std::string_view text;
    if (item.get_string().get(text) != simdjson::SUCCESS) return false;
    out.emplace_back(text);
  }
  return true;
}

// The JOSE header: which algorithm, and nothing we would have to understand
// but do not (`crit`).
bool parse_header(std::string_view json, std::string& alg) {
  simdjson::padded_string storage;
  simdjson::dom::object header;
  if (!parse_object(json, storage, header)) return false;
  bool seen_alg = false, seen_typ = false;
  for (const auto field : header) {
    if (field.key == "alg") {
      std::string_view value;
      if (seen_alg || field.value.get_string().get(value) != simdjson::SUCCESS) return false;
      alg.assign(value);
      seen_alg = true;
    } else if (field.key == "typ") {
      std::string_view value;
      if (seen_typ || field.value.get_string().get(value) != simdjson::SUCCESS || value != "JWT") return false;
      seen_typ = true;
    } else if (field.key == "crit") {
      return false;  // no header extensions are supported (RFC 7515 §4.1.11)
    }
  }
  return seen_alg;
}

// False if the payload is not an object, a known claim has the wrong type or
// appears twice. Unknown claims are ignored.
bool parse_claims(std::string_view json, TokenClaims& claims, bool& has_subject) {
  simdjson::padded_string storage;
  simdjson::dom::object payload;
  if (!parse_object(json, storage, payload)) return false;
  // A repeated claim is ambiguous (which one did the issuer mean?): refuse it.
  enum Seen : unsigned {
    seen_sub = 1,
    seen_exp = 2,
    seen_nbf = 4,
    seen_iat = 8,
    seen_info = 16,
    seen_channels = 32,
    seen_publish = 64,
    seen_channel = 128,
  };
  unsigned seen = 0;
  auto first_time = [&seen](Seen claim) {
    if (seen & claim) return false;
    seen |= claim;
    return true;
  };
  for (const auto field : payload) {
    const std::string_view key = field.key;
    const simdjson::dom::element value = field.value;
    std::string_view text;
    std::int64_t date = 0;
    if (key == "sub") {
      if (!first_time(seen_sub) || value.get_string().get(text) != simdjson::SUCCESS) return false;
      claims.sub.assign(text);
    } else if (key == "exp" || key == "nbf" || key == "iat") {
      const Seen which = key == "exp" ? seen_exp : key == "nbf" ? seen_nbf : seen_iat;
      if (!first_time(which) || !numeric_date(value, date)) return false;
      (which == seen_exp ? claims.exp : which == seen_nbf ? claims.nbf : claims.iat) = date;
    } else if (key == "info") {
      if (!first_time(seen_info)) return false;
      claims.info = simdjson::minify(value);
    } else if (key == "channels") {
      if (!first_time(seen_channels) || !string_array(value, claims.channels)) return false;
    } else if (key == "publish") {
      if (!first_time(seen_publish) || !string_array(value, claims.publish)) return false;
    } else if (key == "channel") {
      if (!first_time(seen_channel) || value.get_string().get(text) != simdjson::SUCCESS) return false;
      claims.channel.assign(text);
    }
  }
  has_subject = (seen & seen_sub) != 0;
  return true;
}

// `later` is more than `leeway` seconds after `now`, without overflow.
bool beyond(std::int64_t later, std::int64_t now, std::int64_t leeway) {
  if (later <= now) return false;
  const std::uint64_t difference = static_cast<std::uint64_t>(later) - static_cast<std::uint64_t>(now);
  return difference > static_cast<std::uint64_t>(leeway);
}

// ---- signatures ------------------------------------------------------------

std::array<unsigned char, hs256_signature_bytes> hmac_sha256(std::string_view key, std::string_view data) {
  if (key.size() > static_cast<std::size_t>(INT_MAX)) throw std::runtime_error("HMAC secret is too large");
  std::array<unsigned char, hs256_signature_bytes> mac{};
  unsigned int length = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
           data.size(), mac.data(), &length) == nullptr ||
      length != mac.size()) {
    throw std::runtime_error("HMAC-SHA256 failed: " + openssl_reason());
  }
  return mac;
}

// JWS ES256 signatures are r || s, 32 bytes each (RFC 7518 §3.4); OpenSSL
// speaks DER. False for anything that is not exactly 64 bytes.
bool es256_raw_to_der(std::string_view raw, std::string& der) {
  if (raw.size() != 2 * es256_coordinate_bytes) return false;
  EcdsaSigPtr sig(ECDSA_SIG_new());
  if (!sig) return false;
  const auto* bytes = reinterpret_cast<const unsigned char*>(raw.data());
  BIGNUM* r = BN_bin2bn(bytes, static_cast<int>(es256_coordinate_bytes), nullptr);
  BIGNUM* s = BN_bin2bn(bytes + es256_coordinate_bytes, static_cast<int>(es256_coordinate_bytes), nullptr);
  if (r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return false;
  }
  const int length = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (length <= 0) return false;
  der.resize(static_cast<std::size_t>(length));
  auto* out = reinterpret_cast<unsigned char*>(der.data());
  return i2d_ECDSA_SIG(sig.get(), &out) == length;
}

std::string es256_der_to_raw(std::string_view der) {
  const auto* in = reinterpret_cast<const unsigned char*>(der.data());
  EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &in, static_cast<long>(der.size())));
  if (!sig) throw std::runtime_error("ES256: OpenSSL returned an unreadable signature");
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  std::string raw(2 * es256_coordinate_bytes, '\0');
  auto* out = reinterpret_cast<unsigned char*>(raw.data());
  if (BN_bn2binpad(r, out, static_cast<int>(es256_coordinate_bytes)) < 0 ||
      BN_bn2binpad(s, out + es256_coordinate_bytes, static_cast<int>(es256_coordinate_bytes)) < 0) {
    throw std::runtime_error("ES256: signature does not fit 64 bytes");
  }
  return raw;
}

bool verify_with_key(EVP_PKEY* key, TokenAlgorithm algorithm, std::string_view signing_input,
                     std::string_view signature) {
  std::string der;
  if (algorithm == TokenAlgorithm::es256) {
    if (!es256_raw_to_der(signature, der)) return false;
    signature = der;
  }
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1) return false;
  // RSA defaults to PKCS #1 v1.5 padding, which is what RS256 means.
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                          reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size()) == 1;
}

std::string signing_input_for(std::string_view algorithm, std::string_view payload_json) {
  std::string header = R"({"alg":")";
  header += algorithm;
  header += R"(","typ":"JWT"})";
  return base64url_encode(header) + '.' + base64url_encode(payload_json);
}

PkeyPtr read_public_key(std::string_view pem, std::string& why_not) {
  if (pem.find("PRIVATE KEY-----") != std::string_view::npos) {
    why_not =
        "it holds a private key; give the server only the public key "
        "(openssl pkey -in key.pem -pubout -out public.pem)";
    return nullptr;
  }
  {
    BioPtr bio = memory_bio(pem);
    if (PkeyPtr key{PEM_read_bio_PUBKEY(bio.get(), nullptr, no_passphrase, nullptr)}) return key;
  }
  ERR_clear_error();
  BioPtr bio = memory_bio(pem);
  if (X509Ptr certificate{PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr)}) {
    if (PkeyPtr key{X509_get_pubkey(certificate.get())}) return key;
  }
  why_not = "no PEM public key (BEGIN PUBLIC KEY) or certificate in it";
  return nullptr;
}

std::shared_ptr<const TokenVerifier::PublicKey> make_public_key(std::string_view pem, std::string& why_not) {
  PkeyPtr key = read_public_key(pem, why_not);
  if (!key) return nullptr;
  const auto algorithm = algorithm_for_key(key.get(), why_not);
  if (!algorithm) return nullptr;
  return std::make_shared<const TokenVerifier::PublicKey>(key.release(), *algorithm);
}

}  // namespace

std::string_view to_string(TokenError error) {
  switch (error) {
    case TokenError::none: return "token valid";
    case TokenError::malformed: return "malformed token";
    case TokenError::unsupported_algorithm: return "unsupported token algorithm";
    case TokenError::bad_signature: return "bad token signature";
    case TokenError::expired: return "token expired";
    case TokenError::not_yet_valid: return "token not yet valid";
    case TokenError::missing_subject: return "token has no subject (sub)";
    case TokenError::no_key_configured: return "no token key configured";
  }
  return "unknown token error";
}

// ---- TokenVerifier ---------------------------------------------------------

TokenVerifier TokenVerifier::from_config(const AuthConfig& auth) {
  TokenVerifier verifier;
  verifier.hmac_secret_ = auth.hmac_secret;
  if (auth.public_key_file.empty()) return verifier;
  const std::string& path = auth.public_key_file;
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error("auth.public_key_file " + path + ": cannot open it");
  std::ostringstream contents;
  contents << file.rdbuf();
  if (file.bad()) throw std::runtime_error("auth.public_key_file " + path + ": cannot read it");
  const OpenSslErrorScope errors;
  std::string why_not;
  verifier.public_key_ = make_public_key(contents.str(), why_not);
  if (!verifier.public_key_) throw std::runtime_error("auth.public_key_file " + path + ": " + why_not);
  return verifier;
}

TokenVerifier TokenVerifier::from_secret(std::string_view hmac_secret) {
  TokenVerifier verifier;
  verifier.hmac_secret_.assign(hmac_secret);
  return verifier;
}

TokenVerifier TokenVerifier::from_public_key_pem(std::string_view pem, std::string_view hmac_secret) {
  TokenVerifier verifier = from_secret(hmac_secret);
  const OpenSslErrorScope errors;
  std::string why_not;
  verifier.public_key_ = make_public_key(pem, why_not);
  if (!verifier.public_key_) throw std::runtime_error("public key: " + why_not);
  return verifier;
}

bool TokenVerifier::configured() const { return !hmac_secret_.empty() || public_key_ != nullptr; }

TokenError TokenVerifier::verify(std::string_view token, std::int64_t now_unix, TokenClaims& out) const {
  return check(token, now_unix, true, out);
}

TokenError TokenVerifier::verify_ignoring_expiry(std::string_view token, std::int64_t now_unix,
                                                 TokenClaims& out) const {
  return check(token, now_unix, false, out);
}

TokenError TokenVerifier::check(std::string_view token, std::int64_t now_unix, bool check_expiry,
                                TokenClaims& out) const {
  out = TokenClaims{};
  if (!configured()) return TokenError::no_key_configured;
  if (token.size() > max_token_bytes) return TokenError::malformed;

  // header.payload.signature, exactly three segments.
  const std::size_t first_dot = token.find('.');
  if (first_dot == std::string_view::npos) return TokenError::malformed;
  const std::size_t second_dot = token.find('.', first_dot + 1);
  if (second_dot == std::string_view::npos || token.find('.', second_dot + 1) != std::string_view::npos) {
    return TokenError::malformed;
  }
  const std::string_view header_text = token.substr(0, first_dot);
  const std::string_view payload_text = token.substr(first_dot + 1, second_dot - first_dot - 1);
  const std::string_view signature_text = token.substr(second_dot + 1);
  const std::string_view signing_input = token.substr(0, second_dot);

  std::string header_json, payload_json, signature;
  if (!base64url_decode(header_text, header_json) || !base64url_decode(payload_text, payload_json) ||
      !base64url_decode(signature_text, signature)) {
    return TokenError::malformed;
  }
  std::string alg;
  if (!parse_header(header_json, alg)) return TokenError::malformed;

  // The header names the algorithm, but only the key decides which one is
  // acceptable: a public key is never used as an HMAC secret, nor the other
  // way round, and "none" is never accepted.
  const OpenSslErrorScope errors;
  bool signature_ok = false;
  if (alg == "HS256") {
    if (hmac_secret_.empty()) return TokenError::unsupported_algorithm;
    const auto expected = hmac_sha256(hmac_secret_, signing_input);
    signature_ok = constant_time_equals(
        signature, std::string_view(reinterpret_cast<const char*>(expected.data()), expected.size()));
  } else if (public_key_ && alg == algorithm_name(public_key_->algorithm)) {
    signature_ok = verify_with_key(public_key_->key, public_key_->algorithm, signing_input, signature);
  } else {
    return TokenError::unsupported_algorithm;
  }
  if (!signature_ok) return TokenError::bad_signature;

  TokenClaims claims;
  bool has_subject = false;
  if (!parse_claims(payload_json, claims, has_subject)) return TokenError::malformed;
  // Time first: "expired" tells a client to fetch a new token, which is the
  // useful answer even for a token that has other faults.
  TokenError result = TokenError::none;
  if ((claims.nbf && beyond(*claims.nbf, now_unix, token_clock_leeway_seconds)) ||
      (claims.iat && beyond(*claims.iat, now_unix, token_clock_leeway_seconds))) {
    result = TokenError::not_yet_valid;
  } else if (check_expiry && claims.exp && now_unix >= *claims.exp) {
    result = TokenError::expired;
  } else if (!has_subject) {
    return TokenError::missing_subject;
  }
  out = std::move(claims);
  return result;
}

// ---- minting ---------------------------------------------------------------

std::string sign_token_hs256(std::string_view payload_json, std::string_view secret) {
  if (secret.empty()) throw std::runtime_error("HS256 needs a non-empty secret");
  const OpenSslErrorScope errors;
  std::string token = signing_input_for("HS256", payload_json);
  const auto mac = hmac_sha256(secret, token);
  token += '.';
  token += base64url_encode(std::string_view(reinterpret_cast<const char*>(mac.data()), mac.size()));
  return token;
}

std::string sign_token_pem(std::string_view payload_json, const std::string& private_key_pem) {
  const OpenSslErrorScope errors;
  BioPtr bio = memory_bio(private_key_pem);
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
  if (!key) throw std::runtime_error("cannot read the PEM private key (unencrypted PKCS #8, RSA or EC): " + openssl_reason());
  std::string why_not;
  const auto algorithm = algorithm_for_key(key.get(), why_not);
  if (!algorithm) throw std::runtime_error(why_not);

  std::string token = signing_input_for(algorithm_name(*algorithm), payload_json);
  MdCtxPtr ctx(EVP_MD_CTX_new());
  std::size_t length = 0;
  const auto* input = reinterpret_cast<const unsigned char*>(token.data());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &length, input, token.size()) != 1) {
    throw std::runtime_error("signing failed: " + openssl_reason());
  }
  std::string signature(length, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &length, input, token.size()) != 1) {
    throw std::runtime_error("signing failed: " + openssl_reason());
  }
  signature.resize(length);
  if (*algorithm == TokenAlgorithm::es256) signature = es256_der_to_raw(signature);
  token += '.';
  token += base64url_encode(signature);
  return token;
}

std::string make_claims_json(const TokenClaims& claims) {
  std::string json = R"({"sub":)";
  append_json_string(json, claims.sub);
  auto append_date = [&json](const char* name, const std::optional<std::int64_t>& value) {
    if (!value) return;
    json += ",\"";
    json += name;
    json += "\":";
    json += std::to_string(*value);
  };
  append_date("exp", claims.exp);
  append_date("nbf", claims.nbf);
  append_date("iat", claims.iat);
  if (!claims.info.empty()) {
    json += R"(,"info":)";
    json += claims.info;
  }
  auto append_list = [&json](const char* name, const std::vector<std::string>& values) {
    if (values.empty()) return;
    json += ",\"";
    json += name;
    json += "\":[";
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (i > 0) json += ',';
      append_json_string(json, values[i]);
    }
    json += ']';
  };
  append_list("channels", claims.channels);
  append_list("publish", claims.publish);
  if (!claims.channel.empty()) {
    json += R"(,"channel":)";
    append_json_string(json, claims.channel);
  }
  json += '}';
  return json;
}

bool constant_time_equals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace duplex::hub
