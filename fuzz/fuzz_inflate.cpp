// libFuzzer target: permessage-deflate's inflate path (and a compress round
// trip) under a small output limit.
//
// Input layout:
//   byte 0  bit 0 no context takeover; bits 1-3 window bits (8 + value);
//           bits 4-6 output limit (64 << value, 7: none); bit 7 fuzz the compressor
//           instead (the messages are plaintext to round-trip).
//   byte 1  chunking: bits 0-3 maximum chunk (1 << value), cut points derived
//           from the data.
//   rest    messages, each a length byte then that many payload bytes.
// Invariants: chunked and whole inflation agree exactly (status and output,
// with a 15-bit window; see below);
// output never exceeds the limit (one byte over signals too_big) nor grows
// its buffer far beyond it; after an error the stream is abandoned, as the
// connection would be. In round-trip mode, what we compress inflates back,
// both with our own inflater and with zlib held to the negotiated window.
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "duplex/protocol/permessage_deflate.hpp"

using namespace duplex::protocol;
using Status = PerMessageDeflate::InflateStatus;

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_inflate invariant violated: %s\n", what);
    std::abort();
  }
}

// At most `limit` bytes, or (after an error) one byte more: that byte is how
// the limit is detected. Written so that limit == SIZE_MAX cannot overflow.
bool within(std::size_t size, std::size_t limit, bool one_over_allowed) {
  return size <= limit || (one_over_allowed && size - 1 == limit);
}

Status inflate_chunked(PerMessageDeflate& d, const std::uint8_t* p, std::size_t n, std::string& out, std::size_t limit,
                       unsigned chunk_bits) {
  std::size_t at = 0;
  while (at < n) {
    std::size_t len = 1 + (static_cast<std::size_t>(p[at]) * 37 + at) % (std::size_t{1} << chunk_bits);
    if (len > n - at) len = n - at;
    std::vector<std::uint8_t> piece(p + at, p + at + len);  // exactly sized
    const Status s = d.inflate(piece.data(), piece.size(), out, limit);
    if (s != Status::ok) return s;
    at += len;
  }
  return d.finish_inflate(out, limit);
}

Status inflate_whole(PerMessageDeflate& d, const std::uint8_t* p, std::size_t n, std::string& out, std::size_t limit) {
  std::vector<std::uint8_t> copy(p, p + n);
  const Status s = d.inflate(copy.data(), copy.size(), out, limit);
  if (s != Status::ok) return s;
  return d.finish_inflate(out, limit);
}

// zlib as an independent peer; a 256-byte output buffer makes it check every
// match distance over 256 against its window.
bool zlib_inflate(z_stream& z, std::string payload, std::string& out) {
  payload.append("\x00\x00\xff\xff", 4);
  z.next_in = reinterpret_cast<Bytef*>(payload.data());
  z.avail_in = static_cast<uInt>(payload.size());
  char buf[256];
  while (z.avail_in > 0) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    const int rc = inflate(&z, Z_SYNC_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
    if (rc != Z_OK && rc != Z_BUF_ERROR) return false;
    if (rc == Z_BUF_ERROR && z.avail_out != 0) break;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const bool no_context = data[0] & 1;
  const int bits = 8 + ((data[0] >> 1) & 7);
  const unsigned limit_sel = (data[0] >> 4) & 7;
  const std::size_t limit = limit_sel == 7 ? SIZE_MAX : std::size_t{64} << limit_sel;  // SIZE_MAX: "no limit"
  const std::size_t max_capacity = limit_sel == 7 ? SIZE_MAX : 2 * limit + 8192;
  const bool round_trip = data[0] & 0x80;
  const unsigned chunk_bits = data[1] & 15;

  DeflateParams params;
  params.server_no_context_takeover = no_context;
  params.client_no_context_takeover = no_context;
  params.server_max_window_bits = static_cast<std::uint8_t>(bits);
  params.client_max_window_bits = static_cast<std::uint8_t>(bits);

  // The messages.
  std::vector<std::pair<const std::uint8_t*, std::size_t>> messages;
  for (std::size_t at = 2; at < size;) {
    std::size_t len = data[at++];
    if (len > size - at) len = size - at;
    messages.emplace_back(data + at, len);
    at += len;
  }

  if (round_trip) {
    PerMessageDeflate sender(params, false), receiver(params, true);
    z_stream z{};
    check(inflateInit2(&z, -bits) == Z_OK, "zlib inflateInit2");
    for (const auto& [p, n] : messages) {
      const std::string plain(reinterpret_cast<const char*>(p), n);
      std::string compressed;
      check(sender.compress(plain, compressed), "compress");
      check(!compressed.empty(), "a compressed message has at least one octet");
      std::string back;
      check(inflate_chunked(receiver, reinterpret_cast<const std::uint8_t*>(compressed.data()), compressed.size(), back,
                            1u << 20, chunk_bits) == Status::ok,
            "our own output inflates");
      check(back == plain, "round trip");
      if (no_context) {
        inflateEnd(&z);
        check(inflateInit2(&z, -bits) == Z_OK, "zlib inflateInit2");
      }
      std::string zback;
      check(zlib_inflate(z, compressed, zback), "zlib with the negotiated window accepts our output");
      check(zback == plain, "zlib round trip");
    }
    inflateEnd(&z);
    return 0;
  }

  // The chunking oracle runs with a 15-bit window: with a smaller one zlib
  // checks match distances against the window only for matches reaching
  // back before the current inflate() call, so a stream that overshoots the
  // window may pass or fail depending on chunking (harmlessly: the bytes are
  // right either way). With 15 bits, the largest distance DEFLATE can
  // express, the check is exact. The negotiated window gets the safety
  // invariants only.
  DeflateParams full = params;
  full.client_max_window_bits = 15;
  PerMessageDeflate a(full, true), b(full, true), w(params, true);
  bool w_failed = false;
  for (const auto& [p, n] : messages) {
    if (!w_failed) {
      std::string out_w;
      const Status sw = inflate_chunked(w, p, n, out_w, limit, chunk_bits);
      check(within(out_w.size(), limit, sw != Status::ok), "windowed output within the limit");
      check(out_w.capacity() <= max_capacity, "no large allocation (windowed)");
      w_failed = sw != Status::ok;
    }
    std::string out_a, out_b;
    const Status sa = inflate_whole(a, p, n, out_a, limit);
    const Status sb = inflate_chunked(b, p, n, out_b, limit, chunk_bits);
    check(sa == sb, "chunking does not change the status");
    if (sa == Status::ok) {
      check(out_a == out_b, "chunking does not change the output");
      check(out_a.size() <= limit, "ok output within the limit");
    } else {
      check(within(out_a.size(), limit, true) && within(out_b.size(), limit, true), "output at most one byte past the limit");
    }
    check(out_a.capacity() <= max_capacity && out_b.capacity() <= max_capacity, "no large allocation");
    if (sa != Status::ok) break;  // the connection is failed: the stream is not used again
    check(a.has_inflate_state() == !no_context || n == 0, "state kept only with context takeover");
  }
  return 0;
}
