#include "duplex/protocol/permessage_deflate.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <memory>

namespace duplex::protocol {

namespace {

constexpr std::string_view extension_name = "permessage-deflate";
constexpr std::uint8_t deflate_tail[4] = {0x00, 0x00, 0xFF, 0xFF};

// Parses a window-bits value: 1*DIGIT in 8..15, no leading zeros or signs.
std::optional<std::uint8_t> parse_window_bits(const std::string& v) {
  if (v.empty() || v.size() > 2 || v[0] == '0') return std::nullopt;
  unsigned n = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || ptr != v.data() + v.size() || n < 8 || n > 15) return std::nullopt;
  return static_cast<std::uint8_t>(n);
}

struct ParsedParams {
  bool server_no_context_takeover = false;
  bool client_no_context_takeover = false;
  std::optional<std::uint8_t> server_max_window_bits;
  bool client_max_window_bits = false;  // present
  std::optional<std::uint8_t> client_max_window_bits_value;
};

// RFC 7692 §7.1: unknown, duplicate or invalid parameters make the whole
// offer (or response) unusable.
std::optional<ParsedParams> parse_params(const ExtensionOffer& ext, bool is_response) {
  ParsedParams p;
  bool seen[4] = {false, false, false, false};
  for (const auto& param : ext.params) {
    int idx;
    if (param.name == "server_no_context_takeover") idx = 0;
    else if (param.name == "client_no_context_takeover") idx = 1;
    else if (param.name == "server_max_window_bits") idx = 2;
    else if (param.name == "client_max_window_bits") idx = 3;
    else return std::nullopt;
    if (seen[idx]) return std::nullopt;
    seen[idx] = true;
    switch (idx) {
      case 0:
        if (param.value) return std::nullopt;
        p.server_no_context_takeover = true;
        break;
      case 1:
        if (param.value) return std::nullopt;
        p.client_no_context_takeover = true;
        break;
      case 2: {
        if (!param.value) return std::nullopt;
        auto bits = parse_window_bits(*param.value);
        if (!bits) return std::nullopt;
        p.server_max_window_bits = bits;
        break;
      }
      case 3:
        p.client_max_window_bits = true;
        if (param.value) {
          auto bits = parse_window_bits(*param.value);
          if (!bits) return std::nullopt;
          p.client_max_window_bits_value = bits;
        } else if (is_response) {
          return std::nullopt;  // a response must give a value
        }
        break;
    }
  }
  return p;
}

}  // namespace

std::optional<DeflateParams> negotiate_deflate(const std::vector<ExtensionOffer>& offers,
                                               const DeflateServerPolicy& policy, std::string& response) {
  response.clear();
  if (!policy.enabled) return std::nullopt;
  for (const auto& offer : offers) {
    if (offer.name != extension_name) continue;
    auto parsed = parse_params(offer, false);
    if (!parsed) continue;  // decline this offer, try the next
    DeflateParams params;
    std::string answer(extension_name);
    params.server_no_context_takeover = parsed->server_no_context_takeover || policy.server_no_context_takeover;
    if (params.server_no_context_takeover) answer += "; server_no_context_takeover";
    params.client_no_context_takeover = parsed->client_no_context_takeover || policy.client_no_context_takeover;
    if (params.client_no_context_takeover) answer += "; client_no_context_takeover";
    // Our compressor: the client's bound and our own, whichever is smaller. A
    // requested bound must be echoed (RFC 7692 §7.1.2.1).
    params.server_max_window_bits = std::min<std::uint8_t>(parsed->server_max_window_bits.value_or(15),
                                                           policy.server_max_window_bits);
    if (parsed->server_max_window_bits)
      answer += "; server_max_window_bits=" + std::to_string(params.server_max_window_bits);
    // The client's compressor: we may only bound it if it said it accepts a bound.
    params.client_max_window_bits = 15;
    if (parsed->client_max_window_bits) {
      std::uint8_t bits = std::min<std::uint8_t>(parsed->client_max_window_bits_value.value_or(15),
                                                 policy.client_max_window_bits);
      if (bits < 15 || parsed->client_max_window_bits_value) {
        params.client_max_window_bits = bits;
        answer += "; client_max_window_bits=" + std::to_string(bits);
      }
    }
    response = std::move(answer);
    return params;
  }
  return std::nullopt;
}

