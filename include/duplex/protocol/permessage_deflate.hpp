// permessage-deflate (RFC 7692): negotiation and the zlib data path.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/protocol/extensions.hpp"

namespace duplex::protocol {

// Negotiated parameters (RFC 7692 §7.1). Window bits 8..15.
struct DeflateParams {
  bool server_no_context_takeover = false;
  bool client_no_context_takeover = false;
  std::uint8_t server_max_window_bits = 15;
  std::uint8_t client_max_window_bits = 15;
};

// What a server is willing to do; used to answer a client's offers.
struct DeflateServerPolicy {
  bool enabled = true;
  // Force no context takeover for our compressor (shared compression: one
  // compressed frame serves every subscriber).
  bool server_no_context_takeover = false;
  // Ask the client not to keep context (saves our inflate window memory).
  bool client_no_context_takeover = false;
  std::uint8_t server_max_window_bits = 15;  // our compressor's upper bound
  std::uint8_t client_max_window_bits = 15;  // requested bound on the client's, if it allows
};

// What a client offers.
struct DeflateClientOffer {
  bool server_no_context_takeover = false;
  bool client_no_context_takeover = false;
  std::optional<std::uint8_t> server_max_window_bits;  // request a bound on the server
  bool client_max_window_bits = true;                   // advertise that we accept a bound
  std::optional<std::uint8_t> client_max_window_bits_value;
};

// Server side: walks the client's offers (in order) and accepts the first
// acceptable permessage-deflate one. Returns the parameters and fills
// `response` with the Sec-WebSocket-Extensions answer; nullopt if declined
// (no acceptable offer). Offers with unknown, duplicate or invalid
// parameters are declined, per RFC 7692 §5.1.
std::optional<DeflateParams> negotiate_deflate(const std::vector<ExtensionOffer>& offers,
                                               const DeflateServerPolicy& policy, std::string& response);

// Client side.
std::string format_deflate_offer(const DeflateClientOffer& offer);
// Validates the server's accepted extensions against what we offered; an
// unknown extension, duplicate or unoffered parameter fails the connection.
// Returns nullopt when there is nothing to enable, sets `error` on failure.
std::optional<DeflateParams> accept_deflate_response(const std::vector<ExtensionOffer>& accepted,
                                                     const DeflateClientOffer& offered, std::string& error);

struct DeflateTuning {
  int mem_level = 8;                 // zlib memLevel 1..9 (memory vs speed)
  int level = 6;                     // zlib compression level
  std::size_t min_size = 64;         // messages under this are sent uncompressed
};

// One side's compressor and decompressor, allocated lazily and released
// after each message when no context is kept.
class PerMessageDeflate {
 public:
  // `is_server` picks which negotiated parameters apply to which direction.
  PerMessageDeflate(const DeflateParams& params, bool is_server, DeflateTuning tuning = {});
  ~PerMessageDeflate();
  PerMessageDeflate(const PerMessageDeflate&) = delete;
  PerMessageDeflate& operator=(const PerMessageDeflate&) = delete;

  enum class InflateStatus { ok, too_big, corrupt };
  // Inflates the next piece of a compressed message, appending to `out` and
  // stopping as soon as `out` would exceed `limit` bytes.
  InflateStatus inflate(const std::uint8_t* data, std::size_t size, std::string& out, std::size_t limit);
  // Ends the message (adds the 00 00 ff ff tail RFC 7692 §7.2.2 removed).
  InflateStatus finish_inflate(std::string& out, std::size_t limit);

  // Compresses one whole message, appending the payload (tail removed) to `out`.
  bool compress(std::string_view message, std::string& out);
  bool should_compress(std::size_t size) const { return size >= tuning_.min_size; }

  const DeflateParams& params() const { return params_; }
  // Memory currently held by zlib state (for metrics and tests).
  bool has_inflate_state() const { return inflater_ != nullptr; }
  bool has_deflate_state() const { return deflater_ != nullptr; }

 private:
  struct Stream;
  DeflateParams params_;
  DeflateTuning tuning_;
  bool is_server_;
  Stream* inflater_ = nullptr;
  Stream* deflater_ = nullptr;
  InflateStatus run_inflate(const std::uint8_t* data, std::size_t size, std::string& out, std::size_t limit,
                            int flush);
  int inflate_window_bits() const;
  int deflate_window_bits() const;
  bool inflate_keeps_context() const;
  bool deflate_keeps_context() const;
};

}  // namespace duplex::protocol