std::string format_deflate_offer(const DeflateClientOffer& offer) {
  std::string s(extension_name);
  if (offer.server_no_context_takeover) s += "; server_no_context_takeover";
  if (offer.client_no_context_takeover) s += "; client_no_context_takeover";
  if (offer.server_max_window_bits) s += "; server_max_window_bits=" + std::to_string(*offer.server_max_window_bits);
  if (offer.client_max_window_bits_value)
    s += "; client_max_window_bits=" + std::to_string(*offer.client_max_window_bits_value);
  else if (offer.client_max_window_bits)
    s += "; client_max_window_bits";
  return s;
}

std::optional<DeflateParams> accept_deflate_response(const std::vector<ExtensionOffer>& accepted,
                                                     const DeflateClientOffer& offered, std::string& error) {
  error.clear();
  std::optional<DeflateParams> result;
  for (const auto& ext : accepted) {
    if (ext.name != extension_name) {
      error = "server accepted an extension we did not offer: " + ext.name;
      return std::nullopt;
    }
    if (result) {
      error = "server accepted permessage-deflate twice";
      return std::nullopt;
    }
    auto parsed = parse_params(ext, true);
    if (!parsed) {
      error = "server's permessage-deflate parameters are invalid";
      return std::nullopt;
    }
    DeflateParams params;
    if (offered.server_no_context_takeover && !parsed->server_no_context_takeover) {
      error = "server ignored server_no_context_takeover";
      return std::nullopt;
    }
    params.server_no_context_takeover = parsed->server_no_context_takeover;
    params.client_no_context_takeover = parsed->client_no_context_takeover;  // allowed unrequested
    if (offered.server_max_window_bits) {
      if (!parsed->server_max_window_bits || *parsed->server_max_window_bits > *offered.server_max_window_bits) {
        error = "server did not honour server_max_window_bits";
        return std::nullopt;
      }
    }
    params.server_max_window_bits = parsed->server_max_window_bits.value_or(15);
    if (parsed->client_max_window_bits) {
      if (!offered.client_max_window_bits && !offered.client_max_window_bits_value) {
        error = "server sent client_max_window_bits we did not offer";
        return std::nullopt;
      }
      if (offered.client_max_window_bits_value &&
          *parsed->client_max_window_bits_value > *offered.client_max_window_bits_value) {
        error = "server's client_max_window_bits exceeds our offer";
        return std::nullopt;
      }
      params.client_max_window_bits = *parsed->client_max_window_bits_value;
    } else {
      params.client_max_window_bits = offered.client_max_window_bits_value.value_or(15);
    }
    result = params;
  }
  return result;
}

// ---- data path ----------------------------------------------------------------

struct PerMessageDeflate::Stream {
  z_stream z{};
  bool is_deflate = false;
  int window_bits = 15;
  // Inflate only: no input since the message began or since a BFINAL block
  // ended the DEFLATE stream, so there is no block for the tail to complete.
  bool at_boundary = true;
  ~Stream() {
    if (is_deflate)
      deflateEnd(&z);
    else
      inflateEnd(&z);
  }
};

namespace {
// zlib cannot produce a raw stream with an 8-bit window (it silently needs 9).
// For an 8-bit bound we compress with window 9 and Z_RLE, whose matches all
// have distance 1, so the output is valid for any window size.
int zlib_deflate_bits(int bits) { return bits < 9 ? 9 : bits; }
int zlib_strategy(int bits) { return bits < 9 ? Z_RLE : Z_DEFAULT_STRATEGY; }

// No-context-takeover compression needs no state between messages, so one
// compressor per thread (per window size) serves every connection: memory
// per connection stays zero ("shared compression").
struct SharedDeflaters {
  std::array<std::unique_ptr<z_stream, void (*)(z_stream*)>, 16> streams{
      {{nullptr, nullptr}, {nullptr, nullptr}, {nullptr, nullptr}, {nullptr, nullptr},
       {nullptr, nullptr}, {nullptr, nullptr}, {nullptr, nullptr}, {nullptr, nullptr},
       {nullptr, nullptr}, {nullptr, nullptr}, {nullptr, nullptr}, {nullptr, nullptr},
       {nullptr, nullptr}, {nullptr, nullptr}, {nullptr, nullptr}, {nullptr, nullptr}}};
  int level[16] = {};
  int mem_level[16] = {};
};

void free_z(z_stream* z) {
  deflateEnd(z);
  delete z;
}

z_stream* shared_deflater(int bits, int level, int mem_level) {
  thread_local SharedDeflaters shared;
  auto& slot = shared.streams[static_cast<std::size_t>(bits)];
  if (slot && (shared.level[bits] != level || shared.mem_level[bits] != mem_level)) slot.reset();
  if (!slot) {
    auto* z = new z_stream{};
    if (deflateInit2(z, level, Z_DEFLATED, -zlib_deflate_bits(bits), mem_level, zlib_strategy(bits)) != Z_OK) {
      delete z;
      return nullptr;
    }
    slot = std::unique_ptr<z_stream, void (*)(z_stream*)>(z, free_z);
    shared.level[bits] = level;
    shared.mem_level[bits] = mem_level;
  }
  return slot.get();
}

// Runs deflate(Z_SYNC_FLUSH) over `message`, appending to `out`, then strips
// the 00 00 ff ff tail (RFC 7692 §7.2.1).
bool deflate_message(z_stream* z, std::string_view message, std::string& out) {
  z->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(message.data()));
  z->avail_in = static_cast<uInt>(message.size());
  const std::size_t start = out.size();
  do {
    const std::size_t chunk = std::max<std::size_t>(256, deflateBound(z, z->avail_in) + 16);
    const std::size_t at = out.size();
    out.resize(at + chunk);
    z->next_out = reinterpret_cast<Bytef*>(out.data() + at);
    z->avail_out = static_cast<uInt>(chunk);
    const int rc = deflate(z, Z_SYNC_FLUSH);
    out.resize(at + chunk - z->avail_out);
    if (rc != Z_OK && rc != Z_BUF_ERROR) return false;
  } while (z->avail_out == 0 || z->avail_in != 0);
  if (out.size() - start >= 4 && std::memcmp(out.data() + out.size() - 4, deflate_tail, 4) == 0)
    out.resize(out.size() - 4);
  if (out.size() == start) out.push_back('\0');  // an empty message still needs one byte (RFC 7692 §7.2.3.6)
  return true;
}
}  // namespace

PerMessageDeflate::PerMessageDeflate(const DeflateParams& params, bool is_server, DeflateTuning tuning)
    : params_(params), tuning_(tuning), is_server_(is_server) {}

PerMessageDeflate::~PerMessageDeflate() {
  delete inflater_;
  delete deflater_;
}

int PerMessageDeflate::inflate_window_bits() const {
  // The peer's compressor bound. Peers built on zlib may use 9 when 8 was
  // negotiated (zlib's own 8-bit quirk), so never inflate with fewer than 9.
  const int bits = is_server_ ? params_.client_max_window_bits : params_.server_max_window_bits;
  return std::max(bits, 9);
}
int PerMessageDeflate::deflate_window_bits() const {
  return is_server_ ? params_.server_max_window_bits : params_.client_max_window_bits;
}
bool PerMessageDeflate::inflate_keeps_context() const {
  return !(is_server_ ? params_.client_no_context_takeover : params_.server_no_context_takeover);
}
bool PerMessageDeflate::deflate_keeps_context() const {
  return !(is_server_ ? params_.server_no_context_takeover : params_.client_no_context_takeover);
}

PerMessageDeflate::InflateStatus PerMessageDeflate::run_inflate(const std::uint8_t* data, std::size_t size,
                                                                std::string& out, std::size_t limit, int flush) {
  if (!inflater_) {
    auto s = std::make_unique<Stream>();
    s->window_bits = inflate_window_bits();
    if (inflateInit2(&s->z, -s->window_bits) != Z_OK) return InflateStatus::corrupt;
    inflater_ = s.release();
  }
  z_stream& z = inflater_->z;
  z.next_in = const_cast<Bytef*>(data);
  z.avail_in = static_cast<uInt>(size);
  inflater_->at_boundary = false;
  while (z.avail_in > 0) {
    if (out.size() > limit) return InflateStatus::too_big;
    // Grow in bounded steps and at most one byte past the limit (that byte
    // is how too_big is detected), so a bomb cannot make us allocate more
    // than the limit. Written so that limit == SIZE_MAX cannot overflow.
    const std::size_t left = limit - out.size();
    std::size_t room = std::max<std::size_t>(std::min<std::size_t>(size, std::size_t{1} << 28) * 4, 4096);
    if (room > left) room = left + 1;
    const std::size_t at = out.size();
    out.resize(at + room);
    z.next_out = reinterpret_cast<Bytef*>(out.data() + at);
    z.avail_out = static_cast<uInt>(room);
    const int rc = ::inflate(&z, flush);
    out.resize(at + room - z.avail_out);
    if (out.size() > limit) return InflateStatus::too_big;
    if (rc == Z_STREAM_END) {
      // A BFINAL block ended the DEFLATE stream (RFC 7692 §7.2.3.3). What
      // follows starts a new one: in the RFC's example, the octet 0x00 that
      // the tail completes into an empty stored block. The window is kept,
      // as a sender keeping context may still refer back into it.
      inflateResetKeep(&z);
      if (z.avail_in == 0) inflater_->at_boundary = true;
      continue;
    }
    if (rc == Z_BUF_ERROR && z.avail_out != 0) break;  // needs more input
    if (rc != Z_OK && rc != Z_BUF_ERROR) return InflateStatus::corrupt;
  }
  return InflateStatus::ok;
}

PerMessageDeflate::InflateStatus PerMessageDeflate::inflate(const std::uint8_t* data, std::size_t size,
                                                            std::string& out, std::size_t limit) {
  if (size == 0) return InflateStatus::ok;
  return run_inflate(data, size, out, limit, Z_SYNC_FLUSH);
}

PerMessageDeflate::InflateStatus PerMessageDeflate::finish_inflate(std::string& out, std::size_t limit) {
  InflateStatus status = InflateStatus::ok;
  if (inflater_ && !inflater_->at_boundary) {
    // Append the 00 00 ff ff tail (RFC 7692 §7.2.2), stopping at the end of
    // each block: the message must end exactly where the tail's empty stored
    // block ends. Anything else is a truncated or malformed DEFLATE stream,
    // which would otherwise deliver a partial message and leave the inflater
    // out of step for the next one.
    status = run_inflate(deflate_tail, sizeof deflate_tail, out, limit, Z_BLOCK);
    if (status == InflateStatus::ok && !inflater_->at_boundary &&
        (inflater_->z.avail_in != 0 || (inflater_->z.data_type & 128) == 0))
      status = InflateStatus::corrupt;
  }
  // An empty payload (no octets since the message began) has no block for
  // the tail to complete: it is an empty message, and the stream is left as
  // it was (some senders flush nothing for an empty message with context).
  if (inflater_) inflater_->at_boundary = true;
  if (!inflate_keeps_context()) {
    // No context to keep: release the ~40 KiB of zlib state until the next message.
    delete inflater_;
    inflater_ = nullptr;
  }
  return status;
}

bool PerMessageDeflate::compress(std::string_view message, std::string& out) {
  const int bits = deflate_window_bits();
  if (!deflate_keeps_context()) {
    z_stream* z = shared_deflater(bits, tuning_.level, tuning_.mem_level);
    if (!z) return false;
    const bool ok = deflate_message(z, message, out);
    deflateReset(z);
    return ok;
  }
  if (!deflater_) {
    auto s = std::make_unique<Stream>();
    s->is_deflate = true;
    s->window_bits = bits;
    if (deflateInit2(&s->z, tuning_.level, Z_DEFLATED, -zlib_deflate_bits(bits), tuning_.mem_level,
                     zlib_strategy(bits)) != Z_OK)
      return false;
    deflater_ = s.release();
  }
  return deflate_message(&deflater_->z, message, out);
}

}  // namespace duplex::protocol
